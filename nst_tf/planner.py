"""The memory planner: before a run, the sizes of each scale and an estimate of its peak memory
and time, from the image sizes, the layers, the precision and the optimiser; `check` stops a run
that would not fit in the machine's available memory. No TensorFlow here: `--dry_run` prints the
plan without loading it.

The estimate of a scale's peak resident memory (CPU) is

    BASE + WEIGHTS + ACTIVATION_FACTOR x (activation bytes of one forward pass through the
    feature network, for the image, at its size and precision) + the optimiser's state,

where BASE is the process with TensorFlow, Keras and a compiled step loaded, and the factor
covers what the backward pass (and XLA, when the step is compiled with it) keeps alive besides
the forward activations. BASE and the factor were fitted to peak RSS measured on this project's
2-core CPU (float32, L-BFGS, `python scripts/benchmark.py --memory`), with XLA and without (`jit`
"auto" is planned as XLA, the larger, until it is resolved); a test checks the estimate against
measured peaks.
"""

from __future__ import annotations

import os
import sys
from typing import List, NamedTuple, Optional, Sequence, Tuple

from nst_tf.config import Config, tile_pixels
from nst_tf import geometry
from nst_tf.vgg import channels, layer_hw, layer_names
from nst_tf.errors import NstError
from nst_tf.image_io import fit_size

GIB = 2**30
BASE_BYTES = int(1.00 * GIB)  # fitted with XLA (see the module docstring)
ACTIVATION_FACTOR = 3.0  # fitted with XLA
# Without XLA, fitted to 3-step runs at 128, 256, 512 and 1024 px (AVX-512 BF16 CPU, measured 0.93,
# 1.00, 1.37 and 2.71 GiB; these estimate 0.93, 1.03, 1.36 and 2.73).
NO_XLA_BASE_BYTES = int(0.83 * GIB)
NO_XLA_ACTIVATION_FACTOR = 1.95
WEIGHT_BYTES = {"vgg19": 80_100_000, "vgg16": 58_900_000}  # float32 conv weights, no top
SECONDS_PER_PIXEL_STEP = 1.4e-5  # one L-BFGS step of the default objective, 2-core AVX2 CPU, float32
# Whole-image float32 copies a tiled step keeps besides the optimiser's state: the image as NumPy
# and as a tensor, the gradient being added up, its tensor, the update's result.
TILED_IMAGE_COPIES = 5
# A tiled pass's peak over its grown tile's float32 activation bytes (the passes run without XLA;
# a bfloat16 or float16 pass keeps less), and an update's temporaries over the optimiser's state.
# Fitted to VmHWM of 3-step runs on a 2-core AVX-512 CPU (`benchmark.py --memory`, tiles of 1024
# and 2048 px at 2048 and 4096 px, Adam and L-BFGS): every estimate within 10% (docs/performance.md's
# tiling section lists them).
TILE_ACTIVATION_FACTOR = {"float32": 1.7, "bfloat16": 1.0, "float16": 1.0}
UPDATE_EXTRA = {"adam": 1.0, "lbfgs": 1.6}


class ScalePlan(NamedTuple):
    """One scale: output (height, width), style (height, width), steps, estimated peak bytes and
    seconds, and its tile side in pixels (0: untiled)."""

    size: Tuple[int, int]
    style_size: Tuple[int, int]
    steps: int
    peak_bytes: int
    seconds: float
    tile: int = 0


def activation_bytes(hw: Tuple[int, int], cfg: Config, itemsize: Optional[int] = None) -> int:
    """Bytes of one forward pass's activations, up to the deepest configured layer (at the
    precision's item size unless `itemsize` is given)."""
    names = layer_names(cfg.backbone)
    deepest = max(names.index(n) for n in cfg.content_layers + cfg.style_layers)
    itemsize = itemsize or (4 if cfg.precision in ("auto", "float32") else 2)
    total, (h, w) = 0, hw
    for name in names[: deepest + 1]:
        if name.endswith("pool"):
            h, w = h // 2, w // 2
        total += h * w * channels(name) * itemsize
    return total


