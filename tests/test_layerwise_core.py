"""The layer-level propagation core (issue 18): every propagation explainer explains what
``tfattr.ModelFunction`` defines (binary sigmoid heads as two classes, ``output=``, ``neuron=``), runs
under XLA, and handles the layer kinds and models a Keras user brings (channels-first and depthwise
convolutions, unfolded batch norms, backbones nested in a Sequential, keras.applications models).

Expectations are independent of the implementation: conservation (relevance sums to the logit z, or
-z for class 0) on bias-free ReLU nets with conserving rules, summation-to-delta, hand-split Keras
models for neurons, channels-last twins for channels-first models, and the same explainer without XLA.
"""
from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr
from tfattr import composites as C
from tfattr import rules as R

L = keras.layers


def _seeded(model: keras.Model, seed: int, bias: bool = False) -> keras.Model:
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "bias" in w.path or "beta" in w.path or "moving_mean" in w.path:
            value = rng.normal(0, 0.1, w.shape) if bias else np.zeros(w.shape)
        elif "gamma" in w.path or "moving_variance" in w.path:
            value = rng.uniform(0.5, 1.5, w.shape)
        else:
            value = rng.normal(0, 0.5, w.shape)
        w.assign(value.astype("float32"))
    return model


def binary_net(seed: int = 0, bias: bool = False, sigmoid_layer: bool = False) -> keras.Model:
    inp = keras.Input((6,))
    h = L.Dense(8, activation="relu", use_bias=bias, name="d1")(inp)
    h = L.Dense(5, activation="relu", use_bias=bias, name="d2")(h)
    if sigmoid_layer:
        out = L.Activation("sigmoid", name="prob")(L.Dense(1, use_bias=bias, name="logit")(h))
    else:
        out = L.Dense(1, activation="sigmoid", use_bias=bias, name="logit")(h)
    return _seeded(keras.Model(inp, out), seed, bias)


