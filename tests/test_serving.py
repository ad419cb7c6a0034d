"""The SavedModel export as a model server meets it: loaded in a process without nst_tf, called
through its signatures and through `saved_model_cli`, compared with `nst_tf.stylize`."""

import json
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import nst_tf
from conftest import REPO
from nst_tf import config, export, files, image_io, serving
from nst_tf.errors import NstError

# The export under test: the default optimiser (L-BFGS) at one small scale, real weights.
OPTIONS = dict(size=64, scales=1, steps=5, weights="embedded", jit="off", precision="float32")
LIMITS = export.Limits(max_pixels=80 * 80, max_steps=20, max_input_pixels=600 * 600)
# Served vs stylize: the forward pass is bitwise equal; gradients differ in the last bits (the
# graphs sum the same terms in different orders), which L-BFGS's line search can amplify over
# many steps. Measured: 0 levels apart at 5 steps; after 10 steps at most 2, after 30 at most 36.
TOLERANCE_MAX_LEVELS = 2
DEFAULTS = {"steps": -1, "size": -1, "content_weight": -1.0, "style_weight": -1.0}

# Runs in a fresh interpreter whose import system cannot see nst_tf (the checkout and the
# editable install's finder are removed), as on a model server.
CLIENT = r"""
import importlib.util, json, os, sys
sys.path = [p for p in sys.path if p and os.path.abspath(p) != REPO]
sys.meta_path = [f for f in sys.meta_path if "nst_tf" not in getattr(f, "__module__", "")]
sys.path_hooks = [h for h in sys.path_hooks if "nst_tf" not in getattr(h, "__module__", "")]
sys.path_importer_cache.clear()
assert importlib.util.find_spec("nst_tf") is None
import numpy as np
import tensorflow as tf

model = tf.saved_model.load(EXPORT)
content, style = open(CONTENT, "rb").read(), open(STYLE, "rb").read()
results = {}
BAD = json.loads(BAD_JSON)  # NaN survives JSON, not repr

def request(signature="serving_default", **changes):
    args = {"content": [content], "style": [style], "steps": -1, "size": -1, "content_weight": -1.0, "style_weight": -1.0}
    args.update(changes)
    dtypes = {"steps": tf.int32, "size": tf.int32, "content_weight": tf.float32, "style_weight": tf.float32}
    return model.signatures[signature](**{k: tf.constant(v, dtypes.get(k)) for k, v in args.items()})

out = request()
np.save(os.path.join(OUT, "served.npy"), out["image"].numpy())
open(os.path.join(OUT, "served.png"), "wb").write(out["png"].numpy())
open(os.path.join(OUT, "rest.png"), "wb").write(request("serving_rest")["png_bytes"].numpy())
as_float = lambda png: tf.io.decode_png(png)[None].numpy().astype(np.float32) / np.float32(255)
results["tensor"] = request("stylize_tensor", content=as_float(content), style=as_float(style))["image"].numpy().tolist()
results["size48"] = list(request(size=48)["image"].shape)
results["style_only_differs"] = bool((request(content_weight=0.0)["image"].numpy() != out["image"].numpy()).any())
encode = lambda v: [x.encode("latin-1") if isinstance(x, str) else x for x in v] if isinstance(v, list) else v
for name, changes in BAD.items():
    if name == "bomb":
        changes = {"content": [open(BOMB, "rb").read()]}
    try:
        request(**{k: encode(v) for k, v in changes.items()})
        results[name] = "no error"
    except tf.errors.InvalidArgumentError as err:
        results[name] = "InvalidArgument: " + str(err)
    except Exception as err:
        results[name] = type(err).__name__ + ": " + str(err)
results["metadata"] = json.loads(model.metadata().numpy())
results["nst_tf_imported"] = "nst_tf" in sys.modules
json.dump(results, open(os.path.join(OUT, "results.json"), "w"))
"""

# Requests that must fail with InvalidArgument, and words their message must hold.
BAD = {
    "too_big": ({"size": 200}, "over this model's limit of 6400 pixels"),
    "too_many_steps": ({"steps": 21}, "give 1 to 20 steps per scale"),
    "zero_steps": ({"steps": 0}, "give 1 to 20 steps per scale"),
    "too_small": ({"size": 20}, "VGG needs at least 16 px"),
    "not_an_image": ({"content": ["this is not an image"]}, "not a JPEG or PNG image"),
    "truncated_png": ({"content": ["\x89PNG\r\n\x1a\n" + "\x00" * 40]}, "PNG"),
    "two_images": ({"style": ["a", "b"]}, "exactly one image"),
    "nan_weight": ({"style_weight": float("nan")}, "not a finite number"),
    "bomb": ({}, "over this model's limit of 360000 pixels per input"),
}