def optimizer_bytes(hw: Tuple[int, int], cfg: Config) -> int:
    image = hw[0] * hw[1] * 3 * 4
    if cfg.optimizer == "lbfgs":
        return image * (2 * cfg.lbfgs_memory + 4)  # s and y rings, x, g, d, the trial image
    return image * 3  # m, v, the image


def plan_scales(
    cfg: Config,
    content_hw: Tuple[int, int],
    style_hws: Sequence[Tuple[int, int]] = (),
    batch: int = 1,
    available: Optional[int] = None,
    rate=None,
) -> List[ScalePlan]:
    """The scales of a run on a content image of (height, width) `content_hw` (and style images
    of `style_hws`), each with its estimated peak memory and time; `batch` content images of
    that size optimised together multiply the image's activations, state and time. Each scale's
    tile is `choose_tile`'s (with `available` bytes, default what is available now). rate: seconds per
    pixel per step (`autotune.cached_rate`; default `SECONDS_PER_PIXEL_STEP`, a 2-core AVX2 CPU's)."""
    per_pixel_step = rate.seconds if rate else SECONDS_PER_PIXEL_STEP

    out = []
    for size, style_size, steps in cfg.scale_plan():
        hw = (size, size) if cfg.square else fit_size(content_hw, size)
        side = style_size or size
        style_hw = [(side, side) if cfg.square else fit_size(s, side) for s in style_hws] or [hw]
        tile = choose_tile(cfg, hw, style_hw, batch, available)
        seconds = per_pixel_step * hw[0] * hw[1] * steps * batch  # a step is one loss and gradient either way
        if tile:
            seconds *= tiling_cost(cfg, hw, tile)
        out.append(ScalePlan(hw, style_hw[0], steps, peak_bytes(cfg, hw, style_hw, batch, tile), seconds, tile))
    return out


def peak_bytes(cfg: Config, hw, style_hws, batch: int = 1, tile: int = 0) -> int:
    """Estimated peak resident bytes of one scale (see the module docstring), untiled or with
    tiles of `tile` px (`tiled_bytes`)."""
    if tile:
        return tiled_bytes(cfg, hw, style_hws, batch, tile)
    activations = max([batch * activation_bytes(hw, cfg)] + [activation_bytes(s, cfg) for s in style_hws])
    base, factor = (
        (NO_XLA_BASE_BYTES, NO_XLA_ACTIVATION_FACTOR) if cfg.jit == "off" else (BASE_BYTES, ACTIVATION_FACTOR)
    )
    return int(base + WEIGHT_BYTES[cfg.backbone] + factor * activations + batch * optimizer_bytes(hw, cfg))


def objective_geometry(cfg: Config) -> geometry.Geometry:
    """The tiles of `nst_tf.tiling`'s objective over the configured layers."""
    return geometry.of_layers(cfg.content_layers + cfg.style_layers, cfg.backbone)


def tiled_bytes(cfg: Config, hw, style_hws, batch: int, tile: int) -> int:
    """A tiled scale's estimated peak: BASE and the weights; what lives at the whole image's size
    (the optimiser's state, the gradient and the image's copies, `TILED_IMAGE_COPIES`, and the
    content target's activations in float32, twice: whole, and cut into the tiles' parts); and
    the larger of two phases of a step: a tile's pass (`TILE_ACTIVATION_FACTOR` x the largest grown
    tile's activations in float32, the content's or a style image's) and the update of the whole
    image (`UPDATE_EXTRA` x the optimiser's state, its temporaries)."""
    grown = objective_geometry(cfg).largest_grown
    activations = max(
        [batch * activation_bytes(grown(hw, tile), cfg, itemsize=4)]
        + [activation_bytes(grown(s, tile), cfg, itemsize=4) for s in style_hws]
    )
    image = hw[0] * hw[1] * 3 * 4
    content = sum(
        h * w * channels(name) * 4 for name in cfg.content_layers for h, w in [layer_hw(hw, name, cfg.backbone)]
    )
    state = batch * optimizer_bytes(hw, cfg)
    whole = state + batch * (TILED_IMAGE_COPIES * image + 2 * content)
    factor = TILE_ACTIVATION_FACTOR.get(cfg.precision, TILE_ACTIVATION_FACTOR["float32"])  # auto: float32's
    phase = max(factor * activations, UPDATE_EXTRA[cfg.optimizer] * state)
    return int(BASE_BYTES + WEIGHT_BYTES[cfg.backbone] + whole + phase)


