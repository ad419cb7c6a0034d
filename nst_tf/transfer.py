"""The run: load images, build the feature model, compute targets once, step, report.

`StyleTransfer` gives step-level control with callbacks; `stylize` is the one-call API.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf

from nst_tf import features, image_io, losses, optimize
from nst_tf.config import Config, make_config
from nst_tf.errors import NstError

class Callback:
    """Hooks into a run. `transfer.image_uint8()` gives the current image."""

    def on_run_begin(self, transfer: "StyleTransfer", steps: int) -> None:
        pass

    def on_step_end(self, transfer: "StyleTransfer", step: int, loss: float, terms: dict) -> None:
        """`step` counts from 1; `loss` and `terms` are of the image before this step's update."""

    def on_run_end(self, transfer: "StyleTransfer") -> None:
        pass


class ProgressBar(Callback):
    """A one-line progress bar on a stream: step, loss, elapsed time and ETA."""

    def __init__(self, stream=None, width: int = 24, min_interval: float = 0.2):
        self.stream = stream or sys.stderr
        self.width, self.min_interval = width, min_interval

    def on_run_begin(self, transfer, steps):
        self.steps, self.start, self.last = steps, time.perf_counter(), 0.0
        self.label = "{}x{}".format(*transfer.content.shape[1::-1])

    def on_step_end(self, transfer, step, loss, terms):
        now = time.perf_counter()
        if now - self.last < self.min_interval and step < self.steps:
            return
        self.last = now
        elapsed = now - self.start
        eta = elapsed / step * (self.steps - step)
        filled = int(self.width * step / self.steps)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {step}/{self.steps} loss {loss:.4g}  {elapsed:.0f}s elapsed, ETA {eta:.0f}s ")
        self.stream.flush()

    def on_run_end(self, transfer):
        self.stream.write("\n")
        self.stream.flush()


class Snapshots(Callback):
    """Writes the image every `every` steps as `<folder>/step_00050.png`; steps count on across
    the scales of a coarse-to-fine run."""

    def __init__(self, every: int, folder: str):
        self.every, self.folder, self.done = every, folder, 0

    def on_run_begin(self, transfer, steps):
        os.makedirs(self.folder, exist_ok=True)
        self.offset = self.done

    def on_step_end(self, transfer, step, loss, terms):
        self.done = self.offset + step
        if self.done % self.every == 0:
            image_io.save_image(os.path.join(self.folder, f"step_{self.done:05d}.png"), transfer.image_uint8())


class History(Callback):
    """Records the loss and every term at each step (`history.losses`, `history.terms[name]`)."""

    def __init__(self):
        self.losses, self.terms = [], {}

    def on_step_end(self, transfer, step, loss, terms):
        self.losses.append(loss)
        for name, value in terms.items():
            self.terms.setdefault(name, []).append(value)


def _batch(rgb: np.ndarray) -> tf.Tensor:
    return tf.constant(rgb[None], dtype=tf.float32)


# VGG halves the image four times before block5: smaller sides pool away to nothing.
MIN_SIDE = 16


def noise_image(hw, seed: int) -> tf.Tensor:
    """The "noise" init: uniform in [0, 1], `[1, H, W, 3]`, a function of `hw` and `seed` only
    (stateless Philox), so the serving graph draws exactly the same image."""
    return tf.random.stateless_uniform(tf.concat([[1], hw, [3]], axis=0), seed=tf.stack([seed, 0]), dtype=tf.float32)