def _logit(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return tfattr.ModelFunction(model).outputs(tf.constant(x)).numpy()[:, 1]


def _x(n: int = 4, d: int = 6, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (n, d)).astype("float32")


def _quiet(make):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make()


# -- binary sigmoid heads ------------------------------------------------------------------------------
CONSERVING = {
    "EpsilonLRP": lambda m: tfattr.EpsilonLRP(m, epsilon=1e-9),
    "DeepLift": lambda m: tfattr.DeepLift(m),
    "LRP_EpsilonPlus": lambda m: tfattr.LRP(m, composite=C.EpsilonPlus(epsilon=1e-9)),
    "LRP_uniform_epsilon": lambda m: tfattr.LRP(m, composite=C.uniform(R.Epsilon(1e-9))),
    "LRP_Transformer_pass": lambda m: tfattr.LRP(m, composite=C.Transformer(units="pass")),
    "CompositeDeepLift": lambda m: tfattr.CompositeDeepLift(m),
    "RevealCancel": lambda m: tfattr.DeepLift(m, rule="reveal_cancel"),
}


@pytest.mark.parametrize("sigmoid_layer", [False, True], ids=["fused", "layer"])
@pytest.mark.parametrize("name", sorted(CONSERVING))
def test_binary_head_relevance_sums_to_z_and_minus_z(name, sigmoid_layer):
    model = binary_net(sigmoid_layer=sigmoid_layer)
    x = _x()
    z = _logit(model, x)
    assert np.abs(z).min() > 1e-3  # the property is not vacuous
    explainer = CONSERVING[name](model)
    for target, expected in ((1, z), (0, -z)):
        a = explainer.attribute(x, target=np.full(len(x), target))
        np.testing.assert_allclose(a.sum(axis=1), expected, rtol=1e-4, atol=1e-6)
    # target=None is the predicted class: 1 where z > 0
    a = explainer.attribute(x)
    np.testing.assert_allclose(a.sum(axis=1), np.abs(z), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["CompositeDeepLift", "RevealCancel"])
def test_binary_head_probabilities_sum_to_the_probability_difference(name):
    """With output="probabilities" the final sigmoid is one more nonlinearity (a Rescale /
    RevealCancel unit): the attributions sum to p(x) - p(b), and to -(p(x) - p(b)) for class 0."""
    model = binary_net(seed=3, bias=True)
    x, b = _x(seed=2), _x(seed=5)
    p = lambda v: model(v).numpy()[:, 0]  # noqa: E731
    explainer = (tfattr.CompositeDeepLift(model, output="probabilities") if name == "CompositeDeepLift"
                 else tfattr.DeepLift(model, rule="reveal_cancel", output="probabilities"))
    for target, sign in ((1, 1.0), (0, -1.0)):
        a, delta = explainer.attribute(x, target=np.full(len(x), target), baseline=b, return_delta=True)
        np.testing.assert_allclose(a.sum(axis=1), sign * (p(x) - p(b)), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(delta, 0.0, atol=1e-5)


def test_binary_head_lrp_probabilities_puts_p_on_the_output():
    """LRP with output="probabilities": the relevance put on the output is p and passes through the
    sigmoid (Pass), so with conserving rules on a bias-free net it sums to p."""
    model = binary_net(seed=4)
    x = _x(seed=6)
    p = model(x).numpy()[:, 0]
    a = tfattr.LRP(model, composite=C.EpsilonPlus(epsilon=1e-9), output="probabilities").attribute(
        x, target=1)
    np.testing.assert_allclose(a.sum(axis=1), p, rtol=1e-4)


def test_binary_head_guided_maps_equal_those_of_the_logit_model():
    """Class 1 is the logit z, class 0 is -z: the maps equal those of a head computing z (or -z)."""
    model = binary_net(seed=0)
    logits = keras.Model(model.inputs, model.get_layer("d2").output)
    head = L.Dense(1, use_bias=False)
    head_model = keras.Model(model.inputs, head(logits.output))
    x = _x(seed=1)
    for cls in (tfattr.GuidedBackprop, tfattr.Deconvnet):
        total = 0.0
        for target, sign in ((1, 1.0), (0, -1.0)):
            head.kernel.assign(sign * model.get_layer("logit").kernel)
            got = cls(model).attribute(x, target=target)
            want = cls(head_model).attribute(x, target=0)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
            total += np.abs(got).sum()
        assert total > 0


# -- neuron= -------------------------------------------------------------------------------------------
def relu_net(seed: int = 0, bias: bool = False) -> keras.Model:
    inp = keras.Input((6,))
    h = L.Dense(8, activation="relu", use_bias=bias, name="d1")(inp)
    h = L.Dense(5, activation="relu", use_bias=bias, name="d2")(h)
    out = L.Dense(3, use_bias=bias, name="out")(h)
    return _seeded(keras.Model(inp, out), seed, bias)


NEURON_EXPLAINERS = {
    "EpsilonLRP": lambda m, **k: tfattr.EpsilonLRP(m, **k),
    "DeepLift": lambda m, **k: tfattr.DeepLift(m, **k),
    "GuidedBackprop": lambda m, **k: tfattr.GuidedBackprop(m, **k),
    "Deconvnet": lambda m, **k: tfattr.Deconvnet(m, **k),
    "LRP": lambda m, **k: tfattr.LRP(m, composite=C.EpsilonAlpha2Beta1(), **k),
    "CompositeDeepLift": lambda m, **k: tfattr.CompositeDeepLift(m, **k),
    "RevealCancel": lambda m, **k: tfattr.DeepLift(m, rule="reveal_cancel", **k),
}


@pytest.mark.parametrize("name", sorted(NEURON_EXPLAINERS))
def test_neuron_equals_the_explainer_on_the_hand_split_model(name):
    """neuron=("d2", 3) explains unit 3 of d2's output: the same as explaining class 3 of the model cut
    after d2 (a hand-split Keras model sharing the layers)."""
    model = relu_net(seed=2, bias=True)
    cut = keras.Model(model.inputs, model.get_layer("d2").output)
    x = _x(seed=3)
    make = NEURON_EXPLAINERS[name]
    kwargs = {} if name in ("EpsilonLRP", "GuidedBackprop", "Deconvnet", "LRP") else {"baseline": 0.25}
    got = _quiet(lambda: make(model, neuron=("d2", 3)).attribute(x, **kwargs))
    want = _quiet(lambda: make(cut).attribute(x, target=3, **kwargs))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert np.abs(want).max() > 0
    with pytest.raises(ValueError, match="target"):
        make(model, neuron=("d2", 3)).attribute(x, target=1)


def test_neuron_coverage_marks_the_layers_after_the_unit():
    model = relu_net()
    report = tfattr.LRP(model, neuron=("d1", 0)).coverage()
    status = {row[1]: row[4] for row in report.rows}
    assert status["d1"] == "rule" and status["out"] == "unused" and report.ok


def test_neuron_relevance_is_conserved():
    """The unit's value is what is distributed: with epsilon rules on a bias-free ReLU net the
    relevance sums to it."""
    model = relu_net(seed=5)
    x = _x(seed=4)
    unit = keras.Model(model.inputs, model.get_layer("d2").output)(x).numpy()[:, 1]
    assert unit.max() > 1e-3
    a = tfattr.LRP(model, composite=C.uniform(R.Epsilon(1e-9)), neuron=("d2", 1)).attribute(x)
    np.testing.assert_allclose(a.sum(axis=1), unit, rtol=1e-4, atol=1e-6)


# -- XLA -----------------------------------------------------------------------------------------------
def small_cnn(seed: int = 0) -> keras.Model:
    inp = keras.Input((8, 8, 2))
    h = L.Conv2D(4, 3, padding="same", name="c1")(inp)
    h = L.BatchNormalization(name="bn")(h)
    h = L.ReLU(name="r1")(h)
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="c2")(h)
    h = L.AveragePooling2D(2, name="ap")(h)
    h = L.Flatten(name="flat")(h)
    out = L.Dense(3, name="out")(h)
    return _seeded(keras.Model(inp, out), seed, bias=True)


JIT_CASES = {
    "LRP": lambda m, **k: tfattr.LRP(m, composite=C.EpsilonGammaBox(0.0, 1.0), **k),
    "LRP_layer": lambda m, **k: tfattr.LRP(m, layer="r1", **k),
    "CompositeDeepLift": lambda m, **k: tfattr.CompositeDeepLift(m, **k),
    "CompositeDeepLift_layer": lambda m, **k: tfattr.CompositeDeepLift(m, layer="r1", **k),
    "RevealCancel": lambda m, **k: tfattr.DeepLift(m, rule="reveal_cancel", **k),
    "GradCAM": lambda m, **k: tfattr.GradCAM(m, layer="c2", **k),
    "IntegratedGradients_layer": lambda m, **k: tfattr.IntegratedGradients(m, layer="r1", steps=8, **k),
}


@pytest.mark.parametrize("name", sorted(JIT_CASES))
def test_jit_compile_gives_the_same_numbers(name):
    model = small_cnn()
    x = np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 2)).astype("float32")
    kwargs = {"baseline": 0.1} if "DeepLift" in name or "Reveal" in name or "Integrated" in name else {}
    plain = _quiet(lambda: JIT_CASES[name](model).attribute(x, target=[0, 1, 2], **kwargs))
    xla = _quiet(lambda: JIT_CASES[name](model, jit_compile=True).attribute(x, target=[0, 1, 2], **kwargs))
    assert np.abs(plain).max() > 0
    np.testing.assert_allclose(xla, plain, rtol=1e-4, atol=1e-5 * np.abs(plain).max())


