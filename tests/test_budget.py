"""`--budget`'s rule for when a refine fits (`nst_tf.budget`): measured on each machine, remembered in
the cache folder, the tuning machine's figure until then."""

import json

import pytest

from nst_tf import autotune, budget
from nst_tf.config import Config


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_TF_CACHE_DIR", str(tmp_path))
    return tmp_path / "budget.json"


def test_an_unmeasured_machine_refines_from_the_tuning_machines_figure(cache):
    assert budget.refine_needs(512) == (budget.REFINE_FROM, "; not yet measured on this machine")
    below = budget.choose(Config(budget=budget.REFINE_FROM - 1), 0.2)
    assert not below.refine and "not yet measured" in below.reason
    assert budget.choose(Config(budget=budget.REFINE_FROM + 1), 0.2).refine


def test_a_measured_first_step_sets_the_rule_scaled_up_for_larger_pictures(cache):
    budget.remember_first_step(5.5, 512)
    needs = 5.5 + budget.WRITE_SECONDS + budget.MARGIN
    assert budget.refine_needs(512)[0] == pytest.approx(needs)
    assert budget.refine_needs(256)[0] == pytest.approx(needs)  # never scaled down
    assert budget.refine_needs(1024)[0] == pytest.approx(4 * 5.5 + budget.WRITE_SECONDS + budget.MARGIN)
    assert budget.choose(Config(budget=needs + 0.5), 0.2).refine  # below the tuning machine's 12 s
    fits_not = budget.choose(Config(budget=needs + 0.1), 0.2)
    assert not fits_not.refine and "its first step ended 5.5 s in" in fits_not.reason


def test_the_slowest_of_the_last_few_counts_and_a_slow_machine_stops_refining(cache):
    budget.remember_first_step(14.0, 512)  # slower than the tuning machine: its 15 s buy the one pass
    assert not budget.choose(Config(budget=15), 0.2).refine
    for _ in range(budget.KEPT_FIRST_STEPS - 1):
        budget.remember_first_step(5.0, 512)
    assert budget.refine_needs(512)[0] == pytest.approx(14.0 + budget.WRITE_SECONDS + budget.MARGIN)
    budget.remember_first_step(5.0, 512)  # the slow one falls out of the last five
    assert budget.refine_needs(512)[0] == pytest.approx(5.0 + budget.WRITE_SECONDS + budget.MARGIN)


def test_another_machines_or_a_damaged_record_is_not_read(cache):
    cache.write_text(json.dumps({"cpu=another; tensorflow=0": [[1.0, 512]]}))
    assert budget.refine_needs(512)[0] == budget.REFINE_FROM
    cache.write_text('{"torn')
    assert budget.refine_needs(512)[0] == budget.REFINE_FROM
    budget.remember_first_step(6.0, 512)  # written over the damaged file
    assert json.loads(cache.read_text()) == {autotune.cpu_key(): [[6.0, 512]]}


def test_the_deadline_notes_when_the_first_step_ended():
    deadline = budget.Deadline(float("inf"))
    deadline.on_run_begin(None, 3)
    assert deadline.first_step_end is None
    deadline.on_step_end(None, 1, 1.0, {})
    first = deadline.first_step_end
    assert first is not None and first >= 0
    deadline.on_step_end(None, 2, 1.0, {})
    assert deadline.first_step_end == first


@pytest.mark.parametrize(
    "flags, cached, mode, expected",
    [
        ({"avx2", "avx512_bf16"}, False, "cached", "bfloat16"),  # unmeasured, with bfloat16 instructions
        ({"avx2", "amx_bf16", "amx_tile"}, False, None, "bfloat16"),
        ({"avx2", "fma"}, False, "cached", "auto"),  # without them: the rule's float32
        ({"avx2", "avx512_bf16"}, True, "cached", "auto"),  # measured: the cached choice
        ({"avx2", "avx512_bf16"}, False, "off", "auto"),  # autotune off: the safe rule, as asked
    ],
)
def test_an_unmeasured_machine_refines_in_bfloat16_where_its_cpu_has_it(
    cache, monkeypatch, flags, cached, mode, expected
):
    monkeypatch.setattr(autotune, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(autotune, "cached_entries", lambda: {"key": {}} if cached else {})
    monkeypatch.delenv(autotune.ENV, raising=False)
    choice = budget.choose(Config(budget=30), 0.2, mode)
    assert choice.refine and choice.config.precision == expected
    assert ("bfloat16 instructions" in choice.reason) == (expected == "bfloat16")
    assert budget.choose(Config(budget=30, precision="float32"), 0.2, mode).config.precision == "float32"
