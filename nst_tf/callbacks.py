"""Hooks into a run: progress, snapshots, loss history, TensorBoard, a contact sheet, a loss plot.

A coarse-to-fine run (`stylize` with scales > 1) calls `on_run_begin` / `on_run_end` once per
scale; the callbacks below that count steps count on across the scales (`done`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from typing import List

import numpy as np

from nst_tf import image_io
from nst_tf.errors import Interrupted, NstError


class Callback:
    """Hooks into a run. `transfer.image_uint8()` gives the current image."""

    def on_run_begin(self, transfer, steps: int) -> None:
        pass

    def on_tile(self, transfer, stage: str, done: int, total: int) -> None:
        """After each tile of a tiled run's step (`stage`: "pass 1" or "pass 2"; `done` of `total`
        tiles). The step under way is not yet taken: `transfer.state` is the last step's."""

    def on_step_end(self, transfer, step: int, loss: float, terms: dict) -> None:
        """`step` counts from 1; `loss` and `terms` are of the image before this step's update."""

    def on_run_end(self, transfer) -> None:
        pass


def tile_reporter(owner, callbacks):
    """The hook tiled code calls after each tile, `report(stage, done, total)`: each callback's
    `on_tile(owner, stage, done, total)`. The one progress protocol: an optimisation's tiled step
    and a network's tiled painting report through it alike."""
    callbacks = list(callbacks)

    def report(stage: str, done: int, total: int) -> None:
        for cb in callbacks:
            cb.on_tile(owner, stage, done, total)

    return report


class OnePass:
    """A network's one-pass painting as callbacks see it (the run they are given): `content`, the
    picture being painted, float32 `[H, W, 3]`; one step, no loss."""

    def __init__(self, content: np.ndarray):
        self.content = content


@contextlib.contextmanager
def one_pass(content: np.ndarray, callbacks=()):
    """`with one_pass(content, callbacks) as report:` the callbacks' run begins and ends around the
    block, and the tiled painting inside reports each tile through `report` (`tile_reporter`)."""
    owner, callbacks = OnePass(content), list(callbacks)
    for cb in callbacks:
        cb.on_run_begin(owner, 1)
    yield tile_reporter(owner, callbacks)
    for cb in callbacks:
        cb.on_run_end(owner)


class ProgressBar(Callback):
    """A one-line progress bar on a stream: step, loss, elapsed time and ETA; during a tiled
    run's steps, the pass and tile under way (at most every `tile_interval` seconds)."""

    def __init__(self, stream=None, width: int = 24, min_interval: float = 0.2, tile_interval: float = 1.0):
        self.stream = stream or sys.stderr
        self.width, self.min_interval, self.tile_interval = width, min_interval, tile_interval

    def on_run_begin(self, transfer, steps):
        self.steps, self.start, self.step, self.written = steps, time.perf_counter(), 0, False
        self.last = self.last_tile = 0.0  # when a step's line and a tile's line were last written
        self.label = "{}x{}".format(*transfer.content.shape[1::-1])

    def on_tile(self, transfer, stage, done, total):
        """A slow step shows its tiles: the step under way, its pass and tile (a tile's line
        waits `tile_interval` after any line; a step's line never waits for a tile's)."""
        now = time.perf_counter()
        if now - max(self.last, self.last_tile) < self.tile_interval:
            return
        self.last_tile, self.written = now, True
        self.stream.write(
            f"\r{self.label} step {self.step + 1}/{self.steps}: {stage}, tile {done}/{total}  "
            f"{now - self.start:.0f}s elapsed".ljust(72)
        )
        self.stream.flush()

    def on_step_end(self, transfer, step, loss, terms):
        now = time.perf_counter()
        self.step = step
        if now - self.last < self.min_interval and step < self.steps:
            return
        self.last, self.written = now, True
        elapsed = now - self.start
        eta = elapsed / step * (self.steps - step)
        filled = int(self.width * step / self.steps)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {step}/{self.steps} loss {loss:.4g}  {elapsed:.0f}s elapsed, ETA {eta:.0f}s "
        )
        self.stream.flush()

    def on_run_end(self, transfer):
        if self.written:
            self.stream.write("\n")
            self.stream.flush()


class AcrossScales(Callback):
    """Base of callbacks that count steps on across the scales of a run: `self.done`."""

    done = 0

    def on_run_begin(self, transfer, steps):
        self.offset = self.done

    def on_step_end(self, transfer, step, loss, terms):
        self.done = self.offset + step


class Snapshots(AcrossScales):
    """Writes the image every `every` steps as `<folder>/step_00050.png`."""

    def __init__(self, every: int, folder: str):
        self.every, self.folder = every, folder

    def on_run_begin(self, transfer, steps):
        super().on_run_begin(transfer, steps)
        os.makedirs(self.folder, exist_ok=True)

    def on_step_end(self, transfer, step, loss, terms):
        super().on_step_end(transfer, step, loss, terms)
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


