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
import warnings
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


# The smallest side a photo may have, as given and as painted: VGG pools it four times, and the
# networks' first 9x9 convolution reflect-pads it (`vgg.MIN_SIDE`, `networks.options.MIN_SIDE`).
MIN_SIDE = 16


def load_photo(
    src: ImageLike, max_side: Optional[int] = None, square: bool = False, name: str = "the photo", resizer=None
):
    """`load_image` for the picture to be painted, with the one rule every door keeps: a photo whose
    shorter side is under `MIN_SIDE` pixels, as given or once sized to `max_side`, is refused with
    one line (never silently enlarged from a few pixels). resizer: `(rgb, hw) -> rgb` (default:
    `resize`, TensorFlow's Lanczos)."""
    rgb = load_image(src)
    _check_side(rgb.shape[:2], name, "")
    if max_side:
        hw = (max_side, max_side) if square else fit_size(rgb.shape[:2], max_side)
        rgb = (resizer or resize)(rgb, hw)
        _check_side(rgb.shape[:2], name, f" at size {max_side}")
    return rgb


def _check_side(hw, name: str, where: str) -> None:
    if min(hw) < MIN_SIDE:
        raise NstError(
            f"{name} is {hw[1]}x{hw[0]}{where}: a photo needs {MIN_SIDE} px or more on each side "
            "(give a larger photo or size)"
        )


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
    """Opens and decodes an image file, with clear errors for what users get wrong; more than
    `max_pixels` (default `MAX_PIXELS`) is refused from the header."""
    return decode(peek(path, max_pixels=max_pixels))


def decode_bytes(data: bytes, name: str, max_pixels: Optional[int] = None) -> Image.Image:
    """An image's bytes, decoded with `open_image`'s checks (`name` is what errors call it)."""
    return decode(peek(io.BytesIO(data), name, max_pixels))


def peek(source, name: Optional[str] = None, max_pixels: Optional[int] = None) -> Image.Image:
    """The image's header only (nothing decoded yet: `image.size`, `image.mode`, `image.format`
    are known): an `NstError` for what is not an image Pillow reads, or has more than `max_pixels`
    (default `MAX_PIXELS`). `decode` finishes it; `decode_bytes_needed` says what that will hold."""
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    if isinstance(source, (str, os.PathLike)):
        name = name or os.fspath(source)
        if not os.path.exists(source):
            raise NstError(f"{name}: no such file")
        if os.path.isdir(source):
            raise NstError(f"{name} is a folder, not an image file")
    name = name or "the image"
    try:
        with warnings.catch_warnings():  # our own limit applies, from the same header
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
    except Image.DecompressionBombError:
        raise NstError(f"{name} is too large to decode safely; downscale it first") from None
    except Image.UnidentifiedImageError:
        raise NstError(f"{name} is not an image Pillow can read (empty, or another kind of file)") from None
    except Exception as err:  # a damaged header can make Pillow raise almost anything (found by fuzzing)
        raise NstError(f"{name} cannot be decoded ({_first_line(err)}); the file may be truncated or damaged") from None
    image.nst_tf_name = name
    if image.width * image.height > max_pixels:
        raise NstError(
            f"{name} is {image.width}x{image.height}, more than {max_pixels / 1e6:g} megapixels; downscale it first"
        )
    return image


# Bytes a pixel takes in Pillow's memory, by mode (RGB is stored as four bytes).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}


def _draft_scale(image: Image.Image, max_side: Optional[int]) -> int:
    """The JPEG decoder's own reduction (1, 2, 4 or 8) that keeps the longest side at least
    `2 * max_side` (so the final Lanczos resize still has twice the pixels it makes)."""
    if not max_side or image.format != "JPEG":
        return 1
    scale = max(image.size) // (2 * max_side)
    return 8 if scale >= 8 else 4 if scale >= 4 else 2 if scale >= 2 else 1


def decode_bytes_needed(image: Image.Image, max_side: Optional[int] = None) -> int:
    """An upper estimate of the bytes `decode(image, max_side)` holds at its peak (read from a
    `peek`ed header): the decoded pixels (after the JPEG decoder's own reduction), the reduced copy,
    and the float32 RGB array `load_image` makes of it."""
    scale = _draft_scale(image, max_side)
    pixels = -(-image.width // scale) * -(-image.height // scale)
    decoded = pixels * _MODE_BYTES.get(image.mode, 4)
    kept = min(pixels, (2 * max_side) ** 2) if max_side else pixels
    return decoded + kept * (4 + 3 * 4 * 2)  # the reduced RGB copy; float32 RGB twice (conversion, clip)


def decode(image: Image.Image, max_side: Optional[int] = None) -> Image.Image:
    """Finishes a `peek`ed image: decodes it (the first frame of an animation, with a note) and,
    with `max_side`, shrinks it while decoding to no less than twice `max_side` on its longest side
    (the JPEG decoder's own 1/2, 1/4, 1/8 scaling, then a box reduction), so a 40-megapixel upload
    painted at 512 px never exists at full size in float32. EXIF orientation and colour profile
    are kept for `pil_to_rgb`."""
    name = getattr(image, "nst_tf_name", "the image")
    try:
        frames = getattr(image, "n_frames", 1)
        scale = _draft_scale(image, max_side)
        if scale > 1:
            image.draft(
                image.mode if image.mode in ("RGB", "L") else None, (image.width // scale, image.height // scale)
            )
        image.load()
        if frames > 1:
            sys.stderr.write(f"nst-tf: note: {name} has {frames} frames (an animation); using the first\n")
        factor = max(image.size) // (2 * max_side) if max_side else 1
        if factor >= 2:
            image = _reduce(image, factor)
    except NstError:
        raise
    except Image.DecompressionBombError:
        raise NstError(f"{name} is too large to decode safely; downscale it first") from None
    except Exception as err:  # a damaged file can make Pillow raise almost anything (found by fuzzing)
        raise NstError(f"{name} cannot be decoded ({_first_line(err)}); the file may be truncated or damaged") from None
    return image


def _reduce(image: Image.Image, factor: int) -> Image.Image:
    """`image` shrunk `factor` times by box averaging, in a mode that averages (palettes and
    1-bit images first become RGB(A) and L), with its metadata (EXIF, ICC profile) kept."""
    if image.mode == "1":
        image = image.convert("L")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")
    elif image.mode in ("P", "PA"):
        image = image.convert("RGBA" if "transparency" in image.info or image.mode == "PA" else "RGB")
    elif image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        image = image.convert("RGB")
    info = dict(image.info)
    reduced = image.reduce(factor)
    reduced.info.update(info)
    return reduced


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


def centre_square(image: np.ndarray) -> np.ndarray:
    """The centred square of `[h, w, ...]` (the arbitrary network's view of a painting)."""
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return image[top : top + s, left : left + s]


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
