"""Reading, resizing and saving images. All Pillow use lives here.

Inside the package an image is float32 RGB in [0, 1], shape `[H, W, 3]` (a batch adds a leading
axis). Reading accepts a path, a PIL image or an array, applies EXIF orientation, and converts any
mode (L, LA, P, RGBA, CMYK, 16-bit, ...) to RGB, compositing transparency onto white. Resizing is
the one step done in TensorFlow (see `resize`), so that the served graph resizes identically.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps

from nst_tf import files, schedule
from nst_tf.errors import NstError

# Larger inputs are refused before decoding (a guard against decompression bombs): 100 megapixels.
MAX_PIXELS = 100_000_000
SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]

_ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")


# The bundled images' folders (`nst_tf/assets/SOURCES.md` credits each): photos to paint, paintings to
# paint them with; the command line's --contents=, --styles= take either folder whole.
PHOTOS = os.path.join(_ASSETS, "photos")
PAINTINGS = os.path.join(_ASSETS, "paintings")


def example_path(name: str) -> str:
    """Path of a bundled image by name: a photo ("boston", "astronaut", ... in `PHOTOS`) or a
    painting ("the_scream", "shipwreck", "seated_nude" in `PAINTINGS`)."""
    for folder in (PHOTOS, PAINTINGS):
        path = os.path.join(folder, f"{name}.jpg")
        if os.path.isfile(path):
            return path
    names = sorted(os.path.splitext(f)[0] for d in (PHOTOS, PAINTINGS) for f in os.listdir(d) if f.endswith(".jpg"))
    raise NstError(f"no bundled image {name!r}; bundled: {', '.join(names)}")


INITS = ("content", "noise", "style", "network")  # the starting images --init names; anything else is a file


def load_init_image(init: str) -> np.ndarray:
    """The starting image that `--init` names when it is not one of `INITS`: an image file."""
    if not os.path.isfile(init):
        raise NstError(f"init must be one of {', '.join(INITS)} or an image file; {init!r} is neither")
    return load_image(init)


def load_image(src: ImageLike, max_side: Optional[int] = None, square: bool = False) -> np.ndarray:
    """`src` as float32 RGB in [0, 1], `[H, W, 3]`, resized (Lanczos) so its longest side is
    `max_side` (or to `max_side` x `max_side` when `square`)."""
    if isinstance(src, np.ndarray):
        rgb = array_to_rgb(src)
    elif isinstance(src, Image.Image):
        rgb = pil_to_rgb(src)
    elif isinstance(src, (str, os.PathLike)):
        image = open_image(src)
        try:
            rgb = pil_to_rgb(image)
        except NstError:
            raise
        except Exception as err:  # broken EXIF, profiles or modes in a file that decoded
            raise NstError(
                f"{os.fspath(src)} cannot be converted to RGB ({_first_line(err)}); the file may be damaged"
            ) from None
    else:
        raise NstError(f"an image must be a path, a PIL image or an array, not {type(src).__name__}")
    if max_side:
        rgb = resize(rgb, (max_side, max_side) if square else fit_size(rgb.shape[:2], max_side))
    return rgb


def open_image(path, max_pixels: Optional[int] = None) -> Image.Image:
    """Opens and fully decodes an image file, with clear errors for what users get wrong; more
    than `max_pixels` (default `MAX_PIXELS`) is refused from the header."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise NstError(f"{path}: no such file")
    if os.path.isdir(path):
        raise NstError(f"{path} is a folder, not an image file")
    return _decode(path, path, max_pixels)


