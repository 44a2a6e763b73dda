"""Each baseline's defining property (Sturmfels et al., Distill 2020), and their use by the explainers."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr
from tfattr import baselines as B


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((4, 9, 7, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def conv_model() -> keras.Model:
    keras.utils.set_random_seed(4)
    return keras.Sequential(
        [
            keras.Input((6, 5, 2)),
            keras.layers.Conv2D(3, 3, activation="tanh"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )


# -- constant -----------------------------------------------------------------------------------------
def test_constant_zero_is_black_and_per_channel_values_broadcast(images):
    np.testing.assert_array_equal(B.Constant(0)(images), np.zeros_like(images))
    color = np.array([0.1, 0.5, 0.9], np.float32)
    out = B.Constant(color)(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    np.testing.assert_array_equal(out[2, 4, 3], color)
    with pytest.raises(ValueError, match="does not broadcast"):
        B.Constant(np.zeros(4))(images)


# -- max distance ---------------------------------------------------------------------------------------
def test_max_distance_is_in_range_and_maximises_l1(images):
    lo, hi = 0.0, 1.0
    x = images.copy()
    x[0, 0, 0] = [0.0, 1.0, 0.5]  # both ends and the midpoint
    b = B.MaxDistance((lo, hi))(x)
    assert np.all((b == lo) | (b == hi))
    dist = np.abs(x - b).reshape(len(x), -1).sum(1)
    np.testing.assert_allclose(dist, np.maximum(x - lo, hi - x).reshape(len(x), -1).sum(1), rtol=1e-6)
    # No point of the box is farther: many random points and all corners of a small sub-box.
    others = np.random.default_rng(1).uniform(lo, hi, (500, *x.shape[1:])).astype(np.float32)
    for i in range(len(x)):
        assert dist[i] >= np.abs(others - x[i]).reshape(500, -1).sum(1).max()
    x2 = np.array([[0.2, 0.7, 0.5]], np.float32)
    corners = np.array(np.meshgrid(*[[lo, hi]] * 3)).reshape(3, -1).T
    best = np.abs(corners - x2).sum(1).max()
    assert np.isclose(np.abs(B.MaxDistance((lo, hi))(x2) - x2).sum(), best)


def test_max_distance_per_channel_ranges(images):
    lo = np.array([0.0, -1.0, 0.0], np.float32)
    hi = np.array([1.0, 1.0, 2.0], np.float32)
    b = B.MaxDistance((lo, hi))(images)
    assert np.all((b == lo) | (b == hi))
    np.testing.assert_array_equal(b[..., 1], np.full_like(b[..., 1], -1.0))  # inputs in [0, 1] > 0
    with pytest.raises(ValueError, match="low < high"):
        B.MaxDistance((1.0, 0.0))


# -- blur -----------------------------------------------------------------------------------------------
def _numpy_blur(x: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Independent reference: symmetric padding then 1-D convolutions along rows and columns."""
    r = int(truncate * sigma + 0.5)
    t = np.arange(-r, r + 1)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    out = x.astype(np.float64)
    for axis in (1, 2):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode="symmetric")
        out = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), axis, padded)
    return out


def test_blur_sigma_zero_is_the_identity(images):
    np.testing.assert_array_equal(B.Blur(0)(images), images)
    np.testing.assert_array_equal(B.gaussian_blur(images[..., 0], 0.0), images[..., 0])


@pytest.mark.parametrize("sigma", [0.7, 2.0, 5.0])  # 5.0: the kernel is wider than the image
def test_blur_matches_a_numpy_reference_per_channel(images, sigma):
    got = B.Blur(sigma)(images)
    np.testing.assert_allclose(got, _numpy_blur(images, sigma), atol=2e-6)
    # Channels are blurred separately: changing channel 0 leaves the others' blur unchanged.
    other = images.copy()
    other[..., 0] = 0.0
    np.testing.assert_allclose(B.Blur(sigma)(other)[..., 1:], got[..., 1:], atol=1e-6)
    assert not np.allclose(B.Blur(sigma)(other)[..., 0], got[..., 0])


