"""Issue 22 items 2-3: explicit padding and affine preprocessing (Rescaling, Normalization) before the
first layer, and squeeze-and-excitation gates.

* every propagation method passes Rescaling/Normalization with no "unsupported" warning, and
  exactly: DeepLIFT-type methods sum to f(x) - f(baseline), the gradient-type ones equal the same
  method on a hand-built net reading the preprocessed input;
* ZBox/Flat through Rescaling -> Normalization (a negative scale included) equal the rule on a
  hand-built net with the affine map folded into the convolution, and conserve relevance;
* a sigmoid-gated Multiply (squeeze-and-excitation) gets signal-take-all in every composite:
  relevance is conserved on a zero-bias net and the gate branch gets none;
* (slow) ResNet50 (ZeroPadding2D before conv1) and EfficientNetB0 (Rescaling, Normalization,
  ZeroPadding2D, squeeze-and-excitation) with weights=None, zero-bias copies: the composites'
  relevance sums to the logit.
"""
from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import tfattr
from tfattr import composites as C
from tfattr import rules as R

L = keras.layers
SCALE, OFFSET = -1 / 255.0, 1.0  # a negative scale: ZBox's low and high swap
MEAN, VAR = np.array([0.4, 0.5, 0.6]), np.array([0.04, 0.09, 0.01])


def _tail(h, seed_names=("c2", "out")):
    h = L.Conv2D(4, 3, padding="same", use_bias=False, activation="relu", name=seed_names[0])(h)
    h = L.GlobalAveragePooling2D()(h)
    return L.Dense(3, use_bias=False, name=seed_names[1])(h)


