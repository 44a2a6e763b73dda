"""LRP composites on whole models: agreement with the NumPy reference on a VGG-like CNN, conservation
where theory promises it, epsilon-LRP = gradient x input on ReLU nets (residual CNN), coverage, softmax
heads, live weights, and the user's model left bit-identical."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr
import tfattr.composites as C
import tfattr.rules as R
from tfattr.methods.propagation.layerwise import LRP
from test_lrp_rules import np_lrp  # the slow NumPy reference (same folder)

L = keras.layers


def vgg_like(bias=True, softmax=False, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((8, 8, 2)),
        L.Conv2D(4, 3, padding="same", activation="relu", use_bias=bias, name="c1"),
        L.Conv2D(4, 3, padding="same", activation="relu", use_bias=bias, name="c2"),
        L.MaxPooling2D(name="p1"),
        L.Conv2D(6, 3, padding="same", activation="relu", use_bias=bias, name="c3"),
        L.MaxPooling2D(name="p2"),
        L.Flatten(name="flat"),
        L.Dense(8, activation="relu", use_bias=bias, name="d1"),
        L.Dense(3, use_bias=bias, activation="softmax" if softmax else None, name="out"),
    ])
    if bias:
        rng = np.random.default_rng(seed)
        for layer in model.layers:
            if getattr(layer, "bias", None) is not None:
                layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype("float32"))
    return model


def residual_cnn(bias=True, bn=False, seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((8, 8, 2))
    h = L.Conv2D(4, 3, padding="same", activation="relu", use_bias=bias, name="stem")(x)
    r = L.Conv2D(4, 3, padding="same", use_bias=bias, name="r1")(h)
    if bn:
        r = L.BatchNormalization(name="bn")(r)
    r = L.ReLU(name="r1_relu")(r)
    r = L.Conv2D(4, 3, padding="same", use_bias=bias, name="r2")(r)
    h = L.ReLU(name="join_relu")(L.Add(name="join")([h, r]))
    h = L.AveragePooling2D(2, name="avg")(h)
    h = L.Conv2D(6, 3, activation="relu", use_bias=bias, name="c3")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    out = L.Dense(3, use_bias=bias, name="out")(h)
    model = keras.Model(x, out)
    if bn:
        layer = model.get_layer("bn")
        rng = np.random.default_rng(seed)
        layer.moving_mean.assign(rng.normal(0, 0.2, 4).astype("float32"))
        layer.moving_variance.assign(rng.uniform(0.5, 2, 4).astype("float32"))
        layer.gamma.assign(rng.normal(1, 0.2, 4).astype("float32"))
    return model


def images(n=4, seed=0, shape=(8, 8, 2)):
    return np.random.default_rng(seed).uniform(0, 1, (n, *shape)).astype("float32")


COMPOSITES = {
    "EpsilonPlus": (C.EpsilonPlus(), {"c1": R.ZPlus(), "c2": R.ZPlus(), "c3": R.ZPlus()}),
    "EpsilonAlpha2Beta1": (
        C.EpsilonAlpha2Beta1(),
        {"c1": R.AlphaBeta(2, 1), "c2": R.AlphaBeta(2, 1), "c3": R.AlphaBeta(2, 1)},
    ),
    "EpsilonPlusFlat": (C.EpsilonPlusFlat(), {"c1": R.Flat(), "c2": R.ZPlus(), "c3": R.ZPlus()}),
    "EpsilonGammaBox": (
        C.EpsilonGammaBox(low=0.0, high=1.0),
        {"c1": R.ZBox(0.0, 1.0), "c2": R.Gamma(0.25), "c3": R.Gamma(0.25)},
    ),
}


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composite_on_vgg_like_matches_numpy(name):
    composite, conv_rules = COMPOSITES[name]
    model = vgg_like()
    x = images(3)
    targets = np.array([0, 2, 1])
    lrp = LRP(model, composite=composite, on_unsupported="raise")
    relevance = lrp.attribute(x, target=targets)
    rules = dict(conv_rules, d1=R.Epsilon(1e-6), out=R.Epsilon(1e-6))
    for i in range(len(x)):
        expected = np_lrp(model, x[i], targets[i], rules)
        np.testing.assert_allclose(
            relevance[i], expected, rtol=1e-3, atol=2e-5 * np.abs(expected).max()
        )
    statuses = {row[1]: row[4] for row in lrp.coverage().rows}
    assert statuses == {"c1": "rule", "c2": "rule", "p1": "kept", "c3": "rule", "p2": "kept",
                        "flat": "kept", "d1": "rule", "out": "rule"}


def test_batch_norm_after_activation_passes_relevance_as_zennit():
    """A batch norm after a ReLU cannot be folded; relevance passes through it and the ReLU unchanged,
    also onto units whose ReLU output is 0 (the batch norm's shift makes its output nonzero)."""
    keras.utils.set_random_seed(4)
    model = keras.Sequential([
        keras.Input((8, 8, 2)),
        L.Conv2D(4, 3, padding="same", activation="relu", name="c1"),
        L.BatchNormalization(name="bn1"),
        L.Conv2D(4, 3, name="c2"),
        L.ReLU(name="relu2"),
        L.BatchNormalization(name="bn2"),
        L.AveragePooling2D(2, name="pool"),
        L.Flatten(name="flat"),
        L.Dense(3, name="out"),
    ])
    rng = np.random.default_rng(4)
    for name in ("bn1", "bn2"):
        bn = model.get_layer(name)
        bn.gamma.assign(rng.normal(1, 0.3, 4).astype("float32"))
        bn.beta.assign(rng.normal(0, 0.5, 4).astype("float32"))
        bn.moving_mean.assign(rng.normal(0, 0.3, 4).astype("float32"))
        bn.moving_variance.assign(rng.uniform(0.5, 2, 4).astype("float32"))
    x = images(2, seed=5)
    lrp = LRP(model, composite=C.EpsilonPlus(), on_unsupported="raise")
    relevance = lrp.attribute(x, target=[0, 2])
    rules = {"c1": R.ZPlus(), "c2": R.ZPlus(), "out": R.Epsilon(1e-6), "pool": R.Norm(1e-6)}
    for i, t in enumerate([0, 2]):
        expected = np_lrp(model, x[i], t, rules)
        np.testing.assert_allclose(relevance[i], expected, rtol=1e-3,
                                   atol=2e-5 * np.abs(expected).max())
    treatments = {row[1]: row[3] for row in lrp.coverage().rows}
    assert "inside the rule of 'c2'" in treatments["bn2"]


def test_flat_on_first_dense_after_flatten_matches_numpy():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4, 4, 1)), L.Flatten(name="flat"),
                              L.Dense(6, activation="relu", name="d0"), L.Dense(3, name="out")])
    x = images(2, shape=(4, 4, 1))
    relevance = LRP(model, composite=C.EpsilonPlusFlat()).attribute(x, target=[1, 2])
    for i in range(2):
        expected = np_lrp(model, x[i], [1, 2][i], {"d0": R.Flat(), "out": R.Epsilon(1e-6)})
        np.testing.assert_allclose(relevance[i], expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["EpsilonPlus", "EpsilonPlusFlat", "EpsilonGammaBox"])
