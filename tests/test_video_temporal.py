"""The temporal loss (Ruder et al.): zero for a repeated frame, no gradient where the mask is zero,
the long-term weights each counting only where no nearer frame is reliable."""

import numpy as np
import tensorflow as tf

from nst_tf.video import temporal


def test_the_temporal_loss_is_zero_for_a_repeated_frame_and_blind_where_the_mask_is_zero():
    rng = np.random.default_rng(0)
    frame = rng.random((12, 16, 3)).astype(np.float32)
    mask = np.ones((12, 16), np.float32)
    mask[:, :5] = 0  # the flow is unreliable on the left
    image = tf.Variable(frame[None])
    with tf.GradientTape() as tape:
        loss = temporal.temporal_loss(image, [frame], [mask])
    assert loss.shape == (1,) and float(loss[0]) == 0.0  # the same frame again: nothing to hold
    moved = frame.copy()
    moved[:, :5] = 0.0  # differs only where the mask is zero
    assert float(temporal.temporal_loss(tf.constant(frame[None]), [moved], [mask])[0]) == 0.0
    other = rng.random((12, 16, 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = temporal.temporal_loss(image, [other], [mask])
    grad = tape.gradient(loss, image).numpy()[0]
    assert float(loss[0]) > 0 and np.all(grad[:, :5] == 0) and np.all(np.abs(grad[:, 5:]).sum(-1) > 0)
    expected = np.mean(mask * np.sum((frame - other) ** 2, axis=-1))  # NumPy: mean over pixels
    np.testing.assert_allclose(float(loss[0]), expected, rtol=1e-5)


def test_long_term_weights_count_each_earlier_frame_only_where_no_nearer_one_is_reliable():
    last = np.array([[1, 0, 0, 1]], np.float32)
    before = np.array([[1, 1, 0, 0]], np.float32)
    earliest = np.array([[1, 1, 1, 0]], np.float32)
    weights = temporal.long_term_weights([last, before, earliest])
    np.testing.assert_array_equal(weights[0], last)
    np.testing.assert_array_equal(weights[1], [[0, 1, 0, 0]])
    np.testing.assert_array_equal(weights[2], [[0, 0, 1, 0]])
    np.testing.assert_array_equal(sum(weights), [[1, 1, 1, 1]])  # each pixel held once at most