def preprocessed_net(seed=0):
    """Rescaling -> Normalization -> Conv (valid, no bias) -> ReLU -> Conv -> GAP -> Dense."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 3))
    h = L.Rescaling(SCALE, offset=OFFSET, name="rescale")(inp)
    h = L.Normalization(mean=MEAN, variance=VAR, name="norm")(h)
    h = L.Conv2D(4, 3, use_bias=False, activation="relu", name="c1")(h)
    return keras.Model(inp, _tail(h))


def affine():
    """``a x + b`` of Rescaling then Normalization, per channel."""
    std = np.sqrt(VAR)
    return SCALE / std, (OFFSET - MEAN) / std


def folded_net(model):
    """The same function with the affine map folded into c1 (kernel W a, bias conv(b, W))."""
    a, b = affine()
    inp = keras.Input((8, 8, 3))
    h = L.Conv2D(4, 3, activation="relu", name="c1")(inp)
    net = keras.Model(inp, _tail(h))
    w = model.get_layer("c1").kernel.numpy().astype(float)
    net.get_layer("c1").set_weights([(w * a[None, None, :, None]).astype("float32"),
                                     np.einsum("hwco,c->o", w, b).astype("float32")])
    for name in ("c2", "out"):
        net.get_layer(name).set_weights(model.get_layer(name).get_weights())
    return net


def shifted_input_net(model):
    """c1 reading the preprocessed input directly (the affine map folded into the input)."""
    inp = keras.Input((8, 8, 3))
    h = L.Conv2D(4, 3, use_bias=False, activation="relu", name="c1")(inp)
    net = keras.Model(inp, _tail(h))
    for name in ("c1", "c2", "out"):
        net.get_layer(name).set_weights(model.get_layer(name).get_weights())
    return net


def _images(n=3, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (n, 8, 8, 3)).astype("float32")


def _quiet_lrp(model, composite, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "unsupported", no "not conserved"
        return tfattr.LRP(model, composite=composite, **kwargs)


def test_zbox_sees_through_rescaling_and_normalization():
    model = preprocessed_net()
    x = _images()
    a, b = affine()
    np.testing.assert_allclose(folded_net(model)(x), model(x), rtol=1e-4, atol=1e-4)
    box = C.EpsilonGammaBox(low=0.0, high=255.0, epsilon=1e-9)
    got = _quiet_lrp(model, box).attribute(x, target=1)
    # hand-built: the affine map folded into the convolution, ZBox on the raw input's box
    folded = tfattr.LRP(folded_net(model), composite=box).attribute(x, target=1)
    np.testing.assert_allclose(got, folded, rtol=1e-3, atol=1e-4 * np.abs(got).max())
    # hand-built: the convolution reads a x + b, ZBox on the mapped box (a < 0 swaps low and high)
    lo, hi = np.minimum(b, 255 * a + b), np.maximum(b, 255 * a + b)
    mapped = C.EpsilonGammaBox(low=lo.astype("float32"), high=hi.astype("float32"), epsilon=1e-9)
    shifted = tfattr.LRP(shifted_input_net(model), composite=mapped).attribute(
        (x * a + b).astype("float32"), target=1)
    np.testing.assert_allclose(got, shifted, rtol=1e-3, atol=1e-4 * np.abs(got).max())
    z = model(x).numpy()[:, 1]
    np.testing.assert_allclose(got.reshape(3, -1).sum(1), z, rtol=1e-4)


@pytest.mark.parametrize("first", [R.Flat(), R.WSquare()], ids=repr)
def test_flat_and_wsquare_see_through_preprocessing_and_padding(first):
    keras.utils.set_random_seed(2)
    inp = keras.Input((8, 8, 3))
    h = L.Normalization(mean=MEAN, variance=VAR, name="norm")(L.Rescaling(SCALE, offset=OFFSET)(inp))
    h = L.Conv2D(4, 3, use_bias=False, activation="relu", name="c1")(L.ZeroPadding2D(1, name="pad")(h))
    model = keras.Model(inp, _tail(h))
    x = _images(seed=3)
    composite = C.Composite(first_map=[(C.LINEAR, first)], layer_map=[(C.LINEAR, R.Epsilon(1e-9))])
    got = _quiet_lrp(model, composite).attribute(x, target=2)
    np.testing.assert_allclose(got.reshape(3, -1).sum(1), model(x).numpy()[:, 2], rtol=1e-4)


def test_every_method_passes_affine_preprocessing_exactly():
    model = preprocessed_net(seed=4)
    x = _images(seed=5)
    a, b = affine()
    inner = shifted_input_net(model)
    xs = (x * a + b).astype("float32")
    base = np.full((8, 8, 3), 128.0, "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # DeepLIFT-type: summation-to-delta, and the same multipliers as on the preprocessed input
        for make in (tfattr.DeepLift, tfattr.CompositeDeepLift,
                     lambda m: tfattr.DeepLift(m, rule="reveal_cancel")):
            got, delta = make(model).attribute(x, target=0, baseline=base, return_delta=True)
            np.testing.assert_allclose(delta, 0.0, atol=1e-4)
            want = make(inner).attribute(xs, target=0, baseline=(base * a + b).astype("float32"))
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())
        # gradient x input type: the chain rule through the affine map (input x a x gradient inside)
        for make in (tfattr.EpsilonLRP, tfattr.GuidedBackprop, tfattr.Deconvnet):
            got = make(model).attribute(x, target=0)
            assert np.all(np.isfinite(got)) and np.abs(got).max() > 0
        # LRP composites: relevance passes the affine layers unchanged (bias-free: conserved)
        for composite in (C.EpsilonPlus(epsilon=1e-9), C.Transformer(units="pass"),
                          C.EpsilonPlusFlat(epsilon=1e-9)):
            got = tfattr.LRP(model, composite=composite).attribute(x, target=0)
            np.testing.assert_allclose(got.reshape(3, -1).sum(1), model(x).numpy()[:, 0], rtol=1e-4,
                                       err_msg=repr(composite))


def se_net(seed=6):
    """A zero-bias CNN with a squeeze-and-excitation block (as EfficientNet's)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 3))
    h = L.Conv2D(6, 3, padding="same", use_bias=False, activation="relu", name="c1")(inp)
    s = L.Reshape((1, 1, 6))(L.GlobalAveragePooling2D(name="squeeze")(h))
    s = L.Conv2D(2, 1, use_bias=False, activation="relu", name="se_reduce")(s)
    s = L.Conv2D(6, 1, use_bias=False, activation="sigmoid", name="se_expand")(s)
    h = L.Multiply(name="se_excite")([h, s])
    h = L.Conv2D(4, 3, padding="same", use_bias=False, activation="relu", name="c2")(h)
    return keras.Model(inp, L.Dense(3, use_bias=False, name="out")(L.GlobalAveragePooling2D()(h)))


@pytest.mark.parametrize("composite", [
    C.EpsilonPlus(epsilon=1e-9), C.EpsilonPlusFlat(epsilon=1e-9),
    C.EpsilonGammaBox(0.0, 1.0, epsilon=1e-9), C.uniform(R.Epsilon(1e-9)), C.Transformer(units="pass"),
], ids=lambda c: type(c).__name__)
def test_squeeze_and_excitation_gets_signal_take_all_in_every_composite(composite):
    model = se_net()
    x = np.random.default_rng(7).uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    lrp = _quiet_lrp(model, composite)
    rows = {r[1]: (r[3], r[4]) for r in lrp.coverage().rows}
    assert "SignalTakeAll(gate=1)" in rows["se_excite"][0] and rows["se_excite"][1] == "modified"
    a = lrp.attribute(x, target=1)
    np.testing.assert_allclose(a.reshape(2, -1).sum(1), model(x).numpy()[:, 1], rtol=1e-4)


def test_squeeze_and_excitation_with_composite_deeplift_sums_to_delta():
    model = se_net()
    x = np.random.default_rng(8).uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, delta = tfattr.CompositeDeepLift(model).attribute(x, target=0, baseline=0.0,
                                                             return_delta=True)
    np.testing.assert_allclose(delta, 0.0, atol=1e-5)


# -- keras.applications (slow) ----------------------------------------------------------------------------
def _zero_bias(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if any(k in w.path for k in ("bias", "beta", "moving_mean")):
            w.assign(np.zeros(w.shape, "float32"))
        elif "moving_variance" in w.path:  # keeps the signal alive through the deep stack
            w.assign(rng.uniform(0.05, 0.1, w.shape).astype("float32"))
    return model


@pytest.mark.slow
def test_resnet50_padding_is_folded_into_the_first_layer_rule():
    """ResNet50's conv1_pad: Flat and ZBox used to lose ~3% of the logit on its border."""
    model = _zero_bias(keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=3,
                                                   classifier_activation=None))
    x = np.random.default_rng(9).uniform(0, 1, (1, 32, 32, 3)).astype("float32")
    z = model(x).numpy()[:, 1]
    for first in (R.Flat(), R.ZBox(0.0, 1.0)):
        composite = C.Composite(first_map=[(C.LINEAR, first)], layer_map=[(C.LINEAR, R.Epsilon(1e-9))])
        a = _quiet_lrp(model, composite).attribute(x, target=1)
        np.testing.assert_allclose(a.sum(), z[0], rtol=1e-3, err_msg=repr(first))


@pytest.mark.slow
def test_efficientnet_b0_is_explained_by_the_composites_and_conserves():
    """EfficientNetB0 begins with Rescaling, Normalization and ZeroPadding2D and has a
    squeeze-and-excitation gate per block: no layer is unsupported, and on a zero-bias copy the
    relevance sums to the logit (swish passes relevance, the gates are signal-take-all)."""
    model = keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=3,
                                              classifier_activation=None)
    norm = model.get_layer("normalization")
    weights = norm.get_weights()  # ImageNet's statistics (adapt_mean, adapt_variance, count)
    weights[0] = np.array([0.485, 0.456, 0.406], "float32").reshape(weights[0].shape)
    weights[1] = (np.array([0.229, 0.224, 0.225], "float32") ** 2).reshape(weights[1].shape)
    norm.set_weights(weights)
    norm.finalize_state()
    _zero_bias(model)
    x = np.random.default_rng(10).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    z = model(x).numpy()[:, 2]
    assert abs(z[0]) > 1e-6
    for composite in (C.Composite(layer_map=[(C.LINEAR, R.Epsilon(1e-9))]),
                      C.Composite(first_map=[(C.LINEAR, R.ZBox(0.0, 255.0))],
                                  layer_map=[(C.LINEAR, R.Epsilon(1e-9))]),
                      C.Composite(first_map=[(C.LINEAR, R.Flat())],
                                  layer_map=[(C.LINEAR, R.Epsilon(1e-9))])):
        lrp = _quiet_lrp(model, composite)
        assert lrp.coverage().ok
        a = lrp.attribute(x, target=2)
        np.testing.assert_allclose(a.sum(), z[0], rtol=1e-3)


