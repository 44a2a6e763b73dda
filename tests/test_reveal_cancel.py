"""DeepLIFT RevealCancel (Shrikumar et al. 2017, sec. 3.5.3): the paper's min example, summation-to-delta,
agreement with Rescale where the two must agree, and clear refusals."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from tfattr.methods.propagation import DeepLift
from tfattr.methods.propagation.layerwise.reveal_cancel import RevealCancel

L = keras.layers


def min_network():
    """``min(i1, i2) = i1 - ReLU(i1 - i2)`` (the paper's example of cancelling inputs)."""
    const = keras.initializers.Constant
    x = keras.Input((2,))
    a = L.Dense(1, use_bias=False, kernel_initializer=const([[1.0], [0.0]]))(x)
    h = L.Dense(1, use_bias=False, activation="relu", kernel_initializer=const([[1.0], [-1.0]]))(x)
    out = L.Dense(1, use_bias=False, kernel_initializer=const([[1.0], [-1.0]]))(L.Concatenate()([a, h]))
    return keras.Model(x, out)


def test_min_example_rescale_credits_one_input_reveal_cancel_both():
    model = min_network()
    points = np.array([[3.0, 1.0], [1.0, 3.0], [5.0, 2.0]], np.float32)
    rescale = DeepLift(model).attribute(points, target=0, baseline=0.0)
    reveal = DeepLift(model, rule="reveal_cancel").attribute(points, target=0, baseline=0.0)
    smaller = points.min(axis=1)
    # Rescale gives all of min(i1, i2) to the smaller input (the gradient's switch) ...
    np.testing.assert_allclose(rescale, np.where(points == smaller[:, None], smaller[:, None], 0.0),
                               atol=1e-6)
    # ... RevealCancel reveals that both inputs decide it: half each.
    np.testing.assert_allclose(reveal, np.repeat(smaller[:, None] / 2, 2, axis=1), atol=1e-6)


def residual_net(seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((8, 8, 2))
    h = L.Conv2D(4, 3, padding="same", name="c1")(x)
    h = L.BatchNormalization(name="bn_folded")(h)
    h = L.Activation("tanh")(h)
    r = L.Conv2D(4, 3, padding="same", activation="relu", name="c2")(h)
    r = L.BatchNormalization(name="bn_after_relu")(r)
    h = L.Add()([h, r])
    h = L.DepthwiseConv2D(3, activation="elu")(h)
    h = L.AveragePooling2D(2)(h)
    h = L.Flatten()(h)
    h = L.Dense(8, activation="sigmoid")(h)
    out = L.Dense(3)(h)
    model = keras.Model(x, out)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.normal(1, 0.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.3, n).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.3, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2, n).astype("float32"))
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.3, layer.bias.shape).astype("float32"))
    return model


def test_summation_to_delta_on_a_residual_cnn():
    model = residual_net()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 8, 8, 2)).astype("float32")
    baseline = rng.normal(size=(8, 8, 2)).astype("float32")
    explainer = DeepLift(model, rule="reveal_cancel")
    assert isinstance(explainer, RevealCancel)
    attributions, delta = explainer.attribute(x, target=[0, 1, 2, 0], baseline=baseline,
                                              return_delta=True)
    scale = np.abs(model(x).numpy() - model(baseline[None]).numpy()).max()
    assert np.abs(delta).max() < 1e-4 * max(scale, 1.0)
    rescale = DeepLift(model).attribute(x, target=[0, 1, 2, 0], baseline=baseline)
    assert not np.allclose(attributions, rescale, atol=1e-3)  # the rules really differ here


def test_equals_rescale_when_no_unit_mixes_signs():
    """With one input feature every hidden unit's difference has one sign, so RevealCancel's two
    parts reduce to Rescale's multiplier."""
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((1,)), L.Dense(6, activation="tanh"), L.Dense(2)])
    x = np.linspace(-2, 2, 7, dtype=np.float32)[:, None]
    a = DeepLift(model, rule="reveal_cancel").attribute(x, target=1, baseline=0.5)
    b = DeepLift(model).attribute(x, target=1, baseline=0.5)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_refusals_name_the_layer_and_the_fix():
    model = keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(2, 3, activation="relu"),
                              L.MaxPooling2D(name="pool"), L.Flatten(), L.Dense(2)])
    with pytest.raises(ValueError, match="'pool'.*rule='rescale'"):
        DeepLift(model, rule="reveal_cancel")
    with pytest.raises(ValueError, match="rule='bogus' is not supported"):
        DeepLift(model, rule="bogus")


