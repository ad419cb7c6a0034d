"""Makes the gallery of docs/controls.md: runs each preset in configs/ on the bundled images with the command
docs/controls.md shows, and writes configs/gallery/<name>.jpg; prints the table for docs/controls.md.

    python scripts/gallery.py                # all entries
    python scripts/gallery.py blend regions  # some

Also writes the region masks of configs/regions.cfg (configs/masks/) if they are missing.
"""

import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 320
# (name, what it shows, extra flags after the preset)
GALLERY = [
    ("default", "the default: Gram matrices, L-BFGS, coarse to fine", []),
    ("blend", "two styles, half each", ["--flagfile=configs/blend.cfg"]),
    ("regions", "one style per region (masks)", ["--flagfile=configs/regions.cfg"]),
    ("style_scale", "the style at 1.5x the output's size: larger strokes", ["--flagfile=configs/style_scale.cfg"]),
    (
        "preserve_luminance",
        "luminance-only transfer, the photo's colours",
        ["--flagfile=configs/preserve_luminance.cfg"],
    ),
    ("preserve_histogram", "the style's colours matched to the photo's", ["--flagfile=configs/preserve_histogram.cfg"]),
    ("style_poly", "MMD, polynomial kernel", ["--flagfile=configs/style_poly.cfg"]),
    ("style_gaussian", "MMD, Gaussian kernel", ["--flagfile=configs/style_gaussian.cfg"]),
    ("style_meanstd", "mean and standard deviation", ["--flagfile=configs/style_meanstd.cfg"]),
    ("style_w2", "2-Wasserstein between Gaussian fits", ["--flagfile=configs/style_w2.cfg"]),
    ("avg_pool", "average pooling", ["--flagfile=configs/avg_pool.cfg"]),
    (
        "contact_sheet",
        "progress: a contact sheet of the default run, and its loss plot",
        ["--contact_sheet=configs/gallery/contact_sheet.jpg", "--loss_plot=configs/gallery/loss_plot.png"],
    ),
]
MASKS = ("configs/masks/boston_sky.png", "configs/masks/boston_water.png")


def make_masks():
    """The water below the bundled photo's waterline (row 244 of 343, found from the rows' mean
    brightness), with a 12 px soft edge; the sky and skyline are the rest."""
    photo = Image.open(os.path.join(REPO, "nst_tf/assets/photos/boston.jpg"))
    rows = np.arange(photo.height, dtype=np.float64)
    water = np.clip((rows - 238.0) / 12.0, 0.0, 1.0)[:, None].repeat(photo.width, axis=1)
    for path, mask in zip(MASKS, (1.0 - water, water)):
        Image.fromarray(np.round(mask * 255).astype(np.uint8), "L").save(os.path.join(REPO, path))


def command(name, flags):
    output = (
        "stylized.png" if name == "contact_sheet" else f"configs/gallery/{name}.jpg"
    )  # its sheet and plot are the point
    return ["nst-tf", *flags, f"--size={SIZE}", "--weights=embedded", f"--output={output}"]


def main(names):
    if not all(os.path.isfile(os.path.join(REPO, p)) for p in MASKS):
        make_masks()
    os.makedirs(os.path.join(REPO, "configs/gallery"), exist_ok=True)
    bin_dir = os.path.dirname(sys.executable)
    rows = []
    for name, what, flags in GALLERY:
        if names and name not in names:
            continue
        cmd = command(name, flags)
        start = time.perf_counter()
        subprocess.run([os.path.join(bin_dir, cmd[0]), *cmd[1:], "--noprogress"], cwd=REPO, check=True)
        rows.append(f"| {what} | `{' '.join(cmd)}` | {time.perf_counter() - start:.0f} s |")
    print("\n".join(rows))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "names", nargs="*", help="gallery entries to make (default: all): " + ", ".join(g[0] for g in GALLERY)
    )
    main(parser.parse_args().names)