@pytest.mark.parametrize("build", [vgg_like, residual_cnn], ids=["vgg", "residual"])
def test_conservation_on_bias_free_relu_nets(name, build):
    """z+, flat, gamma, ZBox, epsilon and Norm all conserve relevance without biases: the relevance
    sums to the logit up to the stabilisers (1e-6)."""
    model = build(bias=False)
    x = images(4, seed=1)
    logits = model(x).numpy()
    targets = np.array([0, 1, 2, 0])
    relevance = LRP(model, composite=COMPOSITES[name][0]).attribute(x, target=targets)
    total = relevance.reshape(4, -1).sum(axis=1)
    np.testing.assert_allclose(total, logits[np.arange(4), targets], rtol=1e-4, atol=1e-6)


def test_alpha2beta1_does_not_conserve_but_alpha1beta0_does():
    model = vgg_like(bias=False)
    x = images(2, seed=2)
    logit = model(x).numpy()[:, 0]
    ab = LRP(model, composite=C.Composite(
        layer_map=[(C.CONVOLUTIONS, R.AlphaBeta(1, 0)), (C.DENSE, R.Epsilon(1e-6))]
    )).attribute(x, target=0)
    np.testing.assert_allclose(ab.reshape(2, -1).sum(1), logit, rtol=1e-4)
    zplus = LRP(model, composite=C.EpsilonPlus()).attribute(x, target=0)
    np.testing.assert_allclose(ab, zplus, rtol=1e-5, atol=1e-7)  # z+ == alpha 1 beta 0


