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
    return subprocess.Popen([sys.executable, SCRIPT, "--weights=embedded", "--noprogress", *args], cwd=str(tmp_path),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, process, timeout=240):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_run_saves_the_image_and_exits_128_plus_signal(tmp_path, sig, status):
    out = tmp_path / "out.png"
    process = start_cli(["--size=64", "--scales=1", "--steps=500", "--save_every=2", "--snapshot_dir=snaps",
                         f"--output={out}"], tmp_path)
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


def test_nan_in_the_gradient_is_survived(vgg19, monkeypatch):
    """The objective returns NaN at its 6th evaluation (so the gradient and the next image are
    NaN): the run restores the last good step, halves Adam's rate, and ends finite."""
    calls = tf.Variable(0)
    objective = losses.objective

    def faulty(model, targets, cfg, image, *args):
        total, terms = objective(model, targets, cfg, image, *args)
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
    monkeypatch.setattr(losses, "objective", lambda *a: (objective(*a)[0] * float("nan"), objective(*a)[1]))
    run = nst_tf.StyleTransfer(image_io.example_path("boston"), image_io.example_path("the_scream"), size=48,
                               model=vgg19, optimizer="adam")
    with pytest.raises(nst_tf.NstError, match="non-finite 6 times"):
        run.run(3)
    assert len(run.recoveries) == 5


def test_identical_seeded_runs_give_byte_identical_pngs(tmp_path):
    args = ["--size=48", "--steps=4", "--init=noise", "--seed=7", "--weights=embedded", "--noprogress"]
    env = dict(os.environ, NST_TF_OFFLINE="1")
    for name in ("a.png", "b.png"):
        subprocess.run([sys.executable, SCRIPT, *args, f"--output={name}"], cwd=str(tmp_path), env=env, check=True,
                       capture_output=True, timeout=300)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    other = tmp_path / "c.png"
    subprocess.run([sys.executable, SCRIPT, *args, "--seed=8", f"--output={other}"],
                   cwd=str(tmp_path), env=env, check=True, capture_output=True, timeout=300)
    assert other.read_bytes() != (tmp_path / "a.png").read_bytes()  # the seed matters