def png_header_only(width, height) -> bytes:
    """A PNG signature and IHDR claiming `width` x `height`, then nothing: a decompression bomb's
    header, which the graph must refuse before decoding."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 64


@pytest.fixture(scope="module")
def exported(tmp_path_factory, embedded_weights):
    tmp = tmp_path_factory.mktemp("serving")
    content = image_io.load_image(image_io.example_path("boston"), 64)  # PNGs at the output size: no resize
    style = image_io.load_image(image_io.example_path("the_scream"), 64)
    paths = {"content": str(tmp / "content.png"), "style": str(tmp / "style.png"), "bomb": str(tmp / "bomb.png")}
    image_io.save_image(paths["content"], content)
    image_io.save_image(paths["style"], style)
    (tmp / "bomb.png").write_bytes(png_header_only(40000, 40000))
    path = serving.export_saved_model(str(tmp / "models"), 1, limits=LIMITS, **OPTIONS)
    out = tmp / "client"
    out.mkdir()
    script = (
        "".join(
            f"{name} = {value!r}\n"
            for name, value in [
                ("REPO", REPO),
                ("EXPORT", path),
                ("CONTENT", paths["content"]),
                ("STYLE", paths["style"]),
                ("BOMB", paths["bomb"]),
                ("OUT", str(out)),
                ("BAD_JSON", json.dumps({k: v[0] for k, v in BAD.items()})),
            ]
        )
        + CLIENT
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=str(tmp), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out / "results.json") as f:
        results = json.load(f)
    return {"path": path, "out": out, "results": results, **paths}


@pytest.mark.slow
def test_served_result_equals_stylize(exported):
    served = np.load(exported["out"] / "served.npy")
    local = nst_tf.stylize(exported["content"], exported["style"], **OPTIONS)
    assert served.dtype == np.uint8 and served.shape == local.shape == (43, 64, 3)
    assert np.abs(served.astype(int) - local.astype(int)).max() <= TOLERANCE_MAX_LEVELS
    content = image_io.to_uint8(image_io.load_image(exported["content"]))
    assert np.abs(served.astype(int) - content.astype(int)).mean() > 1  # it did move from the content
    assert not exported["results"]["nst_tf_imported"]


@pytest.mark.slow
def test_png_outputs_and_tensor_signature_agree(exported):
    served = np.load(exported["out"] / "served.npy")
    for name in ("served.png", "rest.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(exported["out"] / name).convert("RGB")), served)
    tensor = np.asarray(exported["results"]["tensor"], np.float32)
    assert tensor.shape == (1, 43, 64, 3) and 0 <= tensor.min() and tensor.max() <= 1
    # The client's floats (NumPy's x / 255) differ from the graph's own decoding by one ulp in about
    # half the values (inside a tf.function TensorFlow divides by multiplying with 1/255), which the
    # L-BFGS steps can carry into the last level, as between served and stylize (measured: 1 level,
    # 19 of 8256 values, on an AVX-512 CPU; equal on AVX2).
    assert np.abs(image_io.to_uint8(tensor).astype(int) - served.astype(int)).max() <= TOLERANCE_MAX_LEVELS


@pytest.mark.slow
def test_request_inputs_override_the_defaults(exported):
    r = exported["results"]
    assert r["size48"] == [32, 48, 3]
    assert r["style_only_differs"]
    meta = r["metadata"]
    assert meta["limits"] == LIMITS._asdict()
    assert meta["defaults"] == {"steps": 5, "size": 64, "content_weight": 1.0, "style_weight": 5.0}
    assert meta["weights"] == {"source": "embedded", "stored": "uint8 table"}
    with open(os.path.join(exported["path"], "assets.extra", serving.METADATA_FILE)) as f:
        assert json.load(f)["limits"] == meta["limits"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_requests_are_invalid_argument(exported, name):
    message = exported["results"][name]
    assert message.startswith("InvalidArgument: "), message
    assert BAD[name][1] in message.replace("\\'", "'"), message


@pytest.mark.slow
def test_weights_are_stored_as_the_8bit_table(exported):
    variables = os.path.join(exported["path"], "variables")
    assert files.folder_bytes(variables) < 14e6  # conv1_1..conv5_1: 12.9M 8-bit weights
    reader = tf.train.load_checkpoint(os.path.join(variables, "variables"))
    dtypes = reader.get_variable_to_dtype_map()
    indices = [name for name in dtypes if "indices" in name]
    assert len(indices) == 13 and all(dtypes[name] == tf.uint8 for name in indices)
    assert not any(
        dtypes[name] == tf.float32
        and reader.get_variable_to_shape_map()[name][-1:] == [512]
        and len(reader.get_variable_to_shape_map()[name]) == 4
        for name in dtypes
    )  # no float kernels


def _saved_model_cli(*args):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    return subprocess.run([cli, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_saved_model_cli_show_lists_the_signatures(exported):
    result = _saved_model_cli("show", "--all", "--dir", exported["path"])
    assert result.returncode == 0, result.stderr[-2000:]
    signatures = {}
    for block in re.split(r"signature_def\['", result.stdout)[1:]:
        name = block.split("'", 1)[0]
        tensors = re.findall(r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)", block)
        signatures[name] = {(kind, tensor): dtype for kind, tensor, dtype in tensors}
    scalars = {
        ("inputs", "steps"): "DT_INT32",
        ("inputs", "size"): "DT_INT32",
        ("inputs", "content_weight"): "DT_FLOAT",
        ("inputs", "style_weight"): "DT_FLOAT",
    }
    assert signatures["serving_default"] == {
        ("inputs", "content"): "DT_STRING",
        ("inputs", "style"): "DT_STRING",
        **scalars,
        ("outputs", "image"): "DT_UINT8",
        ("outputs", "png"): "DT_STRING",
    }
    assert signatures["stylize_tensor"] == {
        ("inputs", "content"): "DT_FLOAT",
        ("inputs", "style"): "DT_FLOAT",
        **scalars,
        ("outputs", "image"): "DT_FLOAT",
    }
    assert signatures["serving_rest"][("outputs", "png_bytes")] == "DT_STRING"


@pytest.mark.slow
def test_saved_model_cli_run_with_input_exprs(exported, tmp_path):
    def literal(path):  # every byte escaped: the flag splits on ';'
        return "b'" + "".join(f"\\x{b:02x}" for b in open(path, "rb").read()) + "'"

    exprs = (
        f"content=[{literal(exported['content'])}];style=[{literal(exported['style'])}];"
        "steps=-1;size=-1;content_weight=-1.0;style_weight=-1.0"
    )
    result = _saved_model_cli(
        "run",
        "--dir",
        exported["path"],
        "--tag_set",
        "serve",
        "--signature_def",
        "serving_default",
        "--input_exprs",
        exprs,
        "--outdir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "image.npy"), np.load(exported["out"] / "served.npy"))


def test_plan_matches_config_scale_plan():
    for options in [
        dict(size=512, scales=3),
        dict(size=100, scales=3),
        dict(size=300, scales=4, start_size=40),
        dict(size=257, scales=2, style_size=300, scale_steps=(7, 9)),
        dict(size=64, scales=1),
        dict(size=200, scales=2, style_scale=0.5),
        dict(size=96, scales=1, style_scale=1.5),
    ]:
        cfg = config.Config(**options)
        plan = [(int(s), int(t), n) for s, t, n, runs in serving.scale_plan(cfg, tf.constant(cfg.size)) if bool(runs)]
        expected = [(s, t if t is not None else s, n) for s, t, n in cfg.scale_plan()]
        assert plan == expected, options


@pytest.mark.slow
def test_multiscale_jpeg_export_matches_stylize(tmp_path, embedded_weights):
    """JPEG decoding, resizing, the skipped coarse scale and the upsampled inits, in-process.
    Adam, whose steps do not amplify last-bit differences as a line search can."""
    options = dict(size=96, scales=3, steps=4, optimizer="adam", weights="embedded", jit="off", precision="float32")
    model = tf.saved_model.load(serving.export_saved_model(str(tmp_path), 1, **options))
    content, style = image_io.example_path("boston"), image_io.example_path("the_scream")
    request = {
        "content": tf.constant([open(content, "rb").read()]),
        "style": tf.constant([open(style, "rb").read()]),
        **{k: tf.constant(v, tf.int32 if isinstance(v, int) else tf.float32) for k, v in DEFAULTS.items()},
    }
    served = model.signatures["serving_default"](**request)["image"].numpy()
    local = nst_tf.stylize(content, style, **options)  # scales 24 (skipped), 48, 96
    assert served.shape == local.shape == (64, 96, 3)
    assert np.abs(served.astype(int) - local.astype(int)).max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("style_loss", ["gaussian", "w2"])
def test_style_statistics_and_pooling_export_match_stylize(tmp_path, embedded_weights, style_loss):
    """The random features (gaussian) and the eigendecompositions (w2) in the served graph, with
    average pooling and a scaled style image. Adam, 4 steps at 64 px.

    Both paths compute one function in float32; only the order of some sums differs, and W2's
    gradient is well conditioned (`losses.soft_sqrt`), so the images agree to a few float32 ulps
    (measured at most 8.9e-7 in [0, 1] for w2 and 1.8e-7 for gaussian, on AVX-512 and on AVX2
    kernels): 1 level allows for a value that lands on a rounding boundary of the uint8 image.
    (With the exact square root, W2's gradient came from rounding noise: 5.9e-3 apart, 2 levels.)"""
    options = dict(
        size=64,
        scales=1,
        steps=4,
        optimizer="adam",
        epsilon=1e-4,
        weights="embedded",
        jit="off",
        precision="float32",
        style_loss=style_loss,
        pooling="avg",
        style_scale=0.75,
    )
    model = tf.saved_model.load(serving.export_saved_model(str(tmp_path), 1, **options))
    content, style = (image_io.load_image(image_io.example_path(n)) for n in ("boston", "the_scream"))
    scalars = {k: tf.constant(v, tf.int32 if isinstance(v, int) else tf.float32) for k, v in DEFAULTS.items()}
    served = model.signatures["stylize_tensor"](
        content=tf.constant(content[None]), style=tf.constant(style[None]), **scalars
    )
    served = image_io.to_uint8(served["image"].numpy())
    local = nst_tf.stylize(content, style, **options)
    assert served.shape == local.shape == (43, 64, 3)
    assert np.abs(served.astype(int) - local.astype(int)).max() <= 1
    assert np.abs(local.astype(int) - image_io.to_uint8(image_io.resize(content, (43, 64)))).mean() > 1  # it did move


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(preserve_colors="luminance"), "preserve_colors is not exported"),
        (dict(style_blend=(1, 1)), "style_blend is not exported"),
        (dict(style_mask=(image_io.example_path("boston"),)), "style_mask is not exported"),
        (dict(init="noise", version=0), "version must be a positive integer"),
        (dict(steps=50, limits=export.Limits(max_steps=20)), "exceed max_steps"),
        (dict(limits=export.Limits(max_pixels=0)), "max_pixels must be a positive integer"),
    ],
)
def test_export_option_errors(tmp_path, options, match):
    with pytest.raises(NstError, match=match):
        serving.export_saved_model(str(tmp_path), **{"version": 1, **options})