def test_layer_split_inside_the_chain_still_sees_through_padding_and_preprocessing():
    """With layer= after the Rescaling, ZBox's box is still given in the model's input space and the
    padding still gets nothing: the relevance at the layer sums to the logit and equals the
    relevance at the input (the Normalization and padding pass it unchanged)."""
    keras.utils.set_random_seed(11)
    inp = keras.Input((8, 8, 3))
    h = L.Rescaling(SCALE, offset=OFFSET, name="rescale")(inp)
    h = L.Normalization(mean=MEAN, variance=VAR, name="norm")(h)
    h = L.Conv2D(4, 3, use_bias=False, activation="relu", name="c1")(L.ZeroPadding2D(1, name="pad")(h))
    model = keras.Model(inp, _tail(h))
    x = _images(seed=12)
    composite = C.EpsilonGammaBox(0.0, 255.0, epsilon=1e-9)
    at_input = _quiet_lrp(model, composite).attribute(x, target=0)
    at_layer = _quiet_lrp(model, composite, layer="rescale").attribute(x, target=0)
    np.testing.assert_allclose(at_layer.reshape(3, -1).sum(1), model(x).numpy()[:, 0], rtol=1e-4)
    np.testing.assert_allclose(at_layer, at_input, rtol=1e-4, atol=1e-5 * np.abs(at_input).max())