def tiling_cost(cfg: Config, hw, tile: int) -> float:
    """A tiled step's time over an untiled one's, estimated: the tiles' grown pixels over the
    image's, times 4/3 (a tile runs forward for the sums, then forward and backward; an untiled
    step runs forward and backward once, and a backward pass costs about two forwards)."""
    return 4 / 3 * objective_geometry(cfg).grown_fraction(hw, tile)


# Tile sides `choose_tile` tries for "auto", largest first (multiples of 16: VGG19's deepest stride).
AUTO_TILES = (4096, 3072, 2048, 1536, 1024, 768, 512, 384, 256)


def tile_for(hw, tile, estimate, available: Optional[int] = None) -> int:
    """The one tile choice, for every tiled computation: the tile side for an image of (height,
    width) `hw`, in pixels, 0 for untiled. `tile`: the option ("auto", "off" or a side; a side of
    the whole image or more is untiled). For "auto": 0 when `estimate(0)` (peak bytes untiled)
    fits in `available` bytes (default: what the host has available now; unknown counts as
    fitting), else the largest of `AUTO_TILES` below the longest side whose `estimate(tile)` fits
    (the smallest if none does: the memory check then reports the shortfall)."""
    side = tile_pixels(tile)
    if side is not None:
        return side if side < max(hw) else 0
    available = available_bytes() if available is None else available
    if available is None or estimate(0) <= available:
        return 0
    sizes = [t for t in AUTO_TILES if t < max(hw)] or [AUTO_TILES[-1]]
    return next((t for t in sizes if estimate(t) <= available), sizes[-1])


def choose_tile(cfg: Config, hw, style_hws, batch: int = 1, available: Optional[int] = None) -> int:
    """`tile_for` an optimisation's scale at `hw` (`peak_bytes`)."""
    return tile_for(hw, cfg.tile, lambda tile: peak_bytes(cfg, hw, style_hws, batch, tile), available)


# A transform network's painting (float32, width 1), fitted to peak RSS of `nst-tf --network=demo`
# on a 2-core CPU at 4096x2744 (untiled 5.48 GiB, tiles of 1024 1.93, of 2048 3.24) and checked at
# 8192x5488 (untiled 19.41 GiB, estimate 19.96; tiles of 2048 5.40, estimate 5.50).
NETWORK_BASE_BYTES = int(0.66 * GIB)
NETWORK_BYTES_PER_PIXEL = 461  # the untiled pass, per input pixel at width 1
NETWORK_TILE_BYTES_PER_PIXEL = 418  # a tiled pass, per grown tile pixel at width 1
NETWORK_IMAGE_BYTES_PER_PIXEL = 72  # a tiled painting's whole-image arrays (decoded, input, padded, output)
# The default transform network's tiles: its reach (57 px) rounded up to its stride (4); a test holds
# it to `networks.tiled.geometry_of` of the real network.
NETWORK_GEOMETRY = geometry.Geometry(align=4, halo=60)


