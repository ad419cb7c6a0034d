"""Image I/O: the mode matrix, EXIF orientation, resizing, guards and atomic saving."""

import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from nst_tf import image_io
from nst_tf.errors import NstError

RED = (200, 30, 10)


def save(tmp_path, image, name, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return str(path)


def rgb_of(path_or_image):
    x = image_io.load_image(path_or_image)
    assert x.dtype == np.float32 and x.ndim == 3 and x.shape[-1] == 3
    assert 0.0 <= x.min() and x.max() <= 1.0
    return x


@pytest.mark.parametrize(
    "mode,value,expected",
    [
        ("RGB", RED, np.array(RED) / 255),
        ("L", 128, np.full(3, 128 / 255)),
        ("1", 1, np.ones(3)),
        ("CMYK", (0, 255, 255, 0), np.array([1.0, 0.0, 0.0])),  # pure cyan-free: red
        ("I;16", 65535 // 2, np.full(3, (65535 // 2) / 65535)),
        ("I", 40000, np.full(3, 40000 / 65535)),
        ("F", 0.25, np.full(3, 0.25)),
    ],
)
def test_opaque_modes(tmp_path, mode, value, expected):
    image = Image.new(mode, (5, 4), value)
    ext = "tiff" if mode in ("CMYK", "I", "F") else "png"
    for src in (image, save(tmp_path, image, f"x.{ext}")):
        x = rgb_of(src)
        assert x.shape == (4, 5, 3)
        np.testing.assert_allclose(x[0, 0], expected, atol=1.5 / 255)


def test_rgba_and_la_composite_on_white(tmp_path):
    rgba = Image.new("RGBA", (3, 3), (0, 0, 0, 0))
    rgba.putpixel((1, 1), (0, 0, 0, 255))
    rgba.putpixel((2, 2), (0, 0, 0, 128))
    x = rgb_of(save(tmp_path, rgba, "a.png"))
    np.testing.assert_allclose(x[0, 0], [1, 1, 1])
    np.testing.assert_allclose(x[1, 1], [0, 0, 0])
    np.testing.assert_allclose(x[2, 2], [127 / 255] * 3, atol=1 / 255)
    la = Image.new("LA", (2, 2), (0, 0))
    np.testing.assert_allclose(rgb_of(save(tmp_path, la, "la.png"))[0, 0], [1, 1, 1])


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (2, 2), 1)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    np.testing.assert_allclose(rgb_of(save(tmp_path, p, "p.png"))[0, 0], [1, 0, 0])
    p.info["transparency"] = 1
    np.testing.assert_allclose(rgb_of(save(tmp_path, p, "pt.png", transparency=1))[0, 0], [1, 1, 1])


def test_16_bit_png_keeps_precision(tmp_path):
    values = np.array([[0, 1000, 65535]], dtype=np.uint16)
    path = save(tmp_path, Image.fromarray(values), "g16.png")
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_allclose(rgb_of(path)[0, :, 0], values[0] / 65535, atol=1e-6)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (6, 2), (0, 0, 0))
    image.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = save(tmp_path, image, "o.jpg", exif=exif, quality=100)
    x = rgb_of(path)
    assert x.shape == (6, 2, 3)
    assert x[0, -1].mean() > 0.7  # the white corner moved top-right


@pytest.mark.parametrize(
    "array,expected",
    [
        (np.full((4, 3, 3), 255, np.uint8), 1.0),
        (np.full((4, 3), 65535, np.uint16), 1.0),
        (np.full((1, 4, 3, 3), 0.5, np.float32), 0.5),
        (np.full((4, 3, 1), 0.25, np.float64), 0.25),
        (np.concatenate([np.zeros((4, 3, 3)), np.zeros((4, 3, 1))], -1), 1.0),  # transparent black -> white
    ],
)
def test_arrays(array, expected):
    x = rgb_of(array)
    assert x.shape == (4, 3, 3)
    np.testing.assert_allclose(x, expected, atol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((4,)), np.zeros((4, 3, 5)), np.zeros((0, 3, 3)), np.full((2, 2, 3), np.nan)])
def test_bad_arrays(bad):
    with pytest.raises(NstError):
        image_io.load_image(bad)


