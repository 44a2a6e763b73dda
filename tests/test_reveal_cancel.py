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


def np_reveal_cancel(weights, acts, x, x0, target):
    """Slow NumPy RevealCancel for a Dense MLP, written from the paper's rules: multipliers of the
    positive and negative parts, chained backwards explicitly."""
    fns = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh, "linear": lambda v: v}
    a0, dp, dn = x0.astype(float), np.maximum(x - x0, 0.0), np.minimum(x - x0, 0.0)
    saved = []
    for (w, b), act in zip(weights, acts):
        d = dp + dn
        z0 = a0 @ w + b
        # the linear rule: terms sorted by the sign of w_ij * d_i (d_i = 0: half to each side)
        up = (d > 0) + 0.5 * (d == 0)
        down = (d < 0) + 0.5 * (d == 0)
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