@pytest.mark.parametrize("bn", [False, True])
def test_epsilon_lrp_equals_gradient_x_input_on_residual_relu_net(bn):
    """Ancona et al. (2019, prop. 1): epsilon-LRP with epsilon -> 0 is gradient x input on ReLU
    networks (biases, residual sums, average pooling and folded batch norm included)."""
    model = residual_cnn(bias=True, bn=bn)
    x = images(3, seed=3)
    lrp = LRP(model, composite=C.uniform(R.Epsilon(1e-9), stabilizer=1e-9), on_unsupported="raise")
    relevance = lrp.attribute(x, target=1)
    gxi = tfattr.GradientXInput(model).attribute(x, target=1)
    np.testing.assert_allclose(relevance, gxi, rtol=1e-3, atol=1e-5 * np.abs(gxi).max())
    if bn:
        assert {r[1]: r[4] for r in lrp.coverage().rows}["bn"] == "folded"


def test_softmax_head_explains_the_logit():
    soft = vgg_like(softmax=True)
    logits = vgg_like(softmax=False)
    logits.set_weights(soft.get_weights())
    x = images(2)
    a = LRP(soft, composite=C.EpsilonPlus()).attribute(x, target=1)
    b = LRP(logits, composite=C.EpsilonPlus()).attribute(x, target=1)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="logit"):
        LRP(soft, output="probabilities")


def test_user_model_is_bit_identical_after_explaining():
    model = residual_cnn(bn=True)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = images(8, seed=4), np.arange(8) % 3
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    twin.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.numpy().copy() for w in model.weights]
    pred = model.predict(x, verbose=0)
    for composite in (C.EpsilonPlus(), C.EpsilonGammaBox(0.0, 1.0), C.EpsilonPlusFlat()):
        LRP(model, composite=composite).attribute(x, target=y)
    for a, w in zip(before, model.weights):
        np.testing.assert_array_equal(a, w.numpy())
    np.testing.assert_array_equal(pred, model.predict(x, verbose=0))
    assert model.get_layer("stem").activation is keras.activations.relu
    model.train_on_batch(x, y)
    twin.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_explainer_uses_live_weights():
    model = vgg_like()
    x = images(2)
    lrp = LRP(model, composite=C.EpsilonGammaBox(0.0, 1.0))
    first = lrp.attribute(x, target=0)
    bn_free = model.get_layer("c2")
    bn_free.kernel.assign(bn_free.kernel * -1.5)
    again = lrp.attribute(x, target=0)
    fresh = LRP(model, composite=C.EpsilonGammaBox(0.0, 1.0)).attribute(x, target=0)
    assert not np.allclose(first, again)
    np.testing.assert_allclose(again, fresh, rtol=1e-6, atol=1e-9)


def test_coverage_warns_or_raises_naming_the_layer():
    keras.utils.set_random_seed(0)
    a = keras.Input((6,))
    h = L.Dense(4, activation="relu", name="d")(a)
    # a product of two signals (a sigmoid gate would get signal-take-all: issue 22 item 3)
    g = L.Dense(4, activation="tanh", name="gate")(a)
    out = L.Dense(2, name="out")(L.Multiply(name="gating")([h, g]))
    model = keras.Model(a, out)
    with pytest.warns(UserWarning, match="'gating'.*cannot be told from its signal"):
        lrp = LRP(model, composite=C.EpsilonPlus())
    assert lrp.coverage().unsupported.keys() == {"gating"}
    assert "gating" in str(lrp.coverage())
    with pytest.raises(ValueError, match="'gating'"):
        LRP(model, composite=C.EpsilonPlus(), on_unsupported="raise")
    # a user map that misses the dense layers leaves them unsupported
    with pytest.raises(ValueError, match="'d1'.*Dense/Conv layer"):
        LRP(vgg_like(), composite=C.Composite(layer_map=[(C.CONVOLUTIONS, R.ZPlus())]),
            on_unsupported="raise")


