"""Video's foundations: the warp against known flows, DIS flow on a known shift, Ruder et al.'s
reliability mask on a synthetic occlusion, and the warping error (flicker) of Lai et al."""

import numpy as np
import pytest

from nst_tf import image_io, metrics
from nst_tf.errors import NstError
from nst_tf import flow


@pytest.fixture(scope="module")
def photo():
    return image_io.load_image(image_io.example_path("boston"), 160)  # 160 x 107, textured


def _shifted(image, dx: int, dy: int):
    """`image` moved so that `out[y, x] = image[y + dy, x + dx]` (edges repeated)."""
    h, w = image.shape[:2]
    ys = np.clip(np.arange(h) + dy, 0, h - 1)
    xs = np.clip(np.arange(w) + dx, 0, w - 1)
    return image[ys][:, xs]


def test_warp_follows_a_known_flow_exactly_on_whole_pixels_and_bilinearly_between(photo):
    const = np.zeros(photo.shape[:2] + (2,), np.float32)
    const[..., 0], const[..., 1] = 3.0, -2.0
    np.testing.assert_allclose(flow.warp(photo, const), _shifted(photo, 3, -2), atol=1e-6)
    half = np.zeros_like(const)
    half[..., 0] = 0.5  # halfway between two columns: their mean
    expected = 0.5 * (photo + _shifted(photo, 1, 0))
    np.testing.assert_allclose(flow.warp(photo, half)[:, :-1], expected[:, :-1], atol=1e-5)
    assert flow.warp(photo[..., 0], const).shape == photo.shape[:2]  # one channel too


def test_dis_flow_finds_a_known_shift_and_warps_the_previous_frame_onto_the_current(photo):
    current = _shifted(photo, 3, -2)  # the camera moved: current[y, x] = photo[y - 2, x + 3]
    backward = flow.flow(current, photo)  # current -> previous
    inner = backward[10:-10, 10:-10].reshape(-1, 2)
    assert np.allclose(np.median(inner, axis=0), (3.0, -2.0), atol=0.1), np.median(inner, axis=0)
    warped = flow.warp(photo, backward)
    error = np.abs(warped - current)[10:-10, 10:-10].mean()
    assert error < 0.01, error  # measured 0.0014 (the photo against itself shifted: 0.062)
    assert np.abs(photo - current)[10:-10, 10:-10].mean() > 0.05


def _moving_square(step: int = 8):
    """Known flows of a square (rows 20-40, columns 20-40 in the previous frame) moving `step` px to
    the right over a still background: (backward, forward)."""
    backward = np.zeros((64, 80, 2), np.float32)  # current -> previous
    forward = np.zeros_like(backward)  # previous -> current
    backward[20:40, 20 + step : 40 + step, 0] = -step
    forward[20:40, 20:40, 0] = step
    return backward, forward


def test_the_consistency_check_marks_the_disoccluded_band_and_nothing_else():
    backward, forward = _moving_square(8)
    bad = flow.inconsistent(backward, forward)
    expected = np.zeros(bad.shape, bool)
    expected[20:40, 20:28] = True  # the background the square uncovered: hidden in the previous frame
    np.testing.assert_array_equal(bad, expected)
    edges = flow.motion_boundary(backward)
    # within 1 px of the moved square's sides (rows 20-39, columns 28-47) and nowhere else
    assert edges[20:40, 27:29].all() and edges[20:40, 47:49].all()
    assert not edges[:, :27].any() and not edges[:, 49:].any() and not edges[:19].any() and not edges[41:].any()
    mask = flow.reliable(backward, forward)
    assert mask.dtype == np.float32 and mask[expected].max() == 0 and mask[~(expected | edges)].min() == 1
    pan = np.zeros_like(backward)
    pan[..., 0] = 3.0  # the camera moved right: the last 3 columns were outside the previous frame
    assert flow.reliable(pan, -pan)[:, -3:].max() == 0 and flow.reliable(pan, -pan)[:, :-3].min() == 1


def test_the_warping_error_is_zero_for_a_still_clip_and_counts_flicker(photo):
    still = [photo] * 3
    assert metrics.warping_error(still, still)["warping_error"] == 0.0
    rng = np.random.default_rng(0)
    flicker = [np.clip(photo + rng.normal(0, 0.05, photo.shape), 0, 1).astype(np.float32) for _ in range(3)]
    noisy = metrics.warping_error(still, flicker)
    assert len(noisy["per_pair"]) == 2 and noisy["warping_error"] == pytest.approx(2 * 0.05**2, rel=0.15)
    moving = [photo, _shifted(photo, 3, -2), _shifted(photo, 6, -4)]  # a camera pan, painted consistently
    assert metrics.warping_error(moving, moving)["warping_error"] < 1e-3
    with pytest.raises(NstError, match="two clips of the same length"):
        metrics.warping_error(still, still[:2])


def test_the_bundled_clip_moves_as_its_true_flow_says_and_dis_recovers_it():
    from nst_tf.video import synthetic

    clip = synthetic.clip(frames=4, width=161, height=101, pan=3, speed=5, radius=16)  # odd sizes
    assert len(clip.frames) == 4 and clip.frames[0].shape == (101, 161, 3)
    for t in range(1, 4):
        current, previous, true = clip.frames[t], clip.frames[t - 1], clip.backward[t]
        # whole-pixel motion: the previous frame warped by the true flow is the current frame exactly,
        # except where the flow leaves the view or the disc uncovered background
        exact = np.abs(flow.warp(previous, true) - current).max(axis=-1) < 1e-6
        inside = np.zeros_like(exact)
        inside[:, : 161 - 8] = True  # the pan brings in 3 new columns on the right; the disc enters there
        uncovered = clip.disc[t - 1] & ~clip.disc[t]
        assert exact[inside & ~uncovered].mean() > 0.995
        estimated = flow.flow(current, previous)
        background = ~clip.disc[t] & ~clip.disc[t - 1] & inside
        assert np.allclose(np.median(estimated[background], axis=0), (3, 0), atol=0.25)
        assert np.allclose(np.median(estimated[clip.disc[t] & clip.disc[t - 1]], axis=0), (5, 0), atol=0.5)
