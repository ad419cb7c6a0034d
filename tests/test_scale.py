"""At scale: batched optimisation, two logical devices, the batch command, the Beam pipeline."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nst_tf
from nst_tf import batch, image_io
from nst_tf.errors import NstError

from conftest import REPO

CONTENTS = ["boston", "seated_nude", "shipwreck"]
# One size for every content (square), XLA off: XLA's convolutions round differently with the
# batch size, which L-BFGS's line search then amplifies (see docs/cli.md's note on scale).
SMALL = dict(size=48, square=True, scales=1, steps=6, jit="off", precision="float32")


def levels(a, b) -> int:
    return int(np.abs(np.asarray(a, int) - np.asarray(b, int)).max())


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_batched_results_equal_single_runs(vgg19, optimizer):
    """Three contents in one [3, H, W, 3] variable: each result equals its run alone. Measured:
    identical bytes here (64 px, 30 steps, both optimisers); the test allows 2 levels."""
    paths = [image_io.example_path(n) for n in CONTENTS]
    style = image_io.example_path("the_scream")
    together = nst_tf.stylize(paths, style, model=vgg19, optimizer=optimizer, **SMALL)
    assert isinstance(together, list) and len(together) == 3
    for path, image in zip(paths, together):
        alone = nst_tf.stylize(path, style, model=vgg19, optimizer=optimizer, **SMALL)
        assert image.shape == alone.shape == (48, 48, 3)
        assert levels(image, alone) <= 2
    assert levels(together[0], together[1]) > 50  # different photos stay different


@pytest.mark.slow
def test_a_batch_has_per_image_losses(vgg19):
    paths = [image_io.example_path(n) for n in CONTENTS[:2]]
    run = nst_tf.StyleTransfer(paths, image_io.example_path("the_scream"), model=vgg19, **SMALL)
    run.run(2)
    loss, terms = run.evaluate(per_image=True)
    assert len(loss) == 2 and loss[0] != loss[1] and len(terms["content"]) == 2
    for k, path in enumerate(paths):
        alone = nst_tf.StyleTransfer(path, image_io.example_path("the_scream"), model=vgg19, **SMALL)
        alone.run(2)
        assert alone.evaluate()[0] == pytest.approx(loss[k], rel=1e-4)
    assert run.evaluate()[0] == pytest.approx(np.mean(loss), rel=1e-6)


def test_a_batch_needs_one_size_and_no_colour_matching(vgg19):
    boston, nude = image_io.example_path("boston"), image_io.example_path("seated_nude")
    with pytest.raises(NstError, match="same size"):
        nst_tf.StyleTransfer([boston, nude], image_io.example_path("the_scream"), model=vgg19, size=48)
    with pytest.raises(NstError, match="one content image"):
        nst_tf.StyleTransfer(
            [boston, boston], image_io.example_path("the_scream"), model=vgg19, size=48, preserve_colors="luminance"
        )


@pytest.mark.slow
def test_two_logical_devices_equal_one_device():
    """The CPU split into 2 logical devices (MirroredStrategy), 4 images, 2 per replica. Measured:
    Adam identical; L-BFGS identical for the images alone on their device, and up to 1 level
    after 5 steps (14 after 20) for an image whose device batch differs in size: the network's
    convolutions round differently with the batch size."""
    script = textwrap.dedent(f"""
        import numpy as np
        from nst_tf import distribute
        strategy = distribute.strategy(2)
        import tensorflow as tf
        import nst_tf
        from nst_tf import image_io
        assert len(tf.config.list_logical_devices("CPU")) == 2
        paths = [image_io.example_path(n) for n in {CONTENTS + ["the_scream"]!r}]
        style = image_io.example_path("shipwreck")
        for optimizer, tolerance in (("adam", 0), ("lbfgs", 2)):
            options = dict(size=48, square=True, scales=1, steps=5, jit="off", precision="float32", optimizer=optimizer, weights="embedded")
            one = nst_tf.stylize(paths, style, **options)
            two = nst_tf.stylize(paths, style, strategy=strategy, **options)
            worst = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(one, two))
            print(optimizer, worst)
            assert worst <= tolerance, (optimizer, worst)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "adam 0" in done.stdout


