"""The arbitrary network adapted to one painting and one photo in a few gradient steps (issue 34, 7a).

Magenta's network paints any painting in one pass from its 100-number style vector; what that
vector cannot say, a few steps of nst_tf's own objective (`losses.objective`: content and style on
VGG, the user's objective options) can. Each step moves the conditional instance norms' gamma and
beta offsets (the biases of their linear maps from the vector: 694 numbers at width 0.25, a
per-channel scale and shift on top of what the vector gives) by Adam (the optimisation's own, through
the one loop, `driver.drive`):

- the transform paints the whole photo at the size asked (so each norm sees the whole picture's
  statistics, as the final painting will);
- VGG sees one square crop of that picture (`CROP` px, a new seeded place each step, on VGG's
  16-px grid): a quarter of the pixels of a 512 px picture, at the picture's own scale, so the
  strokes measured are the strokes painted; the content target is the same crop of the photo's
  activations, the style targets the whole paintings' statistics at the picture's longest side;
- a picture larger than `WINDOW` px a side adapts on its centred window of that side (the
  transform's gradient at full size would need gigabytes for a print); the painting itself is
  still the whole picture, in tiles as asked.

Chosen on the tuning set only (the bundled paintings x Boston, Chelsea, rocket; `scripts/compare_painters.py
--painters=arbitrary,adapted:10`, the alternatives as throwaway variants of this module; docs/networks.md
gives the figures): moving the norms' offsets beat moving the vector (100 numbers) and every weight of the
transform; a crop of the whole painted picture beat painting a crop (whose norms see only the crop)
and the whole picture at half size (whose strokes are twice too large); 0.1 was the best of the
rates 0.05-0.3. The network's own weights come back after each painting.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from nst_tf import callbacks as callbacks_lib
from nst_tf import driver, features, image_io, losses, optimize

CROP = 256  # VGG's view per step, in pixels (a multiple of GRID)
GRID = 16  # VGG19's largest stride at the default layers: crops start on it so activations align
RATE = 0.1  # Adam's learning rate on the norms' offsets
WINDOW = 1024  # a larger picture adapts on its centred window of this side (the memory of the transform's gradient)


def norm_offsets(transform: keras.Model) -> list:
    """The conditional norms' gamma and beta biases: what adaptation moves."""
    layers = [layer for layer in transform.layers if hasattr(layer, "gamma") and hasattr(layer.gamma, "bias")]
    return [layer.gamma.bias for layer in layers] + [layer.beta.bias for layer in layers]


class Adapter:
    """Adapts a style transform (`ArbitraryNetwork.transform`) for one photo and painting at a time,
    through the one loop (`driver.drive`: callbacks, a signal's stop, non-finite recovery) with the
    optimisation's own Adam (`optimize.Adam`, Keras' rule) as pure updates of the norms' offsets.

    spec: the objective (`config.Objective`); precision: VGG's compute precision (as a plan resolved
    it); crop, rate: see the module docstring; seed: where the crops fall (the same inputs give the
    same picture). While adapting, `content` is the photo and `state` the driver's run state (the
    optimiser's state; no image: the picture is the network's)."""

    def __init__(
        self,
        transform: keras.Model,
        spec,
        precision: str = "float32",
        crop: int = CROP,
        rate: float = RATE,
        seed: int = 0,
    ):
        self.transform, self.spec, self.crop, self.seed, self.rate = transform, spec, crop, seed, rate
        self.model = features.model_for(spec, precision)
        self.offsets = norm_offsets(transform)
        self.optimizer = optimize.Adam(tf.Variable(rate, trainable=False, dtype=tf.float32))  # recover halves it
        self._lock = threading.Lock()  # one adaptation at a time: it moves the shared network's weights
        self._step = tf.function(self._step_fn, reduce_retracing=True, autograph=False)
        self.content, self.state, self.recoveries = None, None, []

    def _step_fn(self, content, vector, targets: losses.Targets, top, left, side, opt_state):
        with tf.GradientTape() as tape:
            picture = self.transform([content, vector])
            crop = picture[:, top : top + side, left : left + side]
            content_targets = {}
            for name, full in targets.content.items():  # the same crop of the photo's activations
                stride = tf.shape(content)[1] // tf.shape(full)[1]
                content_targets[name] = full[
                    :, top // stride : (top + side) // stride, left // stride : (left + side) // stride
                ]
            loss, _ = losses.objective(self.model, targets._replace(content=content_targets), self.spec, crop)
        updated = [
            self.optimizer.update(v, g, s)
            for v, g, s in zip(self.offsets, tape.gradient(loss, self.offsets), opt_state)
        ]
        finite = tf.reduce_all(tf.math.is_finite(loss))
        for value, _ in updated:
            finite = finite & tf.reduce_all(tf.math.is_finite(value))
        for v, (value, _) in zip(self.offsets, updated):  # a non-finite step leaves the offsets as they were
            v.assign(tf.where(finite, value, v))
        return loss, [s for _, s in updated], finite

    @contextlib.contextmanager
    def adapted(
        self,
        content: np.ndarray,
        paintings: Sequence[np.ndarray],
        vector,
        steps: int,
        blend: Optional[Sequence[float]] = None,
        callbacks=(),
    ):
        """Within the block the transform paints `content` (float32 `[H, W, 3]`) adapted to
        `paintings` (blended by `blend`) after `steps` steps from `vector` (`[1, 100]`), the
        `callbacks` told of each step; its own weights come back after. Yields the losses, one per
        step."""
        with self._lock:
            saved = [v.numpy() for v in self.offsets]
            try:
                yield self._run(content, paintings, vector, steps, blend, callbacks)
            finally:
                for v, value in zip(self.offsets, saved):
                    v.assign(value)

    def _run(self, content, paintings, vector, steps, blend, callbacks) -> list:
        longest = max(content.shape[:2])  # the paintings at the picture's scale, however large
        styles = [tf.constant(image_io.load_image(p, longest)[None]) for p in paintings]
        height, width = (min(n, WINDOW) for n in content.shape[:2])
        top, left = (content.shape[0] - height) // 2, (content.shape[1] - width) // 2
        image = tf.constant(content[None, top : top + height, left : left + width])
        side = min(self.crop, height // GRID * GRID, width // GRID * GRID)
        targets = losses.compute_targets(self.model, image, styles, self.spec, blend)
        rng = np.random.default_rng(self.seed)

        def step(_, opt_state):  # a new seeded crop each step; the picture is the network's (no image)
            top = int(rng.integers(0, (height - side) // GRID + 1)) * GRID
            left = int(rng.integers(0, (width - side) // GRID + 1)) * GRID
            loss, opt_state, finite = self._step(
                image, vector, targets, tf.constant(top), tf.constant(left), side, opt_state
            )
            return None, opt_state, loss, {}, finite

        self.optimizer.learning_rate.assign(self.rate)  # a fresh Adam for each adaptation (a recovery halves it)
        self.content, self.recoveries = content, []
        self.state = driver.RunState(None, [self.optimizer.init(v) for v in self.offsets])
        history = callbacks_lib.History()
        driver.drive(self, steps, driver.Stepper(step, np.asarray, self.optimizer.recover), [history, *callbacks])
        return history.losses
