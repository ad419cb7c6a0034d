"""Colour preservation (Gatys et al., "Preserving Color in Neural Artistic Style Transfer", 2016), in NumPy.

Images are float32 RGB in [0, 1], `[H, W, 3]`.
- Luminance-only transfer: the run sees grey images (`luminance_rgb`), the style's luminance
  matched to the content's mean and spread (`match_luminance`); afterwards the result's luminance
  is joined with the content's chroma (`with_chroma`). Luminance and chroma are YIQ's Y and I, Q.
- Colour histogram matching (`match_color`): an affine map of the style's pixels so that their
  colour mean and covariance become the content's, `x' = A (x - mu_s) + mu_c` with
  `A = C_c^1/2 C_s^-1/2` (symmetric square roots, the Image Analogies form the paper uses).
"""

from __future__ import annotations

import numpy as np

# NTSC YIQ (FCC), rows Y, I, Q.
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]])
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def rgb_to_yiq(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, np.float64) @ RGB_TO_YIQ.T


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    return np.asarray(yiq, np.float64) @ YIQ_TO_RGB.T


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Y, `[H, W]`."""
    return rgb_to_yiq(rgb)[..., 0]


def luminance_rgb(rgb: np.ndarray) -> np.ndarray:
    """The grey image of `rgb`'s luminance, `[H, W, 3]` float32 (R = G = B = Y)."""
    return _grey(luminance(rgb))


def _grey(y: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(y, 0.0, 1.0)[..., None], 3, axis=-1).astype(np.float32)


def match_luminance(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The style's luminance shifted and scaled to the content's mean and standard deviation, as a
    grey `[h, w, 3]` image (the paper's luminance matching before a luminance-only run)."""
    ys, yc = luminance(style), luminance(content)
    matched = (ys - ys.mean()) * (yc.std() / max(ys.std(), 1e-6)) + yc.mean()
    return _grey(matched)


def with_chroma(result: np.ndarray, content: np.ndarray) -> np.ndarray:
    """`result`'s luminance with `content`'s chroma (I, Q), clipped to [0, 1]: float32 `[H, W, 3]`."""
    yiq = rgb_to_yiq(content)
    yiq[..., 0] = luminance(result)
    return np.clip(yiq_to_rgb(yiq), 0.0, 1.0).astype(np.float32)


def _sqrt_psd(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    e, v = np.linalg.eigh(cov)
    e = np.maximum(e, 1e-5)  # a grey image has a singular colour covariance
    return (v * (e ** (-0.5 if inverse else 0.5))) @ v.T


def color_moments(rgb: np.ndarray):
    """Mean `[3]` and covariance `[3, 3]` of the pixels' colours (float64)."""
    pixels = np.asarray(rgb, np.float64).reshape(-1, 3)
    return pixels.mean(axis=0), np.cov(pixels, rowvar=False, bias=True)


def match_color(style: np.ndarray, content: np.ndarray, clip: bool = True) -> np.ndarray:
    """`style` with its colour mean and covariance moved to `content`'s (clipped to [0, 1] unless
    `clip=False`, in which case the moments match exactly): float32 `[h, w, 3]`."""
    mu_s, cov_s = color_moments(style)
    mu_c, cov_c = color_moments(content)
    a = _sqrt_psd(cov_c) @ _sqrt_psd(cov_s, inverse=True)
    out = (np.asarray(style, np.float64) - mu_s) @ a.T + mu_c
    return (np.clip(out, 0.0, 1.0) if clip else out).astype(np.float32)