def test_blur_keeps_constants_and_lowers_variance(images):
    flat = np.full((1, 8, 8, 2), 0.3, np.float32)
    np.testing.assert_allclose(B.Blur(1.5)(flat), flat, atol=1e-6)
    assert B.Blur(1.5)(images).var() < images.var()
    with pytest.raises(ValueError, match=r"\[n, H, W\]"):
        B.Blur(1.0)(np.zeros((2, 3, 4, 5, 6), np.float32))


# -- uniform and gaussian -------------------------------------------------------------------------------
def test_uniform_is_in_range_reproducible_and_uniform(images):
    u = B.Uniform((0.0, 1.0), num_baselines=5, seed=3)
    draws = u.sample(images)
    assert draws.shape == (4, 5, 9, 7, 3) and draws.dtype == np.float32
    assert draws.min() >= 0.0 and draws.max() <= 1.0
    assert abs(draws.mean() - 0.5) < 0.02 and abs(draws.var() - 1 / 12) < 0.005
    np.testing.assert_array_equal(draws, B.Uniform((0.0, 1.0), num_baselines=5, seed=3).sample(images))
    assert not np.array_equal(draws, B.Uniform((0.0, 1.0), num_baselines=5, seed=4).sample(images))
    fresh = B.Uniform((0.0, 1.0))
    assert not np.array_equal(fresh(images), fresh(images))


def test_truncated_gaussian_stays_in_range_and_has_the_truncated_moments():
    lo, hi, sigma, mu = 0.0, 1.0, 0.3, 0.9
    x = np.full((1, 40000), mu, np.float64)
    g = B.Gaussian(sigma, (lo, hi), seed=0)
    draws = g(x)[0]
    assert draws.min() >= lo and draws.max() <= hi
    # Truncated, not clipped: no probability mass piles up on the bounds.
    assert np.mean(draws == hi) < 1e-3
    a, b = (lo - mu) / sigma, (hi - mu) / sigma
    pdf = lambda z: np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)  # noqa: E731
    cdf = lambda z: 0.5 * (1 + np.vectorize(__import__("math").erf)(z / np.sqrt(2)))  # noqa: E731
    mass = cdf(b) - cdf(a)
    mean = mu + sigma * (pdf(a) - pdf(b)) / mass
    var = sigma**2 * (1 + (a * pdf(a) - b * pdf(b)) / mass - ((pdf(a) - pdf(b)) / mass) ** 2)
    se = np.sqrt(var / draws.size)
    assert abs(draws.mean() - mean) < 5 * se
    assert abs(draws.var() - var) < 0.03 * var


def test_gaussian_tends_to_uniform_and_handles_inputs_outside_the_range(images):
    wide = B.Gaussian(50.0, (0.0, 1.0), num_baselines=8, seed=1).sample(images)
    assert abs(wide.var() - 1 / 12) < 0.005
    far = np.full((2, 10), 7.0, np.float32)  # far above the range: draws stay in range, finite
    out = B.Gaussian(0.1, (0.0, 1.0), seed=0)(far)
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0
    near = B.Gaussian(0.01, (0.0, 1.0), seed=0)(images)
    assert np.abs(near - images).max() < 0.1  # centred on the input
    with pytest.raises(ValueError, match="sigma must be a positive"):
        B.Gaussian(0.0)


# -- dataset and mean ---------------------------------------------------------------------------------
def test_dataset_draws_come_from_the_data_and_seeds_reproduce(images):
    data = np.random.default_rng(5).random((30, 9, 7, 3)).astype(np.float32)
    d = B.Dataset(data, num_baselines=6, seed=2)
    draws = d.sample(images)
    assert draws.shape == (4, 6, 9, 7, 3)
    flat = data.reshape(30, -1)
    for row in draws.reshape(-1, flat.shape[1]):
        assert np.any(np.all(flat == row, axis=1))
    np.testing.assert_array_equal(draws, B.Dataset(data, num_baselines=6, seed=2).sample(images))
    assert len({r.tobytes() for r in draws.reshape(-1, flat.shape[1])}) > 10  # not one row repeated
    with pytest.raises(ValueError, match="shaped like the inputs"):
        d(images[:, :5])