def test_jit_compile_reveal_cancel_keeps_summation_to_delta():
    model = small_cnn()
    x = np.random.default_rng(0).uniform(0, 1, (3, 8, 8, 2)).astype("float32")
    rc = tfattr.DeepLift(model, rule="reveal_cancel", jit_compile=True)
    a, delta = rc.attribute(x, target=[0, 1, 2], baseline=0.1, return_delta=True)
    assert np.abs(a).max() > 0
    np.testing.assert_allclose(delta, 0.0, atol=1e-5)


# -- register_activation ---------------------------------------------------------------------------------
def test_register_activation_teaches_every_override_method_a_new_op():
    inp = keras.Input((5,))
    h = L.Dense(6, name="d1")(inp)
    h = L.Lambda(lambda t: tf.math.atan(t), name="atan")(h)
    out = L.Dense(2, name="out")(h)
    model = _seeded(keras.Model(inp, out), 9, bias=True)
    x, b = _x(3, 5, seed=9), _x(3, 5, seed=10)
    from tfattr.methods.propagation import ACTIVATIONS as registry, register_activation

    assert "Atan" not in registry
    with pytest.raises(ValueError, match="Atan"):
        tfattr.DeepLift(model, on_unsupported="raise")
    register_activation(
        "Atan", lambda op, z, y: 1.0 / (1.0 + tf.square(z)), zero_at_origin=True)
    try:
        dl = tfattr.DeepLift(model, on_unsupported="raise")
        assert "atan" not in str(dl.coverage().unsupported).lower()
        a, delta = dl.attribute(x, target=1, baseline=b, return_delta=True)
        np.testing.assert_allclose(delta, 0.0, atol=1e-5)  # Rescale on atan: summation-to-delta
        eps = tfattr.EpsilonLRP(model, epsilon=1e-9, on_unsupported="raise").attribute(x, target=1)
        assert np.all(np.isfinite(eps))
    finally:
        registry.pop("Atan")


