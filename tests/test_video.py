"""The video door: `stylize_video` and `nst-tf-video` on the bundled test clip. A network's frames
blended along the flow flicker less than frames painted alone; the optimisation's temporal loss
does the same; a stopped run resumes to the uninterrupted run's frames; bad clips and outputs are
one line and exit 2 with nothing written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from nst_tf import image_io, metrics
from nst_tf.errors import NstError
from nst_tf.video import io, options, run, synthetic

SCRIPT = os.path.join(REPO, "scripts", "video.py")
SCREAM = image_io.example_path("the_scream")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The bundled test clip, 8 frames of 160 x 101 (odd), as an mp4 at 12 frames/s."""
    folder = tmp_path_factory.mktemp("clip")
    made = synthetic.clip(frames=8, width=160, height=101, pan=3, speed=5, radius=16)
    path = str(folder / "clip.mp4")
    info = io.ClipInfo(path, 160, 101, 8, 12, 8 / 12, 0, False, True)
    io.write(path, (io.Frame(k, k / 12, f) for k, f in enumerate(made.frames)), info)
    return path


def _frames(path):
    return [f.rgb for f in io.read(path)]


@pytest.mark.slow
def test_a_networks_frames_blended_along_the_flow_flicker_less_and_keep_the_clip(clip, tmp_path):
    errors = {}
    for blend in (0.0, 0.5):
        out = str(tmp_path / f"blend{blend}.mp4")
        result = run.stylize_video(
            clip, SCREAM, out, network="universal", weights="embedded", video=options.VideoConfig(blend=blend)
        )
        assert result["frames"] == result["painted"] == 8 and not os.path.exists(run.work_folder(out))
        info = io.probe(out)
        assert (info.width, info.height, info.frames) == (160, 101, 8)  # the clip's own size, odd too
        errors[blend] = metrics.warping_error(_frames(clip), _frames(out))["warping_error"]
    floor = metrics.warping_error(_frames(clip), _frames(clip))["warping_error"]
    assert floor < errors[0.5] < 0.6 * errors[0.0], (floor, errors)


@pytest.mark.slow
def test_the_temporal_loss_steadies_the_optimisation_and_a_stopped_run_resumes_to_the_same_frames(clip, tmp_path):
    """Three frames at 64 px: the temporal loss lowers the warping error; a run stopped while
    painting frame 2 and resumed writes the uninterrupted run's frames exactly (each frame is
    painted from the previous one's PNG, in memory or resumed alike)."""
    kwargs = dict(size=64, weights="embedded", precision="float32", jit="off", scales=1, steps=10)
    short = options.VideoConfig(duration=0.25, later_steps=8)  # frames 0, 1, 2
    steady = run.stylize_video(clip, SCREAM, str(tmp_path / "steady"), video=short, **kwargs)
    assert steady["frames"] == 3
    unsteady = options.VideoConfig(duration=0.25, later_steps=8, temporal_weight=0.0)
    run.stylize_video(clip, SCREAM, str(tmp_path / "loose"), video=unsteady, **kwargs)
    inputs = [image_io.load_image(f, 64) for f in _frames(clip)[:3]]
    steady_error = metrics.warping_error(inputs, _frames(str(tmp_path / "steady")))["warping_error"]
    loose_error = metrics.warping_error(inputs, _frames(str(tmp_path / "loose")))["warping_error"]
    assert steady_error < loose_error, (steady_error, loose_error)

    class StopAtFrame2:  # Ctrl-C while frame 2 is painted (its steps report to the callbacks)
        calls = 0

        def on_run_begin(self, transfer, steps):
            StopAtFrame2.calls += 1
            if StopAtFrame2.calls == 2:  # frame 0's one scale, then frame 1: stop in frame 1's run
                raise KeyboardInterrupt

        def on_tile(self, *a):
            pass

        def on_step_end(self, *a):
            pass

        def on_run_end(self, *a):
            pass

    out = str(tmp_path / "stopped")
    with pytest.raises(KeyboardInterrupt):
        run.stylize_video(clip, SCREAM, out, video=short, callbacks=[StopAtFrame2()], **kwargs)
    assert sorted(os.listdir(run.work_folder(out))) == ["frame_000000.png", "settings.json"]
    resumed = run.stylize_video(
        clip, SCREAM, out, video=options.VideoConfig(duration=0.25, later_steps=8, resume=True), **kwargs
    )
    assert resumed["painted"] == 2 and resumed["frames"] == 3
    for a, b in zip(_frames(out), _frames(str(tmp_path / "steady"))):
        np.testing.assert_array_equal(a, b)


