"""The bundled test clip: made from the bundled photo and painting, so its true flow is known.

A camera pans right across the lower part of the photo of Boston (the view moves `pan` px per frame)
while a disc cut from The Scream crosses the view from the right (`speed` px per frame in the view).
Whole-pixel motion, so each frame is the previous one moved exactly: the true backward flow (current
frame -> previous, as `nst_tf.flow.flow` gives it) is `(+pan, 0)` on the background and
`(+speed, 0)` on the disc, and the background the disc uncovers was hidden in the previous frame.
"""

from __future__ import annotations

import os
from typing import List, NamedTuple

import numpy as np

from nst_tf import files, image_io
from nst_tf.video import io


class Clip(NamedTuple):
    frames: List[np.ndarray]  # float32 RGB [H, W, 3] in [0, 1]
    backward: List[np.ndarray]  # true flow of frame t -> t-1 for t >= 1 (float32 [H, W, 2]); [0] is zeros
    disc: List[np.ndarray]  # bool [H, W]: where the disc is in each frame


def clip(
    frames: int = 12,
    width: int = 320,
    height: int = 200,
    pan: int = 4,
    speed: int = 6,
    radius: int = 28,
    photo: str = "boston",
    painting: str = "the_scream",
) -> Clip:
    """The test clip: `frames` frames of `width` x `height` (odd sizes work), see the module docstring;
    `photo` and `painting` name other bundled pictures for other clips of the same making."""
    photo = image_io.load_image(image_io.example_path(photo), 512)  # boston: 512 x 343
    if width + pan * (frames - 1) > photo.shape[1] or height > photo.shape[0]:
        raise ValueError("the view would leave the photo: fewer frames, a smaller size or a slower pan")
    painting = image_io.load_image(image_io.example_path(painting), 2 * radius, square=True)
    ys, xs = np.mgrid[: 2 * radius, : 2 * radius]
    round_ = (ys - radius + 0.5) ** 2 + (xs - radius + 0.5) ** 2 <= radius**2
    top = (height - 2 * radius) // 2
    out, flows, discs = [], [], []
    for t in range(frames):
        frame = photo[photo.shape[0] - height :, t * pan : t * pan + width].copy()
        left = width - 2 * radius - t * speed  # the disc enters on the right and moves left
        disc = np.zeros((height, width), bool)
        cols = np.arange(left, left + 2 * radius)
        inside = (cols >= 0) & (cols < width)
        region = (slice(top, top + 2 * radius), cols[inside])
        patch = frame[region[0]][:, region[1]]
        patch[round_[:, inside]] = painting[:, inside][round_[:, inside]]
        frame[region[0], region[1][0] : region[1][-1] + 1] = patch
        disc[region[0], region[1][0] : region[1][-1] + 1] = round_[:, inside]
        flow = np.zeros((height, width, 2), np.float32)
        if t:
            flow[..., 0] = pan
            flow[disc, 0] = speed  # the disc came from `speed` px to the right
        out.append(frame.astype(np.float32))
        flows.append(flow)
        discs.append(disc)
    return Clip(out, flows, discs)


def write(path: str, frames: int = 24, fps: int = 12, **options) -> str:
    """The test clip as a video file (or a folder of frames) at `fps`, for `make demo-video`;
    `options`: `clip`'s."""
    import fractions

    made = clip(frames=frames, **options)
    height, width = made.frames[0].shape[:2]
    info = io.ClipInfo(path, width, height, frames, fractions.Fraction(fps), frames / fps, 0, False, True)
    return io.write(path, (io.Frame(k, k / fps, f) for k, f in enumerate(made.frames)), info)


if __name__ == "__main__":  # python -m nst_tf.video.synthetic clip.mp4
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m nst_tf.video.synthetic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("output", nargs="?", default="clip.mp4", help="the clip to write (default: clip.mp4)")
    output = parser.parse_args().output
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ lines are not ours
    with files.native_stderr_quiet():
        import tensorflow  # noqa: F401  (its start-up lines hidden; the clip's resizing uses it)
    print(f"wrote {write(output)}")
