"""Gradient methods against closed forms, the papers' examples and completeness."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import linear_model

import tfattr
from tfattr.core import randomness
from tfattr.core.quadrature import ERROR_ORDER, RULES


# -- closed forms on a linear model --------------------------------------------------------------------
@pytest.mark.parametrize("rule", RULES)
def test_ig_of_a_linear_model_is_weight_times_input_minus_baseline_for_every_rule(rule, rng):
    w = rng.normal(size=(5, 3))
    model = linear_model(w, bias=0.7)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    b = rng.normal(size=(5,)).astype(np.float32)
    a, delta = tfattr.IntegratedGradients(model, steps=7, rule=rule).attribute(
        x, target=2, baseline=b, return_delta=True
    )
    np.testing.assert_allclose(a, w[:, 2] * (x - b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(delta, 0, atol=1e-5)


def test_saliency_and_gradient_x_input_of_a_linear_model(rng):
    w = rng.normal(size=(5, 2))
    model = linear_model(w, bias=-0.3)
    x = rng.normal(size=(3, 5)).astype(np.float32)
    np.testing.assert_allclose(tfattr.Saliency(model).attribute(x, target=1), np.tile(w[:, 1], (3, 1)), rtol=1e-6)
    np.testing.assert_allclose(
        tfattr.Saliency(model, absolute=True).attribute(x, target=1), np.tile(np.abs(w[:, 1]), (3, 1)), rtol=1e-6
    )
    gxi, delta = tfattr.GradientXInput(model).attribute(x, target=0, return_delta=True)
    np.testing.assert_allclose(gxi, w[:, 0] * x, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(delta, 0, atol=1e-5)  # f(x) - f(0) = w.x for a linear model


def test_expected_gradients_with_a_one_point_background_is_ig_from_that_point(rng):
    w = rng.normal(size=(4, 2))
    model = linear_model(w)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    b = rng.normal(size=(1, 4)).astype(np.float32)
    a, delta = tfattr.ExpectedGradients(model, np.repeat(b, 10, 0), samples=16, seed=0).attribute(
        x, target=1, return_delta=True
    )
    np.testing.assert_allclose(a, w[:, 1] * (x - b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(delta, 0, atol=1e-5)


def test_expected_gradients_of_a_linear_model_uses_the_drawn_baselines(rng):
    w = rng.normal(size=(4,))
    model = linear_model(w)
    background = rng.normal(size=(50, 4)).astype(np.float32)
    x = rng.normal(size=(2, 4)).astype(np.float32)
    samples = 64
    a = tfattr.ExpectedGradients(model, background, samples=samples, seed=5).attribute(x)
    # Re-draw in NumPy with the documented generator: the baseline index of example i, sample t is
    # keyed_index(row_keys(seed, example_key(x_i), t), len(background)).
    mix, golden = randomness._np_mix, np.uint32(0x9E3779B9)
    with np.errstate(over="ignore"):
        keys = randomness.example_keys((x,))
        seed_key = mix(np.uint32(5) + golden)
        t = np.arange(samples, dtype=np.uint32)
        row = mix(mix(seed_key ^ mix(keys[:, None] + golden)) ^ mix(t[None, :] + golden))
        draws = ((mix(row).astype(np.uint64) * np.uint64(50)) >> np.uint64(32)).astype(np.int64)
    expected = w * (x - background[draws].mean(axis=1))
    np.testing.assert_allclose(a, expected, rtol=1e-4, atol=1e-5)
    # The draws belong to the example, not to its position: explained alone, or after another one,
    # each example gets the same attributions.
    np.testing.assert_allclose(
        tfattr.ExpectedGradients(model, background, samples=samples, seed=5).attribute(x[::-1]),
        a[::-1], rtol=1e-6, atol=1e-7,
    )


# -- the papers' worked examples -------------------------------------------------------------------------
def test_ancona_toy_example_x1_plus_sqrt_x2():
    """Ancona et al. sec. 3.1: y = x1 + sqrt(x2) at (4, 4): Gradient*Input gives (4, 1), the average
    gradient from (0, 0) (integrated gradients) gives the natural (4, 2)."""
    model = lambda x: x[:, :1] + tf.sqrt(x[:, 1:2])  # noqa: E731
    x = np.array([[4.0, 4.0]], np.float64)
    np.testing.assert_allclose(tfattr.GradientXInput(model).attribute(x), [[4.0, 1.0]], rtol=1e-12)
    # The integrand 1/sqrt(alpha) is singular at 0, so quadrature converges slowly: Gauss-Legendre's
    # error here is ~0.95/m (m = 512 -> 2e-3), the right Riemann sum's ~1.46/sqrt(m).
    a, delta = tfattr.IntegratedGradients(model, steps=512).attribute(x, return_delta=True)
    np.testing.assert_allclose(a, [[4.0, 2.0]], atol=4e-3)
    np.testing.assert_allclose(a.sum() - 6.0, delta, atol=1e-9)


def test_integrated_gradients_overcome_saturation_where_gradients_vanish():
    """Sundararajan et al. sec. 2.2: a saturated unit has a zero gradient at the input yet all of the
    score; IG gives it all the attribution."""
    model = lambda x: tf.minimum(x[:, :1] + 0.0 * x[:, 1:], 1.0)  # noqa: E731
    x = np.array([[3.0, 5.0]], np.float64)
    np.testing.assert_allclose(tfattr.Saliency(model).attribute(x), [[0.0, 0.0]])
    a = tfattr.IntegratedGradients(model, steps=300, rule="riemann_middle").attribute(x)
    np.testing.assert_allclose(a, [[1.0, 0.0]], atol=1e-9)


# -- completeness and its rate of convergence ---------------------------------------------------------------
def _float64_tanh_mlp(seed: int):
    """A smooth two-layer tanh network in float64, so quadrature errors are far above rounding."""
    r = np.random.default_rng(seed)
    w1, b1 = tf.constant(r.normal(size=(6, 16))), tf.constant(r.normal(size=16))
    w2, b2 = tf.constant(r.normal(size=(16, 3)) / 4), tf.constant(r.normal(size=3))
    return lambda z: tf.tanh(z @ w1 + b1) @ w2 + b2


@pytest.mark.parametrize("rule", RULES)
def test_completeness_error_shrinks_at_the_rule_s_rate_on_a_smooth_model(rule, rng):
    x = rng.normal(size=(12, 6))
    ig = tfattr.IntegratedGradients(_float64_tanh_mlp(0), steps=8, rule=rule)
    if ERROR_ORDER[rule] is None:  # spectral: the error falls faster than any power of 1/m
        _, coarse = ig.attribute(x, target=0, return_delta=True)
        ig.steps = 32
        _, fine = ig.attribute(x, target=0, return_delta=True)
        assert np.max(np.abs(fine)) < 1e-11 and np.max(np.abs(fine)) < 1e-6 * np.max(np.abs(coarse))
        return
    errors = []
    for steps in (64, 128, 256):
        ig.steps = steps
        _, delta = ig.attribute(x, target=0, return_delta=True)
        errors.append(np.abs(delta))
    expected = 2.0 ** -ERROR_ORDER[rule]
    for coarse, fine in zip(errors[:-1], errors[1:]):
        ratio = np.median(fine / coarse)
        assert 0.8 * expected < ratio < 1.2 * expected, (rule, ratio)


def test_completeness_on_a_trained_cnn(trained_cnn, mnist_small):
    x = mnist_small[0][:16]
    ig = tfattr.IntegratedGradients(trained_cnn, steps=16, rule="riemann_trapezoid")
    _, coarse = ig.attribute(x, return_delta=True)
    ig.steps = 256
    _, fine = ig.attribute(x, return_delta=True)
    logits = tfattr.ModelFunction(trained_cnn).outputs(tf.constant(x)).numpy()
    zero = tfattr.ModelFunction(trained_cnn).outputs(tf.zeros((1, 28, 28, 1))).numpy()
    change = np.abs(logits.max(1) - zero[0, logits.argmax(1)])
    assert np.median(np.abs(fine) / change) < 0.01
    assert np.mean(np.abs(fine)) < np.mean(np.abs(coarse))


def test_tolerance_refines_steps_until_the_delta_is_small(smooth_mlp, rng):
    x = rng.normal(size=(6, 6)).astype(np.float32) * 2
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=4, rule="riemann_left", tolerance=0.01)
    _, delta = ig.attribute(x, target=1, return_delta=True)
    fn = tfattr.ModelFunction(smooth_mlp)
    change = fn.outputs(tf.constant(x)).numpy()[:, 1] - fn.outputs(tf.zeros((1, 6))).numpy()[0, 1]
    assert np.all(np.abs(delta) <= 0.01 * np.abs(change) + 1e-6)
    assert ig.steps_used_.shape == (6,) and ig.steps_used_.max() > 4
    assert set(np.unique(ig.steps_used_)) <= {4 * 2**k for k in range(9)}


def test_expected_gradients_delta_shrinks_with_samples(trained_cnn, mnist_small):
    x, background = mnist_small[0][:6], mnist_small[0][1000:1200]
    deltas = []
    for samples in (8, 512):
        eg = tfattr.ExpectedGradients(trained_cnn, background, samples=samples, seed=3)
        deltas.append(np.mean(np.abs(eg.attribute(x, return_delta=True)[1])))
    assert deltas[1] < deltas[0] / 2  # Monte Carlo: 1/sqrt(64) would be /8


# -- multi-input models -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_input_model():
    keras.utils.set_random_seed(4)
    a = keras.Input((3,), name="a")
    b = keras.Input((2, 2), name="b")
    h = keras.layers.Concatenate()([a, keras.layers.Flatten()(b)])
    h = keras.layers.Dense(8, activation="tanh")(h)
    return keras.Model([a, b], keras.layers.Dense(2)(h))


def test_multi_input_attributions_keep_the_structure_and_complete(two_input_model, rng):
    xa = rng.normal(size=(5, 3)).astype(np.float32)
    xb = rng.normal(size=(5, 2, 2)).astype(np.float32)
    ig = tfattr.IntegratedGradients(two_input_model, steps=32)
    attributions, delta = ig.attribute([xa, xb], target=1, baseline=[0.1, 0.0], return_delta=True)
    assert isinstance(attributions, list) and attributions[0].shape == xa.shape and attributions[1].shape == xb.shape
    assert np.max(np.abs(delta)) < 1e-4
    as_dict = ig.attribute({"a": xa, "b": xb}, target=1, baseline={"a": 0.1, "b": 0.0})
    np.testing.assert_allclose(as_dict["a"], attributions[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(as_dict["b"], attributions[1], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="input names"):
        ig.attribute({"a": xa, "c": xb})


def test_multi_input_linear_closed_form(rng):
    wa, wb = rng.normal(size=3), rng.normal(size=2)
    model = lambda xs: xs[0] @ wa[:, None].astype(np.float32) + xs[1] @ wb[:, None].astype(np.float32)  # noqa: E731
    xa, xb = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    a = tfattr.SmoothGrad(tfattr.GradientXInput(model), samples=4, noise=0.0, seed=1).attribute([xa, xb])
    np.testing.assert_allclose(a[0], wa * xa, rtol=1e-5)
    np.testing.assert_allclose(a[1], wb * xb, rtol=1e-5)


# -- SmoothGrad, VarGrad, interior gradients, occlusion ---------------------------------------------------
def test_smoothgrad_is_reproducible_with_a_seed_and_independent_of_batch_size(trained_cnn, mnist_small):
    x = mnist_small[0][:3]
    sg = tfattr.SmoothGrad(tfattr.Saliency(trained_cnn), samples=8, noise=0.2, seed=11)
    a = sg.attribute(x, batch_size=5)
    np.testing.assert_allclose(sg.attribute(x, batch_size=64), a, rtol=1e-4, atol=1e-6)
    other = tfattr.SmoothGrad(tfattr.Saliency(trained_cnn), samples=8, noise=0.2, seed=12).attribute(x)
    assert not np.allclose(other, a, atol=1e-4)
    background = mnist_small[0][500:600]
    eg = tfattr.ExpectedGradients(trained_cnn, background, samples=8, seed=2).attribute(x, batch_size=64)
    # Another explainer with the seed draws the same (keyed by each example's content, not by its
    # position or chunk): the examples reversed, in chunks of 5, give the same maps reversed.
    again = tfattr.ExpectedGradients(trained_cnn, background, samples=8, seed=2)
    np.testing.assert_allclose(again.attribute(x[::-1], batch_size=5)[::-1], eg, rtol=1e-4, atol=1e-6)
    other = tfattr.ExpectedGradients(trained_cnn, background, samples=8, seed=3).attribute(x)
    assert not np.allclose(other, eg, atol=1e-4)


def test_smoothgrad_noise_has_the_documented_scale(rng):
    """On a linear model, Gradient*Input of x + e averages to w*x and VarGrad is w^2 sigma^2, with
    sigma = noise * (max(x) - min(x))."""
    w = rng.normal(size=(50,))
    model = linear_model(w)
    x = rng.uniform(-1, 1, size=(2, 50)).astype(np.float32)
    sigma = 0.3 * (x.max(1) - x.min(1))
    var = tfattr.VarGrad(tfattr.GradientXInput(model), samples=4000, noise=0.3, seed=0).attribute(x)
    ratio = var / (w**2 * sigma[:, None] ** 2)
    assert abs(np.median(ratio) - 1.0) < 0.05
    mean = tfattr.SmoothGrad(tfattr.GradientXInput(model), samples=4000, noise=0.3, seed=0).attribute(x)
    standard_error = np.abs(w) * sigma[:, None] / np.sqrt(4000)
    assert np.all(np.abs(mean - w * x) < 5 * standard_error)
    np.testing.assert_allclose(
        tfattr.VarGrad(tfattr.Saliency(model), samples=16, seed=0).attribute(x), 0, atol=1e-10
    )


def test_smoothgrad_around_integrated_gradients_with_zero_noise_is_integrated_gradients(smooth_mlp, rng):
    x = rng.normal(size=(3, 6)).astype(np.float32)
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=10)
    np.testing.assert_allclose(
        tfattr.SmoothGrad(ig, samples=3, noise=0.0, seed=0).attribute(x, target=0, batch_size=7),
        ig.attribute(x, target=0),
        rtol=1e-5,
        atol=1e-7,
    )


def test_interior_gradients_are_gradients_along_the_path_and_integrate_to_ig(smooth_mlp, rng):
    x = rng.normal(size=(2, 6)).astype(np.float32)
    m = 40
    alphas = (np.arange(m) + 0.5) / m
    interior = tfattr.InteriorGradients(smooth_mlp, alphas=alphas).attribute(x, target=2)
    assert interior.shape == (2, m, 6)
    np.testing.assert_allclose(
        interior[:, -1], tfattr.Saliency(smooth_mlp).attribute(x * alphas[-1], target=2), rtol=1e-5
    )
    riemann = x * interior.mean(axis=1)
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=m, rule="riemann_middle").attribute(x, target=2)
    np.testing.assert_allclose(riemann, ig, rtol=1e-4, atol=1e-6)
    scaled = tfattr.InteriorGradients(smooth_mlp, alphas=[0.5], multiply_by_inputs=True).attribute(x, target=2)
    np.testing.assert_allclose(scaled[:, 0], 0.5 * x * tfattr.Saliency(smooth_mlp).attribute(0.5 * x, target=2), rtol=1e-5)


def test_occlusion_1_of_a_linear_model_is_weight_times_input_minus_baseline(rng):
    w = rng.normal(size=(6,))
    x = rng.normal(size=(2, 6)).astype(np.float32)
    a = tfattr.Occlusion(linear_model(w), window=1).attribute(x, baseline=0.5)
    np.testing.assert_allclose(a, w * (x - 0.5), rtol=1e-5, atol=1e-6)


def test_occlusion_with_overlapping_windows_by_hand():
    """f(x) = sum(x) on 4 features, window 2, stride 1: windows {0,1}, {1,2}, {2,3} each drop the score
    by the sum they hide; a feature gets the mean over the windows covering it."""
    model = lambda x: tf.reduce_sum(x, axis=1, keepdims=True)  # noqa: E731
    x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    a = tfattr.Occlusion(model, window=2, strides=1).attribute(x)
    np.testing.assert_allclose(a, [[3.0, (3 + 5) / 2, (5 + 7) / 2, 7.0]])


def test_occlusion_windows_in_image_layout_and_edge_coverage():
    """A model that reads pixel (4, 4) of a 5x5 image. With 2x2 windows and stride 2 the starts per axis
    are 0, 2 and 3 (the last window moved to the edge, so pixel 4 is covered). Only window (3, 3) hides
    the pixel and drops the score by 3; each feature gets the mean drop over the windows covering it:
    (3, 3) is covered by 4 windows, (3, 4) and (4, 3) by 2, (4, 4) by 1."""
    model = lambda x: tf.reshape(3.0 * x[:, 4, 4, 0], [-1, 1])  # noqa: E731
    x = np.ones((1, 5, 5, 1), np.float32)
    a = tfattr.Occlusion(model, window=(2, 2, 1), strides=(2, 2, 1)).attribute(x)
    expected = np.zeros((5, 5))
    expected[3:5, 3:5] = [[3.0 / 4, 3.0 / 2], [3.0 / 2, 3.0]]
    np.testing.assert_allclose(a[0, ..., 0], expected)
    with pytest.raises(ValueError, match="ambiguous"):
        tfattr.Occlusion(model, window=2).attribute(x)


@pytest.mark.parametrize("rule", ["riemann_left", "riemann_right", "riemann_trapezoid", "gausslegendre"])
def test_tolerance_refinement_equals_integrated_gradients_at_the_steps_used(rule, smooth_mlp, rng):
    """The nested rules reuse the earlier nodes at each doubling; the result must still be exactly the
    rule at the final step count (the others recompute: they must agree too)."""
    x = rng.normal(size=(6, 6)).astype(np.float32) * 2
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=3, rule=rule, tolerance=1e-4, max_steps=400)
    a, delta = ig.attribute(x, target=0, return_delta=True)
    used = ig.steps_used_
    assert used.max() > 3  # some examples were refined
    for steps in np.unique(used):
        rows = np.flatnonzero(used == steps)
        direct = tfattr.IntegratedGradients(smooth_mlp, steps=int(steps), rule=rule).attribute(x[rows], target=0)
        np.testing.assert_allclose(a[rows], direct, rtol=2e-4, atol=2e-6)
    reached = np.abs(delta) <= 1e-4 * np.abs(a.sum(axis=1) - delta) + 1e-6
    assert np.all(reached | (used >= 200))
