"""Many (content, style) pairs: the jobs, the manifest, and a runner that batches them.

Every content image is stylised with every style image into `<output_dir>/<content>__<style>.png`.
An output that exists is done: a re-run skips it, so a stopped job resumes where it was. Each
output written adds one line to `<output_dir>/manifest.jsonl`: the inputs, the settings, the
final loss terms, `nst_tf.evaluate`'s report and the timings. A batch paints what it can: every
input is decoded before the first painting, and a job whose photo or painting is bad (or whose
painting fails with an `NstError`) gets a line with its `error` instead; a re-run retries it.

The runner (`Runner`) builds the feature network once and optimises the contents that share a
style and a size together, `batch_size` at a time (one optimisation of a list of contents, through `painters.paint`),
optionally split across devices (`nst_tf.distribute`). The Beam pipeline (`nst_tf.beam`) runs
the same jobs, one worker process each.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence

from nst_tf import files, image_io, painting
from nst_tf.callbacks import Callback
from nst_tf.config import INITS, Config, fields_of_kind, result_settings
from nst_tf.errors import NstError
from nst_tf import plan as plan_lib

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MANIFEST = "manifest.jsonl"
# Options that write files of a single run: the batch writes its manifest instead.
PER_RUN_OUTPUTS = fields_of_kind("output")  # options that write files of a single run


class Job(NamedTuple):
    content: str  # path
    style: str  # path
    output: str  # file name in the output folder: <content>__<style>.png


def expand(spec) -> List[str]:
    """Image paths from a spec: a list of specs, or text with comma-separated items, each a
    folder (its images, sorted), a glob pattern, or a file. Each item must match something."""
    items = list(spec) if isinstance(spec, (list, tuple)) else [s for s in str(spec).split(",")]
    paths = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if os.path.isdir(item):
            found = sorted(os.path.join(item, n) for n in os.listdir(item) if n.lower().endswith(IMAGE_EXTENSIONS))
        elif glob.has_magic(item):
            found = sorted(p for p in glob.glob(item) if os.path.isfile(p))
        else:
            found = [item] if os.path.isfile(item) else []
        if not found:
            raise NstError(f"{item!r} names no image (give a folder, a glob pattern or image files)")
        paths.extend(p for p in found if p not in paths)
    if not paths:
        raise NstError("no images given")
    return paths


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def plan_jobs(contents: Sequence[str], styles: Sequence[str]) -> List[Job]:
    """Every content with every style, in that order; output names must be unique."""
    for kind, paths in (("content", contents), ("style", styles)):
        stems = [_stem(p) for p in paths]
        twice = sorted({s for s in stems if stems.count(s) > 1})
        if twice:
            raise NstError(
                f"two {kind} images are named {twice[0]!r}; outputs are named <content>__<style>.png, "
                "so names must be unique"
            )
    return [Job(c, s, f"{_stem(c)}__{_stem(s)}.png") for c in contents for s in styles]


def pending(jobs: Iterable[Job], output_dir: str) -> List[Job]:
    """The jobs whose output does not exist yet."""
    return [job for job in jobs if not os.path.exists(os.path.join(output_dir, job.output))]


def check_config(cfg: Config) -> None:
    """The options a batch cannot take: per-run output files and multi-style runs."""
    for name in PER_RUN_OUTPUTS:
        if getattr(cfg, name):
            raise NstError(f"--{name} writes files of a single run; a batch writes {MANIFEST} instead: leave it out")
    if cfg.style_mask or cfg.style_blend:
        raise NstError(
            "--style_mask and --style_blend combine several styles in one run; a batch gives each "
            "content each style on its own"
        )


settings = result_settings  # the options that shape a result (for the manifest): the one resume check's


class Manifest:
    """`manifest.jsonl` in an output folder: one JSON line per output, each output once.

    On opening, lines whose output file is gone (or a torn last line) are dropped, so a re-made
    output replaces its old line rather than adding a second one."""

    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, MANIFEST)
        self.records: Dict[str, dict] = {}
        lines = []
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            if "error" in record or os.path.exists(os.path.join(output_dir, str(record.get("output")))):
                self.records[record["output"]] = record  # a failure stays listed until a re-run paints it
        if len(self.records) != len(lines):
            self._rewrite()

    def _rewrite(self) -> None:
        with files.atomic_file(self.path, "w") as f:
            f.writelines(json.dumps(r, sort_keys=True) + "\n" for r in self.records.values())

    def add(self, record: dict) -> None:
        replaced = record["output"] in self.records
        self.records[record["output"]] = record
        if replaced:
            self._rewrite()
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def failure(job: Job, reason: str) -> dict:
    """The manifest's line for a job that could not be painted (a re-run tries it again)."""
    return {
        "output": job.output,
        "content": job.content,
        "style": job.style,
        "error": reason,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def bad_inputs(paths: Iterable[str], decode: bool = True) -> Dict[str, str]:
    """`{path: one line}` for each of `paths` that does not decode as an image (each decoded fully,
    one at a time, before any painting), or with `decode=False` whose header is not an image's
    (nothing decoded: what a damaged body holds is then found by the worker that decodes it)."""
    bad = {}
    for path in sorted(set(paths)):
        try:
            if decode:
                image_io.load_image(path)
            else:
                with image_io.peek(path):
                    pass
        except NstError as err:
            bad[path] = str(err)
    return bad


def output_hw(path: str, cfg: Config):
    """The size a content image is optimised at, from its header (no full decode)."""
    with image_io.peek(path) as image:
        w, h = image.size
    return (cfg.size, cfg.size) if cfg.square else image_io.fit_size((h, w), cfg.size)


def groups(jobs: Sequence[Job], cfg: Config, batch_size: int) -> List[List[Job]]:
    """Jobs that can be optimised together: the same style and the same size, at most
    `batch_size` each (one each when colours are preserved: the style is matched per content)."""
    if batch_size < 1:
        raise NstError(f"--batch_size must be at least 1, got {batch_size}")
    size = 1 if cfg.preserve_colors != "none" else batch_size
    buckets: Dict[tuple, List[Job]] = {}
    for job in jobs:
        buckets.setdefault((job.style, output_hw(job.content, cfg)), []).append(job)
    return [bucket[i : i + size] for bucket in buckets.values() for i in range(0, len(bucket), size)]


class Progress(Callback):
    """One line on stderr for the whole batch: images done, elapsed time and ETA; as a callback
    it moves with each optimiser step of every image."""

    def __init__(self, images: int, steps_per_image: int, stream=None, width: int = 24, min_interval: float = 0.5):
        self.images, self.total = images, max(1, images * steps_per_image)
        self.stream, self.width, self.min_interval = stream or sys.stderr, width, min_interval
        self.done_images = self.work = 0
        self.batch = 1
        self.start, self.last = time.perf_counter(), 0.0

    def on_run_begin(self, transfer, steps):
        self.batch = len(transfer.contents_rgb)

    def on_step_end(self, transfer, step, loss, terms):
        self.work += self.batch
        self.show()

    def finished(self, images: int) -> None:
        self.done_images += images
        self.show(force=True)

    def show(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.min_interval:
            return
        self.last = now
        elapsed, fraction = now - self.start, min(1.0, self.work / self.total)
        eta = f"ETA {elapsed / fraction * (1 - fraction):.0f}s" if fraction > 0 else "ETA ?"
        bar = "#" * int(self.width * fraction) + "." * (self.width - int(self.width * fraction))
        self.stream.write(f"\r[{bar}] {self.done_images}/{self.images} images  {elapsed:.0f}s elapsed, {eta} ")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class _LastRun(Callback):
    """Keeps the last scale's `StyleTransfer`, for the final loss terms."""

    def on_run_begin(self, transfer, steps):
        self.run = transfer


class Runner:
    """Stylises groups of jobs with one feature network (and one evaluation network).

    cfg: the options (as `stylize`'s: a `Config` or a resolved `nst_tf.plan.Plan`); evaluate: add `nst_tf.evaluate`'s report to each line;
    strategy: a `tf.distribute` strategy to split each batch across devices (`nst_tf.distribute`).
    """

    def __init__(self, cfg, output_dir: str, evaluate: bool = True, strategy=None, worker: str = "main"):
        from nst_tf import features, metrics, painters  # loads TensorFlow: not at import

        self.plan = plan_lib.resolve(cfg)  # a plan from the door passes through; once for every group
        self.cfg = cfg = self.plan.config
        check_config(cfg)
        self.output_dir, self.strategy, self.worker = output_dir, strategy, worker
        self.evaluator = metrics.feature_model(cfg.weights) if evaluate else None
        self.settings = settings(cfg)
        self.model = None
        self.kind = painters.kind(self.plan)
        if self.kind.optimises:  # one feature network for every group
            if strategy is not None:
                with strategy.scope():
                    self.model = features.model_for(cfg.objective, cfg.precision)
            else:
                self.model = features.model_for(cfg.objective, cfg.precision)
        if not self.kind.takes_paintings:
            raise NstError(
                "a batch paints each content with each --styles image: that needs a painter that takes paintings; "
                "paint a fixed-style network's styles with nst-tf --style_index"
            )
        self.options = painting.Options.of(cfg)
        painters.check(self.plan, self.options)

    def run(self, group: Sequence[Job], callbacks=()) -> List[dict]:
        """Stylises one group (same style, same size), writes each image atomically and returns
        one manifest record per image."""
        from nst_tf import metrics, painters  # loads TensorFlow: not at import

        last = _LastRun()
        contents = [image_io.load_image(job.content) for job in group]
        # A group smaller than the devices runs on one (with the same feature network).
        strategy = (
            self.strategy if self.strategy is not None and len(group) >= self.strategy.num_replicas_in_sync else None
        )
        start = time.perf_counter()
        # The painting by its file: a network painter keeps what it prepared from it for every group.
        images = painters.paint(
            self.plan, contents, [group[0].style], self.options, [last, *callbacks], model=self.model, strategy=strategy
        )
        images = [image_io.to_uint8(image) for image in images]
        seconds = time.perf_counter() - start
        if self.kind.optimises:
            loss, terms = last.run.evaluate(per_image=True)
        else:  # a network's painting has no optimisation loss
            loss, terms = [None] * len(group), {}
        records = []
        for k, (job, image) in enumerate(zip(group, images)):
            path = image_io.save_image(os.path.join(self.output_dir, job.output), image)
            record = {
                "output": job.output,
                "content": job.content,
                "style": job.style,
                "size": [int(image.shape[0]), int(image.shape[1])],
                "settings": self.settings,
                "loss": loss[k],
                "terms": {name: values[k] for name, values in terms.items()},
                "seconds": seconds / len(group),
                "batch": len(group),
                "batch_seconds": seconds,
                "devices": strategy.num_replicas_in_sync if strategy is not None else 1,
                "worker": self.worker,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            if self.evaluator is not None:
                t = time.perf_counter()
                record["evaluate"] = metrics.evaluate(path, contents[k], group[0].style, model=self.evaluator)
                record["evaluate_seconds"] = time.perf_counter() - t
            records.append(record)
        return records


def run_or_fail(runner: Runner, group: Sequence[Job], callbacks=()) -> List[dict]:
    """`runner.run(group)`'s records; where the group cannot be painted (an `NstError`), each job
    alone, so one bad job fails only itself: its record then carries the `error`."""
    try:
        return runner.run(group, callbacks)
    except NstError as err:
        if len(group) == 1:
            return [failure(group[0], str(err))]
    return [record for job in group for record in run_or_fail(runner, [job], callbacks)]


class Jobs(NamedTuple):
    """What a batch will do: every (content, style) job, those whose output is missing, those of
    them whose inputs decode grouped into batches (same style, same size, at most `batch_size`),
    the inputs that do not decode (`{path: reason}`) and the jobs they fail (`[(job, reason)]`)."""

    jobs: List[Job]
    todo: List[Job]
    groups: List[List[Job]]
    bad: Dict[str, str] = {}
    failed: List[tuple] = []


def plan(contents, styles, output_dir: str, cfg: Config, batch_size: int, decode: bool = True) -> Jobs:
    """The one plan of the batch command and the Beam pipeline; checks the options, the output
    folder and every input the missing outputs need (decoded once each; with `decode=False`, the
    Beam driver's way, their headers only), writes nothing."""
    check_config(cfg)
    if cfg.init not in INITS:
        image_io.load_init_image(cfg.init)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise NstError(f"--output_dir {output_dir} is a file, not a folder")
    jobs = plan_jobs(expand(contents), expand(styles))
    todo = pending(jobs, output_dir)
    bad = bad_inputs((p for job in todo for p in (job.content, job.style)), decode)
    reasons = {job: bad.get(job.content) or bad.get(job.style) for job in todo}
    failed = [(job, reason) for job, reason in reasons.items() if reason]
    good = [job for job, reason in reasons.items() if not reason]
    return Jobs(jobs, todo, groups(good, cfg, batch_size), bad, failed)


def steps_per_image(cfg: Config) -> int:
    return sum(steps for _, _, steps in cfg.scale_plan())


def run_batch(
    contents,
    styles,
    output_dir: str,
    cfg,
    batch_size: int = 4,
    devices: int = 1,
    evaluate: bool = True,
    progress: bool = True,
    callbacks=(),
    planned: Optional[Jobs] = None,
) -> dict:
    """Stylises every content with every style into `output_dir` (see the module docstring),
    skipping outputs that exist. Returns `{"written": n, "skipped": n, "seconds": s}`.

    contents, styles: specs for `expand`; cfg: a `Config`, or the `nst_tf.plan.Plan` a door resolved; batch_size: contents optimised together (same style
    and size); devices: split each batch across this many devices (`nst_tf.distribute`);
    callbacks: extra callbacks for every run (e.g. `StopOnSignal`). A job that cannot be painted
    (a bad input, or an `NstError` while painting) is listed in the manifest with its error, and in
    the result's `failed` (`[(output, reason)]`); the others are painted. planned: the `plan` of
    these arguments when the caller has made it (its inputs are not decoded again)."""
    planned = planned or plan(contents, styles, output_dir, getattr(cfg, "config", cfg), batch_size)
    jobs, todo, batches, _, failed = planned
    os.makedirs(output_dir, exist_ok=True)
    manifest = Manifest(output_dir)
    for job, reason in failed:
        manifest.add(failure(job, reason))
    failed = [(job.output, reason) for job, reason in failed]
    start = time.perf_counter()
    if batches:
        strategy = None
        if devices > 1:
            from nst_tf import distribute  # loads TensorFlow: not at import

            strategy = distribute.strategy(devices)
        runner = Runner(cfg, output_dir, evaluate=evaluate, strategy=strategy)
        bar = Progress(sum(map(len, batches)), steps_per_image(runner.cfg)) if progress else None
        try:
            for group in batches:
                records = run_or_fail(runner, group, ([bar] if bar else []) + list(callbacks))
                failed += [(r["output"], r["error"]) for r in records if "error" in r]
                for record in records:
                    manifest.add(record)
                if bar:
                    bar.finished(len(group))
        finally:
            if bar:
                bar.close()
    return {
        "written": len(todo) - len(failed),
        "skipped": len(jobs) - len(todo),
        "failed": failed,
        "seconds": time.perf_counter() - start,
    }