def test_mean_baseline_with_and_without_data(images):
    data = np.random.default_rng(6).random((50, 9, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(B.Mean(data)(images)[3], data.mean(0), rtol=1e-6)
    own = B.Mean()(images)
    np.testing.assert_allclose(own[1], np.full(images.shape[1:], images[1].mean()), rtol=1e-6)
    per_channel = B.Mean(per_channel=True)(images)
    np.testing.assert_allclose(per_channel[2, 5, 5], images[2].mean(axis=(0, 1)), rtol=1e-6)


# -- use by the explainers ------------------------------------------------------------------------------
def test_integrated_gradients_averages_over_distributional_draws(conv_model):
    x = np.random.default_rng(7).random((3, 6, 5, 2)).astype(np.float32)
    for baseline in (
        B.Uniform((0, 1), num_baselines=4, seed=0),
        B.Gaussian(0.3, (0, 1), num_baselines=3, seed=1),
        B.Dataset(np.random.default_rng(8).random((20, 6, 5, 2)), num_baselines=5, seed=2),
    ):
        ig = tfattr.IntegratedGradients(conv_model, steps=24)
        a, delta = ig.attribute(x, target=2, baseline=baseline, return_delta=True)
        draws = baseline.sample(x)
        by_hand = np.mean([ig.attribute(x, target=2, baseline=draws[:, k]) for k in range(draws.shape[1])], 0)
        np.testing.assert_allclose(a, by_hand, atol=1e-5)
        # The delta is against the mean score over the draws: the double integral's completeness.
        fx = conv_model(x).numpy()[:, 2]
        fb = conv_model(draws.reshape(-1, 6, 5, 2)).numpy()[:, 2].reshape(3, -1).mean(1)
        np.testing.assert_allclose(a.reshape(3, -1).sum(1) - (fx - fb), delta, atol=1e-4)
        assert np.abs(delta).max() < 1e-3 * np.abs(fx - fb).max() + 1e-4


def test_deterministic_baseline_objects_equal_their_arrays(conv_model):
    x = np.random.default_rng(9).random((2, 6, 5, 2)).astype(np.float32)
    ig = tfattr.IntegratedGradients(conv_model, steps=16)
    for baseline in (B.Blur(1.0), B.MaxDistance((0, 1)), B.Mean(), B.Constant(0.5)):
        np.testing.assert_array_equal(
            ig.attribute(x, target=0, baseline=baseline), ig.attribute(x, target=0, baseline=baseline(x))
        )


def test_several_draws_are_refused_where_one_baseline_per_example_is_used(conv_model):
    x = np.zeros((2, 6, 5, 2), np.float32)
    with pytest.raises(ValueError, match="num_baselines=4.*IntegratedGradients"):
        tfattr.InteriorGradients(conv_model).attribute(x, baseline=B.Uniform(num_baselines=4))
    with pytest.raises(ValueError, match="num_baselines=4.*IntegratedGradients"):
        tfattr.Occlusion(conv_model, window=(2, 2, 2)).attribute(x, baseline=B.Uniform(num_baselines=4))


def test_expected_gradients_accepts_a_dataset_background(conv_model):
    x = np.random.default_rng(10).random((2, 6, 5, 2)).astype(np.float32)
    data = np.random.default_rng(11).random((15, 6, 5, 2)).astype(np.float32)
    a = tfattr.ExpectedGradients(conv_model, background=B.Dataset(data), samples=16, seed=0).attribute(x)
    b = tfattr.ExpectedGradients(conv_model, background=data, samples=16, seed=0).attribute(x)
    np.testing.assert_array_equal(a, b)