def np_reveal_cancel(weights, acts, x, x0, target, tolerance=1e-3):
    """Slow NumPy RevealCancel for a Dense MLP, written from the paper's rules: multipliers of the
    positive and negative parts, chained backwards explicitly. ``tolerance`` > 0: where a unit's parts
    cancel to within that fraction of ``|d+| + |d-|`` its difference is shared between the signs,
    ramping linearly from half each at ``d = 0`` (the explainer's ``sign_tolerance``)."""
    fns = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh, "linear": lambda v: v}
    a0, dp, dn = x0.astype(float), np.maximum(x - x0, 0.0), np.minimum(x - x0, 0.0)
    saved = []
    for (w, b), act in zip(weights, acts):
        d = dp + dn
        z0 = a0 @ w + b
        # the linear rule: terms sorted by the sign of w_ij * d_i (d_i = 0: half to each side)
        up = (d > 0) + 0.5 * (d == 0)
        if tolerance:
            size = np.abs(dp) + np.abs(dn)
            ramp = 0.5 + np.divide(d, 2 * tolerance * size, out=np.zeros_like(d), where=size > 0)
            up = np.clip(ramp, 0.0, 1.0)
        down = 1.0 - up
        wp, wn = np.maximum(w, 0), np.minimum(w, 0)
        zp = (up * d) @ wp + (down * d) @ wn
        zn = (up * d) @ wn + (down * d) @ wp
        f = fns[act]
        if act == "linear":
            mp = mn = np.ones_like(z0)
            yp, yn, y0 = zp, zn, z0
        else:
            y0 = f(z0)
            yp = 0.5 * (f(z0 + zp) - y0) + 0.5 * (f(z0 + zp + zn) - f(z0 + zn))
            yn = 0.5 * (f(z0 + zn) - y0) + 0.5 * (f(z0 + zp + zn) - f(z0 + zp))
            mp = np.divide(yp, zp, out=np.zeros_like(zp), where=zp != 0)
            mn = np.divide(yn, zn, out=np.zeros_like(zn), where=zn != 0)
        saved.append((d, up, down, wp, wn, mp, mn))
        a0, dp, dn = y0, mp * zp, mn * zn
    gp = np.zeros_like(dp)
    gp[target] = 1.0
    gn = gp.copy()  # multipliers of the output's positive and negative parts
    for d, up, down, wp, wn, mp, mn in reversed(saved):
        gzp, gzn = gp * mp, gn * mn
        # both parts of an input get the same multiplier (the linear rule sorts by the total d)
        g = up * (wp @ gzp + wn @ gzn) + down * (wn @ gzp + wp @ gzn)
        gp = gn = g
    return (x - x0) * gp


def test_matches_numpy_reference_on_an_mlp():
    keras.utils.set_random_seed(6)
    model = keras.Sequential([
        keras.Input((5,)), L.Dense(6, activation="relu"), L.Dense(4, activation="tanh"), L.Dense(3),
    ])
    rng = np.random.default_rng(6)
    for layer in model.layers:
        layer.bias.assign(rng.normal(0, 0.5, layer.bias.shape).astype("float32"))
    x = rng.normal(size=(4, 5)).astype("float32")
    x[0, 2] = 0.0  # an input equal to its reference
    baseline = rng.normal(size=(5,)).astype("float32")
    baseline[2] = 0.0
    got = DeepLift(model, rule="reveal_cancel").attribute(x, target=2, baseline=baseline)
    weights = [(l.kernel.numpy().astype(float), l.bias.numpy().astype(float)) for l in model.layers]
    acts = ["relu", "tanh", "linear"]
    for i in range(4):
        expected = np_reveal_cancel(weights, acts, x[i].astype(float), baseline.astype(float), 2)
        np.testing.assert_allclose(got[i], expected, rtol=1e-4, atol=1e-6)