def small_inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("boston", "seated_nude"):
        image_io.save_image(str(folder / f"{name}.png"), image_io.load_image(image_io.example_path(name), 64))
    return str(folder), [image_io.example_path("the_scream"), image_io.example_path("shipwreck")]


def manifest_outputs(folder):
    with open(os.path.join(folder, "manifest.jsonl"), encoding="utf-8") as f:
        return [json.loads(line)["output"] for line in f]


def test_batch_skips_existing_outputs_and_lists_each_once(tmp_path):
    contents, styles = small_inputs(tmp_path)
    out = str(tmp_path / "out")
    cfg = nst_tf.Config(size=32, square=True, steps=3, scales=1, weights="embedded")
    expected = sorted(f"{c}__{s}.png" for c in ("boston", "seated_nude") for s in ("the_scream", "shipwreck"))
    first = batch.run_batch(contents, styles, out, cfg, batch_size=2, progress=False)
    assert first["written"] == 4 and first["skipped"] == 0
    assert sorted(n for n in os.listdir(out) if n.endswith(".png")) == expected
    assert sorted(manifest_outputs(out)) == expected
    with open(os.path.join(out, "manifest.jsonl"), encoding="utf-8") as f:
        record = json.loads(f.readline())
    assert record["batch"] == 2 and record["settings"]["steps"] == 3 and record["seconds"] > 0
    assert set(record["evaluate"]) == {"size", "style", "style_ratio", "content"} and np.isfinite(record["loss"])

    stamp = os.path.getmtime(os.path.join(out, expected[0]))
    os.remove(os.path.join(out, expected[1]))
    again = batch.run_batch(contents, styles, out, cfg, batch_size=2, progress=False)
    assert again["written"] == 1 and again["skipped"] == 3
    assert os.path.getmtime(os.path.join(out, expected[0])) == stamp  # not re-made
    assert sorted(manifest_outputs(out)) == expected  # each output once


def test_manifest_drops_lines_of_missing_outputs_and_a_torn_line(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "manifest.jsonl").write_text('{"output": "a.png"}\n{"output": "gone.png"}\n{"output": "a.p')
    manifest = batch.Manifest(str(tmp_path))
    assert list(manifest.records) == ["a.png"]
    assert manifest_outputs(str(tmp_path)) == ["a.png"]
    manifest.add({"output": "a.png", "loss": 1.0})
    assert manifest_outputs(str(tmp_path)) == ["a.png"]


