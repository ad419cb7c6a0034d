"""Training data as `tf.data`: content photos and style images from folders, globs or TFRecord
shards, decoded in parallel, randomly cropped, flipped and resized, prefetched.

Sources: each spec is a folder (its images), a glob pattern, an image file, or a `.tfrecord` shard
(or a glob of them) whose records hold an encoded image under the feature "image". Files are
checked once before training (Pillow decodes each at a reduced draft size): an unreadable one is
skipped and counted, not fatal; a source with no readable image is an error.

The stream is a function of `(seed, step)`: element `i` of the repeated, seeded shuffle is cropped
with stateless random ops seeded by `(seed, i)`, and `batches(..., start=k)` skips the first `k`
batches without decoding them, so a resumed run sees the very batches an uninterrupted one would.
"""

from __future__ import annotations

import glob
import os
from typing import List, NamedTuple, Optional, Sequence, Tuple

import tensorflow as tf

from nst_tf import image_io
from nst_tf.errors import NstError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")  # what tf.io.decode_image reads
RECORD_EXTENSIONS = (".tfrecord", ".tfrecords")


class Source(NamedTuple):
    """Readable image files and TFRecord shards, and the files skipped (path, why)."""

    files: Tuple[str, ...]
    records: Tuple[str, ...]
    skipped: Tuple[Tuple[str, str], ...]

    @property
    def empty(self) -> bool:
        return not self.files and not self.records


def _candidates(spec: str) -> List[str]:
    if os.path.isdir(spec):
        return sorted(os.path.join(spec, name) for name in os.listdir(spec))
    if any(ch in spec for ch in "*?["):
        return sorted(glob.glob(spec))
    return [spec]


def scan(specs: Sequence[str], what: str) -> Source:
    """The images that `specs` name; raises `NstError` when none of them is readable."""
    files, records, skipped = [], [], []
    for spec in specs:
        found = _candidates(spec)
        if os.path.isdir(spec) and not found:
            raise NstError(f"the {what} folder {spec} is empty")
        if not found or (len(found) == 1 and not os.path.exists(found[0])):
            raise NstError(f"{what} {spec}: no such file, folder or pattern")
        for path in found:
            ext = os.path.splitext(path)[1].lower()
            if ext in RECORD_EXTENSIONS:
                records.append(path)
            elif os.path.isdir(path):
                continue
            elif ext not in EXTENSIONS:
                skipped.append((path, f"not one of {', '.join(EXTENSIONS)}"))
            else:
                try:
                    image_io.load_image(path, max_side=64)  # decodes (draft size), so damage shows
                    files.append(path)
                except NstError as err:
                    skipped.append((path, str(err)))
    source = Source(tuple(files), tuple(records), tuple(skipped))
    if source.empty:
        raise NstError(f"no readable {what} image in {', '.join(specs)} ({len(skipped)} file(s) skipped)")
    return source


def _encoded(source: Source) -> tf.data.Dataset:
    """The source's encoded images with a label: a file's index in `source.files` (-1 for records)."""
    parts = []
    if source.files:
        files = tf.data.Dataset.from_tensor_slices((list(source.files), tf.range(len(source.files))))
        parts.append(files.map(lambda path, label: (tf.io.read_file(path), label)))
    if source.records:
        spec = {"image": tf.io.FixedLenFeature([], tf.string)}
        parse = lambda record: (tf.io.parse_single_example(record, spec)["image"], tf.constant(-1))  # noqa: E731
        parts.append(tf.data.TFRecordDataset(list(source.records)).map(parse))
    dataset = parts[0]
    for part in parts[1:]:
        dataset = dataset.concatenate(part)
    return dataset


def _crop(encoded, index, seed: int, size: int, scale_range: Tuple[float, float]):
    """Decode, random-resize so the shorter side is `size * U(scale_range)` (at least `size`),
    random-crop `size` x `size`, random flip: stateless, seeded by `(seed, index)`."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.convert_image_dtype(image, tf.float32)
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
    keys = tf.random.experimental.stateless_split(key, 3)
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.random.stateless_uniform([], keys[0], scale_range[0], scale_range[1])
    factor = tf.maximum(size * scale / tf.reduce_min(hw), size / tf.reduce_min(hw))
    new_hw = tf.maximum(tf.cast(tf.math.ceil(hw * factor), tf.int32), size)
    image = tf.image.resize(image, new_hw, method="bilinear", antialias=True)  # antialias: a fair downscale
    image = tf.image.stateless_random_crop(image, [size, size, 3], keys[1])
    image = tf.image.stateless_random_flip_left_right(image, keys[2])
    return tf.clip_by_value(image, 0.0, 1.0)


def stream(source: Source, size: int, seed: int, scale_range=(1.0, 2.0), shuffle: int = 1024) -> tf.data.Dataset:
    """Endless `([size, size, 3] crop, label)` of the source's images, element `i` a function of
    `(seed, i)`; returns the enumerated encoded stream and the function that decodes an element."""
    dataset = _encoded(source).repeat().shuffle(shuffle, seed=seed).enumerate()
    return dataset, lambda index, item: (_crop(item[0], index, seed, size, scale_range), item[1])


def batches(
    contents: Source,
    styles: Optional[Source],
    batch_size: int,
    size: int,
    style_size: int,
    seed: int,
    start: int = 0,
) -> tf.data.Dataset:
    """`(content [B, size, size, 3], style [B, style_size, style_size, 3], style label [B])`
    batches from batch `start` on (the label: the style file's index, for a table of styles). Style
    crops cover from all of the image's shorter side to half of it (style augmentation: the brush
    strokes at several scales). Without `styles`: `(content,)` batches."""
    content, crop_content = stream(contents, size, seed)
    skip = start * batch_size
    content = content.skip(skip).map(crop_content, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if styles is None:
        dataset = content.map(lambda image, label: (image,)).batch(batch_size, drop_remainder=True)
        return dataset.prefetch(tf.data.AUTOTUNE)
    style, crop_style = stream(styles, style_size, seed + 1, scale_range=(1.0, 2.0))
    style = style.skip(skip).map(crop_style, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = tf.data.Dataset.zip(content, style).map(lambda c, s: (c[0], s[0], s[1]))
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
