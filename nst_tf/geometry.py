"""The one tiling geometry: how far a computation reaches, how much each tile grows, the grid.

Every exact tiled computation in nst_tf (the optimisation's objective, `nst_tf.tiling`; a transform
network's painting, `nst_tf.networks.tiled`; the universal painter's cascade) and the planner's
estimates of them use this module: a `Geometry` is the stride tiles start on (`align`) and the halo
each tile grows by (`halo`, the reach rounded up to `align`), made from a chain of layers by the one
rule in `reach`. No TensorFlow here: the planner runs before TensorFlow loads.
"""

from __future__ import annotations

from typing import Iterable, List, NamedTuple, Tuple

from nst_tf import vgg


class Tile(NamedTuple):
    """Pixel rows and columns `[start, stop)` of a tile: `owned` (what it adds to the whole) and
    `grown` (what it computes: owned plus the halo, clipped to the image)."""

    owned: Tuple[int, int, int, int]  # y0, y1, x0, x1
    grown: Tuple[int, int, int, int]


def reach(layers: Iterable[Tuple[str, int, int]], stride: int = 1) -> int:
    """How far (input pixels) beyond an output pixel's own cell a chain of layers reaches, when
    every statistic over the whole picture is held fixed. `layers`: `("conv", kernel, stride)` or
    `("upsample", factor, 0)` in order; `stride`: input pixels per position of the chain's input.
    A convolution of kernel k on a map of stride s reaches (k // 2) * s further; an upsampling to
    stride s adds the s pixels by which its parent's cell can exceed the child's. Skips are shorter
    paths, so a chain's reaches add up."""
    total = 0
    for kind, size, step in layers:
        if kind == "conv":
            total += (size // 2) * stride
            stride *= step
        elif kind == "upsample":
            stride //= size
            total += stride
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
    return total


def _up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class Geometry(NamedTuple):
    """Tiles start on multiples of `align` (the deepest stride, so poolings see the whole image's
    windows) and grow by `halo` pixels on each side (at least the reach, a multiple of `align`)."""

    align: int
    halo: int

    @classmethod
    def of_reach(cls, reach_px: int, align: int) -> "Geometry":
        return cls(align, _up(reach_px, align))

    def then(self, reach_px: int) -> "Geometry":
        """This geometry followed by a computation reaching `reach_px` further (an encoder, then its
        decoder): the halos add up."""
        return Geometry(self.align, self.halo + _up(reach_px, self.align))

    def grid(self, hw: Tuple[int, int], tile: int) -> List[Tile]:
        """Tiles of `tile` px (rounded down to a multiple of `align`, at least `align`) covering an
        image of (height, width) `hw`, row by row; the last row and column take what is left."""
        tile = max(self.align, tile // self.align * self.align)
        height, width, m = hw[0], hw[1], self.halo
        out = []
        for y0 in range(0, height, tile):
            for x0 in range(0, width, tile):
                y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
                grown = (max(0, y0 - m), min(height, y1 + m), max(0, x0 - m), min(width, x1 + m))
                out.append(Tile((y0, y1, x0, x1), grown))
        return out

    def largest_grown(self, hw: Tuple[int, int], tile: int) -> Tuple[int, int]:
        """The largest grown tile over an image of `hw` (what one tile's pass holds)."""
        return min(hw[0], tile + 2 * self.halo), min(hw[1], tile + 2 * self.halo)

    def grown_fraction(self, hw: Tuple[int, int], tile: int) -> float:
        """The tiles' grown pixels over the image's: the work a tiled pass does over an untiled one."""
        grown = sum((g[1] - g[0]) * (g[3] - g[2]) for g in (t.grown for t in self.grid(hw, tile)))
        return grown / (hw[0] * hw[1])


def of_layers(layers, backbone: str = "vgg19") -> Geometry:
    """The geometry of tiles over VGG `layers` (`vgg.footprint`: the deepest layer's stride and reach)."""
    align, reach_px = vgg.footprint(layers, backbone)
    return Geometry.of_reach(reach_px, align)


def owned_window(tile: Tile, layer_hw: Tuple[int, int], stride: int) -> Tuple[int, int, int, int]:
    """The layer positions a tile owns, `(r0, r1, c0, c1)` in the whole layer's coordinates: those
    whose stride cell starts inside the tile's owned pixels (the last row and column also own the
    cells cut short by the image's edge)."""
    y0, y1, x0, x1 = tile.owned
    up = lambda v: -(-v // stride)  # noqa: E731
    return y0 // stride, min(up(y1), layer_hw[0]), x0 // stride, min(up(x1), layer_hw[1])