def decode_bytes(data: bytes, name: str, max_pixels: Optional[int] = None) -> Image.Image:
    """An uploaded image's bytes, decoded with `open_image`'s checks (`name` is what errors call it):
    more than `max_pixels` pixels (read from the header, before decoding) is refused."""
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(source, name: str, max_pixels: Optional[int]) -> Image.Image:
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        image = Image.open(source)
        if image.width * image.height > max_pixels:
            raise NstError(
                f"{name} is {image.width}x{image.height}, more than {max_pixels / 1e6:g} megapixels; downscale it first"
            )
        frames = getattr(image, "n_frames", 1)
        image.load()
        if frames > 1:
            sys.stderr.write(f"nst-tf: note: {name} has {frames} frames (an animation); using the first\n")
    except NstError:
        raise
    except Image.DecompressionBombError:
        raise NstError(f"{name} is too large to decode safely; downscale it first") from None
    except Image.UnidentifiedImageError:
        raise NstError(f"{name} is not an image Pillow can read (empty, or another kind of file)") from None
    except Exception as err:  # a damaged file can make Pillow raise almost anything (found by fuzzing)
        raise NstError(f"{name} cannot be decoded ({_first_line(err)}); the file may be truncated or damaged") from None
    return image


def _first_line(err) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def to_srgb(image: Image.Image) -> Image.Image:
    """An image with an embedded ICC profile (Adobe RGB, Display P3, a CMYK press profile, ...)
    converted to sRGB with Little CMS, so its colours mean what they showed; without one, as it is."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "L", "LA", "CMYK"):
        return image
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        mode = "RGBA" if image.mode in ("RGBA", "LA") else "RGB"
        return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image  # a damaged profile: the pixels as they are, like most viewers


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL image as float32 RGB in [0, 1], EXIF orientation applied, ICC profile converted to
    sRGB, alpha on white."""
    image = to_srgb(ImageOps.exif_transpose(image) or image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        return array_to_rgb((values / peak).astype(np.float32))
    if mode == "F":
        return array_to_rgb(np.asarray(image, dtype=np.float32))
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    elif mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, 1
    return array_to_rgb(np.asarray(image))


def array_to_rgb(array: np.ndarray) -> np.ndarray:
    """An `[H, W]`, `[H, W, 1|3|4]` (or batch-of-one) array as float32 RGB in [0, 1].

    Integers are scaled by their type's range (uint8 by 255, uint16 by 65535); floats are taken as
    already in [0, 1] and clipped. Alpha is composited onto white.
    """
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or min(array.shape[:2]) < 1:
        raise NstError(f"an image array must be [H, W], [H, W, 1-4] or [1, H, W, 1-4]; got shape {array.shape}")
    if array.dtype == bool:
        x = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        x = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    elif np.issubdtype(array.dtype, np.floating):
        x = array.astype(np.float32)
        if not np.all(np.isfinite(x)):
            raise NstError("the image array holds NaN or infinite values")
    else:
        raise NstError(f"an image array must be numeric, not {array.dtype}")
    x = np.clip(x, 0.0, 1.0)
    if x.shape[-1] in (2, 4):  # alpha on white
        color, alpha = x[..., :-1], x[..., -1:]
        x = color * alpha + (1.0 - alpha)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x, dtype=np.float32)


def fit_size(hw: Tuple[int, int], max_side: int) -> Tuple[int, int]:
    """(height, width) scaled so the longest side is `max_side`, aspect kept (`nst_tf.schedule`)."""
    return schedule.fit_size(hw, max_side)