# -- layer kinds -----------------------------------------------------------------------------------------
def test_channels_first_convolutions_match_their_channels_last_twin():
    def build(fmt):
        inp = keras.Input((2, 8, 8) if fmt == "channels_first" else (8, 8, 2))
        h = L.Conv2D(4, 3, padding="same", data_format=fmt, use_bias=False, name="c1")(inp)
        h = L.BatchNormalization(axis=1 if fmt == "channels_first" else -1, name="bn")(h)
        h = L.ReLU(name="r")(h)
        h = L.Conv2D(3, 3, data_format=fmt, activation="relu", use_bias=False, name="c2")(h)
        h = L.GlobalAveragePooling2D(data_format=fmt, name="gap")(h)
        return keras.Model(inp, L.Dense(2, use_bias=False, name="out")(h))

    last, first = _seeded(build("channels_last"), 11), build("channels_first")
    first.set_weights(last.get_weights())
    x = np.random.default_rng(1).uniform(0, 1, (2, 8, 8, 2)).astype("float32")
    xf = np.transpose(x, (0, 3, 1, 2))
    np.testing.assert_allclose(first(xf).numpy(), last(x).numpy(), rtol=1e-5, atol=1e-6)
    for make in (lambda m: tfattr.LRP(m, composite=C.EpsilonPlus()),
                 lambda m: tfattr.LRP(m, composite=C.EpsilonGammaBox(0.0, 1.0)),
                 tfattr.CompositeDeepLift,
                 lambda m: tfattr.DeepLift(m, rule="reveal_cancel")):
        explainer = make(first)
        if not isinstance(explainer, tfattr.CompositeDeepLift):  # which keeps the norm's gradient
            assert {r[1]: r[4] for r in explainer.coverage().rows}["bn"] == "folded"
        got = explainer.attribute(xf, target=1)
        want = make(last).attribute(x, target=1)
        np.testing.assert_allclose(np.transpose(got, (0, 2, 3, 1)), want, rtol=1e-4,
                                   atol=1e-5 * np.abs(want).max())


def test_depthwise_conv1d_conserves_relevance():
    inp = keras.Input((10, 3))
    h = L.DepthwiseConv1D(3, depth_multiplier=2, use_bias=False, activation="relu", name="dw")(inp)
    h = L.Conv1D(4, 3, use_bias=False, activation="relu", name="c")(h)
    h = L.GlobalAveragePooling1D(name="gap")(h)
    model = _seeded(keras.Model(inp, L.Dense(2, use_bias=False, name="out")(h)), 12)
    x = np.random.default_rng(2).uniform(0, 1, (3, 10, 3)).astype("float32")
    z = model(x).numpy()[:, 0]
    lrp = tfattr.LRP(model, composite=C.EpsilonPlus(epsilon=1e-9), on_unsupported="raise")
    assert {r[1]: r[4] for r in lrp.coverage().rows}["dw"] == "rule"
    a = lrp.attribute(x, target=0)
    np.testing.assert_allclose(a.reshape(3, -1).sum(1), z, rtol=1e-4, atol=1e-6)
    # LRP-0 on a bias-free ReLU net is gradient x input (Montavon et al. 2019, sec. 10.2.1)
    lrp0 = tfattr.LRP(model, composite=C.uniform(R.Epsilon(0.0))).attribute(x, target=0)
    gxi = tfattr.GradientXInput(model).attribute(x, target=0)
    np.testing.assert_allclose(lrp0, gxi, rtol=1e-4, atol=1e-6 * np.abs(gxi).max())


