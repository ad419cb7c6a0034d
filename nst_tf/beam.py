"""The batch across machines: an Apache Beam pipeline (optional extra `nst_tf[beam]`).

    python -m nst_tf.beam --contents=photos/ --styles=paintings/ --output_dir=/shared/out \\
        --size=256 --direct_running_mode=multi_processing --direct_num_workers=2

The driver lists the jobs (every content with every style, as `nst-tf-batch` does), drops those
whose output exists, and groups them into batches (same style and size, `--batch_size` each).
The pipeline spreads the batches over the workers; `StylizeFn` builds the feature network once
per worker (`setup`), stylises each batch, writes each image atomically into `--output_dir` and
emits its manifest record; the records are gathered and written into `manifest.jsonl` once, at
the end. A batch that cannot be painted (an `NstError`) goes to the dead-letter output `failed`,
and a job whose input is not an image never enters the pipeline (the driver reads each input's
header only: it decodes nothing, so a large input list costs it little; a file whose body is
damaged fails in the worker that decodes it, alone, to the dead letters): all are listed in the
manifest with their error, and the pipeline goes on. Flags this module does not know (`--runner`, `--project`, `--flink_master`, ...) go to
Beam's `PipelineOptions`, so the same command runs on Dataflow, Flink or Spark. The output
folder must be one every worker can write (a shared or mounted file system).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, List, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ lines hidden (as the commands do)

from nst_tf import batch
from nst_tf.config import Config, make_config
from nst_tf.errors import NstError

try:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
except ImportError as err:  # pragma: no cover - depends on the install
    raise NstError("nst_tf.beam needs Apache Beam: pip install 'nst_tf[beam]'") from err
from nst_tf import cli
from nst_tf.commands import batch as batch_command
from nst_tf import plan as plan_lib


FAILED = "failed"  # the dead-letter output's tag


class StylizeFn(beam.DoFn):
    """Stylises one batch of jobs (a list of `(content, style, output)`), yielding one manifest
    record per image. The feature network is built once per worker, in `setup`."""

    def __init__(self, options: dict, output_dir: str, evaluate: bool = True):
        self.options, self.output_dir, self.evaluate = options, output_dir, evaluate

    def setup(self):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.runner = batch.Runner(
            Config(**self.options), self.output_dir, evaluate=self.evaluate, worker=f"pid {os.getpid()}"
        )

    def process(self, group):
        jobs = [batch.Job(*job) for job in group]
        # A retried bundle finds its outputs already written: nothing is made twice.
        todo = batch.pending(jobs, self.output_dir)
        if not todo:
            return
        for record in batch.run_or_fail(self.runner, todo):
            # the dead letters: the jobs that cannot be painted, with the reason; the pipeline goes on
            yield beam.pvalue.TaggedOutput(FAILED, record) if "error" in record else record


def write_manifest(records: Iterable[dict], output_dir: str) -> int:
    """Adds the records to `manifest.jsonl` (once each, by output name); returns how many."""
    manifest = batch.Manifest(output_dir)
    count = 0
    for record in sorted(records, key=lambda r: r["output"]):
        manifest.add(record)
        count += 1
    return count


def build(
    pipeline,
    groups: Sequence[List[batch.Job]],
    cfg: Config,
    output_dir: str,
    evaluate: bool = True,
    failures: Sequence[dict] = (),
):
    """The pipeline's steps on `pipeline`: batches in, images and the manifest out; `failures`
    (the jobs whose inputs are not images) and the dead letters join the manifest."""
    painted = (
        pipeline
        | "Batches" >> beam.Create([[tuple(job) for job in group] for group in groups])
        | "Spread" >> beam.Reshuffle()
        | "Stylize" >> beam.ParDo(StylizeFn(cfg.options(), output_dir, evaluate)).with_outputs(FAILED, main="written")
    )
    bad = pipeline | "Bad inputs" >> beam.Create(list(failures))
    return (
        (painted.written, painted[FAILED], bad)
        | "Together" >> beam.Flatten()
        | "Gather" >> beam.combiners.ToList()
        | "Manifest" >> beam.Map(write_manifest, output_dir)
    )


def run(
    contents,
    styles,
    output_dir: str,
    cfg=None,
    batch_size: int = 4,
    evaluate: bool = True,
    pipeline_args: Sequence[str] = (),
    **options,
) -> dict:
    """Runs the pipeline (see the module docstring) and waits for it.

    pipeline_args: Beam's own options, e.g. `["--direct_running_mode=multi_processing",
    "--direct_num_workers=2"]` or `["--runner=DataflowRunner", "--project=...", ...]`.
    Returns `{"written": n, "skipped": n, "failed": [(output, reason)], "seconds": s}`."""
    cfg = make_config(cfg, **options)
    jobs, todo, groups, _, failed = batch.plan(contents, styles, output_dir, cfg, batch_size, decode=False)
    os.makedirs(output_dir, exist_ok=True)
    batch.Manifest(output_dir)  # drops stale lines before the workers start
    start = time.perf_counter()
    if todo:
        args = list(pipeline_args)
        if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
            args.append("--default_sdk_harness_log_level=WARNING")  # the workers' start-up chatter
        with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
            build(pipeline, groups, cfg, os.path.abspath(output_dir), evaluate, [batch.failure(*f) for f in failed])
    records = batch.Manifest(output_dir).records
    failed = [(job.output, records[job.output]["error"]) for job in todo if "error" in records.get(job.output, {})]
    return {
        "written": len(todo) - len(failed),
        "skipped": len(jobs) - len(todo),
        "failed": failed,
        "seconds": time.perf_counter() - start,
    }


def main(argv=None) -> int:
    """`python -m nst_tf.beam`: the batch command's flags; the flags it does not know go to Beam."""
    from absl import flags

    fv = flags.FlagValues()
    cli.define_flags(fv, images=False)
    batch_command.define_batch_flags(fv)
    argv = list(sys.argv if argv is None else argv)
    if any(a in ("--help", "-h", "--helpfull") for a in argv[1:]):
        print(__doc__.strip() + "\n\nFlags (Beam's own pass through):\n" + fv.main_module_help())
        return 0
    try:
        rest = fv(argv, known_only=True)
    except flags.Error as err:
        return cli.fail(str(err).splitlines()[0])
    return cli.exits_2(_main)(fv, rest[1:])


def _main(fv, pipeline_args) -> int:

    for name in ("contents", "styles", "output_dir"):
        if not fv[name].value:
            raise NstError(f"--{name} is required")
    cfg = plan_lib.resolve(cli.config_from_flags(fv), fv.autotune).config  # once: every worker runs the same choice
    result = run(fv.contents, fv.styles, fv.output_dir, cfg, fv.batch_size, fv.evaluate, pipeline_args=pipeline_args)
    rate = result["written"] / result["seconds"] * 60 if result["written"] else 0.0
    print(
        f"wrote {result['written']} image(s) to {fv.output_dir} in {result['seconds']:.0f} s ({rate:.2f} images/min); "
        f"{result['skipped']} existed"
    )
    for output, reason in result["failed"]:
        sys.stderr.write(f"nst_tf.beam: not painted: {output}: {reason}\n")
    if result["failed"]:
        return cli.fail(f"{len(result['failed'])} output(s) not painted (above, and in {batch.MANIFEST})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