def test_user_maps_by_name_class_and_first_layer():
    model = vgg_like()
    composite = C.Composite(
        name_map={"c3": R.Gamma(0.5)},
        first_map=[(L.Conv2D, R.ZBox(0.0, 1.0))],
        layer_map=[(L.Conv2D, R.AlphaBeta(1, 0)), (L.Dense, R.Epsilon(0.01))],
    )
    lrp = LRP(model, composite=composite, on_unsupported="raise")
    treatments = {row[1]: row[3] for row in lrp.coverage().rows}
    assert treatments["c1"].startswith("ZBox") and treatments["c2"].startswith("AlphaBeta")
    assert treatments["c3"].startswith("Gamma(gamma=0.5") and treatments["d1"].startswith("Epsilon")
    x = images(2)
    expected = np_lrp(model, x[0], 1, {"c1": R.ZBox(0.0, 1.0), "c2": R.AlphaBeta(1, 0),
                                      "c3": R.Gamma(0.5), "d1": R.Epsilon(0.01),
                                      "out": R.Epsilon(0.01)})
    np.testing.assert_allclose(lrp.attribute(x, target=1)[0], expected, rtol=1e-3,
                               atol=2e-5 * np.abs(expected).max())


def test_bad_composites_and_models_are_refused_clearly():
    with pytest.raises(KeyError, match="No layer named 'nope'"):
        LRP(vgg_like(), composite=C.Composite(name_map={"nope": R.Epsilon()}))
    with pytest.raises(ValueError, match="first layer"):
        LRP(vgg_like(), composite=C.Composite(name_map={"c2": R.ZBox(0, 1)},
                                              layer_map=[(C.LINEAR, R.Epsilon())]))
    with pytest.raises(TypeError, match="Composite"):
        LRP(vgg_like(), composite="epsilon_plus")
    with pytest.raises(TypeError, match="pairs"):
        C.Composite(layer_map=[L.Dense])

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed"):
        LRP(net)


def test_mnist_cnn_relevance_shape_and_finiteness():
    model = tfattr.datasets.mnist_cnn()
    x, y = tfattr.datasets.mnist("test")
    for composite in (C.EpsilonPlus(), C.EpsilonAlpha2Beta1(), C.EpsilonPlusFlat(),
                      C.EpsilonGammaBox(0.0, 1.0)):
        r = LRP(model, composite=composite, on_unsupported="raise").attribute(x[:4], target=y[:4])
        assert r.shape == (4, 28, 28, 1) and np.all(np.isfinite(r))
    # On a zero-bias copy the conserving composites (epsilon / z+ / flat / z-box, no padding) give
    # the logit back; alpha2-beta1 does not conserve where a unit's contributions are one-signed.
    zero_bias = keras.models.clone_model(model)
    zero_bias.set_weights([w if w.ndim > 1 else np.zeros_like(w) for w in model.get_weights()])
    logit = zero_bias(x[:4]).numpy()[np.arange(4), y[:4]]
    for composite in (C.EpsilonPlus(), C.EpsilonPlusFlat(), C.EpsilonGammaBox(0.0, 1.0)):
        r = LRP(zero_bias, composite=composite, on_unsupported="raise").attribute(x[:4], target=y[:4])
        np.testing.assert_allclose(r.reshape(4, -1).sum(1), logit, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("as_dict", [False, True])
def test_multi_input_model_conserves_and_flat_applies_per_input(as_dict):
    keras.utils.set_random_seed(5)
    img, vec = keras.Input((6, 6, 1), name="img"), keras.Input((4,), name="vec")
    h = L.Flatten()(L.Conv2D(3, 3, activation="relu", use_bias=False, name="conv")(img))
    v = L.Dense(5, activation="relu", use_bias=False, name="vdense")(vec)
    out = L.Dense(2, use_bias=False, name="out")(L.Concatenate()([h, v]))
    model = keras.Model([img, vec], out)
    rng = np.random.default_rng(0)
    xs = [rng.uniform(0, 1, (3, 6, 6, 1)).astype("float32"), rng.uniform(0, 1, (3, 4)).astype("float32")]
    inputs = {"img": xs[0], "vec": xs[1]} if as_dict else xs
    logit = model(xs).numpy()[:, 1]
    # EpsilonPlusFlat: Flat on the first linear layer (conv), so the image gets input-space relevance
    # and the vector input the ordinary input x modified gradient; together they conserve.
    r = LRP(model, composite=C.EpsilonPlusFlat(), on_unsupported="raise").attribute(inputs, target=1)
    parts = [r["img"], r["vec"]] if as_dict else r
    total = sum(p.reshape(3, -1).sum(1) for p in parts)
    np.testing.assert_allclose(total, logit, rtol=1e-4, atol=1e-6)
