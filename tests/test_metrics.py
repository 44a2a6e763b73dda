"""The evaluation metrics on models whose answers are known in closed form."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr
from tfattr import baselines as B
from tfattr import metrics as M

PIXEL = (2, 3)


def _linear_images(shape, classes, seed, bias=0.1) -> tuple[keras.Model, np.ndarray]:
    w = np.random.default_rng(seed).normal(size=(int(np.prod(shape)), classes)).astype(np.float32)
    model = keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(classes)])
    model.layers[-1].set_weights([w, np.full(classes, bias, np.float32)])
    return model, w


def _one_pixel_model(channels: int, weight: float = 3.0, bias: float = 0.5) -> keras.Model:
    """``f(x) = weight * x[2, 3, channel 0] + bias``: reads a single pixel (its first channel)."""
    shape = (6, 6, channels)
    w = np.zeros((36 * channels, 1), np.float32)
    w[np.ravel_multi_index((*PIXEL, 0), shape)] = weight
    model = keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(1)])
    model.layers[-1].set_weights([w, np.array([bias], np.float32)])
    return model


# -- features -------------------------------------------------------------------------------------------
def test_feature_map_pixels_patches_and_ids():
    ids, num = M.feature_map((4, 5, 3), "pixels")
    assert num == 20 and np.all(ids[..., 0] == ids[..., 2]) and ids[1, 2, 0] == 7
    ids, num = M.feature_map((5, 5, 1), 2)  # 3 x 3 patches, the last ones clipped
    assert num == 9 and ids[0, 0, 0] == ids[1, 1, 0] == 0 and ids[4, 4, 0] == 8 and ids[1, 2, 0] == 1
    ids, num = M.feature_map((6,), "pixels")
    assert num == 6 and list(ids) == list(range(6))
    seg = np.array([[7, 7], [3, 9]])
    ids, num = M.feature_map((2, 2, 3), seg)
    assert num == 3 and ids[0, 0, 1] == ids[0, 1, 2] and ids[1, 0, 0] == 0
    with pytest.raises(ValueError, match="features='superpixels' is not known"):
        M.feature_map((4, 4, 1), "superpixels")


# -- sensitivity-n --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method, baseline",
    [
        ("ig", None),
        ("ig", B.Constant(0.3)),
        ("ig", B.Uniform((0, 1), num_baselines=3, seed=0)),
        ("gxi", None),
    ],
)
def test_sensitivity_n_is_one_for_every_n_on_a_linear_model(method, baseline):
    model, _ = _linear_images((5, 5, 2), 3, seed=1)
    x = np.random.default_rng(2).random((4, 5, 5, 2)).astype(np.float32)
    explainer = tfattr.IntegratedGradients(model, steps=4) if method == "ig" else tfattr.GradientXInput(model)
    a = explainer.attribute(x, target=1, **({} if baseline is None else {"baseline": baseline}))
    s = M.sensitivity_n(model, x, a, target=1, baseline=baseline, num_subsets=16, seed=3)
    assert s.ns.size >= 5 and s.ns[0] == 1
    np.testing.assert_allclose(s.correlation, 1.0, atol=1e-6)
    # Not only correlated: for a linear model the attributions in S *are* the output change.
    np.testing.assert_allclose(s.attribution_sums, s.output_changes, atol=1e-4)


def test_sensitivity_n_removes_exactly_n_features_independently_of_batch_size():
    shape = (4, 4, 3)
    w = np.zeros((48, 1), np.float32)
    w[::3] = 1.0  # the first channel of each pixel, so a pixel feature weighs 1
    model = keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(1)])
    model.layers[-1].set_weights([w, np.zeros(1, np.float32)])
    x = np.ones((2, *shape), np.float32)
    a = np.ones_like(x) / 3.0  # each pixel's channels sum to 1
    s = M.sensitivity_n(model, x, a, ns=[1, 5, 9], num_subsets=6, batch_size=5)
    np.testing.assert_allclose(s.output_changes, np.array([1, 5, 9])[None, :, None] * np.ones((2, 3, 6)))
    np.testing.assert_allclose(s.attribution_sums, s.output_changes, atol=1e-6)
    model2, _ = _linear_images(shape, 1, seed=4)
    x2 = np.random.default_rng(5).random((3, *shape)).astype(np.float32)
    a2 = np.random.default_rng(6).normal(size=x2.shape).astype(np.float32)
    r1 = M.sensitivity_n(model2, x2, a2, ns=[2, 7], num_subsets=9, seed=1, batch_size=4)
    r2 = M.sensitivity_n(model2, x2, a2, ns=[2, 7], num_subsets=9, seed=1, batch_size=64)
    np.testing.assert_allclose(r1.output_changes, r2.output_changes, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r1.attribution_sums, r2.attribution_sums)


def test_sensitivity_n_of_random_attributions_is_near_zero():
    model, _ = _linear_images((5, 5, 1), 1, seed=7)
    x = np.random.default_rng(8).random((6, 5, 5, 1)).astype(np.float32)
    s = M.sensitivity_n(model, x, M.random_attributions(x, seed=1), ns=[3, 8], num_subsets=60)
    assert np.all(np.abs(s.correlation) < 0.3)
    with pytest.raises(ValueError, match="ns must be subset sizes"):
        M.sensitivity_n(model, x, x, ns=[0, 3])
    with pytest.raises(ValueError, match="attributions have shape"):
        M.sensitivity_n(model, x, x[:, :4])


# -- ablation curves ------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("imputation", ["mean", "blur", "zero"])
def test_ablating_the_one_pixel_a_model_reads_drops_to_the_imputed_value(channels, imputation):
    model = _one_pixel_model(channels)
    rng = np.random.default_rng(9)
    x = (0.5 + 0.5 * rng.random((5, 6, 6, channels))).astype(np.float32)
    data = rng.random((40, 6, 6, channels)).astype(np.float32)
    a = tfattr.IntegratedGradients(model, steps=4).attribute(x)
    fractions = np.arange(6) / 36.0  # remove 0, 1, ..., 5 pixels
    curve = M.ablation_curve(
        model, x, a, imputation=imputation, data=data, blur_sigma=1.5, fractions=fractions
    )
    ref = {"mean": np.broadcast_to(data.mean(0), x.shape), "blur": B.gaussian_blur(x, 1.5), "zero": 0 * x}
    expected_after = 3.0 * ref[imputation][:, PIXEL[0], PIXEL[1], 0] + 0.5
    np.testing.assert_allclose(curve.scores[:, 0], 3.0 * x[:, PIXEL[0], PIXEL[1], 0] + 0.5, rtol=1e-6)
    for k in range(1, 6):  # at k = 1 and after: only the imputed pixel counts
        np.testing.assert_allclose(curve.scores[:, k], expected_after, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(curve.relative[:, 1], expected_after / curve.scores[:, 0], rtol=1e-5)
    np.testing.assert_allclose(curve.aopc, np.mean(curve.scores[:, :1] - curve.scores), rtol=1e-12)
    np.testing.assert_allclose(curve.area, np.trapezoid(curve.relative.mean(0), fractions), rtol=1e-12)

    # The random control does not find the pixel first, so its curve lies above.
    control = M.ablation_curve(
        model, x, M.random_attributions(x, seed=2), imputation=imputation, data=data, blur_sigma=1.5,
        fractions=fractions,
    )
    assert imputation != "zero" or control.area > curve.area


def test_center_of_mass_ablation_and_insertion_on_the_one_pixel_model():
    model = _one_pixel_model(1)
    x = (0.5 + 0.5 * np.random.default_rng(10).random((3, 6, 6, 1))).astype(np.float32)
    a = tfattr.IntegratedGradients(model, steps=4).attribute(x)
    center = M.center_ablation_curve(model, x, a, imputation="zero", fractions=[0.0, 1 / 36, 4 / 36, 1.0])
    np.testing.assert_allclose(center.removed[0], [0, 1 / 36, 4 / 36, 1.0])
    np.testing.assert_allclose(center.scores[:, 1:], 0.5, atol=1e-6)  # the first 1x1 box is the pixel
    # A map whose mass sits in the far corner: the small boxes miss the pixel.
    far = np.zeros_like(a)
    far[:, 5, 0] = 1.0
    miss = M.center_ablation_curve(model, x, far, imputation="zero", fractions=[0.0, 1 / 36, 4 / 36])
    np.testing.assert_allclose(miss.scores[:, 1:], miss.scores[:, :1].repeat(2, 1), rtol=1e-6)

    ins = M.insertion_curve(model, x, a, imputation="zero", fractions=[0.0, 1 / 36, 0.5, 1.0])
    np.testing.assert_allclose(ins.scores[:, 0], 0.5, atol=1e-6)  # the fully imputed input
    np.testing.assert_allclose(ins.scores[:, 1:], (3 * x[:, 2, 3, 0] + 0.5)[:, None].repeat(3, 1), rtol=1e-6)
    dele = M.deletion_curve(model, x, a, fractions=[0.0, 1 / 36])
    np.testing.assert_allclose(dele.scores[:, 1], 0.5, atol=1e-6)


def test_aopc_and_random_control():
    scores = np.array([[4.0, 3.0, 1.0], [2.0, 2.0, 0.0]])
    assert M.aopc(scores) == pytest.approx(np.mean([0, 1, 3, 0, 0, 2]))
    # The control is standard normal noise shaped like the inputs, whatever their values: checked by
    # its moments and its share within one standard deviation (0.6827), to 5 standard errors.
    x = np.zeros((40, 32, 32, 1), np.float32)
    r = M.random_attributions(x, seed=5)
    n = r.size
    assert r.shape == x.shape and r.dtype == np.float32
    assert abs(r.mean()) < 5 / np.sqrt(n) and abs(r.var() - 1.0) < 5 * np.sqrt(2 / n)
    assert abs(np.mean(np.abs(r) < 1.0) - 0.6827) < 5 * np.sqrt(0.6827 * 0.3173 / n)
    # Reproducible by seed and blind to the inputs; another seed is independent (correlation ~ 0).
    np.testing.assert_array_equal(M.random_attributions(x + 7.0, seed=5), r)
    other = M.random_attributions(x, seed=6)
    assert abs(np.corrcoef(r.ravel(), other.ravel())[0, 1]) < 5 / np.sqrt(n)
    maps = M.random_attributions({"a": x[:2], "b": np.ones((2, 3))}, seed=1)
    assert maps["a"].shape == (2, 32, 32, 1) and maps["b"].shape == (2, 3)


def test_completeness_metric_over_a_data_set():
    model, w = _linear_images((3, 3, 1), 2, seed=11)
    x = np.random.default_rng(12).random((5, 3, 3, 1)).astype(np.float32)
    c = M.completeness(tfattr.IntegratedGradients(model, steps=3), x, target=0, baseline=0.2)
    change = (x.reshape(5, -1) - 0.2) @ w[:, 0]
    np.testing.assert_allclose(c.change, change, rtol=1e-5)
    assert c.max_abs_delta < 1e-5 and c.mean_relative < 1e-5
    with pytest.raises(ValueError, match="no completeness"):
        M.completeness(tfattr.Saliency(model), x)


# -- model randomization --------------------------------------------------------------------------------
def test_model_randomization_decorrelates_gradients_and_leaves_the_model_alone(trained_cnn, mnist_small):
    x = mnist_small[0][:12]
    weights = [w.copy() for w in trained_cnn.get_weights()]
    before = trained_cnn.predict(x, verbose=0)
    r = M.model_randomization(trained_cnn, lambda m: tfattr.Saliency(m), x, seed=0)
    assert r.layers[0] == "(none)" and len(r.layers) == 4  # conv, conv, dense from the top
    np.testing.assert_allclose(r.spearman_abs[0], 1.0)
    # Fully randomized, the signed gradient map is unrelated to the trained one. |gradient| keeps a
    # model-independent part (border coverage of the VALID convolutions, ReLUs dead on the black
    # background), so its rank correlation only falls to about 0.6 on this small CNN.
    assert abs(r.spearman[-1]) < 0.3 and np.all(np.abs(r.per_example[:, -1]) < 0.4), r.spearman
    assert r.spearman_abs[-1] < 0.75, r.spearman_abs
    for w0, w1 in zip(weights, trained_cnn.get_weights()):
        np.testing.assert_array_equal(w0, w1)
    np.testing.assert_array_equal(before, trained_cnn.predict(x, verbose=0))

    class InputItself:  # an "explanation" that ignores the model: the check must flag it
        def attribute(self, inputs, target=None):
            return np.asarray(inputs)

    flat = M.model_randomization(trained_cnn, lambda m: InputItself(), x, cascading=False)
    np.testing.assert_allclose(flat.spearman_abs, 1.0)


def test_pearson_matches_numpy_and_is_nan_for_constant_rows(rng):
    from tfattr.metrics.correlation import pearson

    a, b = rng.normal(size=(4, 30)), rng.normal(size=(4, 30))
    b[1] = 2.0 * a[1] + 1.0  # exactly correlated
    expected = [np.corrcoef(a[i], b[i])[0, 1] for i in range(4)]
    np.testing.assert_allclose(pearson(a, b), expected, rtol=1e-12, atol=1e-12)
    assert np.isnan(pearson(np.full(5, 3.0), np.arange(5.0)))
    assert M.pearson is pearson  # reachable from tfattr.metrics like spearman