def write_summary(tag, value, step, plugin, data_class):
    """One summary in the default writer with TensorBoard plugin `plugin`'s metadata (written by
    `tf.summary.write`, so no TensorBoard install is needed)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(data_class=data_class)
    metadata.plugin_data.plugin_name = plugin
    tf.summary.write(tag, value, step=step, metadata=metadata)


def write_scalar(tag, value, step):
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    write_summary(tag, tf.constant(value, tf.float32), step, "scalars", summary_pb2.DATA_CLASS_SCALAR)


def write_image(tag, image, step):
    """A uint8 `[H, W, 3]` image as TensorBoard's image plugin stores it (width, height, PNG)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    value = tf.stack([str(image.shape[1]), str(image.shape[0]), tf.io.encode_png(image)])
    write_summary(tag, value, step, "images", summary_pb2.DATA_CLASS_BLOB_SEQUENCE)


class TensorBoard(AcrossScales):
    """TensorBoard summaries in `logdir`: each step the scalars `loss/total` and `loss/<term>` for
    every term of the objective (content, style, tv, style/<layer>, style_<k>), and the image
    (`image`) at step 0, every `image_every` steps and at the end of each scale; the settings
    as text (`config`).

    Written with TensorFlow's own `tf.summary.write` and the metadata of TensorBoard's scalar,
    image and text plugins (what `tensorboard.summary.v2` writes), so logging needs no
    TensorBoard install; viewing them does (`pip install tensorboard`).
    """

    def __init__(self, logdir: str, image_every: int = 50):
        self.logdir, self.image_every, self.writer = logdir, image_every, None

    def _write(self, tag, value, plugin, data_class):
        write_summary(tag, value, self.done, plugin, data_class)

    def _image(self, transfer):
        write_image("image", transfer.image_uint8(), self.done)

    def on_run_begin(self, transfer, steps):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        super().on_run_begin(transfer, steps)
        self.steps = steps
        if self.writer is None:
            try:
                self.writer = tf.summary.create_file_writer(self.logdir)
            except (tf.errors.OpError, OSError) as err:
                raise NstError(f"cannot write TensorBoard logs to {self.logdir}: {err}") from None
            rows = "\n".join(f"| {k} | {v} |" for k, v in transfer.config.options().items())
            with self.writer.as_default():
                self._write(
                    "config", "| option | value |\n| --- | --- |\n" + rows, "text", summary_pb2.DATA_CLASS_TENSOR
                )
                self._image(transfer)

    def on_step_end(self, transfer, step, loss, terms):

        super().on_step_end(transfer, step, loss, terms)
        with self.writer.as_default():
            for name, value in [("total", loss)] + list(terms.items()):
                write_scalar(f"loss/{name}", value, self.done)
            if self.done % self.image_every == 0 or step == self.steps:
                self._image(transfer)

    def on_run_end(self, transfer):
        self.writer.flush()


