"""nst-tf-video: paint a clip, each frame held to the previous ones by the optical flow.

    nst-tf-video --input=clip.mp4 --style=painting.jpg --output=painted.mp4 --network=universal
    nst-tf-video --input=clip.mp4 --style=painting.jpg --output=painted.mp4 --size=384   (optimisation)
    nst-tf-video --input=clip.mp4 --output=look.mp4 --network=universal --start=10 --duration=2

Frames are painted at the clip's own size unless --size asks for another; the output keeps the
clip's timestamps (variable rates too), display rotation and audio. An output without a video
extension is a folder of PNG frames. Finished frames wait in <output>.frames/: after a stop, the
same command with --resume goes on from there.
"""

import dataclasses
import sys

from absl import flags

from nst_tf import image_io
from nst_tf import plan as plan_lib
from nst_tf.commands import common
from nst_tf.errors import Interrupted, NstError
from nst_tf.video.options import VideoConfig
from nst_tf.video import io
from nst_tf.video.run import work_folder
from nst_tf import callbacks
from nst_tf.video import run as video_run
from nst_tf import autotune

NAME = "nst-tf-video"
# A clip's run resumes from its finished frames (--resume), not from optimiser checkpoints.
CHECKPOINTS = ("checkpoint_dir", "checkpoint_every", "resume", "force")


def define():

    flags.DEFINE_string(
        "input", None, "The clip: a video file FFmpeg reads (mp4, mov, webm, gif, ...) or a folder of frames."
    )
    flags.DEFINE_string("style", image_io.example_path("the_scream"), "The painting.")
    flags.DEFINE_string("output", None, "The painted clip (.mp4, .mov, .mkv, .webm, .gif), or a folder for PNG frames.")
    flags.DEFINE_boolean("progress", True, "Show frames done, frames/s and the ETA on stderr.")
    flags.DEFINE_boolean("dry_run", False, "Print what would be painted and exit.")
    common.define_flags(images=False, exclude=CHECKPOINTS)
    common.define_field_flags(dataclasses.fields(VideoConfig))


def main(argv) -> int:
    fv = flags.FLAGS

    try:
        common.no_arguments(argv)
        for name in ("input", "output"):
            if not fv[name].value:
                raise NstError(f"--{name} is required")
        cfg = common.config_from_flags(fv, exclude=CHECKPOINTS)
        video = common.config_from_flags(fv, VideoConfig)
        painter = plan_lib.painter_of(cfg)
        if cfg.network:
            common.check_network(cfg.network)
        info = io.probe(fv.input)  # before TensorFlow: a clip that is not one fails in a second
        io.check_output(fv.output, fv.input)
        image_io.load_image(fv.style)
        if video.start >= info.duration and info.frames > 1:
            raise NstError(f"--start={video.start} is past the clip's end ({info.duration:.2f} s)")
        size = cfg.size if fv["size"].present else max(info.width, info.height)
        if fv.dry_run:
            style_hw = image_io.load_image(fv.style, cfg.effective_style_size).shape[:2]
            rate = (
                None
                if painter == "network"
                else autotune.cached_rate(cfg.precision, cfg.jit, cfg.style_loss, fv.autotune)
            )
            print(video_run.describe_plan(info, cfg, video, size, style_hw, painter, rate))
            if painter != "network":
                print(autotune.describe_cached(cfg.precision, cfg.jit, cfg.style_loss, fv.autotune))
            return 0
        common.import_tensorflow_quietly()

        plan = plan_lib.resolve(cfg, fv.autotune)
        with callbacks.StopOnSignal() as stop:
            result = video_run.stylize_video(
                fv.input, fv.style, fv.output, plan, video, size=size, progress=fv.progress, callbacks=[stop]
            )
    except (Interrupted, KeyboardInterrupt) as err:
        signum = getattr(err, "signum", 2)
        sys.stderr.write(
            f"{NAME}: stopped; the finished frames are kept in {work_folder(fv.output)}: "
            "run the same command with --resume to go on\n"
        )
        return 128 + signum
    print(
        f"wrote {result['output']} ({result['frames']} frames, {result['painted']} painted in {result['seconds']:.0f} s, "
        f"{result['seconds_per_frame']:.2f} s per frame)"
    )
    return 0


def run():
    common.run(NAME, main, define, __doc__)


if __name__ == "__main__":
    run()