@pytest.mark.slow
def test_existing_version_is_kept(exported):
    before = os.listdir(exported["path"])
    with pytest.raises(NstError, match="already exists"):
        serving.export_saved_model(os.path.dirname(exported["path"]), 1, **OPTIONS)
    assert os.listdir(exported["path"]) == before


@pytest.mark.slow
def test_export_command(tmp_path):
    script = os.path.join(REPO, "scripts", "export_savedmodel.py")
    env = dict(os.environ, NST_TF_OFFLINE="1")
    args = [
        sys.executable,
        script,
        f"--export_dir={tmp_path}",
        "--weights=embedded",
        "--size=48",
        "--scales=1",
        "--steps=2",
        "--max_steps=10",
    ]
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.startswith(f"wrote {tmp_path}/1 (") and "10 steps per scale" in first.stdout
    assert sorted(os.listdir(tmp_path)) == ["1"]  # no staging folder left behind
    assert os.path.isfile(tmp_path / "1" / "saved_model.pb")
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 2 and again.stderr.strip().count("\n") == 0
    assert "already exists" in again.stderr


def test_a_small_export_serves_in_this_process_what_stylize_paints(tmp_path, embedded_weights):
    """The fast tier's export: 32 px, one scale, 2 Adam steps, loaded and called in this process
    (the slow tier's `exported` loads it where nst_tf cannot be imported). Both paths compute one
    function in float32 (see the test above): 1 level for a value on a rounding boundary."""
    options = dict(
        size=32, scales=1, steps=2, optimizer="adam", epsilon=1e-4, weights="embedded", jit="off", precision="float32"
    )
    model = tf.saved_model.load(serving.export_saved_model(str(tmp_path), 1, **options))
    content, style = (image_io.load_image(image_io.example_path(n), 32) for n in ("boston", "the_scream"))
    scalars = {k: tf.constant(v, tf.int32 if isinstance(v, int) else tf.float32) for k, v in DEFAULTS.items()}
    served = model.signatures["stylize_tensor"](
        content=tf.constant(content[None]), style=tf.constant(style[None]), **scalars
    )
    served = image_io.to_uint8(served["image"].numpy()[0])
    local = nst_tf.stylize(content, style, **options)
    assert served.shape == local.shape == (21, 32, 3)
    assert np.abs(served.astype(int) - local.astype(int)).max() <= 1
    assert np.abs(local.astype(int) - image_io.to_uint8(content).astype(int)).mean() > 1  # it did move
    with pytest.raises(tf.errors.InvalidArgumentError, match="steps per scale"):
        model.signatures["stylize_tensor"](
            content=tf.constant(content[None]),
            style=tf.constant(style[None]),
            **dict(scalars, steps=tf.constant(10**6)),
        )
