#!/usr/bin/env python3
"""Makes docs/strip.jpg, the README's picture: the bundled photo, the bundled painting, the optimisation's
painting (the default, `make demo`) and the one-pass painter's (`make demo-network`), side by side.

    python scripts/readme_strip.py [--output=docs/strip.jpg] [--height=240]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from absl import app, flags  # noqa: E402

flags.DEFINE_string("output", os.path.join("docs", "strip.jpg"), "Where to write the strip.")
flags.DEFINE_integer("height", 240, "Each picture's height in the strip, pixels.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import numpy as np
    from PIL import Image

    import nst_tf
    from nst_tf import image_io

    photo, painting = image_io.example_path("boston"), image_io.example_path("the_scream")
    pictures = [
        image_io.load_image(photo),
        image_io.load_image(painting),
        nst_tf.stylize(photo, painting),  # the default optimisation, as make demo runs it
        nst_tf.stylize(photo, painting, network="demo"),  # the default one-pass painter
    ]
    row = []
    for picture in pictures:
        rgb = image_io.to_uint8(image_io.load_image(picture))
        width = round(rgb.shape[1] * FLAGS.height / rgb.shape[0])
        row.append(np.asarray(Image.fromarray(rgb).resize((width, FLAGS.height), Image.LANCZOS)))
        row.append(np.full((FLAGS.height, 6, 3), 255, np.uint8))
    Image.fromarray(np.concatenate(row[:-1], axis=1)).save(FLAGS.output, quality=88)
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    from nst_tf.commands import common  # --help is usage and exit 0, a bad flag one line and exit 2

    app.run(main, flags_parser=common.parse)
