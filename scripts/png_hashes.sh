#!/usr/bin/env bash
# SHA-256 of the PNGs the painting paths write (float32, XLA off): the default run, the tutorial preset, a
# batch of 3, a batch split across 2 logical devices, the SavedModel export's serving_default, and the
# one pass from the command line, a batch, a clip's frames and the page. Run it
# before and after a refactor on the same machine: the hashes must not change (CPU kernels differ
# between machines, so compare on one).   usage: scripts/png_hashes.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/png_hashes.sh OUT_DIR}
rm -rf "$OUT" && mkdir -p "$OUT"
export NST_TF_AUTOTUNE=off TF_CPP_MIN_LOG_LEVEL=3
PY=${PYTHON:-.venv/bin/python}
COMMON=(--weights=embedded --precision=float32 --jit=off --noprogress)
A=nst_tf/assets
$PY scripts/stylize.py "${COMMON[@]}" --size=128 --steps=10 --output="$OUT/default.png" >/dev/null
$PY scripts/stylize.py --flagfile=configs/tutorial.cfg "${COMMON[@]}" --size=96 --steps=15 --output="$OUT/tutorial.png" >/dev/null
BATCH=(--styles=$A/paintings/the_scream.jpg --size=64 --square --steps=6 --scales=1 --noevaluate)
$PY scripts/batch.py "${COMMON[@]}" "${BATCH[@]}" --contents=$A/photos/boston.jpg,$A/paintings/shipwreck.jpg,$A/paintings/seated_nude.jpg \
  --batch_size=3 --output_dir="$OUT/batch" >/dev/null
$PY scripts/batch.py "${COMMON[@]}" "${BATCH[@]}" --contents=$A/photos/boston.jpg,$A/paintings/shipwreck.jpg --batch_size=2 --devices=2 \
  --output_dir="$OUT/devices" >/dev/null
$PY scripts/export_savedmodel.py --weights=embedded --precision=float32 --jit=off --size=64 --steps=5 --scales=2 \
  --export_dir="$OUT/export" >/dev/null
# The one-pass paths: the command line, a batch, a clip's frames (a folder of PNGs) and the page's paint.
$PY scripts/stylize.py --weights=embedded --noprogress --network=demo --size=128 --strength=0.8 --nolite --output="$OUT/one_pass.png" >/dev/null
$PY scripts/stylize.py --weights=embedded --noprogress --network=demo --size=128 --strength=0.8 --output="$OUT/one_pass_litert.png" >/dev/null
$PY scripts/batch.py --weights=embedded --noprogress --network=demo --styles=$A/paintings/the_scream.jpg --size=64 --noevaluate \
  --contents=$A/photos/boston.jpg,$A/paintings/shipwreck.jpg --output_dir="$OUT/network_batch" >/dev/null
$PY -m nst_tf.video.synthetic "$OUT/clip.mp4" >/dev/null
$PY scripts/video.py --input="$OUT/clip.mp4" --network=demo --size=64 --duration=0.3 --noprogress --output="$OUT/clip" >/dev/null
$PY - "$OUT" "$A" <<'PY'
import sys
import numpy as np
from nst_tf.app import studio
from nst_tf import image_io
out, assets = sys.argv[1:]
page = studio.Studio("demo", weights="embedded", autotune="off")
image = page.paint(image_io.load_image(f"{assets}/photos/boston.jpg"), [image_io.load_image(f"{assets}/paintings/the_scream.jpg")],
                   studio.Settings(size=96, strength=0.7))
image_io.save_image(f"{out}/page.png", image)
PY
$PY - "$OUT" "$A" <<'PY'
import sys
import tensorflow as tf
out, assets = sys.argv[1:]
model = tf.saved_model.load(f"{out}/export/1")
request = {"content": tf.constant([open(f"{assets}/photos/boston.jpg", "rb").read()]),
           "style": tf.constant([open(f"{assets}/paintings/the_scream.jpg", "rb").read()]),
           "steps": tf.constant(-1), "size": tf.constant(-1),
           "content_weight": tf.constant(-1.0), "style_weight": tf.constant(-1.0)}
open(f"{out}/export.png", "wb").write(model.signatures["serving_default"](**request)["png"].numpy())
PY
(cd "$OUT" && find . -name "*.png" | sort | xargs sha256sum)