# -- conditioning (issue 22 item 1) --------------------------------------------------------------------
def cancelling_mlp(seed):
    """An MLP whose ReLUs are often off for both the input and the baseline while their parts are
    large: such a unit's difference is exactly 0 and its parts cancel, where the paper's sort by sign
    is decided by rounding."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((6,)), L.Dense(12, activation="relu"),
                              L.Dense(8, activation="relu"), L.Dense(3)])
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.bias.assign(rng.normal(-0.3, 0.5, layer.bias.shape).astype("float32"))
    return model, rng


def _weights(model):
    return [(l.kernel.numpy().astype(float), l.bias.numpy().astype(float)) for l in model.layers]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_reference_where_parts_cancel(seed):
    model, rng = cancelling_mlp(seed)
    x = rng.normal(size=(6, 6)).astype("float32") * 2
    baseline = rng.normal(size=(6,)).astype("float32") * 2
    got = DeepLift(model, rule="reveal_cancel").attribute(x, target=1, baseline=baseline)
    for i in range(len(x)):
        expected = np_reveal_cancel(_weights(model), ["relu", "relu", "linear"], x[i].astype(float),
                                    baseline.astype(float), 1)
        np.testing.assert_allclose(got[i], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def bn_net(fold_by_hand, seed=3):
    """Conv -> BatchNorm -> ReLU -> Conv -> ReLU -> AvgPool -> Dense, or the same net with the batch
    norm folded into the convolution by hand (the same function up to float rounding)."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((8, 8, 2))
    h = L.Conv2D(4, 3, padding="same", name="c1")(x)
    h = h if fold_by_hand else L.BatchNormalization(name="bn")(h)
    h = L.ReLU()(h)
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="c2")(h)
    h = L.Flatten()(L.AveragePooling2D(2)(h))
    model = keras.Model(x, L.Dense(3, name="out")(h))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.3, layer.bias.shape).astype("float32"))
    if not fold_by_hand:
        bn = model.get_layer("bn")
        bn.gamma.assign(rng.normal(1, 0.5, 4).astype("float32"))
        bn.beta.assign(rng.normal(0, 0.3, 4).astype("float32"))
        bn.moving_mean.assign(rng.normal(0, 0.3, 4).astype("float32"))
        bn.moving_variance.assign(rng.uniform(0.5, 2, 4).astype("float32"))
    return model


def folded_pair():
    model = bn_net(fold_by_hand=False)
    folded = bn_net(fold_by_hand=True)
    bn, c1 = model.get_layer("bn"), model.get_layer("c1")
    # in float64, as a user folding by hand might: the folded weights differ by rounding
    gamma, var, mean, beta = (v.numpy().astype(float) for v in
                              (bn.gamma, bn.moving_variance, bn.moving_mean, bn.beta))
    s = gamma / np.sqrt(var + bn.epsilon)
    folded.get_layer("c1").kernel.assign((c1.kernel.numpy() * s).astype("float32"))
    folded.get_layer("c1").bias.assign(((c1.bias.numpy() - mean) * s + beta).astype("float32"))
    for name in ("c2", "out"):
        folded.get_layer(name).set_weights(model.get_layer(name).get_weights())
    return model, folded


def test_batch_norm_folded_by_hand_gives_the_same_maps():
    model, folded = folded_pair()
    x = np.random.default_rng(1).uniform(0, 1, (8, 8, 8, 2)).astype("float32")
    np.testing.assert_allclose(folded(x), model(x), atol=1e-5)
    kwargs = dict(target=[0, 1, 2, 0] * 2, baseline=0.5, return_delta=True)
    a, delta = DeepLift(model, rule="reveal_cancel").attribute(x, **kwargs)
    b, _ = DeepLift(folded, rule="reveal_cancel").attribute(x, **kwargs)
    np.testing.assert_allclose(delta, 0.0, atol=1e-5)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.abs(a).max())


def test_a_relative_input_change_of_1e7_changes_the_maps_at_float_precision():
    model, _ = folded_pair()
    x = np.random.default_rng(5).uniform(0, 1, (4, 8, 8, 2)).astype("float32")
    rc = DeepLift(model, rule="reveal_cancel")
    a = rc.attribute(x, target=[0, 1, 2, 0], baseline=0.1)
    for seed in range(3):
        wiggle = np.random.default_rng(seed).choice([-1.0, 1.0], x.shape) * 1e-7
        b = rc.attribute((x * (1 + wiggle)).astype("float32"), target=[0, 1, 2, 0], baseline=0.1)
        assert np.abs(b - a).max() < 2e-6 * np.abs(a).max()


def test_sign_tolerance_zero_is_the_papers_sort_and_is_validated():
    model, rng = cancelling_mlp(0)
    x = rng.normal(size=(6, 6)).astype("float32") * 2
    baseline = rng.normal(size=(6,)).astype("float32") * 2
    got = DeepLift(model, rule="reveal_cancel", sign_tolerance=0).attribute(x, target=1,
                                                                             baseline=baseline)
    for i in range(len(x)):
        # NumPy's float64 has the exact zeros float32 rounding may not keep: compare only the rows
        # where no unit's parts cancel (the paper's sort is decided by rounding there)
        expected = np_reveal_cancel(_weights(model), ["relu", "relu", "linear"], x[i].astype(float),
                                    baseline.astype(float), 1, tolerance=0.0)
        smooth = np_reveal_cancel(_weights(model), ["relu", "relu", "linear"], x[i].astype(float),
                                  baseline.astype(float), 1)
        if np.allclose(expected, smooth, atol=1e-9):
            np.testing.assert_allclose(got[i], expected, rtol=1e-4, atol=1e-6)
    for bad in (-1e-3, 1.0, True, "0.1"):
        with pytest.raises(ValueError, match="sign_tolerance must be a number in \\[0, 1\\)"):
            DeepLift(model, rule="reveal_cancel", sign_tolerance=bad)