def network_bytes(hw, alpha: float = 1.0, tile: int = 0) -> int:
    """Estimated peak resident bytes of painting an image of (height, width) `hw` with a transform
    network of width `alpha`, untiled or with tiles of `tile` px (`nst_tf.networks.tiled`)."""
    pixels = hw[0] * hw[1]
    if not tile:
        return int(NETWORK_BASE_BYTES + alpha * NETWORK_BYTES_PER_PIXEL * pixels)
    grown = NETWORK_GEOMETRY.largest_grown(hw, tile)
    return int(
        NETWORK_BASE_BYTES
        + NETWORK_IMAGE_BYTES_PER_PIXEL * pixels
        + alpha * NETWORK_TILE_BYTES_PER_PIXEL * grown[0] * grown[1]
    )


def choose_network_tile(
    hw, tile="auto", alpha: float = 1.0, available: Optional[int] = None, estimate=network_bytes
) -> int:
    """`tile_for` a network's painting of `hw`: `estimate(hw, alpha, tile)` is its peak bytes
    (default: a transform network's; `universal_bytes`: the universal painter's)."""
    return tile_for(hw, tile, lambda side: estimate(hw, alpha, side), available)


# The universal painter (float32 VGG19 to relu3_1 and the bundled decoders, no gradients), fitted
# to peak RSS of `nst-tf --network=universal` on a 2-core CPU: 1024x686 untiled 1.85 GiB,
# 2048x1372 untiled 4.51 GiB, 2048x1372 in tiles of 512 1.48 GiB (the whole-picture arrays
# counted at four float32 copies: the content, the padded picture, the output, the current level).
UNIVERSAL_BASE_BYTES = int(0.97 * GIB)
UNIVERSAL_BYTES_PER_PIXEL = 1354  # untiled, per output pixel
UNIVERSAL_TILE_BYTES_PER_PIXEL = 1283  # tiled, per grown tile pixel
UNIVERSAL_IMAGE_BYTES_PER_PIXEL = 48  # a tiled painting's whole-picture arrays
# Level 3's painting tiles: relu3_1's reach (12, rounded up to 4) and its decoder's (13, rounded up
# to 16); a test holds it to the bundled painter's `geometry_of(3)`.
UNIVERSAL_GEOMETRY = geometry.Geometry(align=4, halo=28)


def universal_bytes(hw, alpha: float = 1.0, tile: int = 0) -> int:
    """Estimated peak resident bytes of the universal painter's picture of (height, width) `hw`,
    untiled or in tiles of `tile` px (`alpha` is not used: the decoders are fixed)."""
    pixels = hw[0] * hw[1]
    if not tile:
        return int(UNIVERSAL_BASE_BYTES + UNIVERSAL_BYTES_PER_PIXEL * pixels)
    grown = UNIVERSAL_GEOMETRY.largest_grown(hw, tile)
    return int(
        UNIVERSAL_BASE_BYTES
        + UNIVERSAL_IMAGE_BYTES_PER_PIXEL * pixels
        + UNIVERSAL_TILE_BYTES_PER_PIXEL * grown[0] * grown[1]
    )


def describe_network(hw, tile="auto", alpha: float = 1.0, estimate=None) -> str:
    """A network painting's plan as text: its size, tile and estimated peak (`estimate`: see
    `choose_network_tile`)."""
    estimate = estimate or network_bytes
    side = choose_network_tile(hw, tile, alpha, estimate=estimate)
    available = available_bytes()
    return (
        f"network painting {hw[1]}x{hw[0]}: tile {side or 'off'}, peak {estimate(hw, alpha, side) / GIB:.2f} GiB "
        f"(estimated{f'; available now: {available / GIB:.1f} GiB' if available else ''})"
    )


