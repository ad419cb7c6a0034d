"""The one painter protocol: what every door paints through.

A painter turns paintings into their representation once (`prepare`: a `Prepared`, whose cache keeps
what the painter computed from them for every content of a batch, clip or page visit) and paints a
content with it (`render`), with the painting `Options` every door knows. Each painter declares the
options it honours (`supports`); `check` refuses any other option set away from its default with one
line (an `NstError`: exit status 2 on the command line), so an option is never silently dropped.

    painter.check(options)                      # before any work
    painting = painter.prepare(styles)          # once per painting (or blend of paintings)
    image = painter.render(content, painting, options, callbacks)   # float32 [H, W, 3] in [0, 1]
    image = painter.paint(content, styles, size=512, strength=0.7)  # all three, as uint8

`nst_tf.painters.for_plan` is the one place that says which painter a run needs; the painters live
beside what they paint with (`transfer` for the optimisation, `networks` for the networks).
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from nst_tf import color, image_io
from nst_tf import config as config_lib
from nst_tf.config import PRESERVE_COLORS
from nst_tf.errors import NstError


_OPTIONS = config_lib.painting_options()  # config.py's painting options (`option(painter=True)`) and defaults


class Options(collections.namedtuple("Options", list(_OPTIONS), defaults=list(_OPTIONS.values()))):
    """The painting options every door knows: the `Config` fields marked `painter=True` in
    `config.py`, with their names and defaults (one table: adding one there adds it here, and every
    painter then honours it or refuses it with one line). Among them:

    size: the output's longest side (None: the content's own size).
    strength: how much of the style, in [0, 1].
    style_blend: each painting's share (None: equal).
    style_index: a fixed-style network's style.
    style_mask: one mask per painting (paths or arrays), each painting painting where its mask is bright.
    preserve_colors: "none", "luminance" or "histogram".
    style_size: the paintings' longest side (None: the painter's default).
    tile: "auto", "off" or a tile side in pixels.
    adapt_steps: gradient steps adapting a network to this painting and photo (0: none).
    """

    __slots__ = ()

    @classmethod
    def of(cls, cfg, **override) -> "Options":
        """The options of a `Config` (or of anything with these fields), with `override`."""
        values = {name: getattr(cfg, name) for name in cls._fields}
        return cls(**{**values, **override})

    def asked(self) -> List[str]:
        """The options set away from their defaults (size is always honoured)."""
        return [n for n in self._fields if n != "size" and not same(getattr(self, n), self._field_defaults[n])]


def same(value, default) -> bool:
    """Whether two option values are equal (None, text, numbers or sequences of them)."""
    if value is None or default is None:
        return value is None and default is None
    if isinstance(value, str) and isinstance(default, str):
        return value == default
    try:
        return bool(np.all(np.asarray(value) == np.asarray(default)))
    except (TypeError, ValueError):
        return False


class Prepared:
    """Prepared paintings: the images as given (float32 `[h, w, 3]`), and a cache of what a painter
    derived from them (keyed as the painter likes: a size, a tile), so that preparing happens once."""

    def __init__(self, images: Sequence[np.ndarray]):
        self.images = list(images)
        self.cache: Dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self.images)

    def cached(self, key, make):
        """`make()` the first time `key` is asked for, the kept value after."""
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


class Kept:
    """A small cache, least recently used out first, safe across threads (the page paints from
    several): `get(key, make)` makes a value once per key; a key of None is never kept."""

    def __init__(self, size: int):
        self.size, self._items, self._lock = size, collections.OrderedDict(), threading.Lock()

    def get(self, key, make):
        if key is None:
            return make()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def as_images(images) -> list:
    """One image or several (a list or tuple of paths, PIL images or arrays; None for none) as a
    list: paintings, masks, or a batch of contents."""
    if images is None:
        return []
    return list(images) if isinstance(images, (list, tuple)) else [images]


def region_masks(masks, paintings: int, hw) -> Optional[List[np.ndarray]]:
    """One region mask per painting (paths, PIL images or arrays; None for none) as float32 `[H, W]`
    at `hw`, the mean of each mask's channels; one line when the counts differ."""
    if masks is None:
        return None
    check_mask_count(masks, paintings)
    return [image_io.resize(image_io.load_image(m), tuple(hw))[..., 0] for m in masks]


def check_mask_count(masks, paintings: int) -> None:
    """One line unless there is one region mask per painting."""
    if len(masks) != paintings:
        raise NstError(f"{len(masks)} mask(s) for {paintings} style(s): give one mask per style")


