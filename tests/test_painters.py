"""The one painter protocol: every painter x every painting option either changes the picture the way a
NumPy reference says or is refused with one line; and every door (the API, the batch runner, the
clip painter, the page's studio, the command line) passes the options through, so none is dropped."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import nst_tf
from nst_tf import batch, color, image_io, painting, plan, transfer
from nst_tf.config import Config
from nst_tf.errors import NstError
from nst_tf.networks import arbitrary, models, universal, use

from conftest import REPO

SIZE = 48


@pytest.fixture(scope="module")
def pair():
    return (
        image_io.load_image(image_io.example_path("boston"), SIZE),
        image_io.load_image(image_io.example_path("the_scream"), SIZE),
    )


@pytest.fixture(scope="module")
def all_painters(embedded_weights, vgg19):
    """Each painter the registry builds, on small inputs: the optimisation (8 steps, one scale), the
    bundled universal painter, an untrained predict network (fixed styles too), the warm start, and Magenta's arbitrary network."""
    tf.keras.utils.set_random_seed(0)
    cfg = Config(weights="embedded", steps=8, scales=1, precision="float32", jit="off")
    optimisation = transfer.OptimisationPainter(plan.resolve(cfg, "off"), model=vgg19)
    uni = universal.UniversalPainter("universal", encoder=universal.Encoder(embedded_weights, (2, 3)))
    net = use.NetworkPainter(
        models.StyleNetwork(num_styles=2, predict=True, alpha=0.25),
        models.style_statistics(layer_weights=embedded_weights),
    )
    warm = transfer.OptimisationPainter(
        plan.resolve(cfg.replace(network="universal", init="network"), "off"), vgg19, start=uni
    )
    arb = nst_tf.make_painter("arbitrary", weights="embedded")
    return {"optimisation": optimisation, "universal": uni, "network": net, "warm": warm, "arbitrary": arb}


def _chroma(image):
    return color.rgb_to_yiq(image.astype(np.float64) / 255.0)[..., 1:]


def _render(painter, content, styles, **options):
    return painter.paint(content, styles, size=SIZE, **options).astype(np.float64)


# Which painting options each painter honours: the protocol's declaration, held to the design.
HONOURED = {
    "optimisation": {"style_blend", "style_mask", "preserve_colors", "style_size", "tile"},
    "universal": {"strength", "style_blend", "style_mask", "preserve_colors", "style_size", "tile"},
    "network": {"strength", "style_blend", "style_index", "preserve_colors", "tile"},
    "warm": {"style_blend", "style_mask", "preserve_colors", "style_size", "tile", "strength"},
    "arbitrary": {"strength", "style_blend", "style_mask", "preserve_colors", "style_size", "tile", "adapt_steps"},
}
ASKED = dict(
    strength=0.5,
    style_blend=(1.0,),
    style_index=1,
    style_mask=[np.ones((SIZE, SIZE), np.float32)],
    preserve_colors="luminance",
    style_size=32,
    tile="off",
    adapt_steps=2,
)


@pytest.mark.parametrize("name", sorted(HONOURED))
def test_each_painter_declares_what_it_honours_and_refuses_the_rest_in_one_line(all_painters, name):
    painter = all_painters[name]
    assert set(painter.supports) == HONOURED[name]
    for option, value in ASKED.items():
        options = painting.Options(**{option: value})
        if option in HONOURED[name]:
            assert painter.unsupported(options) == []
        else:
            with pytest.raises(NstError, match=f"^--{option} is not honoured by the .*painter") as err:
                painter.check(options)
            assert "\n" not in str(err.value)


SLOW = pytest.mark.slow  # the optimisation's runs: the fast tier keeps the one-pass painters


@pytest.mark.parametrize(
    "name", [pytest.param("optimisation", marks=SLOW), "universal", "network", pytest.param("warm", marks=SLOW)]
)
def test_luminance_keeps_the_contents_chroma(all_painters, pair, name):
    content, style = pair
    out = _render(all_painters[name], content, [style], preserve_colors="luminance")
    # the NumPy reference: YIQ's I and Q of the content (up to 8-bit rounding of the result)
    assert np.abs(_chroma(out) - color.rgb_to_yiq(content)[..., 1:]).max() < 0.01
    plain = _render(all_painters[name], content, [style])
    assert np.abs(_chroma(plain) - color.rgb_to_yiq(content)[..., 1:]).max() > 0.05  # it did change something


