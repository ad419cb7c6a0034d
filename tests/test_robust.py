"""Robustness: interruption, numeric faults, determinism."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import nst_tf
from nst_tf import image_io, losses

from conftest import REPO

SCRIPT = os.path.join(REPO, "scripts", "stylize.py")


def start_cli(args, tmp_path):
    env = dict(os.environ, NST_TF_OFFLINE="1")
    return subprocess.Popen(
        [sys.executable, SCRIPT, "--weights=embedded", "--noprogress", *args],
        cwd=str(tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path, process, timeout=240):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_run_saves_the_image_and_exits_128_plus_signal(tmp_path, sig, status):
    out = tmp_path / "out.png"
    process = start_cli(
        ["--size=64", "--scales=1", "--steps=500", "--save_every=2", "--snapshot_dir=snaps", f"--output={out}"],
        tmp_path,
    )
    wait_for(tmp_path / "snaps" / "step_00004.png", process)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"nst-tf: stopped by {signal.Signals(sig).name} after step ") and str(out) in line
    step = int(line.split("after step ")[1].split()[0])
    assert 4 <= step < 500
    image = Image.open(out)
    assert image.format == "PNG" and image.size == (64, 43)
    image.load()  # complete, not half-written
    assert not any(name.startswith(".nst_tf-") for name in os.listdir(tmp_path))


@pytest.mark.slow
def test_nan_in_the_gradient_is_survived(vgg19, monkeypatch):
    """The objective returns NaN at its 6th evaluation (so the gradient and the next image are
    NaN): the run restores the last good step, halves Adam's rate, and ends finite."""
    calls = tf.Variable(0)
    objective = losses.objective

    def faulty(model, targets, cfg, image, *args, **kwargs):
        total, terms = objective(model, targets, cfg, image, *args, **kwargs)
        calls.assign_add(1)
        return total * tf.where(tf.equal(calls, 6), float("nan"), 1.0), terms

    monkeypatch.setattr(losses, "objective", faulty)
    boston, scream = image_io.example_path("boston"), image_io.example_path("the_scream")
    for optimizer, action in (("adam", "halved the learning rate to 0.03"), ("lbfgs", "cleared the L-BFGS history")):
        calls.assign(0)
        history = nst_tf.History()
        run = nst_tf.StyleTransfer(boston, scream, size=48, model=vgg19, optimizer=optimizer, learning_rate=0.06)
        run.run(12, callbacks=[history])
        assert run.recoveries == [(5, action)]
        assert len(history.losses) == 12 and np.all(np.isfinite(history.losses))
        assert np.all(np.isfinite(run.image)) and np.isfinite(run.evaluate()[0])


def test_repeated_faults_give_up_with_a_clear_error(vgg19, monkeypatch):
    objective = losses.objective
    monkeypatch.setattr(
        losses, "objective", lambda *a, **k: (objective(*a, **k)[0] * float("nan"), objective(*a, **k)[1])
    )
    run = nst_tf.StyleTransfer(
        image_io.example_path("boston"), image_io.example_path("the_scream"), size=48, model=vgg19, optimizer="adam"
    )
    with pytest.raises(nst_tf.NstError, match="non-finite 6 times"):
        run.run(3)
    assert len(run.recoveries) == 5


