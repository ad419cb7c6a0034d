"""The run plan (`nst_tf.plan`): options resolved once at the door, and nothing below re-resolves them;
the option groups; the tiles chosen against the run's device."""

import numpy as np
import pytest

import nst_tf
from nst_tf import autotune, batch, image_io, planner
from nst_tf import plan as plan_lib
from nst_tf.config import Config, Objective
from nst_tf.errors import NstError

RUN = dict(size=48, steps=2, scales=1, weights="embedded")


def test_the_painter_is_decided_once_from_the_options():
    assert plan_lib.painter_of(Config()) == "optimisation"
    assert plan_lib.painter_of(Config(network="universal")) == "network"
    assert plan_lib.painter_of(Config(network="universal", init="network")) == "warm"
    assert set(plan_lib.PAINTERS) == {"optimisation", "network", "warm"}


@pytest.fixture
def measured(monkeypatch):
    """autotune.resolve as a stub that records its calls and answers bfloat16 without XLA."""
    calls = []

    def resolve(precision="auto", jit="auto", style_loss="gram", mode=None, weights="auto"):
        calls.append((precision, jit, style_loss, mode))
        return autotune.Choice("bfloat16" if precision == "auto" else precision, jit == "on", "stub: measured fastest")

    monkeypatch.setattr(autotune, "resolve", resolve)
    return calls


def test_resolve_makes_precision_and_xla_concrete_per_painter(measured):
    plan = plan_lib.resolve(Config(**RUN), "cached")
    assert (plan.config.precision, plan.config.jit, plan.painter) == ("bfloat16", "off", "optimisation")
    assert plan.choice.reason == "stub: measured fastest" and measured == [("auto", "auto", "gram", "cached")]
    assert plan_lib.resolve(plan) is plan and len(measured) == 1  # a plan passes through untouched
    plan_lib.resolve(Config(network="universal"))  # a network's encoder: without XLA, its own statistic
    plan_lib.resolve(Config(style_loss="w2"), export=True)  # an export: XLA only when asked for
    assert measured[1:] == [("auto", "off", "gram", None), ("auto", "off", "w2", None)]
    assert plan_lib.resolve(plan, steps=3).config.steps == 3  # options change a plan: resolved again


def test_nothing_below_the_door_resolves_again(measured, monkeypatch, vgg19):
    """The door resolves once; `stylize`, each scale's `StyleTransfer` and the batch runner take the plan."""
    plan = plan_lib.resolve(Config(**RUN, precision="float32", jit="off"))

    def refuse(*args, **kwargs):
        raise AssertionError("autotune.resolve called below the door")

    monkeypatch.setattr(autotune, "resolve", refuse)
    boston, scream = image_io.example_path("boston"), image_io.example_path("the_scream")
    image = nst_tf.stylize(boston, scream, plan, model=vgg19)
    assert image.shape == (32, 48, 3)
    run = nst_tf.StyleTransfer(boston, scream, plan, model=vgg19)
    assert run.config is plan.config and run.choice is plan.choice
    runner = batch.Runner(plan, "unused", evaluate=False)
    assert runner.plan is plan and runner.cfg is plan.config


def test_the_tiles_are_chosen_against_the_memory_of_the_runs_device(monkeypatch):
    plan = plan_lib.resolve(Config(size=2048, scales=1, precision="float32", jit="off"))
    hw, style = (1365, 2048), [(1365, 2048)]
    monkeypatch.setattr(planner, "available_bytes", lambda: 64 * planner.GIB)
    monkeypatch.setattr(plan_lib, "gpu_free_bytes", lambda: None)
    assert plan.with_scales(hw, style).scales[0].tile == 0  # the host has room
    monkeypatch.setattr(plan_lib, "gpu_free_bytes", lambda: 4 * planner.GIB)  # a GPU with 4 GiB free
    tiled = plan.with_scales(hw, style).scales[0]  # (untiled: 8.1 GiB estimated)
    assert 0 < tiled.tile < 2048 and tiled.peak_bytes <= 4 * planner.GIB
    assert plan.with_scales(hw, style, available=64 * planner.GIB).scales[0].tile == 0  # given: as given


def test_options_are_grouped_as_the_code_uses_them_and_the_trainer_shares_the_objective():
    cfg = Config(style_layers="block1_conv1,block3_conv1", style_weight=3.0, size=64, tile="64")
    assert cfg.objective == Objective(style_layers=("block1_conv1", "block3_conv1"), style_weight=3.0)
    assert cfg.objective.layer_weights == cfg.layer_weights == (0.5, 0.5)
    assert (cfg.group("picture").size, cfg.group("runtime").tile) == (64, "64")
    names = [
        f for group in ("objective", "picture", "optimisation", "outputs", "runtime") for f in vars(cfg.group(group))
    ]
    assert sorted(names) == sorted(cfg.options())  # every option in exactly one group
    with pytest.raises(NstError, match="unknown vgg19 layer"):
        Objective(content_layers="block9_conv1")  # a group checks its own options
    tc = nst_tf.TrainConfig(contents=("a.jpg",), styles=("b.jpg",), objective=cfg.objective)
    assert tc.objective.style_weight == 3.0
    with pytest.raises(NstError, match="objective must be an Objective"):
        nst_tf.TrainConfig(contents=("a.jpg",), styles=("b.jpg",), objective=cfg)


def test_the_dry_run_times_read_as_durations_from_this_machines_calibration(monkeypatch):
    assert [planner.duration(s) for s in (45, 200, 16793)] == ["45 s", "3 min 20 s", "4 h 39 min"]
    cfg = Config(size=512)
    rate = autotune.Rate(2e-6, "this machine's calibration (bfloat16, XLA off)")
    fast, slow = planner.plan_scales(cfg, (384, 512), rate=rate), planner.plan_scales(cfg, (384, 512))
    assert np.isclose(
        sum(s.seconds for s in slow) / sum(s.seconds for s in fast), planner.SECONDS_PER_PIXEL_STEP / 2e-6
    )
    text = planner.describe(fast, cfg, rate)
    assert "estimated from this machine's calibration (bfloat16, XLA off)" in text.splitlines()[-1]
    assert "from a 2-core AVX2 CPU's float32 rate" in planner.describe(slow, cfg)


def test_the_memory_refusal_suggests_bfloat16_only_where_it_would_change_something():
    from nst_tf import planner
    from nst_tf.config import Config
    from nst_tf.errors import NstError

    for precision, hinted in (("float32", True), ("bfloat16", False)):
        cfg = Config(size=8192, precision=precision, jit="off")
        scales = planner.plan_scales(cfg, (5464, 8192), [(5464, 8192)], 1, available=2**30)
        with pytest.raises(NstError) as err:
            planner.check(scales, cfg, available=2**30)
        assert ("--precision=bfloat16" in str(err.value)) == hinted, str(err.value)