@pytest.mark.parametrize("name", [pytest.param("optimisation", marks=SLOW), "universal", "network"])
def test_histogram_moves_the_paintings_colours_to_the_contents(all_painters, pair, name):
    content, style = pair
    out = _render(all_painters[name], content, [style], preserve_colors="histogram")
    matched = _render(all_painters[name], content, [color.match_color(style, content)])
    np.testing.assert_allclose(out, matched, atol=1.0)  # the same as painting with the matched painting
    assert np.abs(out - _render(all_painters[name], content, [style])).mean() > 1.0


def test_strength_zero_is_the_content_for_the_one_pass_painters(all_painters, pair):
    content, style = pair
    uni, net = all_painters["universal"], all_painters["network"]
    # universal: strength 0 keeps the content's features at every level: the decoders' reconstruction
    stride = universal.level_stride(uni.levels[0])
    reconstruction = content
    for k in uni.levels:
        x = universal.pad_to(tf.constant(reconstruction[None]), universal.level_stride(k))
        reconstruction = np.clip(uni.network.decoders[k](uni.encoder.level(k, x))[0].numpy(), 0, 1)
        reconstruction = reconstruction[: content.shape[0], : content.shape[1]]
    assert stride > 1
    expected = np.round(reconstruction * 255.0)
    np.testing.assert_allclose(_render(uni, content, [style], strength=0.0), expected, atol=1.0)
    # a predict network: the content's own embedding
    np.testing.assert_allclose(_render(net, content, [style], strength=0.0), _render(net, content, [content]), atol=1.0)