@pytest.mark.slow
def test_identical_seeded_runs_give_byte_identical_pngs(tmp_path):
    args = ["--size=48", "--steps=4", "--init=noise", "--seed=7", "--weights=embedded", "--noprogress"]
    env = dict(os.environ, NST_TF_OFFLINE="1")
    runs = [  # both at once: neither can see the other
        subprocess.Popen(
            [sys.executable, SCRIPT, *args, f"--output={name}"],
            cwd=str(tmp_path),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("a.png", "b.png")
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr[-2000:]
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    seeded = lambda seed: nst_tf.stylize(  # noqa: E731  the same run in this process
        image_io.example_path("boston"), image_io.example_path("the_scream"), size=48, steps=4, init="noise", seed=seed
    )
    assert np.array_equal(seeded(7), np.asarray(Image.open(tmp_path / "a.png")))  # the CLI is the API's run
    assert not np.array_equal(seeded(8), seeded(7))  # the seed matters


@pytest.mark.slow
def test_kill_and_resume_equals_the_uninterrupted_run(tmp_path):
    """A run killed (SIGKILL, no chance to clean up) after its first checkpoint, then resumed,
    ends with the same PNG bytes as a run never stopped: 2 scales (32, 48 px) x 60 steps."""
    args = ["--size=48", "--scales=2", "--start_size=32", "--steps=60"]
    whole = start_cli(args + ["--output=whole.png"], tmp_path)  # beside the killed run: the two share no files
    killed = start_cli(args + ["--checkpoint_dir=ck", "--checkpoint_every=10", "--output=resumed.png"], tmp_path)
    wait_for(tmp_path / "ck" / "checkpoint", killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert whole.wait(timeout=300) == 0, whole.communicate()
    assert not (tmp_path / "resumed.png").exists()
    resumed = start_cli(
        args + ["--checkpoint_dir=ck", "--checkpoint_every=10", "--resume", "--output=resumed.png"], tmp_path
    )
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert (tmp_path / "resumed.png").read_bytes() == (tmp_path / "whole.png").read_bytes()


@pytest.mark.slow
def test_resume_with_other_settings_is_refused_unless_forced(tmp_path, vgg19):
    boston, scream = image_io.example_path("boston"), image_io.example_path("the_scream")
    options = dict(size=48, scales=1, steps=6, model=vgg19, checkpoint_dir=str(tmp_path), checkpoint_every=3)
    options.update(precision="float32", jit="off")  # pictures compared exactly below: nothing left to "auto"

    class StopAt(nst_tf.Callback):  # a crash after the step-3 checkpoint
        def on_step_end(self, transfer, step, loss, terms):
            if step == 4:
                raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        nst_tf.stylize(boston, scream, callbacks=[StopAt()], **options)
    with pytest.raises(nst_tf.NstError, match="other settings or input images"):
        nst_tf.stylize(boston, scream, resume=True, **{**options, "style_weight": 9.0})
    with pytest.raises(nst_tf.NstError, match="other settings or input images"):
        nst_tf.stylize(boston, image_io.example_path("shipwreck"), resume=True, **options)
    forced = nst_tf.stylize(boston, scream, resume=True, force=True, **{**options, "style_weight": 9.0})
    fresh = {k: v for k, v in options.items() if not k.startswith("checkpoint")}
    anew = nst_tf.stylize(boston, scream, **{**fresh, "style_weight": 9.0})
    assert forced.shape == anew.shape == (32, 48, 3)
    assert np.abs(forced.astype(int) - anew).mean() > 0.5  # forced on from the step-3 checkpoint, not anew
    resumed = nst_tf.stylize(boston, scream, resume=True, **{**options, "checkpoint_dir": str(tmp_path / "new")})
    np.testing.assert_array_equal(
        resumed, nst_tf.stylize(boston, scream, **fresh)
    )  # no checkpoint there: from the start
    with pytest.raises(nst_tf.NstError, match="resume needs checkpoint_dir"):
        nst_tf.Config(resume=True)


# ---- Input hardening.


def test_animated_gif_and_webp_use_the_first_frame_with_a_note(tmp_path, capsys):
    frames = [Image.new("RGB", (20, 16), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    for ext in ("gif", "webp"):
        path = tmp_path / f"anim.{ext}"
        frames[0].save(
            path,
            save_all=True,
            append_images=frames[1:],
            duration=100,
            loop=0,
            **({"lossless": True} if ext == "webp" else {}),
        )
        rgb = image_io.load_image(path)
        np.testing.assert_allclose(rgb.mean(axis=(0, 1)), [1, 0, 0], atol=0.02)
        assert f"{path} has 3 frames (an animation); using the first" in capsys.readouterr().err


def test_icc_profiles_are_converted_to_srgb(tmp_path):
    from PIL import ImageCms

    rng = np.random.default_rng(0)
    pixels = Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    pixels.save(tmp_path / "plain.png")
    pixels.save(tmp_path / "srgb.png", icc_profile=srgb)
    pixels.save(tmp_path / "broken.png", icc_profile=b"not a profile")
    plain = image_io.load_image(tmp_path / "plain.png")
    assert np.abs(image_io.load_image(tmp_path / "srgb.png") - plain).max() <= 2 / 255  # sRGB to sRGB: unchanged
    np.testing.assert_array_equal(image_io.load_image(tmp_path / "broken.png"), plain)  # a damaged profile is ignored
    tagged = Image.open(tmp_path / "srgb.png")
    assert image_io.to_srgb(tagged) is not tagged  # the profile went through Little CMS
    untagged = Image.open(tmp_path / "plain.png")
    assert image_io.to_srgb(untagged) is untagged


@pytest.mark.slow
def test_paths_with_spaces_and_unicode(tmp_path):
    folder = tmp_path / "my photos ñ 写真"
    folder.mkdir()
    content, style = folder / "Bóston 1.jpg", folder / "Скрик.png"
    Image.open(image_io.example_path("boston")).save(content)
    Image.open(image_io.example_path("the_scream")).save(style)
    out = folder / "résultat final.png"
    process = start_cli(
        [f"--content={content}", f"--style={style}", "--size=32", "--steps=2", f"--output={out}"], tmp_path
    )
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert Image.open(out).size == (32, 21) and str(out) in stdout


# ---- The memory planner.

PEAK_CHILD = """
import sys, nst_tf
from nst_tf import image_io, planner
nst_tf.stylize(image_io.example_path("boston"), image_io.example_path("the_scream"), size=int(sys.argv[1]), scales=1,
               steps=3, weights="embedded", precision="float32", jit=sys.argv[2])
print(planner.peak_memory_bytes())
"""


@pytest.mark.slow
def test_planner_estimate_is_within_30_percent_of_the_measured_peak():
    """Without XLA (the default where `auto` is not measured) at two sizes, with XLA at one. Measured
    when fitted (`scripts/benchmark.py --memory`): estimate / peak with XLA 1.01 at 128, 1.03 at
    256, 1.01 at 512 and 1.04 at 1024 px; without, 1.00, 1.03, 0.99 and 1.01."""
    from nst_tf import config, planner

    content = image_io.load_image(image_io.example_path("boston")).shape[:2]
    style = image_io.load_image(image_io.example_path("the_scream")).shape[:2]
    runs = {  # at once: a process's peak resident memory is its own
        (size, jit): subprocess.Popen(
            [sys.executable, "-c", PEAK_CHILD, str(size), jit],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, NST_TF_OFFLINE="1"),
        )
        for size, jit in ((128, "off"), (256, "on"), (512, "off"))
    }
    for (size, jit), run in runs.items():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
        peak = int(out.strip().splitlines()[-1])
        cfg = config.Config(size=size, scales=1, steps=3, precision="float32", jit=jit)
        estimate = planner.plan_scales(cfg, content, [style])
        assert 0.7 <= estimate[-1].peak_bytes / peak <= 1.3, (size, jit, estimate[-1].peak_bytes, peak)


def test_planner_refuses_what_does_not_fit():
    from nst_tf import config, planner

    cfg = config.Config(size=1024, scales=3)
    scales = planner.plan_scales(cfg, (343, 512), [(512, 405)])
    assert [s.size for s in scales] == [(172, 256), (343, 512), (686, 1024)]
    assert scales[0].peak_bytes < scales[1].peak_bytes < scales[2].peak_bytes
    with pytest.raises(nst_tf.NstError, match=r"needs about 4\.\d GiB at 1024x686 .* 2\.0 GiB is available"):
        planner.check(scales, cfg, available=2 * 2**30)
    planner.check(scales, cfg, available=8 * 2**30)  # fits: no error
    bf16 = planner.plan_scales(cfg.replace(precision="bfloat16"), (343, 512))[-1].peak_bytes
    assert bf16 < scales[-1].peak_bytes  # half-size activations


@pytest.mark.slow
def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    process = start_cli(["--dry_run", "--size=1024", "--output=out.png"], tmp_path)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    lines = stdout.strip().splitlines()
    assert (
        lines[0].split()[:3] == ["scale", "output", "style"] and len(lines) == 6
    )  # header, 3 scales, total, precision
    assert lines[3].split()[1] == "1024x686" and "GiB" in lines[4]
    assert lines[5].startswith("precision/XLA: float32, XLA off (autotune off")  # the suite's NST_TF_AUTOTUNE=off
    assert not (tmp_path / "out.png").exists()


def test_an_interruption_is_checkpointed(tmp_path, vgg19):
    from nst_tf import checkpoint
    from nst_tf.errors import Interrupted

    class Signal(nst_tf.Callback):  # what StopOnSignal does after a SIGINT during step 5
        def on_step_end(self, transfer, step, loss, terms):
            if step == 5:
                raise Interrupted(signal.SIGINT, transfer)

    with pytest.raises(Interrupted) as caught:
        nst_tf.stylize(
            image_io.example_path("boston"),
            image_io.example_path("the_scream"),
            size=48,
            scales=1,
            steps=20,
            model=vgg19,
            checkpoint_dir=str(tmp_path),
            checkpoint_every=50,
            callbacks=[Signal()],
        )
    assert caught.value.run.step_count == 5
    found = checkpoint.latest(str(tmp_path), settings="", force=True)
    assert (found.scale, found.step) == (0, 5)


@pytest.mark.slow
def test_an_interruption_never_replaces_a_finished_picture(tmp_path):
    """Ctrl-C on a run whose output already holds a finished picture keeps that picture and writes the
    picture so far beside it, saying where."""
    out = tmp_path / "keep.png"
    Image.new("RGB", (10, 10), (200, 10, 10)).save(out)
    before = out.read_bytes()
    process = start_cli(
        ["--size=64", "--scales=1", "--steps=500", "--save_every=2", "--snapshot_dir=snaps", f"--output={out}"],
        tmp_path,
    )
    wait_for(tmp_path / "snaps" / "step_00004.png", process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    line = stderr.strip().splitlines()[-1]
    partial = tmp_path / "keep.partial.png"
    assert f"kept {out} as it was; wrote the image so far to {partial}" in line, line
    assert out.read_bytes() == before and Image.open(partial).size == (64, 43)