def blend_weights(style_blend, count: int) -> np.ndarray:
    """Each of `count` paintings' share of a blend (`style_blend`, None: equal), normalised to sum to
    one (float64 `[count]`); one line for weights that do not fit."""
    blend = np.ones(count) if style_blend is None else np.asarray(style_blend, np.float64)
    if blend.shape != (count,) or np.any(blend < 0) or not blend.sum() > 0:
        raise NstError(f"style_blend needs {count} non-negative weights, not all zero")
    return blend / blend.sum()


checked_strength = config_lib.checked_strength  # (the one rule, beside the flag's check)


class Painter:
    """The protocol's base: `name` (as the user knows it), `supports` (the `Options` honoured besides
    size), `takes_paintings` (False for a network of fixed styles), `optimises`, and `prepare`,
    `render`."""

    name = "painter"
    supports: frozenset = frozenset()
    takes_paintings = True
    optimises = False  # True: the painter takes steps, and step callbacks (snapshots, logs) apply

    def unsupported(self, options: Options) -> List[str]:
        """The options `options` asks for that this painter cannot honour."""
        return [name for name in options.asked() if name not in self.supports]

    def check(self, options: Options) -> None:
        """Raises one line naming the first option this painter cannot honour, or a colour mode that
        is none of `config.PRESERVE_COLORS`."""
        refused = self.unsupported(options)
        if refused:
            honoured = ", ".join(f"--{n}" for n in Options._fields if n == "size" or n in self.supports)
            raise NstError(
                f"--{refused[0]} is not honoured by the {self.name} painter (it takes {honoured}): "
                "leave it out or choose another painter"
            )
        if options.preserve_colors not in PRESERVE_COLORS:
            raise NstError(
                f"unknown preserve_colors {options.preserve_colors!r}; choose one of: {', '.join(PRESERVE_COLORS)}"
            )

    def prepare(self, styles) -> Prepared:
        """The paintings (see `as_images`) decoded once; painters that can add their representation
        to the returned `Prepared`'s cache."""
        images = [image_io.load_image(s) for s in as_images(styles)]
        if self.takes_paintings and not images:
            raise NstError(f"the {self.name} painter needs a painting (a style image)")
        if not self.takes_paintings and images:
            raise NstError(f"the {self.name} painter paints its own fixed styles and cannot take a style image")
        return Prepared(images)

    def render(self, content, painting: Prepared, options: Options, callbacks=()) -> np.ndarray:
        """`content` (a path, PIL image or array) painted: float32 `[H, W, 3]` in [0, 1].

        The template every one-pass painter shares, so each says only how it paints: the photo at
        its size (`image_io.load_photo`: the one smallest-side rule), one region mask per painting at
        that size (`region_masks`), the painter's own `paint_photo`, then the photo's colours when
        `preserve_colors` is "luminance". (The optimisation paints a batch in one run instead.)"""
        image = image_io.load_photo(content, options.size)
        masks = region_masks(options.style_mask, len(painting), image.shape[:2])
        out = np.asarray(self.paint_photo(image, painting, options, masks, callbacks), np.float32)
        return color.with_chroma(out, image) if options.preserve_colors == "luminance" else out

    def paint_photo(self, image: np.ndarray, painting: Prepared, options: Options, masks, callbacks) -> np.ndarray:
        """The painter's own part: `image` (float32 `[H, W, 3]`, at its size) painted with the prepared
        paintings; `masks` None or one float32 `[H, W]` per painting; float32 `[H, W, 3]`."""
        raise NotImplementedError

    def render_many(self, contents, painting: Prepared, options: Options, callbacks=()) -> list:
        """Each of `contents` painted (a painter that paints a batch together overrides this)."""
        return [self.render(c, painting, options, callbacks) for c in contents]

    def paint(self, content, styles=None, size: Optional[int] = 512, callbacks=(), **options) -> np.ndarray:
        """`content` painted with `styles`: uint8 `[H, W, 3]`, the longest side `size` (None: as
        given). options: any other `Options` field by name."""
        return self.paint_with(content, styles, Options(size=size, **options), callbacks)

    def paint_with(self, content, styles, options: Options, callbacks=()) -> np.ndarray:
        """`check`, `prepare` and `render` in one: uint8 `[H, W, 3]`."""
        self.check(options)
        return image_io.to_uint8(self.render(content, self.prepare(styles), options, callbacks))