def test_a_mask_leaves_the_outside_to_the_content(all_painters, pair):
    """Universal: where the mask is 0 the content's features pass through (the reconstruction)."""
    content, style = pair
    uni = all_painters["universal"]
    mask = np.zeros(content.shape[:2], np.float32)
    mask[:, : content.shape[1] // 2] = 1.0
    out = _render(uni, content, [style], style_mask=[mask])
    alone = _render(uni, content, [style], strength=0.0)  # the content's own features everywhere
    right = slice(content.shape[1] // 2 + 12, None)  # away from the edge the decoders blur across
    assert np.abs(out[:, right] - alone[:, right]).mean() < 2.0
    assert np.abs(out[:, :12] - alone[:, :12]).mean() > 10.0


def test_a_prepared_painting_is_represented_once_for_many_contents(all_painters, pair, monkeypatch):
    content, style = pair
    uni = all_painters["universal"]
    calls = []
    represent = uni.style
    monkeypatch.setattr(uni, "style", lambda image: calls.append(image.shape) or represent(image))
    prepared = uni.prepare([style])
    first = uni.render(content, prepared, painting.Options(size=SIZE))
    again = uni.render(content[:, ::-1], prepared, painting.Options(size=SIZE))
    assert len(calls) == 1 and first.shape == again.shape  # the same side: the painting is not represented again
    uni.render(content, prepared, painting.Options(size=SIZE // 2))
    assert len(calls) == 2  # another size is another representation


def test_the_road_keeps_built_painters_and_prepared_paintings(pair, monkeypatch):
    """The API's repeat call costs its painting only: the painter is built once per process and a
    painting prepared once per painter (before: 2.04 s a repeat call at 512 px, now 0.065 s)."""
    from nst_tf import painters

    content, style = pair
    plan = nst_tf.resolve_plan(network="demo", precision="float32")
    made, prepared = [], []
    build, prepare = painters._make_painter, arbitrary.ArbitraryPainter.prepare
    painters.PAINTERS.clear()
    monkeypatch.setattr(painters, "_make_painter", lambda *a: made.append(a) or build(*a))
    monkeypatch.setattr(arbitrary.ArbitraryPainter, "prepare", lambda self, s: prepared.append(1) or prepare(self, s))
    first = painters.paint(plan, content, [style], painting.Options(size=SIZE))[0]
    again = painters.paint(plan, content, [style.copy()], painting.Options(size=SIZE))[0]
    other = painters.paint(plan, content, [style[::-1]], painting.Options(size=SIZE))[0]
    assert len(made) == 1 and len(prepared) == 2  # the same painting by its contents; another one prepared
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 0.01


def test_the_api_door_paints_through_the_registry_and_refuses(pair, embedded_weights):
    content, style = pair
    out = nst_tf.stylize(
        content, style, network="universal", weights="embedded", size=SIZE, preserve_colors="luminance"
    )
    assert np.abs(_chroma(out.astype(np.float64)) - color.rgb_to_yiq(content)[..., 1:]).max() < 0.01
    with pytest.raises(NstError, match="^--strength is not honoured by the optimisation painter"):
        nst_tf.stylize(content, style, weights="embedded", size=SIZE, strength=0.5, steps=1, scales=1)
    with pytest.raises(NstError, match="^--style_index is not honoured by the universal painter"):
        nst_tf.stylize(content, style, network="universal", weights="embedded", size=SIZE, style_index=1)


@pytest.mark.slow
def test_the_batch_door_honours_colour_preservation_and_style_size(tmp_path, pair):
    """Before the one protocol, a batch of network paintings dropped --preserve_colors and --style_size."""
    folder = tmp_path / "in"
    folder.mkdir()
    image_io.save_image(str(folder / "photo.png"), image_io.to_uint8(pair[0]))
    style = image_io.example_path("the_scream")
    outputs = {}
    for name, extra in [("plain", {}), ("luminance", {"preserve_colors": "luminance"}), ("small", {"style_size": 24})]:
        cfg = Config(network="universal", weights="embedded", size=SIZE, **extra)
        runner = batch.Runner(plan.resolve(cfg, "off"), str(tmp_path / name), evaluate=False)
        os.makedirs(tmp_path / name)
        runner.run([batch.Job(str(folder / "photo.png"), style, "out.png")])
        outputs[name] = image_io.load_image(str(tmp_path / name / "out.png"))
    assert np.abs(outputs["plain"] - outputs["luminance"]).max() > 0.05
    assert np.abs(outputs["plain"] - outputs["small"]).max() > 0.05
    chroma = color.rgb_to_yiq(outputs["luminance"])[..., 1:] - color.rgb_to_yiq(pair[0])[..., 1:]
    assert np.abs(chroma).max() < 0.01
    with pytest.raises(NstError, match="^--strength is not honoured by the optimisation painter"):
        batch.Runner(plan.resolve(Config(weights="embedded", strength=0.5), "off"), str(tmp_path), evaluate=False)


def test_the_clip_door_honours_colour_preservation(pair):
    from nst_tf.video import run

    p = plan.resolve(Config(network="universal", weights="embedded", size=SIZE, preserve_colors="luminance"), "off")
    frames = run._NetworkFrames(p, image_io.example_path("the_scream"), run.VideoConfig())
    out = frames.paint(pair[0], [])
    assert np.abs(color.rgb_to_yiq(out)[..., 1:] - color.rgb_to_yiq(pair[0])[..., 1:]).max() < 0.01
    with pytest.raises(NstError, match="^--style_index is not honoured by the universal painter"):
        run._NetworkFrames(p._replace(config=p.config.replace(style_index=0)), None, run.VideoConfig())


@pytest.mark.slow
def test_the_page_door_paints_what_the_api_paints(pair):
    from nst_tf.app import studio

    page = studio.Studio("universal", "embedded", autotune="off")
    settings = studio.Settings(size=SIZE, preserve_colors="histogram", strength=0.8)
    expected = nst_tf.stylize(
        pair[0], [pair[1]], network="universal", weights="embedded", size=SIZE, preserve_colors="histogram",
        strength=0.8, precision=page.plan.config.precision,
    )  # fmt: skip
    np.testing.assert_array_equal(page.paint(pair[0], [pair[1]], settings), expected)


@pytest.mark.slow
def test_the_command_line_refuses_an_option_its_painter_cannot_honour(tmp_path):
    out = tmp_path / "out.png"
    args = [sys.executable, os.path.join(REPO, "scripts", "stylize.py"), "--network=universal", "--weights=embedded"]
    env = dict(os.environ, NST_TF_AUTOTUNE="off")
    done = subprocess.run(
        [*args, "--style_index=1", "--size=48", f"--output={out}"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2 and not out.exists()
    assert (
        done.stderr.strip().splitlines()[-1].startswith("nst-tf: error: --style_index is not honoured by the universal")
    )


def test_adapt_steps_reaches_the_page_and_paints_what_the_api_paints(pair):
    """A painting option added once (config.py and the painters that honour it) reaches the page: its
    form's adapt_steps paints what `stylize(adapt_steps=...)` paints, and the command line it shows
    says so; the page's defaults are the flags' (one set)."""
    from nst_tf.app import studio

    page = studio.Studio("demo", "embedded", autotune="off")
    settings = studio.settings_from_form({"adapt_steps": "2"}, 1)._replace(size=SIZE)  # (the page's least is 64)
    assert settings.adapt_steps == 2 and studio.Settings().steps == Config.steps
    expected = nst_tf.stylize(
        pair[0], [pair[1]], network="demo", weights="embedded", size=SIZE, adapt_steps=2,
        precision=page.plan.config.precision,
    )  # fmt: skip
    np.testing.assert_array_equal(page.paint(pair[0], [pair[1]], settings), expected)
    assert "--adapt_steps=2" in page.command(settings, 1, refined=False)
    with pytest.raises(NstError, match="adapt_steps must be between 0 and 100"):
        studio.settings_from_form({"adapt_steps": "1000"}, 1)


@pytest.mark.slow
def test_an_objective_term_composes_through_the_road_and_its_run_is_traced_once(pair, vgg19):
    """A clip's temporal loss is a term the road composes into the objective (no door builds a run):
    it reaches the loss (its part is reported, and a strong pull towards black darkens the picture),
    and the road keeps the run for the term, so a next photo of the size reuses the traced step."""
    from nst_tf import painters
    from nst_tf.video import temporal

    content, style = pair
    the_plan = plan.resolve(Config(weights="embedded", steps=4, scales=1, precision="float32", jit="off", size=SIZE))
    options = painting.Options.of(the_plan.config)
    hw = content.shape[:2]
    term = temporal.TemporalTerm(1e4, [np.zeros((*hw, 3), np.float32)], [np.ones(hw, np.float32)])
    seen = nst_tf.History()
    road = dict(options=options, model=vgg19, starts=[content])
    pulled = painters.paint(the_plan, content, [style], callbacks=[seen], terms=[term], **road)[0]
    free = painters.paint(the_plan, content, [style], **road)[0]
    assert len(seen.terms["temporal"]) == len(seen.losses) == 4  # the term's part at every step
    assert pulled.mean() < 0.5 * free.mean()
    term.update([np.ones((*hw, 3), np.float32)], [np.ones(hw, np.float32)])  # now towards white
    brighter = painters.paint(the_plan, content[::-1], [style], terms=[term], **road)[0]
    assert brighter.mean() > free.mean()
    kept = [run for run in transfer.KEPT_RUNS._items.values() if run.extra_loss is not None]
    assert len(kept) == 1 and kept[0].compiled.trace_count == 1
    with pytest.raises(NstError, match="paints in one pass"):
        painters.paint(plan.resolve(Config(network="demo")), content, [style], terms=[term])


@pytest.mark.slow
def test_a_repeat_optimisation_reuses_its_traced_step_and_paints_what_a_fresh_run_paints(pair, vgg19):
    """The API's next call (the page's next refine) at the same settings and size keeps the traced
    step (targets reassigned, the optimiser's state reset): another photo and painting come out as
    a fresh run paints them, and the step is traced once for both."""
    content, style = pair
    run = dict(weights="embedded", steps=3, scales=1, precision="float32", jit="off", size=SIZE, model=vgg19)
    transfer.KEPT_RUNS.clear()
    nst_tf.stylize(content, style, **run)
    (kept,) = transfer.KEPT_RUNS._items.values()
    again = nst_tf.stylize(content[::-1], style[:, ::-1], **run)  # another photo and painting, the same size
    assert list(transfer.KEPT_RUNS._items.values()) == [kept] and kept.compiled.trace_count == 1
    transfer.KEPT_RUNS.clear()
    np.testing.assert_array_equal(again, nst_tf.stylize(content[::-1], style[:, ::-1], **run))
    assert transfer.KEPT_RUNS._items and next(iter(transfer.KEPT_RUNS._items.values())) is not kept
