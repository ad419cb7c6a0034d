"""nst-tf-evaluate: how well a result carries a content's structure and a style's statistics, and how
much a painted clip flickers.

    nst-tf-evaluate --image=out.png --content=photo.jpg --style=painting.jpg
    nst-tf-evaluate --video=painted.mp4 --content=clip.mp4 [--style=painting.jpg]

Prints JSON: for a picture, `nst_tf.evaluate`'s scale-free style (Gram) and content errors; for a
clip, its warping error (Lai et al.; the input clip's own, the floor, beside it) and with --style
the mean style error over its frames.
"""

import json

from absl import flags

from nst_tf import config as config_lib
from nst_tf import image_io
from nst_tf.commands import common
from nst_tf.errors import NstError
from nst_tf import metrics
from nst_tf.video import io

NAME = "nst-tf-evaluate"


def define():
    flags.DEFINE_string("image", None, "The stylised image.")
    flags.DEFINE_string("video", None, "A painted clip (a video file or a folder of frames), instead of --image.")
    flags.DEFINE_string("content", None, "Its content image (or, with --video, the input clip).")
    flags.DEFINE_string("style", None, "Its style image.")
    flags.DEFINE_string("weights", "auto", config_lib.option_help("weights"))


def main(argv) -> int:
    fv = flags.FLAGS
    common.no_arguments(argv)
    if fv.video:
        return _clip(fv)
    for name in ("image", "content", "style"):
        if not fv[name].value:
            raise NstError(f"--{name} is required")
    images = [image_io.load_image(fv[name].value) for name in ("image", "content", "style")]
    common.import_tensorflow_quietly()

    print(json.dumps(metrics.evaluate(*images, weights=fv.weights), indent=2))
    return 0


def _clip(fv) -> int:
    """The flicker report of --video against the input clip --content."""

    if not fv.content:
        raise NstError("--content is required: the input clip the painted one was made from")
    painted = io.probe(fv.video)
    io.probe(fv.content)
    if fv.style:
        image_io.load_image(fv.style)
    common.import_tensorflow_quietly()
    import numpy as np

    outputs = [f.rgb for f in io.read(fv.video)]
    inputs = [image_io.resize(f.rgb, (painted.height, painted.width)) for f in io.read(fv.content)][: len(outputs)]
    if len(inputs) != len(outputs):
        raise NstError(
            f"{fv.video} has {len(outputs)} frames, {fv.content} {len(inputs)}: compare a clip with its own input"
        )
    report = {"frames": len(outputs), **metrics.warping_error(inputs, outputs)}
    report["input_warping_error"] = metrics.warping_error(inputs, inputs)["warping_error"]
    if fv.style:
        model = metrics.feature_model(fv.weights)
        errors = [metrics.evaluate(o, i, fv.style, model=model)["style"]["mean"] for o, i in zip(outputs, inputs)]
        report["style_error"] = float(np.mean(errors))
    print(json.dumps(report, indent=2))
    return 0


def run():
    common.run(NAME, main, define, __doc__)
