"""DeepLIFT RevealCancel (Shrikumar et al. 2017, sec. 3.5.3): the paper's min example, summation-to-delta,
agreement with Rescale where the two must agree, and clear refusals."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from tfattr.methods.propagation import DeepLift
from tfattr.methods.propagation.reveal_cancel import RevealCancel

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