def resize(rgb: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    """Lanczos resize of float RGB `[H, W, 3]` in [0, 1] to (height, width).

    TensorFlow's Lanczos-3 (`tensor_image.resize`), imported on first use: the serving graph
    resizes with the same function, so a served result equals a local one.
    """
    if tuple(rgb.shape[:2]) == tuple(hw):
        return rgb
    from nst_tf import tensor_image  # loads TensorFlow: not at import

    return tensor_image.resize(np.asarray(rgb, np.float32)[None], hw)[0].numpy()


def to_uint8(rgb) -> np.ndarray:
    """Float RGB in [0, 1] (`[H, W, 3]` or `[1, H, W, 3]`) as uint8 `[H, W, 3]`."""
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim == 4:
        rgb = rgb[0]
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def check_output_path(path, extensions=SAVE_FORMATS) -> str:
    """Fails early, before any work, if `path` cannot receive an image (or a file with one of
    `extensions`)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise NstError(f"the output path {path} is a folder; give a file name such as {os.path.join(path, 'out.png')}")
    ext = os.path.splitext(path)[1].lower()
    if ext not in extensions:
        raise NstError(f"{path}: unknown extension {ext or '(none)'}; use one of {', '.join(extensions)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise NstError(f"the output folder {folder} does not exist; create it or choose another output path")
    try:  # a real write, since permissions alone do not tell (root, read-only mounts)
        fd, probe = tempfile.mkstemp(prefix=".nst_tf-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise NstError(
            f"the output folder {folder} is not writable ({err.strerror}); choose another output path"
        ) from None
    return path


def check_not_an_input(output, inputs) -> None:
    """Refuses an output path that is one of the input files (it would be overwritten)."""
    target = os.path.realpath(output)
    for path in inputs:
        if isinstance(path, (str, os.PathLike)) and os.path.exists(path) and os.path.realpath(path) == target:
            raise NstError(f"the output {output} is also an input ({path}); choose another output path")


def save_image(path, rgb) -> str:
    """Writes float RGB in [0, 1] or uint8 to `path` (format from the extension), atomically:
    a temporary file in the same folder is renamed over the target, so no half-written file is
    ever seen."""
    path = check_output_path(path)
    array = rgb if np.asarray(rgb).dtype == np.uint8 else to_uint8(rgb)
    array = np.asarray(array)
    if array.ndim == 4:
        array = array[0]
    fmt = SAVE_FORMATS[os.path.splitext(path)[1].lower()]
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    with files.atomic_file(path) as f:
        Image.fromarray(array, "RGB").save(f, format=fmt, **options)
    return path


def load_mask(src: ImageLike, hw: Tuple[int, int]) -> np.ndarray:
    """A region mask as float32 `[H, W]` in [0, 1] at (height, width) `hw` (stretched if its aspect
    differs): the mean of its channels, so a grey or black-and-white image works as it is."""
    grey = load_image(src).mean(axis=-1, keepdims=True).repeat(3, axis=-1)
    return np.clip(resize(grey, hw)[..., 0], 0.0, 1.0)


SHEET_GAP = 4  # pixels between and around the cells of a contact sheet
SHEET_BACKGROUND = (24, 24, 24)


def contact_sheet(frames, cell_hw: Tuple[int, int], columns: int) -> np.ndarray:
    """A grid of labelled thumbnails: `frames` is a list of (uint8 `[h, w, 3]`, label), each resized
    to `cell_hw`, `columns` per row, `SHEET_GAP` px apart. Returns uint8 `[H, W, 3]` with
    W = columns*cw + (columns+1)*gap and H = rows*ch + (rows+1)*gap."""
    from PIL import ImageDraw, ImageFont

    ch, cw = cell_hw
    rows = -(-len(frames) // columns)
    sheet = Image.new(
        "RGB", (columns * cw + (columns + 1) * SHEET_GAP, rows * ch + (rows + 1) * SHEET_GAP), SHEET_BACKGROUND
    )
    font = ImageFont.load_default()
    for i, (array, label) in enumerate(frames):
        thumb = Image.fromarray(np.asarray(array, np.uint8), "RGB").resize((cw, ch), Image.LANCZOS)
        draw = ImageDraw.Draw(thumb, "RGBA")
        box = draw.textbbox((4, ch - 4), label, font=font, anchor="ls")
        draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0, 160))
        draw.text((4, ch - 4), label, font=font, fill=(255, 255, 255, 255), anchor="ls")
        row, col = divmod(i, columns)
        sheet.paste(thumb, (SHEET_GAP + col * (cw + SHEET_GAP), SHEET_GAP + row * (ch + SHEET_GAP)))
    return np.asarray(sheet)