def peak_memory_bytes() -> int:
    """This process's peak resident memory so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


class StyleTransfer:
    """One content image, one style image, one optimised `tf.Variable` image, at one size.

    content, style: a path, a PIL image or an array (see `image_io.load_image`).
    config: a `Config`; `options` override its fields by name (the flag names). Its coarse-to-fine
        fields are not used here: `stylize` runs the scales, one `StyleTransfer` each.
    model: a feature model from `build_feature_model` to share between runs (it must return the
        configured layers); by default one is built from `config.weights` at `config.precision`.
    init_image: a starting image (any size; resized to the content's), overriding `config.init`.
    The content image is resized to `config.size` (longest side) and sets the output's shape; the
    style image to `config.style_size`. Targets are computed once, here.
    """

    def __init__(self, content, style, config: Optional[Config] = None, model=None, init_image=None, **options):
        self.config = cfg = make_config(config, **options)
        self.content = image_io.load_image(content, cfg.size, cfg.square)
        self.style = image_io.load_image(style, cfg.effective_style_size, cfg.square)
        for name, image in (("content", self.content), ("style", self.style)):
            if min(image.shape[:2]) < MIN_SIDE:
                raise NstError(f"the {name} image is {image.shape[1]}x{image.shape[0]} at this size; VGG needs at "
                               f"least {MIN_SIDE} px on each side: choose a larger size")
        layers = list(cfg.content_layers) + list(cfg.style_layers)
        self.precision = features.resolve_precision(cfg.precision)
        self.model = model or features.build_feature_model(layers, cfg.backbone, cfg.weights, precision=self.precision)
        missing = [name for name in layers if name not in self.model.output]
        if missing:
            raise NstError(f"the given feature model lacks layer(s) {', '.join(missing)}")
        self.targets = losses.compute_targets(self.model, _batch(self.content), _batch(self.style), cfg)
        self.loss_fn = lambda image: losses.objective(self.model, self.targets, cfg, image)
        optimizer = optimize.make_optimizer(cfg)
        init = _batch(self.initial_image(init_image))
        self.loop = optimize.VariableLoop(
            optimize.make_step(self.loss_fn, optimizer), init, optimizer.init(init),
            jit_compile=optimize.use_xla(cfg.jit, self.precision),
        )
        self.step_count = 0

    def initial_image(self, init_image=None) -> np.ndarray:
        """The starting image, `[H, W, 3]` at the content's size: `init_image` resized if given,
        else what `config.init` names."""
        cfg, hw = self.config, self.content.shape[:2]
        if init_image is not None:
            return image_io.resize(image_io.load_image(init_image), hw)
        if cfg.init == "content":
            return self.content
        if cfg.init == "noise":
            return noise_image(hw, cfg.seed).numpy()[0]
        if cfg.init == "style":
            return image_io.resize(self.style, hw)
        return image_io.resize(image_io.load_image(cfg.init), hw)

    @property
    def image(self) -> np.ndarray:
        """The current image, float32 `[H, W, 3]` in [0, 1]."""
        return self.loop.image.numpy()[0]

    def image_uint8(self) -> np.ndarray:
        return image_io.to_uint8(self.image)

    def evaluate(self):
        """`(loss, terms)` of the current image, as Python floats."""
        loss, terms = self.loss_fn(self.loop.image.read_value())
        return float(loss), {k: float(v) for k, v in terms.items()}

    def run(self, steps: Optional[int] = None, callbacks: Iterable[Callback] = ()) -> np.ndarray:
        """Takes `steps` (default `config.steps`) optimiser steps; returns the uint8 image `[H, W, 3]`."""
        steps = self.config.steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
            raise NstError(f"steps must be a positive integer, got {steps!r}")
        callbacks = list(callbacks)
        for cb in callbacks:
            cb.on_run_begin(self, steps)
        for _ in range(steps):
            loss, terms = self.loop()
            self.step_count += 1
            if callbacks:
                loss = float(loss)
                terms = {k: float(v) for k, v in terms.items()}
                for cb in callbacks:
                    cb.on_step_end(self, self.step_count, loss, terms)
        for cb in callbacks:
            cb.on_run_end(self)
        return self.image_uint8()


def default_callbacks(cfg: Config, progress: bool = True) -> list:
    callbacks = [ProgressBar()] if progress else []
    if cfg.save_every:
        callbacks.append(Snapshots(cfg.save_every, cfg.snapshot_dir))
    return callbacks


def stylize(content, style, config: Optional[Config] = None, callbacks: Optional[Sequence[Callback]] = None,
            progress: bool = False, model=None, **options) -> np.ndarray:
    """Paints `content` in the manner of `style`; returns the result as uint8 `[H, W, 3]`.

    content, style: a path, a PIL image or an array (uint8, uint16 or float in [0, 1]).
    options: any `Config` field, named like the command-line flags (size=384, steps=300,
        style_weight=..., init="noise", optimizer="lbfgs", scales=3, weights="embedded", ...).
    callbacks: extra `Callback`s; `progress=True` adds a progress bar on stderr.
    model: a feature model to reuse (see `StyleTransfer`).
    Coarse to fine (`scales` > 1): one `StyleTransfer` per size of `config.scale_plan()`, each
    starting from the previous result upsampled; the feature model is shared between them.
    """
    cfg = make_config(config, **options)
    callbacks = default_callbacks(cfg, progress) + list(callbacks or ())
    image = None
    for size, style_size, steps in cfg.scale_plan():
        scale_cfg = cfg.replace(size=size, style_size=style_size, steps=steps, scales=1, start_size=None, scale_steps=None)
        transfer = StyleTransfer(content, style, scale_cfg, model=model, init_image=image)
        model = transfer.model
        transfer.run(callbacks=callbacks)
        image = transfer.image
    return image_io.to_uint8(image)