def _cli(args, cwd):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=str(cwd), timeout=300)


@pytest.mark.slow
def test_the_command_paints_a_slice_and_a_one_frame_clip_and_refuses_bad_input_with_one_line(clip, tmp_path):
    done = _cli(
        [
            f"--input={clip}",
            "--output=out.mp4",
            "--network=universal",
            "--weights=embedded",
            "--noprogress",
            "--start=0.2",
            "--duration=0.3",
            "--every=2",
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("wrote out.mp4 (2 frames") and io.probe(str(tmp_path / "out.mp4")).frames == 2
    whole = _cli(
        [f"--input={clip}", "--output=whole.mp4", "--network=universal", "--weights=embedded", "--noprogress"], tmp_path
    )
    assert whole.returncode == 0, whole.stderr[-2000:]
    code = "import sys; sys.argv[0] = 'nst-tf-evaluate'; from nst_tf.cli import run_evaluate; run_evaluate()"
    evaluated = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "--video=whole.mp4",
            f"--content={clip}",
            f"--style={SCREAM}",
            "--weights=embedded",
        ],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    report = json.loads(evaluated.stdout)
    assert report["frames"] == 8 and len(report["per_pair"]) == 7 and 0 < report["style_error"] < 1
    assert report["input_warping_error"] < report["warping_error"]  # the painting flickers more than the clip
    one = tmp_path / "one"
    one.mkdir()
    image_io.save_image(str(one / "a.png"), _frames(clip)[0])
    single = _cli(
        [f"--input={one}", "--output=single.gif", "--network=universal", "--weights=embedded", "--noprogress"], tmp_path
    )
    assert single.returncode == 0 and io.probe(str(tmp_path / "single.gif")).frames == 1, single.stderr[-2000:]
    (tmp_path / "notes.mp4").write_text("not a video")
    bad = [
        ([f"--input={tmp_path / 'missing.mp4'}", "--output=x.mp4"], "no such file"),
        ([f"--input={tmp_path / 'notes.mp4'}", "--output=x.mp4"], "not a video FFmpeg can read"),
        ([f"--input={clip}", f"--output={clip}"], "is the input"),
        ([f"--input={clip}", "--output=x.avi"], "no video encoder here for '.avi'"),
        ([f"--input={clip}", "--output=x.mp4", "--start=9"], "past the clip's end"),
        ([f"--input={clip}", "--output=x.mp4", "--every=0"], "every must be a positive integer"),
        ([f"--input={clip}", "--output=x.mp4", "--network=missing.keras"], "no such file"),
        (["--output=x.mp4"], "--input is required"),
    ]
    for args, match in bad:
        result = _cli(args, tmp_path)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1, (args, result.stderr[-2000:])
        assert lines[0].startswith("nst-tf-video: error: ") and match in lines[0], (args, lines)
    assert not any(name.startswith("x.") for name in os.listdir(tmp_path))


def test_the_dry_run_prints_the_clips_memory_and_time_estimates_and_writes_nothing(clip, tmp_path):
    optimisation = _cli([f"--input={clip}", "--output=x.mp4", "--size=128", "--later_steps=30", "--dry_run"], tmp_path)
    assert optimisation.returncode == 0, optimisation.stderr[-2000:]
    text = optimisation.stdout
    assert "160x101, 8 frames at 12 frames/s" in text and "8 frame(s) painted at 128x81" in text, text
    assert "the first frame, by optimisation:" in text and "each later frame: 30 steps at 128x81" in text, text
    assert "the clip: peak" in text and "(estimated" in text, text
    network = _cli([f"--input={clip}", "--output=x.mp4", "--network=universal", "--dry_run"], tmp_path)
    assert network.returncode == 0 and "each frame: network painting 160x101: tile off, peak" in network.stdout
    assert os.listdir(tmp_path) == []


def test_a_bad_frame_stops_the_run_with_its_index_or_is_replaced_by_the_previous_one(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = synthetic.clip(frames=4, width=64, height=48, pan=2, speed=3, radius=8).frames
    for k, frame in enumerate(frames):
        image_io.save_image(str(folder / f"f{k}.png"), frame)
    (folder / "f2.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(NstError, match="frame 2 cannot be decoded"):
        list(io.read(str(folder)))
    replaced = list(io.read(str(folder), skip_bad=True))
    assert [f.index for f in replaced] == [0, 1, 2, 3] and np.array_equal(replaced[2].rgb, replaced[1].rgb)


@pytest.mark.slow
def test_a_corrupt_frame_stops_the_command_with_its_index_and_resume_can_replace_it(tmp_path):
    from test_video_io import with_a_corrupt_frame

    frames = synthetic.clip(frames=5, width=64, height=48, pan=2, speed=3, radius=8).frames
    clip = with_a_corrupt_frame(tmp_path / "bad.mov", frames, bad=2)
    args = [f"--input={clip}", "--output=out", "--network=universal", "--weights=embedded", "--noprogress"]
    stopped = _cli(args, tmp_path)
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    assert stopped.returncode == 2 and len(lines) == 1 and "frame 2 cannot be decoded" in lines[0], stopped.stderr
    assert sorted(os.listdir(tmp_path / "out.frames")) == ["frame_000000.png", "frame_000001.png", "settings.json"]
    assert not (tmp_path / "out").exists()
    resumed = _cli(args + ["--resume", "--skip_bad_frames"], tmp_path)
    assert resumed.returncode == 0 and "(5 frames, 3 painted" in resumed.stdout, resumed.stderr[-2000:]
    painted = _frames(str(tmp_path / "out"))
    # frame 2 is frame 1's picture painted again, blended with frame 1's painting: close to it, unlike frame 3
    same, moved = (float(np.abs(painted[2] - painted[k]).mean()) for k in (1, 3))
    assert len(painted) == 5 and same < moved / 3, (same, moved)


@pytest.mark.slow
def test_a_killed_run_resumes_and_ends_with_the_uninterrupted_clip(tmp_path):
    """Output as PNG folders (lossless): a painter's float rounding can differ between two processes
    by a level here and there, which an H.264 encoder would then turn into larger, local
    differences; the frames themselves agree within 2 levels."""
    import signal
    import time

    clip = synthetic.write(str(tmp_path / "clip.mp4"), frames=20)
    args = [f"--input={clip}", "--network=universal", "--weights=embedded", "--noprogress"]
    whole = _cli(args + ["--output=whole"], tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    work = tmp_path / "killed.frames"
    process = subprocess.Popen([sys.executable, SCRIPT, *args, "--output=killed"], cwd=str(tmp_path))
    while process.poll() is None and len(list(work.glob("frame_*.png")) if work.exists() else []) < 3:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = len(list(work.glob("frame_*.png")))
    assert process.returncode == -signal.SIGKILL and 3 <= kept < 20 and not (tmp_path / "killed").exists()
    resumed = _cli(args + ["--output=killed", "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{20 - kept} painted" in resumed.stdout and not work.exists()
    killed, uninterrupted = _frames(str(tmp_path / "killed")), _frames(str(tmp_path / "whole"))
    assert len(killed) == len(uninterrupted) == 20
    for a, b in zip(killed[:kept], uninterrupted[:kept]):
        assert np.abs(a - b).max() <= 2 / 255 + 1e-6  # painted before the kill
    for a, b in zip(killed[kept:], uninterrupted[kept:]):
        assert np.abs(a - b).max() <= 2 / 255 + 1e-6  # painted after the resume
