"""Hypothesis fuzzing: whatever a user hands the image loader or the options, only `NstError` may
escape (a clear message), never another exception; what loads is a valid image."""

import io
import warnings

import numpy as np
from absl import flags
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from nst_tf import cli, config, image_io
from nst_tf.commands import common
from nst_tf.errors import NstError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid_images():
    out = {}
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)
    for fmt, mode in (
        ("PNG", "RGB"),
        ("JPEG", "RGB"),
        ("GIF", "P"),
        ("BMP", "RGB"),
        ("TIFF", "RGB"),
        ("WEBP", "RGB"),
        ("PNG", "RGBA"),
        ("PNG", "LA"),
        ("TIFF", "I;16"),
    ):
        image = (
            Image.fromarray(pixels).convert(mode)
            if mode != "I;16"
            else Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
        )
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        out[f"{fmt}-{mode}"] = buffer.getvalue()
    return out


VALID = _valid_images()


def check_loaded(rgb):
    assert isinstance(rgb, np.ndarray) and rgb.dtype == np.float32 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[0] >= 1 and rgb.shape[1] >= 1
    assert np.all(np.isfinite(rgb)) and rgb.min() >= 0.0 and rgb.max() <= 1.0


def load_or_nst_error(path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own warnings (e.g. truncated EXIF) are not failures
            rgb = image_io.load_image(path)
    except NstError as err:
        assert str(err) and "\n" not in str(err)
        return None
    check_loaded(rgb)
    return rgb


@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes(tmp_path, data):
    path = tmp_path / "fuzz.img"
    path.write_bytes(data)
    load_or_nst_error(path)


@FUZZ
@given(
    name=st.sampled_from(sorted(VALID)),
    cut=st.integers(0, 4000),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6),
)
def test_damaged_real_images(tmp_path, name, cut, flips):
    """Valid files of 9 kinds, truncated and with bytes overwritten."""
    data = bytearray(VALID[name][: max(cut, 1)] if cut < len(VALID[name]) else VALID[name])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    path = tmp_path / "fuzz.img"
    path.write_bytes(bytes(data))
    load_or_nst_error(path)


@FUZZ
@given(
    array=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_, np.complex64]),
        shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6),
    )
)
def test_arrays(array):
    try:
        rgb = image_io.load_image(array)
    except NstError:
        return
    check_loaded(rgb)


OPTION_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.one_of(st.integers(-5, 5), st.floats(), st.text(max_size=5)), max_size=4),
    st.sampled_from(["block1_conv1", "avg", "gram", "luminance", "lbfgs", "1,2", "0", "-1", "nan", "1e9"]),
)


@FUZZ
@given(
    field=st.sampled_from(config.field_names()),
    value=OPTION_VALUES,
    other=st.sampled_from(config.field_names()),
    other_value=OPTION_VALUES,
)
def test_options(field, value, other, other_value):
    """Any value for any option (and a second one), as `stylize(**options)` takes them."""
    try:
        cfg = config.make_config(**{field: value, other: other_value})
    except NstError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert isinstance(cfg, config.Config)
    cfg.scale_plan()
    assert cfg.effective_style_size >= 1


@FUZZ
@given(field=st.sampled_from(config.field_names()), value=st.text(max_size=30))
def test_flag_values(field, value):
    """Any text for any flag on the command line: absl's parse error or `NstError` (both exit 2) with a
    one-line message; or an accepted value, which the command line the page shows writes back as the
    same option (`common.flag_args` parsed again gives the same value)."""
    fv = flags.FlagValues()
    cli.define_flags(fv)
    try:
        fv(["nst-tf", f"--{field}={value}"])
        cfg = cli.config_from_flags(fv)
    except (flags.Error, NstError) as err:
        assert str(err).strip(), "a refusal says why"
        assert isinstance(err, flags.Error) or "\n" not in str(err), str(err)
        return
    again = flags.FlagValues()
    cli.define_flags(again)
    again(["nst-tf", *common.flag_args(cfg, [field])])
    assert getattr(cli.config_from_flags(again), field) == getattr(cfg, field), (field, value)