def test_resize_max_side_and_square(rng):
    x = rng.uniform(size=(30, 60, 3)).astype(np.float32)
    assert image_io.load_image(x, 20).shape == (10, 20, 3)
    assert image_io.load_image(x, 120).shape == (60, 120, 3)
    assert image_io.load_image(x, 16, square=True).shape == (16, 16, 3)
    smooth = np.tile(np.linspace(0, 1, 60, dtype=np.float32), (30, 1))[..., None].repeat(3, -1)
    small = image_io.load_image(smooth, 20)
    np.testing.assert_allclose(small[5, :, 0], np.linspace(0, 1, 20), atol=0.03)  # Lanczos keeps the ramp


def test_missing_empty_truncated_and_non_image_files(tmp_path):
    with pytest.raises(NstError, match="no such file"):
        image_io.load_image(str(tmp_path / "missing.png"))
    with pytest.raises(NstError, match="folder"):
        image_io.load_image(str(tmp_path))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(NstError, match="not an image"):
        image_io.load_image(str(tmp_path / "empty.png"))
    (tmp_path / "text.jpg").write_text("this is not a picture")
    with pytest.raises(NstError, match="not an image"):
        image_io.load_image(str(tmp_path / "text.jpg"))
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(NstError, match="truncated"):
        image_io.load_image(str(tmp_path / "cut.png"))


def test_pixel_guard_refuses_before_decoding(tmp_path, monkeypatch):
    path = save(tmp_path, Image.new("RGB", (100, 100)), "big.png")
    monkeypatch.setattr(image_io, "MAX_PIXELS", 5000)
    with pytest.raises(NstError, match="megapixels|too large"):
        image_io.load_image(path)


@pytest.mark.parametrize("ext,lossless", [(".png", True), (".jpg", False), (".jpeg", False)])
def test_save_round_trip_and_atomic(tmp_path, rng, ext, lossless):
    x = rng.uniform(size=(8, 6, 3)).astype(np.float32)
    path = image_io.save_image(str(tmp_path / f"out{ext}"), x)
    assert Image.open(path).format == ("PNG" if ext == ".png" else "JPEG")
    back = image_io.load_image(path)
    if lossless:
        np.testing.assert_array_equal(image_io.to_uint8(back), image_io.to_uint8(x))
    assert os.listdir(tmp_path) == [os.path.basename(path)]  # no temporary file left behind
    assert os.stat(path).st_mode & 0o044  # readable by others, as a normal file


def test_save_failure_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(NstError, match="No space left"):
        image_io.save_image(str(tmp_path / "out.png"), np.zeros((2, 2, 3), np.float32))
    assert os.listdir(tmp_path) == []


def test_output_path_checks(tmp_path):
    with pytest.raises(NstError, match="does not exist"):
        image_io.check_output_path(str(tmp_path / "nope" / "out.png"))
    with pytest.raises(NstError, match="extension"):
        image_io.check_output_path(str(tmp_path / "out.xyz"))
    with pytest.raises(NstError, match="not writable"):
        image_io.check_output_path("/proc/out.png")
    # an existing folder is named as a folder (not as a file name without an extension)
    with pytest.raises(NstError, match=f"^the output path {tmp_path} is a folder; give a file name such as"):
        image_io.check_output_path(str(tmp_path))
    assert image_io.check_output_path(str(tmp_path / "ok.png")).endswith("ok.png")
    assert os.listdir(tmp_path) == []  # the probe file is removed


@pytest.mark.parametrize(
    "hw, size, message",
    [
        ((1, 1), 512, "is 1x1: a photo needs 16 px"),
        ((1, 5000), 512, "is 5000x1:"),
        ((40, 600), 200, "is 200x13 at size 200"),
    ],
)
def test_one_smallest_photo_rule_for_every_door(hw, size, message):
    """A photo under 16 px a side, as given or as painted, is refused with one line (a 1 x 1 photo was
    painted at 512 x 512 as a plaid, a 5000 x 1 one refused)."""
    with pytest.raises(NstError, match=re.escape(message)):
        image_io.load_photo(np.zeros(hw + (3,), np.uint8), size)


def test_every_painter_keeps_the_smallest_photo_rule():
    import nst_tf

    for network in ("demo", "universal", None):  # the arbitrary network, the universal painter, the optimisation
        with pytest.raises(NstError, match="the photo is 1x1: a photo needs 16 px or more"):
            nst_tf.stylize(
                np.zeros((1, 1, 3), np.uint8), image_io.example_path("the_scream"), network=network, weights="embedded"
            )