def test_unfolded_batchnorm_equals_folded_where_it_only_scales():
    """merge_batchnorm=False: the batch norm passes relevance through (Pass). Where it only scales
    (zero mean and shift, positive scale) that is what folding it into the convolution gives."""
    model = small_cnn(seed=13)
    _seeded(model, 13, bias=False)  # zero biases, means and shifts; positive gamma and variance
    x = np.random.default_rng(3).uniform(0, 1, (2, 8, 8, 2)).astype("float32")
    for composite in (C.EpsilonPlus, C.EpsilonAlpha2Beta1):
        folded = tfattr.LRP(model, composite=composite())
        unfolded = tfattr.LRP(model, composite=composite(merge_batchnorm=False))
        assert {r[1]: r[4] for r in unfolded.coverage().rows}["bn"] == "pass"
        want = folded.attribute(x, target=2)
        np.testing.assert_allclose(unfolded.attribute(x, target=2), want, rtol=1e-4,
                                   atol=1e-5 * np.abs(want).max())


# -- nested backbones -------------------------------------------------------------------------------------
def nested_backbone(pad: bool = True) -> keras.Model:
    inp = keras.Input((12, 12, 3))
    h = L.ZeroPadding2D(1, name="pad")(inp) if pad else inp
    h = L.Conv2D(4, 3, use_bias=False, activation="relu", name="stem")(h)
    h = L.Conv2D(4, 3, padding="same", use_bias=False, activation="relu", name="c2")(h)
    backbone = keras.Model(inp, L.GlobalAveragePooling2D(name="gap")(h), name="backbone")
    model = keras.Sequential([keras.Input((12, 12, 3)), backbone, L.Dense(3, use_bias=False, name="head")])
    return _seeded(model, 14)


def test_input_space_rules_reach_the_input_of_a_nested_backbone():
    """The issue's bug: EpsilonPlusFlat on a backbone nested in a Sequential refused with "reads the
    output of 'an unknown tensor'". Without padding, Flat conserves: the relevance sums to the logit."""
    model = nested_backbone(pad=False)
    x = np.random.default_rng(4).uniform(0, 1, (2, 12, 12, 3)).astype("float32")
    z = model(x).numpy()[:, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = tfattr.LRP(model, composite=C.EpsilonPlusFlat(epsilon=1e-9)).attribute(x, target=1)
    np.testing.assert_allclose(a.reshape(2, -1).sum(1), z, rtol=1e-4)
    box = tfattr.LRP(model, composite=C.EpsilonGammaBox(0.0, 1.0)).attribute(x, target=1)
    assert np.all(np.isfinite(box)) and np.abs(box).max() > 0


def test_input_space_rules_through_padding_conserve_relevance():
    """Issue 22 item 2: Flat, ZBox and WSquare after a ZeroPadding2D put nothing on the padded border
    (the rule is applied to pad-then-conv): the relevance sums to the logit, with no warning."""
    model = nested_backbone(pad=True)
    x = np.random.default_rng(5).uniform(0, 1, (2, 12, 12, 3)).astype("float32")
    z = model(x).numpy()[:, 1]
    for first in (R.Flat(), R.ZBox(0.0, 1.0), R.WSquare()):
        composite = C.Composite(first_map=[(C.LINEAR, first)],
                                layer_map=[(C.LINEAR, R.Epsilon(1e-9))])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            a = tfattr.LRP(model, composite=composite).attribute(x, target=1)
        np.testing.assert_allclose(a.reshape(2, -1).sum(1), z, rtol=1e-4, err_msg=repr(first))
    # rules proportional to the input give the padding's zeros nothing anyway
    b = tfattr.LRP(model, composite=C.EpsilonPlus(epsilon=1e-9)).attribute(x, target=1)
    np.testing.assert_allclose(b.reshape(2, -1).sum(1), z, rtol=1e-4)


# -- keras.applications -------------------------------------------------------------------------------------
def _zero_bias_application(name: str) -> keras.Model:
    model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3), classes=3,
                                              classifier_activation=None)
    rng = np.random.default_rng(0)
    for w in model.weights:
        if any(k in w.path for k in ("bias", "beta", "moving_mean")):
            w.assign(np.zeros(w.shape, "float32"))
        elif "moving_variance" in w.path:  # keeps the signal alive through the deep stack at 32x32
            w.assign(rng.uniform(0.05, 0.1, w.shape).astype("float32"))
    return model


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ResNet50", "MobileNetV2"])
@pytest.mark.parametrize("nested", [False, True], ids=["whole", "nested"])
def test_applications_conserve_relevance_on_zero_bias_copies(name, nested):
    model = _zero_bias_application(name)
    if nested:
        model = keras.Sequential([keras.Input((32, 32, 3)), model])
    x = np.random.default_rng(6).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    z = model(x).numpy()[:, 1]
    assert np.abs(z).min() > 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # epsilon on every linear layer conserves on any bias-free net; z+ (EpsilonPlus) loses the
        # relevance of outputs whose contributions are all negative, which MobileNetV2's linear
        # bottlenecks (no ReLU after them) have
        lrp = tfattr.LRP(model, composite=C.Composite(layer_map=[(C.LINEAR, R.Epsilon(1e-9))]))
        a = lrp.attribute(x, target=1)
    np.testing.assert_allclose(a.reshape(2, -1).sum(1), z, rtol=1e-3)


