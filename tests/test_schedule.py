"""The schedule written once (`nst_tf.schedule`) gives the same numbers on Python numbers (the run,
the planner, --dry_run) and on tensors (the SavedModel export), over a grid of options and sizes."""

import itertools

import pytest
import tensorflow as tf

from nst_tf import config, schedule
from nst_tf.config import Config
from nst_tf.errors import NstError


def _configs():
    for size, scales, start, style_size, style_scale in itertools.product(
        [17, 64, 100, 255, 333, 512, 777, 2048], [1, 2, 3, 5], [None, 16, 40], [None, 50, 300], [1.0, 0.5, 1.7]
    ):
        if start is None or (scales >= 2 and start < size):
            yield Config(size=size, scales=scales, start_size=start, style_size=style_size, style_scale=style_scale)


def test_scale_plan_is_the_same_on_python_numbers_and_tensors():
    checked = 0
    for cfg in _configs():
        local = schedule.scale_plan(cfg.picture, cfg.optimisation, cfg.size)
        graph = schedule.scale_plan(cfg.picture, cfg.optimisation, tf.constant(cfg.size), schedule.TF)
        for a, b in zip(local, graph, strict=True):
            assert a.size == int(b.size) and a.steps == b.steps and a.runs == bool(b.runs), (cfg, a, b)
            assert (a.style_size is None and b.style_size is None) or a.style_size == int(b.style_size), (cfg, a, b)
        checked += 1
    assert checked > 500


def test_fit_size_is_the_same_on_python_numbers_and_tensors():
    for h, w, side in itertools.product([1, 7, 343, 512, 1000], [1, 9, 512, 683], [1, 16, 64, 385, 4096]):
        local = schedule.fit_size((h, w), side)
        graph = schedule.fit_size(tf.constant([h, w]), side, schedule.TF)
        assert local == tuple(int(v) for v in graph), (h, w, side)
        assert max(local) == side  # the longest side is the one asked for


def test_coarse_scales_under_64_px_do_not_run_unless_asked_for():
    cfg = Config(size=200, scales=3)
    plan = schedule.scale_plan(cfg.picture, cfg.optimisation, 200)
    assert [(s.size, s.runs) for s in plan] == [(50, False), (100, True), (200, True)]
    cfg = Config(size=200, scales=3, start_size=32)
    plan = schedule.scale_plan(cfg.picture, cfg.optimisation, 200)
    assert [(s.size, s.runs) for s in plan] == [(32, True), (80, True), (200, True)]


def test_too_many_scales_is_a_clear_error():
    """Hypothesis found scales=1025: the default start size 2**-1024 overflowed a float."""
    assert 0 < len(config.Config(size=config.MAX_SIZE, scales=config.MAX_SCALES).scale_plan()) <= config.MAX_SCALES
    with pytest.raises(NstError, match=f"scales must be at most {config.MAX_SCALES}"):
        config.Config(scales=1025)