def test_jobs_and_groups(tmp_path):
    contents, styles = small_inputs(tmp_path)
    jobs = batch.plan_jobs(batch.expand(contents), batch.expand(",".join(styles)))
    assert [j.output for j in jobs] == [
        "boston__the_scream.png",
        "boston__shipwreck.png",
        "seated_nude__the_scream.png",
        "seated_nude__shipwreck.png",
    ]
    cfg = nst_tf.Config(size=48)
    # boston is landscape, seated_nude portrait: different sizes never share a batch.
    assert [len(g) for g in batch.groups(jobs, cfg, 4)] == [1, 1, 1, 1]
    assert [len(g) for g in batch.groups(jobs, cfg.replace(square=True), 4)] == [2, 2]
    assert [len(g) for g in batch.groups(jobs, cfg.replace(square=True, preserve_colors="histogram"), 4)] == [1] * 4
    assert batch.expand(os.path.join(contents, "*.png")) == batch.expand(contents)
    with pytest.raises(NstError, match="names no image"):
        batch.expand(str(tmp_path / "nothing*.png"))
    with pytest.raises(NstError, match="named 'boston'"):
        batch.plan_jobs([image_io.example_path("boston"), os.path.join(contents, "boston.png")], styles)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,message",
    [
        (["--styles=x.jpg", "--output_dir=o"], "contents"),
        (["--contents=/nonexistent", "--styles=/nonexistent", "--output_dir=o"], "names no image"),
        (["--contents={boston}", "--styles={scream}", "--output_dir=o", "--logdir=l"], "logdir"),
        (["--contents={boston}", "--styles={scream}", "--output_dir={boston}"], "is a file"),
        (["--contents={boston}", "--styles={scream}", "--output_dir=o", "--batch_size=0"], "batch_size"),
    ],
)
def test_batch_command_bad_input_exits_2(tmp_path, args, message):
    names = {"boston": image_io.example_path("boston"), "scream": image_io.example_path("the_scream")}
    args = [a.format(**names) for a in args]
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "batch.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_beam_pipeline_with_two_workers_writes_each_file_once(tmp_path):
    """3 contents x 2 styles at 64 px on the DirectRunner, 2 worker processes."""
    pytest.importorskip("apache_beam")
    folder = tmp_path / "in"
    folder.mkdir()
    for name in CONTENTS:
        image_io.save_image(str(folder / f"{name}.png"), image_io.load_image(image_io.example_path(name), 64))
    out = tmp_path / "out"
    styles = ",".join(image_io.example_path(n) for n in ("the_scream", "shipwreck"))
    command = [
        sys.executable,
        "-m",
        "nst_tf.beam",
        f"--contents={folder}",
        f"--styles={styles}",
        f"--output_dir={out}",
        "--size=64",
        "--steps=3",
        "--scales=1",
        "--weights=embedded",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=2",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = sorted(f"{c}__{s}.png" for c in CONTENTS for s in ("the_scream", "shipwreck"))
    assert sorted(n for n in os.listdir(out) if not n.startswith("manifest")) == expected
    outputs = manifest_outputs(str(out))
    assert sorted(outputs) == expected  # each exactly once
    with open(out / "manifest.jsonl", encoding="utf-8") as f:
        workers = {json.loads(line)["worker"] for line in f}
    assert len(workers) <= 2
    for name in expected:
        assert max(image_io.load_image(str(out / name)).shape[:2]) == 64
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and "wrote 0 image(s)" in rerun.stdout and "6 existed" in rerun.stdout
    assert sorted(manifest_outputs(str(out))) == expected


def test_the_beam_pipeline_in_this_process_writes_each_file_once(tmp_path):
    """The fast tier's pipeline: Beam's in-process DirectRunner, 1 content x 2 styles at 32 px
    (the slow tier runs 2 worker processes from the command line)."""
    beam = pytest.importorskip("nst_tf.beam")
    content = tmp_path / "boston.png"
    image_io.save_image(str(content), image_io.load_image(image_io.example_path("boston"), 32))
    styles = [image_io.example_path(n) for n in ("the_scream", "shipwreck")]
    out = tmp_path / "out"
    options = dict(size=32, steps=2, scales=1, weights="embedded", jit="off", precision="float32")
    first = beam.run([str(content)], styles, str(out), evaluate=False, **options)
    expected = ["boston__shipwreck.png", "boston__the_scream.png"]
    assert first["written"] == 2 and sorted(manifest_outputs(str(out))) == expected
    assert all(image_io.load_image(str(out / name)).shape == (21, 32, 3) for name in expected)
    again = beam.run([str(content)], styles, str(out), evaluate=False, **options)
    assert again["written"] == 0 and again["skipped"] == 2 and sorted(manifest_outputs(str(out))) == expected


def _mixed_photos(folder, good=4):
    """`good` bundled photos at 48 px, a truncated JPEG, a text file named .png and an 8 x 8 photo
    (it decodes, but is under the smallest side a photo may have)."""
    folder.mkdir()
    for name in ("boston", "chelsea", "astronaut", "coffee")[:good]:
        image_io.save_image(str(folder / f"{name}.png"), image_io.load_image(image_io.example_path(name), 48))
    with open(image_io.example_path("rocket"), "rb") as f:
        (folder / "truncated.jpg").write_bytes(f.read()[:3000])
    (folder / "notes.png").write_text("not a picture")
    image_io.save_image(str(folder / "tiny.png"), np.zeros((8, 8, 3), np.uint8))
    return str(folder)


@pytest.mark.slow
def test_a_batch_paints_what_it_can_and_names_every_bad_input(tmp_path):
    """Before: 6 photos of which 2 were corrupt -> 0 painted, exit 2, only the first bad file named."""
    photos = _mixed_photos(tmp_path / "photos")
    out = tmp_path / "out"
    command = [sys.executable, os.path.join(REPO, "scripts", "batch.py"), f"--contents={photos}"]
    command += [f"--styles={image_io.example_path('the_scream')}", "--network=demo", "--size=48", "--noevaluate"]
    command += ["--noprogress", "--weights=embedded"]

    refused = subprocess.run(command + [f"--output_dir={out}", "--nokeep_going"], capture_output=True, text=True)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and not out.exists(), refused.stderr
    assert len(lines) == 3 and "notes.png is not an image" in lines[0] and "truncated.jpg cannot be decoded" in lines[1]
    assert lines[2].endswith("nothing painted (--nokeep_going)")

    done = subprocess.run(command + [f"--output_dir={out}"], capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    painted = sorted(n for n in os.listdir(out) if n.endswith(".png"))
    assert painted == [f"{n}__the_scream.png" for n in ("astronaut", "boston", "chelsea", "coffee")]
    assert "skipped: " in lines[0] and "notes.png" in lines[0] and "truncated.jpg" in lines[1]
    assert "not painted: tiny__the_scream.png: the photo is 8x8" in lines[2]
    assert lines[3].startswith("nst-tf-batch: error: 3 of 7 output(s) not painted") and len(lines) == 4
    with open(out / "manifest.jsonl", encoding="utf-8") as f:
        records = {r["output"]: r for r in map(json.loads, f)}
    assert sorted(r["output"] for r in records.values() if "error" in r) == [
        "notes__the_scream.png",
        "tiny__the_scream.png",
        "truncated__the_scream.png",
    ]
    assert len(records) == 7

    # Mended, a re-run paints just it, and its line replaces the error.
    image_io.save_image(str(tmp_path / "photos" / "tiny.png"), image_io.load_image(image_io.example_path("rocket"), 48))
    again = subprocess.run(command + [f"--output_dir={out}"], capture_output=True, text=True)
    assert again.returncode == 2 and "2 of 3 output(s) not painted" in again.stderr, again.stderr
    with open(out / "manifest.jsonl", encoding="utf-8") as f:
        records = {r["output"]: r for r in map(json.loads, f)}
    assert "error" not in records["tiny__the_scream.png"] and len(records) == 7


def test_the_beam_pipeline_sends_what_it_cannot_paint_to_its_dead_letters(tmp_path):
    beam = pytest.importorskip("nst_tf.beam")
    photos = _mixed_photos(tmp_path / "photos", good=1)
    out = tmp_path / "out"
    options = dict(size=32, steps=2, scales=1, weights="embedded", jit="off", precision="float32")
    result = beam.run(photos, [image_io.example_path("the_scream")], str(out), evaluate=False, **options)
    assert result["written"] == 1 and sorted(o for o, _ in result["failed"]) == [
        "notes__the_scream.png",
        "tiny__the_scream.png",  # failed inside the pipeline: the dead-letter output
        "truncated__the_scream.png",  # its header is an image's: the driver decodes nothing, its worker fails it
    ]
    with open(out / "manifest.jsonl", encoding="utf-8") as f:
        records = {r["output"]: r for r in map(json.loads, f)}
    assert "error" not in records["boston__the_scream.png"] and "8x8" in records["tiny__the_scream.png"]["error"]
    assert "truncated" in records["truncated__the_scream.png"]["error"]
    assert "not an image" in records["notes__the_scream.png"]["error"]  # refused by the driver, from its header


def test_the_beam_driver_reads_headers_only_and_the_batch_command_decodes(tmp_path):
    from nst_tf import batch

    photos = _mixed_photos(tmp_path / "photos", good=1)
    paths = [os.path.join(photos, n) for n in sorted(os.listdir(photos))]
    assert sorted(os.path.basename(p) for p in batch.bad_inputs(paths, decode=False)) == ["notes.png"]
    assert sorted(os.path.basename(p) for p in batch.bad_inputs(paths)) == ["notes.png", "truncated.jpg"]
