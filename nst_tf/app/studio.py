"""What the web page asks of nst_tf, without the web: settings from a form, the one-pass painting,
the refine (the optimisation warm-started from that painting, streaming its progress), and the queue
that runs one refine at a time on the device.

The page's settings are `Config` fields (the flags): those `config.py` gives a page `Control`
(`page_options` describes them to the page, `settings_from_form` reads them back: one set of names,
defaults and checks), and the blend of two paintings; a painted region mask gives the first painting
the bright part and the second (if any) the rest. `Studio.command` writes the `nst-tf` command line
that makes the same picture.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import os
import secrets
import shlex
import threading
import time
from typing import Callable, List, NamedTuple, Optional

import numpy as np

from nst_tf import budget as budget_lib
from nst_tf import image_io
from nst_tf.callbacks import Callback
from nst_tf.commands import common
from nst_tf import config as config_lib
from nst_tf.config import Config, make_config
from nst_tf.errors import Interrupted, NstError
from nst_tf import plan as plan_lib
from nst_tf import painting


def memory_budget() -> int:
    """The default budget for decoded pictures held by requests in flight and queued: an eighth of
    this machine's memory, at most 2 GiB (`Limits.memory_bytes`)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        total = 8 * 2**30
    return int(min(2 * 2**30, total // 8))


class Limits(NamedTuple):
    """What one request may ask, and what all of them may hold: upload bytes (all files together),
    pixels of an upload (read from its header before it is decoded), the output's longest side,
    refine steps, paintings; refines queued or running at once; the bytes of decoded pictures that
    requests in flight and queued may hold together (each request's share is estimated from the
    headers before decoding; past it, 503 and Retry-After)."""

    max_upload_bytes: int = 20 * 2**20
    max_input_pixels: int = 40_000_000
    max_size: int = 1024
    max_steps: int = 500
    max_paintings: int = 4
    max_refines: int = 4
    memory_bytes: int = memory_budget()
    max_adapt_steps: int = 100
    max_refine_seconds: int = 600


CONTROLS = config_lib.page_controls()  # the options the page shows (`config.Control`), by name
_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
OWN_CONTROLS = ("style_blend",)  # the page's own: its blend slider (for two paintings); the painted region: style_mask

Settings = collections.namedtuple(
    "Settings", [*CONTROLS, *OWN_CONTROLS], defaults=[getattr(Config, n) for n in (*CONTROLS, *OWN_CONTROLS)]
)
Settings.__doc__ = """The page's settings: the options `config.py` gives a page `Control` (one table: the
flags' names, defaults and checks), and the blend of two paintings (`settings_from_form` checks each)."""


def _high(control: config_lib.Control, limits: Limits):
    return control.high if control.limit is None else min(control.high or math.inf, getattr(limits, control.limit))


def page_options(limits: Limits = Limits()) -> list:
    """The page's controls as the page builds them (JSON-ready, in `config.py`'s order): name, label,
    group ("paint" or "refine"), default, tooltip, and a number's low, high and step, or the values to
    pick from with their labels; `high` lowered to this server's `limits`."""
    out = []
    for name, control in CONTROLS.items():
        field, high = _FIELDS[name], _high(control, limits)
        values = field.metadata["choices"] or control.values
        if values and high is not None:
            values = tuple(v for v in values if v <= high)
        entry = {
            "name": name,
            "label": control.label,
            "group": control.group,
            "default": field.default,
            "help": control.help or field.metadata["help"],
            "low": control.low,
            "high": high,
            "step": control.step or (1 if "int" in field.type else "any"),
            "slider": control.slider,
            "values": list(values) if values else None,
            "labels": list(control.labels or values or ()) or None,
        }
        out.append(entry)
    return out


def _number(text, name, kind, low, high):
    try:
        value = kind(text)
    except ValueError:
        raise NstError(f"{name} must be {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
    if not (low <= value <= high) or value != value:
        raise NstError(f"{name} must be between {low:g} and {high:g}, got {text}")
    return value


def _setting(form, name: str, field, control: config_lib.Control, limits: Limits):
    """One control's value from the form's text (empty or missing: the option's default)."""
    text = form.get(name)
    if text in (None, ""):
        return field.default
    if field.metadata["choices"]:
        if text not in field.metadata["choices"]:
            raise NstError(f"unknown {name} {text!r}; choose one of: {', '.join(field.metadata['choices'])}")
        return text
    kind = int if "int" in field.type else float
    low = -math.inf if control.low is None else control.low
    high = _high(control, limits)
    return _number(text, name, kind, low, math.inf if high is None else high)


def settings_from_form(form, paintings: int, limits: Limits = Limits()) -> Settings:
    """The page's fields (strings) as `Settings`, each checked: an `NstError` names the one that is
    wrong, or a field the page does not take (every option the page's painter honours is a control
    or refused here, never ignored)."""
    unknown = sorted(set(form) - set(Settings._fields))
    if unknown:
        raise NstError(f"the page takes no setting {unknown[0]!r}; it takes: {', '.join(Settings._fields)}")
    values = {name: _setting(form, name, _FIELDS[name], control, limits) for name, control in CONTROLS.items()}
    blend = None
    if form.get("style_blend"):
        try:
            blend = tuple(float(x) for x in str(form["style_blend"]).split(","))
        except ValueError:
            raise NstError(f"style_blend must be numbers separated by commas, got {form['style_blend']!r}") from None
        painting.blend_weights(blend, paintings)  # one rule for a blend: one weight per painting
    settings = Settings(**values, style_blend=blend)
    # the flags' own checks (the page's painter is a network: adapt_steps is checked against it when painting)
    make_config(network="demo", **settings._asdict())
    return settings


def check_regions(mask: bool, paintings: int) -> None:
    """A painted region takes one or two paintings (checked before anything is decoded)."""
    if mask and paintings > 2:
        raise NstError("a painted region takes one or two paintings (the first inside, the second outside)")


def page_masks(mask: Optional[np.ndarray], paintings: int) -> Optional[list]:
    """The painted mask (float `[H, W]` in [0, 1], bright: the first painting) as one mask per
    painting: the first painting where it is bright and, with two paintings, the second elsewhere."""
    if mask is None:
        return None
    check_regions(True, paintings)
    return [mask] if paintings == 1 else [mask, 1.0 - mask]


def png_bytes(image: np.ndarray, command: Optional[str] = None) -> bytes:
    """`image` (uint8 or float `[H, W, 3]`) as PNG bytes, with the command line that makes it in the
    file's text (`nst-tf command`)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if command:
        info.add_text("nst-tf command", command)
    rgb = image if image.dtype == np.uint8 else image_io.to_uint8(image)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


class Studio:
    """The painter and the optimisation the page uses, built once: `paint` (one pass of the
    one-pass network, `demo` by default: Magenta's arbitrary network) and `refine` (the optimisation
    from that painting), both through the one road (`painters.paint`). `autotune`: how the
    precision is chosen (`nst_tf.autotune`'s modes; None: `$NST_TF_AUTOTUNE`, else "cached")."""

    def __init__(self, network: str = "demo", weights: str = "auto", autotune: Optional[str] = None):
        from nst_tf import features, painters  # loads TensorFlow: not at import

        self.network, self.weights = network, weights
        # Refine's plan (the optimisation from the network's painting), and the one pass's (the same choices)
        self.plan = plan_lib.resolve(Config(network=network, weights=weights, init="network", scales=1), autotune)
        self.one_pass = plan_lib.resolve(self.plan.config.replace(init="content"))
        self.painter = painters.kind(self.one_pass)
        if not self.painter.takes_paintings:
            raise NstError(f"{network}: the page paints any painting, so it takes a network that paints any painting")
        self.model = features.model_for(self.plan.config.objective, self.plan.config.precision)
        self._lock = threading.Lock()  # the network paints one picture at a time

    def config(self, settings: Settings) -> Config:
        """The run's `Config`: the studio's plan with the page's settings."""
        return self.plan.config.replace(**settings._asdict())

    def paint(self, photo: np.ndarray, paintings: List[np.ndarray], settings: Settings, mask=None) -> np.ndarray:
        """The network's painting, uint8 `[H, W, 3]` at `settings.size` (what `nst-tf --network`
        paints with these settings)."""

        from nst_tf import painters  # loads TensorFlow: not at import

        options = painting.Options.of(self.config(settings), style_mask=page_masks(mask, len(paintings)))
        with self._lock:
            return image_io.to_uint8(painters.paint(self.one_pass, photo, paintings, options)[0])

    def refine(self, photo, paintings, settings: Settings, mask=None, callbacks=()) -> np.ndarray:
        """The optimisation at `settings.size` for `settings.steps` steps from the network's painting:
        uint8 `[H, W, 3]`; with `settings.budget` (the page's "Time"), as many steps as end within that
        many seconds from now (`budget.Deadline`) instead. A callback may stop it by raising
        `Interrupted` (its run holds the image)."""
        from nst_tf import painters  # loads TensorFlow: not at import

        callbacks = list(callbacks)
        if settings.budget:
            deadline = time.perf_counter() + settings.budget
            settings = settings._replace(steps=budget_lib.MAX_STEPS, budget=None)
            callbacks.append(budget_lib.Deadline(deadline, write_seconds=REFINE_WRITE_SECONDS))
        # The warm start: the network's painting (what the page shows) at the run's size, then the steps.
        options = painting.Options.of(self.config(settings), style_mask=page_masks(mask, len(paintings)))
        plan = self.plan._replace(config=self.config(settings))
        return image_io.to_uint8(painters.paint(plan, photo, paintings, options, callbacks, model=self.model)[0])

    def command(self, settings: Settings, paintings: int, refined: bool, mask: bool = False, names=None) -> str:
        """The `nst-tf` command line that makes the same picture from the files `names` (`(photo,
        [paintings])`, as uploaded; default photo.png, painting1.png, ...) and mask.png,
        mask_outside.png for a painted region: the run's `Config` written back as flags by the code
        the command line parses them with (`common.flag_args`)."""
        cfg = self.config(settings)
        if mask:
            cfg = cfg.replace(style_mask=("mask.png",) if paintings == 1 else ("mask.png", "mask_outside.png"))
        groups = ("paint", "refine") if refined else ("paint",)
        fields = ["network", "weights", *OWN_CONTROLS, "style_mask"]
        fields += [n for n, c in CONTROLS.items() if c.group in groups and n != "budget"]  # a budget: its steps
        if refined:
            fields += ["init", "scales", "precision", "jit"]
        else:
            cfg, fields = cfg.replace(init="content"), fields + ["precision"]
        photo, styles = names or ("photo.png", [f"painting{k + 1}.png" for k in range(paintings)])
        args = ["nst-tf", f"--content={photo}", "--style=" + ",".join(styles)]
        return shlex.join(args + common.flag_args(cfg, fields) + ["--output=painted.png"])


REFINE_WRITE_SECONDS = 0.2  # a refine's picture to PNG and onto the socket, after its last step
CLAIM_SECONDS = 5.0  # a refine whose tab has not opened its WebSocket in this time is dropped, never run


class Busy(NstError):
    """The server is full (its memory budget, or its refine queue): try again in `retry_after` s."""

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message)
        self.retry_after = retry_after


class Budget:
    """Bytes of decoded pictures that requests in flight and queued may hold together: `reserve`
    takes a request's share or raises `Busy` at once (a request larger than the whole budget is an
    `NstError`); the returned release frees it (once, however often called)."""

    def __init__(self, total: int):
        self.total, self.used = int(total), 0
        self._lock = threading.Lock()

    def reserve(self, amount: int) -> Callable[[], None]:
        amount = int(amount)
        if amount > self.total:
            raise NstError(
                f"these pictures need about {amount / 2**20:.0f} MB to decode, more than this server's budget of "
                f"{self.total / 2**20:.0f} MB: send smaller pictures"
            )
        with self._lock:
            if self.used + amount > self.total:
                raise Busy("the server is busy with other pictures; try again in a few seconds")
            self.used += amount
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
                self.used -= amount
                idle = self.used == 0
            if idle:
                give_back_memory()

        return release


def give_back_memory() -> None:
    """Returns the C heap's free pages to the system (glibc's `malloc_trim`; nothing elsewhere).
    Decoded pictures are large allocations that glibc, once its mmap threshold has grown, serves
    from the heap and keeps after they are freed: without this the server stays hundreds of MB
    above where it started after a burst of large uploads."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM = None


class Job:
    """One tab's refine: its inputs, a stop flag, and `send(event)` (a dict) for the page; `claimed`
    once its tab opened the WebSocket; `release` frees what it holds of the budget when it ends."""

    def __init__(self, photo, paintings, settings: Settings, mask, send: Callable[[dict], None], names=None):
        self.id = secrets.token_urlsafe(16)  # unguessable: a tab sees only the jobs it made
        self.photo, self.paintings, self.settings, self.mask = photo, paintings, settings, mask
        self.names = names  # the files' names, for the command line
        self.send = send
        self.stop = threading.Event()
        self.claimed = threading.Event()  # a tab has opened its WebSocket (only one may)
        self.release: Callable[[], None] = lambda: None


class _Stream(Callback):
    """A refine's progress for the page: step, loss, seconds per step and ETA each step, the picture
    after the first step and then every `image_seconds`; stops the run when its job is stopped."""

    def __init__(self, job: Job, image_seconds: float = 1.0):
        self.job, self.image_seconds = job, image_seconds
        self.last_image = float("-inf")  # the first step's picture at once

    def on_run_begin(self, transfer, steps):
        self.steps, self.last_step, self.durations = steps, time.perf_counter(), []
        self.began, self.step = self.last_step, 0

    def on_step_end(self, transfer, step, loss, terms):
        now = time.perf_counter()
        self.durations.append(now - self.last_step)
        self.last_step, self.step = now, step
        # The first step traces and compiles: the rate is the median of the last ten after it.
        recent = sorted(self.durations[1:][-10:] or self.durations)
        rate = recent[len(recent) // 2]
        budget = self.job.settings.budget  # a time, not a number of steps: the progress is the time spent
        event = {"type": "progress", "step": step, "steps": None if budget else self.steps, "loss": float(loss)}
        if budget:
            event.update(seconds_per_step=rate, eta=max(0.0, budget - (now - self.began)))
            event["fraction"] = min(1.0, (now - self.began) / budget)
        else:
            event.update(seconds_per_step=rate, eta=rate * (self.steps - step), fraction=step / self.steps)
        if now - self.last_image >= self.image_seconds:
            self.last_image = now
            event["image"] = png_bytes(transfer.image_uint8())
        self.job.send(event)
        if self.job.stop.is_set():
            raise Interrupted(0, transfer)


class Queue:
    """Refines, one at a time (one device): `submit` a job, `cancel` it (a stop, or its tab gone).
    Each waiting job is told its place whenever the queue moves; every job ends with one event of
    type "done" (with the PNG and its command line), "stopped" (the same, for the last step's
    picture), "error" (a message) or none at all when it was cancelled before it ran."""

    def __init__(self, studio: Studio, max_jobs: int = Limits().max_refines):
        self.studio, self.max_jobs = studio, max_jobs
        self._waiting: collections.deque = collections.deque()
        self._changed = threading.Condition()
        self.running: Optional[Job] = None
        threading.Thread(target=self._work, name="nst-tf-app refine", daemon=True).start()

    def submit(self, job: Job) -> int:
        """Queues `job`; returns its place (1: next). `Busy` when `max_jobs` are queued or running."""
        with self._changed:
            if len(self._waiting) + (self.running is not None) >= self.max_jobs:
                raise Busy(f"{self.max_jobs} refines are queued or running; try again when one has finished", 10)
            self._waiting.append(job)
            self._changed.notify()
            place = len(self._waiting) + (self.running is not None) - 1
        job.send({"type": "queued", "place": place})
        return place

    def cancel(self, job: Job) -> None:
        job.stop.set()
        with self._changed:
            if job in self._waiting:
                self._waiting.remove(job)
                self._tell_places()
                job.release()  # a running job releases when its run has stopped

    def _tell_places(self) -> None:
        for place, waiting in enumerate(self._waiting, 1):
            waiting.send({"type": "queued", "place": place})

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self._waiting:
                    self._changed.wait()
                job = self.running = self._waiting.popleft()
                self._tell_places()
            try:
                self._refine(job)
            except Exception:  # a failure outside the run (sending to a closed tab): the queue goes on
                import traceback

                traceback.print_exc()
            finally:
                self.running = None
                job.release()

    def _refine(self, job: Job) -> None:
        if not job.claimed.wait(CLAIM_SECONDS) or job.stop.is_set():  # nobody is watching: never run
            job.stop.set()
            return
        s, paintings = job.settings, len(job.paintings)
        command = self.studio.command(s, paintings, refined=True, mask=job.mask is not None, names=job.names)
        # a time's steps are known at its end: its command line then
        job.send({"type": "started", "steps": None if s.budget else s.steps, "command": "" if s.budget else command})
        stream = _Stream(job)
        try:
            image = self.studio.refine(job.photo, job.paintings, s, job.mask, callbacks=[stream])
            if s.budget:  # the command line makes this picture with the steps the time bought
                command = self.studio.command(
                    s._replace(steps=stream.step, budget=None), paintings, True, job.mask is not None, job.names
                )
            job.send({"type": "done", "image": png_bytes(image, command), "command": command, "step": stream.step})
        except Interrupted as stopped:
            step = stopped.run.step_count  # the picture so far is what this many steps make
            command = self.studio.command(
                s._replace(steps=step), paintings, refined=True, mask=job.mask is not None, names=job.names
            )
            image = png_bytes(stopped.run.image_uint8(), command)
            job.send({"type": "stopped", "step": step, "image": image, "command": command})
        except NstError as err:
            job.send({"type": "error", "message": str(err)})
        except Exception as err:  # the page gets one line; the server's log the rest
            import traceback

            traceback.print_exc()
            job.send({"type": "error", "message": f"the refine failed ({type(err).__name__}: {err})"})