def _proc_bytes(path: str, key: str) -> Optional[int]:
    """A "Key:  N kB" line of a Linux /proc file, in bytes; None if there is none."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_bytes() -> Optional[int]:
    """Memory available to a new allocation now (Linux MemAvailable), or None if unknown."""
    available = _proc_bytes("/proc/meminfo", "MemAvailable")
    if available is not None:
        return available
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def peak_memory_bytes() -> int:
    """This process's peak resident memory so far, in bytes.

    On Linux, /proc/self/status's VmHWM: `getrusage`'s ru_maxrss survives fork and exec, so a
    process started by a large parent would report the parent's size (measured: 2.2 GiB for a
    1.1 GiB run started from the test process)."""
    peak = _proc_bytes("/proc/self/status", "VmHWM")
    if peak is not None:
        return peak
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def check(scales: Sequence[ScalePlan], cfg: Config, available: Optional[int] = None) -> None:
    """An `NstError` when the largest scale's estimate exceeds the available memory."""
    available = available_bytes() if available is None else available
    peak = max(s.peak_bytes for s in scales)
    if available is not None and peak > available:
        h, w = scales[-1].size
        raise NstError(
            f"this run needs about {peak / GIB:.1f} GiB at {w}x{h} (estimated) but {available / GIB:.1f} GiB is "
            "available; choose a smaller --size or --tile"
            # the precision hint only where it would change something
            + (", --precision=bfloat16 (halves the activations)" if cfg.precision == "float32" else "")
            + (", --optimizer=adam or a smaller --lbfgs_memory" if cfg.optimizer == "lbfgs" else "")
            + ", or pass --nomemory_check to try anyway"
        )


# Peak bytes per content pixel of a training batch (float32, width 1), fitted to VmHWM of 3-step
# runs on a 2-core CPU: 256 px x 4 measured 2.64 GiB (estimate 2.68), 384 px x 2 measured 2.81
# GiB (2.88). bfloat16 and narrower networks use less (192 px x 4, bfloat16, width 0.5: measured
# 1.60 GiB, estimate 1.99), so for them the estimate errs high.
TRAINING_BYTES_PER_PIXEL = 6500


def training_bytes(tc) -> int:
    """Estimated peak resident bytes of training `tc` (`nst_tf.networks.options.TrainConfig`)."""
    return int(BASE_BYTES + WEIGHT_BYTES[tc.objective.backbone] + TRAINING_BYTES_PER_PIXEL * tc.batch_size * tc.size**2)


def check_training(tc, available: Optional[int] = None) -> None:
    """An `NstError` when a training step will not fit the available memory (before any work)."""
    available = available_bytes() if available is None else available
    need = training_bytes(tc)
    if available is not None and need > available:
        raise NstError(
            f"training needs about {need / GIB:.1f} GiB per step (estimated) but {available / GIB:.1f} GiB is "
            "available; choose a smaller --batch_size, --size or --style_size, or --precision=bfloat16"
        )


def duration(seconds: float) -> str:
    """Seconds as a person reads them: "45 s", "3 min 20 s", "4 h 40 min"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def describe(scales: Sequence[ScalePlan], cfg: Config, rate=None) -> str:
    """The plan as text: one line per scale and a total (`rate`: what the times came from, as
    given to `plan`)."""
    lines = [f"{'scale':<7}{'output':>11}{'style':>11}{'steps':>7}{'tile':>7}{'peak (est.)':>13}{'time (est.)':>13}"]
    for i, s in enumerate(scales, 1):
        lines.append(
            f"{i:<7}{s.size[1]:>5}x{s.size[0]:<5}{s.style_size[1]:>5}x{s.style_size[0]:<5}{s.steps:>7}"
            f"{s.tile or 'off':>7}{s.peak_bytes / GIB:>9.2f} GiB{duration(s.seconds):>13}"
        )
    available = available_bytes()
    source = rate.source if rate else "a 2-core AVX2 CPU's float32 rate: no calibration is cached here yet"
    lines.append(
        f"peak {max(s.peak_bytes for s in scales) / GIB:.2f} GiB (estimated"
        + (f"; available now: {available / GIB:.1f} GiB" if available else "")
        + f"); time {duration(sum(s.seconds for s in scales))} (estimated from {source})"
    )
    return "\n".join(lines)
