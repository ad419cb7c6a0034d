#!/usr/bin/env bash
# SHA-256 of the PNGs five paths write (float32, XLA off): the default run, the tutorial preset, a batch
# of 3, a batch split across 2 logical devices, and the SavedModel export's serving_default. Run it
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
