"""`precision="auto"` / `jit="auto"` by measurement: the choice, the skip rules on either kind of
CPU (forced by overriding the detected flags), the quality guard, the cache, the modes, and what the
command line says; and the bfloat16 path held to float32."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import nst_tf
from conftest import REPO
from nst_tf import autotune, features, image_io, losses
from nst_tf.errors import NstError

AVX2 = frozenset({"avx2", "fma"})
AVX512_BF16 = frozenset({"avx2", "fma", "avx512f", "avx512_bf16"})
ENTRY = {  # a measurement as the cache holds it (seconds per step)
    "seconds": {
        "float32/xla-off": 0.115,
        "float32/xla-on": 0.149,
        "bfloat16/xla-off": 0.068,
        "bfloat16/xla-on": 0.147,
        "float16/xla-on": 0.132,
    },
    "loss_ratio": {
        "float32/xla-off": 1.0,
        "float32/xla-on": 1.0,
        "bfloat16/xla-off": 0.9986,
        "bfloat16/xla-on": 0.9995,
        "float16/xla-on": 1.0001,
    },
    "skipped": {"float16/xla-off": "no float16 instructions"},
    "size": "192x129",
    "gpu": None,
}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache of this test's own, measuring allowed."""
    monkeypatch.setenv("NST_TF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(autotune.ENV, "cached")
    monkeypatch.setattr(autotune, "_measured", {})
    return tmp_path / "cache" / "autotune.json"


def test_choose_is_the_fastest_candidate_that_fits_what_is_pinned():
    assert autotune.choose(ENTRY)[:2] == ("bfloat16", False)
    assert autotune.choose(ENTRY, precision="float32")[:2] == ("float32", False)
    assert autotune.choose(ENTRY, jit="on")[:2] == ("float16", True)
    assert autotune.choose(ENTRY, precision="bfloat16", jit="on")[:2] == ("bfloat16", True)
    assert autotune.choose(ENTRY, style_loss="w2")[:2] == ("bfloat16", False)  # w2 pins XLA off
    assert autotune.choose(dict(ENTRY, seconds={"bfloat16/xla-on": 0.1}), style_loss="w2")[:2] == ("float32", False)
    assert "a step in 0.46x the time of float32 with XLA" in autotune.choose(ENTRY).reason


def test_quality_guard_leaves_out_a_precision_that_changes_the_result():
    off = dict(ENTRY, loss_ratio=dict(ENTRY["loss_ratio"], **{"bfloat16/xla-off": 1.0 + 1.5 * autotune.QUALITY_BOUND}))
    assert autotune.choose(off)[:2] == ("float32", False)


def test_nothing_measured_fits_gives_the_rule():
    choice = autotune.choose(dict(ENTRY, seconds={}), precision="float16")
    assert choice[:2] == ("float16", False) and "rule" in choice.reason


@pytest.mark.parametrize("flags, timed", [(AVX2, False), (AVX512_BF16, True)])
def test_reduced_precision_without_xla_is_timed_only_where_the_cpu_has_its_instructions(flags, timed):
    assert (autotune.skip_reason("bfloat16", False, flags, None) is None) == timed
    assert autotune.skip_reason("float16", False, flags, None) is not None  # neither has AVX-512 FP16
    assert autotune.skip_reason("float16", False, flags | {"avx512_fp16"}, None) is None
    for precision in autotune.PRECISIONS:  # with XLA, and on a GPU, everything is timed
        assert autotune.skip_reason(precision, True, flags, None) is None
        assert autotune.skip_reason(precision, False, flags, "NVIDIA H100 cc9.0") is None


@pytest.mark.slow
@pytest.mark.bfloat16
@pytest.mark.parametrize("flags", [AVX2, AVX512_BF16], ids=["avx2", "avx512_bf16"])
def test_measurement_times_each_candidate_once_and_is_cached(cache, monkeypatch, flags):
    """On either kind of CPU (the flags forced), a real measurement at a small size: the skipped
    candidates are the flags' own, the choice is the fastest measured, and it is made once. With
    the AVX2 flags the XLA candidates are traced without compiling (which candidates are timed,
    skipped and chosen is what the flags change; the AVX-512 run compiles them)."""
    monkeypatch.setattr(autotune, "cpu_flags", lambda: flags)
    if "avx512f" not in flags:
        from nst_tf import optimize

        real_step = optimize.CompiledStep
        monkeypatch.setattr(optimize, "CompiledStep", lambda step, jit_compile=False: real_step(step, False))
    monkeypatch.setattr(autotune, "SIZE", 48)
    monkeypatch.setattr(autotune, "TIMED_STEPS", 2)
    monkeypatch.setattr(autotune, "WARMUP_STEPS", 1)
    monkeypatch.setattr(autotune, "GIVE_UP", 1e9)  # time every candidate that is not skipped
    calls, entries = [], []

    def measure(*args, **kwargs):  # the real measurement once; a remeasure hands back its entry
        calls.append(1)
        entries.append(entries[0] if entries else real_measure(*args, **kwargs))
        return dict(entries[-1])

    real_measure = autotune.measure
    monkeypatch.setattr(autotune, "measure", measure)

    choice = autotune.resolve(weights="embedded")
    entry = json.loads(cache.read_text())["entries"][autotune.machine_key(None)]
    skipped = {"float16/xla-off"} | (set() if "avx512_bf16" in flags else {"bfloat16/xla-off"})
    assert set(entry["skipped"]) == skipped
    assert set(entry["seconds"]) == {autotune.name(p, x) for p, x in autotune.CANDIDATES} - skipped
    fastest = min(entry["seconds"], key=entry["seconds"].get)
    assert autotune.name(choice.precision, choice.xla) == fastest  # all pass the guard at 48 px
    assert all(abs(r - 1) < autotune.QUALITY_BOUND for r in entry["loss_ratio"].values())
    assert entry["calibration_seconds"] > 0 and entry["size"] == "48x32"

    assert autotune.resolve() == choice and len(calls) == 1  # from the process and the file, not again
    monkeypatch.setattr(autotune, "_measured", {})
    assert autotune.resolve() == choice and len(calls) == 1
    autotune.resolve(mode="remeasure")
    assert len(calls) == 2


def test_modes(cache, monkeypatch):
    monkeypatch.setattr(autotune, "measure", lambda *a, **k: pytest.fail("measured"))
    assert autotune.resolve(mode="off")[:2] == ("float32", False)
    assert autotune.resolve(style_loss="w2", mode="off")[:2] == ("float32", False)
    assert autotune.resolve("bfloat16", "off")[:2] == ("bfloat16", False)  # nothing to choose
    monkeypatch.setenv(autotune.ENV, "off")
    assert autotune.resolve()[:2] == ("float32", False)
    monkeypatch.setenv(autotune.ENV, "sometimes")
    with pytest.raises(NstError, match="NST_TF_AUTOTUNE"):
        autotune.resolve()
    assert not cache.exists()


@pytest.mark.bfloat16
def test_the_plan_carries_the_choice_into_the_run(cache, monkeypatch, vgg19):
    cache.parent.mkdir()
    cache.write_text(json.dumps({"format": autotune.CACHE_FORMAT, "entries": {autotune.machine_key(None): ENTRY}}))
    monkeypatch.setattr(autotune, "gpu_name", lambda: None)
    plan = nst_tf.resolve_plan(nst_tf.Config())
    assert (plan.config.precision, plan.config.jit) == ("bfloat16", "off") and plan.choice.reason.startswith("auto")
    run = nst_tf.StyleTransfer(
        image_io.example_path("boston"), image_io.example_path("the_scream"), size=32, weights="embedded"
    )
    assert (run.config.precision, run.config.jit, run.compiled.jit_compile) == ("bfloat16", "off", False)
    assert run.model.get_layer("block1_conv1").compute_dtype == "bfloat16"


def _cli(args, tmp_path, cache_dir, mode="cached"):
    env = dict(os.environ, NST_TF_OFFLINE="1", NST_TF_CACHE_DIR=str(cache_dir), NST_TF_AUTOTUNE=mode)
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "stylize.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.bfloat16
def test_dry_run_and_the_last_line_say_what_auto_chose(tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    key = f"{autotune.cpu_key()}; gpu={autotune.gpu_name() or 'none'}"
    (cache_dir / "autotune.json").write_text(json.dumps({"format": autotune.CACHE_FORMAT, "entries": {key: ENTRY}}))
    dry = _cli(["--dry_run"], tmp_path, cache_dir)
    assert dry.returncode == 0, dry.stderr
    assert "bfloat16, XLA off (auto: measured fastest of 5 at 192x129" in dry.stdout
    empty = _cli(["--dry_run"], tmp_path, tmp_path / "none")
    assert "measured when the run starts" in empty.stdout
    assert "float32, XLA off (autotune off" in _cli(["--dry_run", "--autotune=off"], tmp_path, cache_dir).stdout
    out = tmp_path / "out.png"
    run = _cli(
        ["--size=32", "--steps=2", "--scales=1", "--weights=embedded", "--noprogress", f"--output={out}"],
        tmp_path,
        cache_dir,
    )
    assert run.returncode == 0, run.stderr
    assert (
        run.stdout.strip()
        .splitlines()[-1]
        .endswith(
            "bfloat16, XLA off (auto: measured fastest of 5 at 192x129: 0.068 s/step, a step in 0.46x the time of float32 with XLA))"
        )
    )
    bad = _cli(["--autotune=sometimes"], tmp_path, cache_dir)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.bfloat16
def test_bfloat16_run_ends_within_2_percent_of_float32(embedded_weights, small_pair):
    """The bfloat16 path on its own (it runs on any CPU; slowly without AVX-512 BF16, so small):
    20 Adam steps at 64 px from the content, the end image's loss evaluated in float32 (measured:
    losses 2.93265 and 2.93253 from 3.28445: the same progress within 0.03%). The gradient itself
    is held to float32 in test_optimize."""
    content, style = (tf.constant(a[None]) for a in small_pair)
    cfg = nst_tf.Config(optimizer="adam", scales=1, size=64)
    layers = list(cfg.content_layers) + list(cfg.style_layers)
    f32 = features.build_feature_model(layers, layer_weights=embedded_weights)
    f32_targets = losses.compute_targets(f32, content, style, cfg)
    start = float(losses.objective(f32, f32_targets, cfg, content)[0])
    ends = {}
    for precision in ("float32", "bfloat16"):
        model = features.build_feature_model(layers, layer_weights=embedded_weights, precision=precision)
        run = nst_tf.StyleTransfer(small_pair[0], small_pair[1], cfg, model=model, precision=precision, jit="off")
        run.run(20)
        ends[precision] = float(losses.objective(f32, f32_targets, cfg, tf.constant(run.images))[0])
    progress = {p: start - end for p, end in ends.items()}
    print(
        f"start {start:.6g}, float32 {ends['float32']:.6g}, bfloat16 {ends['bfloat16']:.6g}; "
        f"bfloat16's progress {progress['bfloat16'] / progress['float32']:.4f} of float32's"
    )
    assert ends["float32"] < 0.95 * start  # the steps did something to compare
    assert abs(ends["bfloat16"] / ends["float32"] - 1) < 0.02
    assert abs(progress["bfloat16"] / progress["float32"] - 1) < 0.05  # the loss fell as far


@pytest.mark.slow
def test_a_bad_autotune_environment_is_one_line_and_exit_2(tmp_path):
    bad = _cli(["--dry_run"], tmp_path, tmp_path / "cache", mode="sometimes")
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "nst-tf: error: NST_TF_AUTOTUNE='sometimes'; choose one of: cached, remeasure, off"
    ]


def test_onednn_max_cpu_isa_caps_the_flags_it_is_timed_and_keyed_by(monkeypatch):
    """`ONEDNN_MAX_CPU_ISA=AVX2` on an AVX-512 BF16 CPU: oneDNN runs AVX2 code, so the candidates
    are skipped and the cache keyed as on an AVX2 CPU (/proc/cpuinfo still lists AVX-512)."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    native = autotune.cpu_flags()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    capped = autotune.cpu_flags()
    assert capped <= native and not capped & {"avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16"}
    assert capped & {"avx2", "fma"} == native & {"avx2", "fma"}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert autotune.cpu_flags() == native


@pytest.mark.slow
def test_a_candidate_this_machine_refuses_is_skipped_with_its_error(cache, monkeypatch):
    """A kernel that fails (as bfloat16 convolutions do under ONEDNN_MAX_CPU_ISA=AVX2) skips its
    candidate with the error's first line; the others are still timed and chosen from."""
    monkeypatch.setattr(autotune, "CANDIDATES", (("float32", False), ("float16", False)))
    monkeypatch.setattr(autotune, "cpu_flags", lambda: frozenset({"avx2", "fma", "avx512_fp16"}))
    for name, value in (("SIZE", 32), ("TIMED_STEPS", 1), ("WARMUP_STEPS", 0)):
        monkeypatch.setattr(autotune, name, value)
    real = losses.compute_targets

    def refuse_float16(model, *args, **kwargs):
        if model.get_layer("block1_conv1").compute_dtype == "float16":
            raise tf.errors.AbortedError(None, None, "could not create a primitive descriptor\nmore")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(losses, "compute_targets", refuse_float16)
    entry = autotune.measure("embedded", log=lambda line: None)
    assert set(entry["seconds"]) == {"float32/xla-off"}
    assert entry["skipped"] == {"float16/xla-off": "failed here: could not create a primitive descriptor"}


def test_the_dry_runs_rate_is_the_chosen_candidates_cached_step_per_pixel(cache, monkeypatch):
    assert autotune.cached_rate() is None  # nothing cached: the planner's AVX2 rate
    cache.parent.mkdir()
    cache.write_text(json.dumps({"format": autotune.CACHE_FORMAT, "entries": {autotune.machine_key(None): ENTRY}}))
    pixels = int(np.prod([int(v) for v in ENTRY["size"].split("x")]))
    rate = autotune.cached_rate()
    assert rate.seconds == pytest.approx(0.068 / pixels) and "(bfloat16, XLA off)" in rate.source
    assert autotune.cached_rate("float32", "on").seconds == pytest.approx(0.149 / pixels)
    assert autotune.cached_rate(mode="off").seconds == pytest.approx(0.115 / pixels)  # the rule: float32
