"""nst-tf-evaluate: how well an image carries a content's structure and a style's statistics.

    nst-tf-evaluate --image=out.png --content=photo.jpg --style=painting.jpg

Prints `nst_tf.evaluate`'s report as JSON: the scale-free style (Gram) and content errors.
"""

import json

from absl import flags

from nst_tf import config as config_lib
from nst_tf import image_io
from nst_tf.commands import common
from nst_tf.errors import NstError

NAME = "nst-tf-evaluate"


def define():
    flags.DEFINE_string("image", None, "The stylised image.")
    flags.DEFINE_string("content", None, "Its content image.")
    flags.DEFINE_string("style", None, "Its style image.")
    flags.DEFINE_string("weights", "auto", config_lib.option_help("weights"))


def main(argv) -> int:
    fv = flags.FLAGS
    common.no_arguments(argv)
    for name in ("image", "content", "style"):
        if not fv[name].value:
            raise NstError(f"--{name} is required")
    images = [image_io.load_image(fv[name].value) for name in ("image", "content", "style")]
    common.import_tensorflow_quietly()
    from nst_tf import metrics

    print(json.dumps(metrics.evaluate(*images, weights=fv.weights), indent=2))
    return 0


def run():
    common.run(NAME, main, define, __doc__)