class StopOnSignal(Callback):
    """While active (`with StopOnSignal() as stop:`), SIGINT and SIGTERM do not kill the process:
    the step under way finishes and then `on_step_end` raises `Interrupted`, whose `transfer`
    holds that step's image, for the caller to save. A tiled step (seconds to minutes) is given up
    at the end of the tile under way instead (`on_tile`): the run's state is still the last step's.
    A second signal stops at once (`KeyboardInterrupt`). Signal handlers can only be set from the
    main thread."""

    def __init__(self, signals=(signal.SIGINT, signal.SIGTERM)):
        self.signals, self.signum, self._saved = tuple(signals), None, {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        for sig in self.signals:
            self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()
        return False

    def _stop_if_signalled(self, transfer):
        if self.signum is not None:
            raise Interrupted(self.signum, transfer)

    def on_tile(self, transfer, stage, done, total):
        self._stop_if_signalled(transfer)

    def on_step_end(self, transfer, step, loss, terms):
        self._stop_if_signalled(transfer)


def frame_steps(total_steps: int, frames: int) -> List[int]:
    """The steps a contact sheet shows: `frames` evenly spread from 0 (the start) to
    `total_steps`, fewer when the run is shorter."""
    if frames == 1:
        return [total_steps]
    return sorted({round(i * total_steps / (frames - 1)) for i in range(frames)})


class ContactSheet(AcrossScales):
    """A PNG grid of snapshots through the run (`frame_steps`), labelled with step and size, up to
    `columns` per row; each cell is the final image fitted to `cell` px (longest side, never
    enlarged), with `image_io.SHEET_GAP` px between cells. Written at the end of each scale
    (atomically), so it is complete after the last."""

    def __init__(self, path: str, total_steps: int, frames: int = 8, cell: int = 256, columns: int = 4):
        self.path, self.at, self.cell, self.columns = path, frame_steps(total_steps, frames), cell, columns
        self.frames = []

    def _capture(self, transfer):
        image = transfer.image_uint8()
        self.frames.append((image, f"step {self.done}  {image.shape[1]}x{image.shape[0]}"))

    def on_run_begin(self, transfer, steps):
        super().on_run_begin(transfer, steps)
        if self.done == 0 and not self.frames and self.at[0] == 0:
            self._capture(transfer)

    def on_step_end(self, transfer, step, loss, terms):
        super().on_step_end(transfer, step, loss, terms)
        if self.done in self.at:
            self._capture(transfer)

    def on_run_end(self, transfer):
        if not self.frames:  # one frame (the end) and a coarser scale just ended
            return
        final = self.frames[-1][0].shape[:2]
        cell = image_io.fit_size(final, min(self.cell, max(final)))
        image_io.save_image(self.path, image_io.contact_sheet(self.frames, cell, min(self.columns, len(self.at))))


class LossPlot(AcrossScales):
    """A PNG (800 x 450 px) of the loss curves on log scales: left, the total and each weighted
    term (content, style, tv); right, the style error of each layer; dotted lines where a new scale
    starts. Needs matplotlib (`pip install matplotlib`). Written at the end of each scale."""

    SIZE = (800, 450)

    def __init__(self, path: str):
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise NstError("the loss plot needs matplotlib: pip install matplotlib (or nst_tf[plot])") from None
        self.path, self.steps, self.curves, self.layers, self.starts = path, [], {}, {}, []

    def on_run_begin(self, transfer, steps):
        super().on_run_begin(transfer, steps)
        if self.done:
            self.starts.append(self.done)

    def on_step_end(self, transfer, step, loss, terms):
        super().on_step_end(transfer, step, loss, terms)
        spec = transfer.config.objective  # the weights of the terms
        self.steps.append(self.done)
        weighted = {
            "total": loss,
            f"content x {spec.content_weight:g}": spec.content_weight * terms["content"],
            f"style x {spec.style_weight:g}": spec.style_weight * terms["style"],
            f"tv x {spec.tv_weight:g}": spec.tv_weight * terms["tv"],
        }
        for name, value in weighted.items():
            self.curves.setdefault(name, []).append(value)
        for name, value in terms.items():
            if name.startswith("style/"):
                self.layers.setdefault(name[len("style/") :], []).append(value)

    def on_run_end(self, transfer):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(self.SIZE[0] / 100, self.SIZE[1] / 100), dpi=100)
        canvas = FigureCanvasAgg(fig)
        left, right = fig.subplots(1, 2)
        for ax, curves, title in (
            (left, self.curves, "loss (weighted terms)"),
            (right, self.layers, "style error per layer"),
        ):
            top = 0.0
            for name, values in curves.items():
                values = np.asarray(values, np.float64)
                if np.any(values > 0):
                    style = {"color": "black", "linestyle": "--"} if name == "total" else {}
                    ax.plot(self.steps, np.where(values > 0, values, np.nan), label=name, linewidth=1.2, **style)
                    top = max(top, float(np.nanmax(values)))
            if top > 0:  # a term starting at 0 (content, from the content image) would stretch the axis
                ax.set_ylim(bottom=max(ax.get_ylim()[0], top * 1e-4))
            for start in self.starts:
                ax.axvline(start, color="grey", linestyle=":", linewidth=1)
            ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_title(title, fontsize=10)
            ax.grid(True, which="major", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        fig.tight_layout()
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())
        image_io.save_image(self.path, rgba[..., :3].copy())


def default_callbacks(outputs, total_steps: int, progress: bool = True) -> list:
    """The callbacks the output options (`config.Outputs`) ask for (snapshots, TensorBoard, contact
    sheet, loss plot), after a progress bar if `progress`. `total_steps`: the run's steps over all
    scales."""
    callbacks = [ProgressBar()] if progress else []
    if outputs.save_every:
        callbacks.append(Snapshots(outputs.save_every, outputs.snapshot_dir))
    if outputs.logdir:
        callbacks.append(TensorBoard(outputs.logdir, outputs.log_every))
    if outputs.contact_sheet:
        callbacks.append(ContactSheet(outputs.contact_sheet, total_steps, outputs.contact_sheet_frames))
    if outputs.loss_plot:
        callbacks.append(LossPlot(outputs.loss_plot))
    return callbacks


def check_outputs(outputs) -> None:
    """Fails early, before any work, if a report file the output options (`config.Outputs`) name
    cannot be written."""
    for path in (outputs.contact_sheet, outputs.loss_plot):
        if path:
            image_io.check_output_path(path)
    if outputs.loss_plot:
        LossPlot(outputs.loss_plot)  # matplotlib is there
