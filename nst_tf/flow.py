"""Optical flow between frames (OpenCV's DIS), warping by a flow, and where a flow can be trusted.

Conventions: frames are float32 RGB `[H, W, 3]` in [0, 1]; a flow is float32 `[H, W, 2]` of (dx, dy)
in pixels. `flow(a, b)` is the flow from `a` to `b`: `a[y, x] ~ b[y + dy, x + dx]`. So
`warp(b, flow(a, b))` brings `b` into `a`'s pixels: the previous frame (or its painting) warped into
the current one is `warp(previous, flow(current, previous))`.

The reliability mask follows Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos"
(GCPR 2016): a pixel of the current frame is unreliable where the backward flow and the forward flow
(read where the backward flow points) do not cancel (a disocclusion), or on a motion boundary.
"""

from __future__ import annotations

import numpy as np

from nst_tf.errors import NstError

# Ruder et al.'s thresholds (flows in pixels): consistency |w_b + w_f|^2 > A (|w_b|^2 + |w_f|^2) + B,
# motion boundary |grad u|^2 + |grad v|^2 > C |w_b|^2 + D.
CONSISTENCY_FACTOR, CONSISTENCY_SLACK = 0.01, 0.5
BOUNDARY_FACTOR, BOUNDARY_SLACK = 0.01, 0.002


def _cv2():
    try:
        import cv2
    except ImportError as err:  # the optional extra
        raise NstError("video needs OpenCV: pip install 'nst_tf[video]'") from err
    return cv2


def _grey(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame, np.float32)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise NstError(f"a frame must be RGB [H, W, 3], got shape {frame.shape}")
    grey = frame @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.rint(grey * 255.0), 0, 255).astype(np.uint8)


def flow(a: np.ndarray, b: np.ndarray, preset: str = "medium") -> np.ndarray:
    """The dense flow from frame `a` to frame `b` (same size), float32 `[H, W, 2]`, by OpenCV's DIS
    optical flow (Kroeger et al., ECCV 2016) on the frames' luma; `preset`: "ultrafast", "fast" or
    "medium" (OpenCV's own, slower and finer in that order)."""
    cv2 = _cv2()
    if np.shape(a) != np.shape(b):
        raise NstError(f"frames of different sizes: {np.shape(a)} and {np.shape(b)}")
    presets = {
        "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
        "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    }
    if preset not in presets:
        raise NstError(f"unknown flow preset {preset!r}; choose one of: {', '.join(presets)}")
    dis = cv2.DISOpticalFlow_create(presets[preset])
    return dis.calc(_grey(a), _grey(b), None).astype(np.float32)


def warp(image: np.ndarray, flow_: np.ndarray) -> np.ndarray:
    """`image` (`[H, W, C]` or `[H, W]`) resampled at each pixel plus its flow (bilinear; outside
    the picture, the nearest edge pixel): `out[y, x] = image[y + dy, x + dx]`."""
    cv2 = _cv2()
    height, width = flow_.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x, map_y = xs + flow_[..., 0], ys + flow_[..., 1]
    out = cv2.remap(np.asarray(image, np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(np.shape(image))


def inconsistent(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Ruder et al.'s disocclusion test, bool `[H, W]` over the current frame: `backward` is the flow
    from the current frame to the previous one, `forward` from the previous to the current; where
    following one and then the other does not come back (`|w_b + w_f(x + w_b)|^2` over the
    threshold), the pixel was hidden in the previous frame."""
    ahead = warp(forward, backward)  # the forward flow where the backward flow lands
    mismatch = np.sum((backward + ahead) ** 2, axis=-1)
    scale = np.sum(backward**2, axis=-1) + np.sum(ahead**2, axis=-1)
    return mismatch > CONSISTENCY_FACTOR * scale + CONSISTENCY_SLACK


def motion_boundary(backward: np.ndarray) -> np.ndarray:
    """Ruder et al.'s motion-boundary test, bool `[H, W]`: where the flow changes fast
    (`|grad u|^2 + |grad v|^2` over the threshold)."""
    du_dy, du_dx = np.gradient(backward[..., 0])
    dv_dy, dv_dx = np.gradient(backward[..., 1])
    change = du_dx**2 + du_dy**2 + dv_dx**2 + dv_dy**2
    return change > BOUNDARY_FACTOR * np.sum(backward**2, axis=-1) + BOUNDARY_SLACK


def outside(backward: np.ndarray) -> np.ndarray:
    """bool `[H, W]`: where the flow points out of the previous frame (what entered the view)."""
    height, width = backward.shape[:2]
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    x, y = xs + backward[..., 0], ys + backward[..., 1]
    return (x < 0) | (x > width - 1) | (y < 0) | (y > height - 1)


def reliable(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """float32 `[H, W]`: 1 where the previous frame, warped by `backward`, can be trusted at the
    current frame's pixel (neither `inconsistent` nor a `motion_boundary`, nor from `outside` the
    previous frame), else 0."""
    bad = inconsistent(backward, forward) | motion_boundary(backward) | outside(backward)
    return (~bad).astype(np.float32)


def between(current: np.ndarray, previous: np.ndarray, preset: str = "medium"):
    """`(backward, mask)` for two frames: the flow from `current` to `previous` and where warping
    `previous` by it is reliable (`reliable`, from both flows)."""
    backward = flow(current, previous, preset)
    return backward, reliable(backward, flow(previous, current, preset))
