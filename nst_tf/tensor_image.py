"""Image operations as TensorFlow ops, shared by the run and the serving graph.

`transfer` (through `image_io.resize`) and `serving` resize with the same function, and the
served model decodes JPEG exactly as Pillow does (accurate integer DCT, fancy upsampling), so a
served result equals `stylize`'s for the same request. Images are float32 in [0, 1],
`[B, H, W, 3]`.
"""

from __future__ import annotations

import tensorflow as tf

from nst_tf import schedule

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def check(condition, template: str, values=()):
    """An assertion op: `InvalidArgument` with the message (`template` formatted with the
    tensors `values`, `{}` per value) when `condition` is false."""
    return tf.debugging.Assert(condition, [tf.strings.format(template, values)] if values else [template])


def after(checks, tensor):
    """`tensor`, computed only once the `checks` have passed."""
    with tf.control_dependencies(checks):
        return tf.identity(tensor)


def fit_size(hw, max_side):
    """(height, width) scaled so the longest side is `max_side`, aspect kept (as
    `image_io.fit_size`, on tensors)."""
    return tf.stack(schedule.fit_size(hw, max_side, schedule.TF))


def resize(images, hw):
    """Lanczos-3 resize of `[B, H, W, C]` in [0, 1] to `hw`, antialiased when shrinking (as
    Pillow's Lanczos), clipped to [0, 1]; the identity when the size already matches."""
    images = tf.convert_to_tensor(images, tf.float32)
    hw = tf.convert_to_tensor(hw, tf.int32)
    same = tf.reduce_all(tf.equal(tf.shape(images)[1:3], hw))
    return tf.cond(
        same,
        lambda: images,
        lambda: tf.clip_by_value(tf.image.resize(images, hw, method="lanczos3", antialias=True), 0.0, 1.0),
    )


def noise_image(hw, seed: int) -> tf.Tensor:
    """The "noise" init: uniform in [0, 1], `[1, H, W, 3]`, a function of `hw` and `seed` only
    (stateless Philox), so the run and the export draw exactly the same image."""
    return tf.random.stateless_uniform(tf.concat([[1], hw, [3]], axis=0), seed=tf.stack([seed, 0]), dtype=tf.float32)


def start_image(init: str, content, style, seed: int) -> tf.Tensor:
    """The starting image that `init` ("content", "noise" or "style") names, at the content's size,
    `[1, H, W, 3]`, for `[1, h, w, 3]` content and style: the run's and the export's."""
    hw = tf.shape(content)[1:3]
    if init == "noise":
        return noise_image(hw, seed)
    if init == "style":
        return resize(style, hw)
    return tf.convert_to_tensor(content, tf.float32)


def to_rgb(image):
    """Decoded `[H, W, 1..4]` float in [0, 1] as RGB `[H, W, 3]`, alpha composited onto white
    (as `image_io.array_to_rgb`)."""
    channels = tf.shape(image)[-1]

    def flatten_alpha():
        color, alpha = image[..., :-1], image[..., -1:]
        return color * alpha + (1.0 - alpha)

    color = tf.cond(tf.equal(channels % 2, 0), flatten_alpha, lambda: image)
    rgb = tf.cond(tf.equal(tf.shape(color)[-1], 1), lambda: tf.tile(color, [1, 1, 3]), lambda: color)
    return tf.ensure_shape(rgb, [None, None, 3])


def _big_endian_u32(data, offset):
    b = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, 4), tf.uint8), tf.int64)
    return ((b[0] * 256 + b[1]) * 256 + b[2]) * 256 + b[3]


def decode(data, name: str, max_pixels: int):
    """One encoded JPEG or PNG (a string tensor holding one element) as RGB `[1, H, W, 3]`.

    The format is checked by its signature bytes and the dimensions read from the header (PNG's
    IHDR, JPEG's frame header) before decoding, so a decompression bomb is refused unread; any
    failure is an `InvalidArgument` naming `name`. EXIF orientation is not applied.
    """
    count = check(
        tf.equal(tf.size(data), 1), f"{name}: send exactly one image (a batch of one), got {{}}", [tf.size(data)]
    )
    data = after([count], tf.reshape(data, [-1])[0])
    is_png = tf.equal(tf.strings.substr(data, 0, 8), _PNG_MAGIC)
    is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), _JPEG_MAGIC)
    data = after([check(is_png | is_jpeg, f"{name}: the bytes are not a JPEG or PNG image")], data)

    def png_hw():
        whole = check(tf.strings.length(data) >= 33, f"{name}: the PNG is truncated")
        with tf.control_dependencies([whole]):
            return tf.stack([_big_endian_u32(data, 20), _big_endian_u32(data, 16)])

    hw = tf.cond(is_png, png_hw, lambda: tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64))
    small = check(
        hw[0] * hw[1] <= max_pixels,
        f"{name}: the image is {{}}x{{}}, over this model's limit of {max_pixels} pixels per input",
        [hw[1], hw[0]],
    )
    data = after([small], data)

    def png():
        sixteen_bit = tf.equal(tf.io.decode_raw(tf.strings.substr(data, 24, 1), tf.uint8)[0], 16)
        return tf.cond(
            sixteen_bit,
            lambda: tf.cast(tf.io.decode_png(data, dtype=tf.uint16), tf.float32) / 65535.0,
            lambda: tf.cast(tf.io.decode_png(data), tf.float32) / 255.0,
        )

    def jpeg():  # Pillow's decoding: accurate integer DCT, fancy chroma upsampling
        return tf.cast(tf.io.decode_jpeg(data, dct_method="INTEGER_ACCURATE", fancy_upscaling=True), tf.float32) / 255.0

    return to_rgb(tf.cond(is_png, png, jpeg))[None]


def to_uint8(images):
    """Float in [0, 1] as uint8, rounded (as `image_io.to_uint8`)."""
    return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)