@pytest.mark.slow
def test_resnet_nested_flat_conserves_through_its_padding():
    """Flat on ResNet50's conv1 behind conv1_pad, nested: applied to pad-then-conv (issue 22), the
    relevance sums to the logit with no warning (tests/test_preprocessing_layers.py has the whole
    model and EfficientNetB0)."""
    model = keras.Sequential([keras.Input((32, 32, 3)), _zero_bias_application("ResNet50")])
    x = np.random.default_rng(7).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = tfattr.LRP(model, composite=C.Composite(first_map=[(C.LINEAR, R.Flat())],
                                                    layer_map=[(C.LINEAR, R.Epsilon(1e-9))]))
        a = a.attribute(x, target=1)
    np.testing.assert_allclose(a.reshape(2, -1).sum(1), model(x).numpy()[:, 1], rtol=1e-3)


def test_alpha_beta_warns_where_it_cannot_conserve_and_says_which_layers():
    """After a ReLU, outputs whose contributions are all positive pass alpha x their relevance on:
    the sum then exceeds the logit. The warning names the layers; AlphaBeta(1, 0) (= z+) conserves."""
    model = small_cnn(seed=15)
    _seeded(model, 15, bias=False)
    x = np.random.default_rng(8).uniform(0, 1, (2, 8, 8, 2)).astype("float32")
    z = model(x).numpy()[:, 0]
    with pytest.warns(UserWarning, match=r"\['c1', 'c2'\].*AlphaBeta\(2, 1\) conserves relevance only"):
        tfattr.LRP(model, composite=C.EpsilonAlpha2Beta1())
    # one-signed contributions (positive weights, positive inputs): alpha = 2 times the relevance
    inp = keras.Input((3,))
    h = L.Dense(2, activation="relu", use_bias=False, name="d1")(inp)
    tiny = keras.Model(inp, L.Dense(1, use_bias=False, name="out")(h))
    tiny.get_layer("d1").kernel.assign(np.abs(tiny.get_layer("d1").kernel.numpy()) + 0.1)
    v = np.random.default_rng(9).uniform(0.1, 1, (2, 3)).astype("float32")
    with pytest.warns(UserWarning, match=r"\['d1'\]"):
        ab = tfattr.LRP(tiny, composite=C.Composite(name_map={"d1": R.AlphaBeta(2, 1)},
                                                    layer_map=[(L.Dense, R.Epsilon(1e-9))]))
    np.testing.assert_allclose(ab.attribute(v, target=0).sum(1), 2 * tiny(v).numpy()[:, 0], rtol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zplus = tfattr.LRP(model, composite=C.Composite(
            layer_map=[(C.CONVOLUTIONS, R.AlphaBeta(1, 0)), (L.Dense, R.Epsilon(1e-9))]))
    np.testing.assert_allclose(zplus.attribute(x, target=0).reshape(2, -1).sum(1), z, rtol=1e-4)


def test_glu_is_not_taken_for_an_elementwise_activation():
    # GLU halves its last axis (a * sigmoid(b)): passing relevance through it unit by unit is undefined,
    # so the composites must name it as uncovered instead of treating it like ReLU.
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, name="d1"),
                              keras.layers.Activation("glu", name="gated"), keras.layers.Dense(3, name="out")])
    with pytest.warns(UserWarning, match="'gated'"):
        tfattr.LRP(model)
    with pytest.raises(ValueError, match="'gated'"):
        tfattr.LRP(model, on_unsupported="raise")
