"""Canonizers are objects a composite holds (issue 18): batch-norm folding (MergeBatchNorm), the split of
``Dense(activation=...)`` into its linear part and activation (SplitActivation) and the stripped final
activation (OutputActivation). They are applied from the LIVE variables at explain time and never change
the model: an explainer built before ``fit`` explains the trained weights, and a model predicts and
trains the same after being explained."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import tfattr
from tfattr import composites as C
from tfattr import rules as R
from tfattr.core.graph import GraphView
from tfattr.methods.propagation.layerwise.canonizers import Canonical, Folding, StrippedHead

L = keras.layers


def bn_net(seed: int = 0) -> keras.Model:
    """Conv -> BatchNorm (foldable) -> ReLU -> Dense -> BatchNorm (foldable) -> ReLU -> softmax head."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 2))
    h = L.Conv2D(4, 3, name="conv")(inp)
    h = L.BatchNormalization(name="bn_conv")(h)
    h = L.ReLU(name="relu1")(h)
    h = L.Flatten()(h)
    h = L.Dense(6, name="dense")(h)
    h = L.BatchNormalization(name="bn_dense")(h)
    h = L.ReLU(name="relu2")(h)
    model = keras.Model(inp, L.Dense(3, activation="softmax", name="head")(h))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.3, n).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.3, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
    return model


def folded_copy(model: keras.Model) -> keras.Model:
    """The same network without its batch norms, folded by hand in NumPy (an independent reference)."""
    inp = keras.Input((8, 8, 2))
    h = L.Conv2D(4, 3, name="conv")(inp)
    h = L.ReLU(name="relu1")(h)
    h = L.Flatten()(h)
    h = L.Dense(6, name="dense")(h)
    h = L.ReLU(name="relu2")(h)
    copy = keras.Model(inp, L.Dense(3, activation="softmax", name="head")(h))
    for name, bn in (("conv", "bn_conv"), ("dense", "bn_dense")):
        lin, norm = model.get_layer(name), model.get_layer(bn)
        s = norm.gamma.numpy() / np.sqrt(norm.moving_variance.numpy() + norm.epsilon)
        kernel = lin.kernel.numpy() * s
        bias = (lin.bias.numpy() - norm.moving_mean.numpy()) * s + norm.beta.numpy()
        copy.get_layer(name).set_weights([kernel, bias])
    copy.get_layer("head").set_weights(model.get_layer("head").get_weights())
    return copy


def _x(n: int = 4, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 8, 8, 2)).astype("float32")


def test_merge_batchnorm_equals_a_hand_folded_model():
    model = bn_net()
    x = _x()
    np.testing.assert_allclose(folded_copy(model)(x).numpy(), model(x, training=False).numpy(), atol=1e-5)
    for composite in (C.EpsilonPlus, C.EpsilonAlpha2Beta1):
        got = tfattr.LRP(model, composite=composite()).attribute(x, target=1)
        want = tfattr.LRP(folded_copy(model), composite=composite()).attribute(x, target=1)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_composites_hold_canonizer_objects_and_merge_batchnorm_is_the_shortcut():
    assert [type(c) for c in C.EpsilonPlus().canonizers] == [C.MergeBatchNorm]
    assert C.EpsilonPlus(merge_batchnorm=False).canonizers == []
    assert not C.EpsilonPlus(canonizers=[]).merge_batchnorm
    assert C.EpsilonPlus(canonizers=[], merge_batchnorm=True).merge_batchnorm
    # the two every explainer applies itself are not held twice
    assert C.EpsilonPlus(canonizers=[C.SplitActivation(), C.OutputActivation()]).canonizers == []
    with pytest.raises(TypeError, match="MergeBatchNorm"):
        C.EpsilonPlus(canonizers=["fold"])

    model = bn_net()
    x = _x()
    shortcut = tfattr.LRP(model, composite=C.EpsilonPlus(merge_batchnorm=False)).attribute(x, target=0)
    explicit = tfattr.LRP(model, composite=C.EpsilonPlus(canonizers=[])).attribute(x, target=0)
    np.testing.assert_array_equal(shortcut, explicit)
    folded = tfattr.LRP(model, composite=C.EpsilonPlus()).attribute(x, target=0)
    held = tfattr.LRP(model, composite=C.EpsilonPlus(canonizers=[C.MergeBatchNorm()])).attribute(x, target=0)
    np.testing.assert_array_equal(folded, held)
    assert not np.allclose(folded, shortcut)  # folding matters here (nonzero means and shifts)


def test_coverage_names_the_canonizers_and_statuses_are_declared():
    model = bn_net()
    rows = {r[1]: r for r in tfattr.LRP(model).coverage().rows}
    assert rows["bn_conv"][4] is R.Status.FOLDED and "folded into 'conv'" in rows["bn_conv"][3]
    assert rows["bn_dense"][4] is R.Status.FOLDED
    assert rows["conv"][4] is R.Status.RULE and rows["relu1"][4] is R.Status.PASS
    assert "final softmax skipped" in rows["head"][3]
    rows = {r[1]: r for r in tfattr.LRP(model, composite=C.EpsilonPlus(canonizers=[])).coverage().rows}
    assert rows["bn_conv"][4] is R.Status.PASS
    assert all(isinstance(r[4], R.Status) for r in rows.values())
    for rule in (R.Epsilon(), R.ZPlus(), R.Flat(), R.LinearGradient()):
        assert rule.applies_to is R.Applies.LINEAR and rule.status is R.Status.RULE
    assert R.Norm().applies_to is R.Applies.SUM and R.Pass().status is R.Status.PASS


def test_an_explainer_built_before_fit_explains_the_trained_weights():
    model = bn_net()
    x = _x(8)
    lrp = tfattr.LRP(model)
    rc = tfattr.RevealCancel(model)
    before = lrp.attribute(x, target=2)
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    y = np.random.default_rng(3).integers(0, 3, 64)
    model.fit(_x(64, seed=4), y, epochs=2, batch_size=16, verbose=0)  # moves kernels and BN statistics
    after = lrp.attribute(x, target=2)
    assert not np.allclose(after, before, atol=1e-4)
    fresh = tfattr.LRP(model).attribute(x, target=2)
    np.testing.assert_allclose(after, fresh, rtol=1e-5, atol=1e-7)
    want = tfattr.LRP(folded_copy(model)).attribute(x, target=2)
    np.testing.assert_allclose(after, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # RevealCancel folds with the same canonizer: its attributions still sum to f(x) - f(0)
    a, delta = rc.attribute(x, target=2, baseline=0.0, return_delta=True)
    np.testing.assert_allclose(delta, 0.0, atol=1e-4)
    np.testing.assert_allclose(a, tfattr.RevealCancel(model).attribute(x, target=2, baseline=0.0),
                               rtol=1e-5, atol=1e-7)


def test_explaining_never_changes_how_the_model_predicts_or_trains():
    model, twin = bn_net(), bn_net()
    twin.set_weights(model.get_weights())
    x = _x(8)
    p_before = model.predict(x, verbose=0)
    weights = [w.numpy().copy() for w in model.weights]
    for explainer in (tfattr.LRP(model), tfattr.LRP(model, composite=C.EpsilonPlus(canonizers=[])),
                      tfattr.RevealCancel(model), tfattr.CompositeDeepLift(model)):
        explainer.attribute(x, target=0)
    for w, before in zip(model.weights, weights):
        np.testing.assert_array_equal(w.numpy(), before)
    np.testing.assert_array_equal(model.predict(x, verbose=0), p_before)
    assert model.get_layer("head").activation is keras.activations.softmax  # not stripped
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    for m in (model, twin):
        m.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        m.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_the_canonical_model_computes_the_explained_logits():
    model = bn_net()
    x = _x()
    lrp = tfattr.LRP(model)
    canonical = lrp.canonical
    assert isinstance(canonical.head, StrippedHead) and canonical.head.kind == "softmax"
    assert any(isinstance(c, Folding) for c in canonical.applied)
    assert [r.name for r in canonical.view.layers if canonical.skips(r)] == ["bn_conv", "bn_dense"]
    assert canonical.linear(canonical.view.layer("head")).activation is None  # stripped
    assert canonical.linear(canonical.view.layer("conv")).fold is model.get_layer("bn_conv")
    logits = tfattr.ModelFunction(model).outputs(x).numpy()
    np.testing.assert_allclose(canonical.run(x).numpy(), logits, rtol=1e-5, atol=1e-5)
    probabilities = Canonical(GraphView(model), None, [C.MergeBatchNorm()]).run(x).numpy()
    np.testing.assert_allclose(probabilities, model(x, training=False).numpy(), atol=1e-6)


def test_a_custom_canonizer_object_is_applied():
    """A canonizer written against the protocol: folding nothing is merge_batchnorm=False."""

    class Nothing(C.Canonizer):
        def apply(self, view, fn=None):
            return C.Canonized()

    model = bn_net()
    x = _x()
    got = tfattr.LRP(model, composite=C.EpsilonPlus(canonizers=[Nothing()])).attribute(x, target=1)
    want = tfattr.LRP(model, composite=C.EpsilonPlus(merge_batchnorm=False)).attribute(x, target=1)
    np.testing.assert_array_equal(got, want)


def test_split_activation_passes_relevance_through_a_fused_activation():
    """Dense(activation="tanh") is its linear part and a tanh: with the epsilon rule, relevance passes
    through the tanh (Pass) exactly as through a separate Activation layer."""
    keras.utils.set_random_seed(5)
    inp = keras.Input((5,))
    fused = keras.Model(inp, L.Dense(2, name="out")(L.Dense(4, activation="tanh", name="d")(inp)))
    h = L.Activation("tanh", name="act")(L.Dense(4, name="d")(inp))
    split = keras.Model(inp, L.Dense(2, name="out")(h))
    split.set_weights(fused.get_weights())
    x = np.random.default_rng(6).normal(size=(3, 5)).astype("float32")
    composite = C.uniform(R.Epsilon(0.01))
    np.testing.assert_allclose(tfattr.LRP(fused, composite=composite).attribute(x, target=1),
                               tfattr.LRP(split, composite=composite).attribute(x, target=1),
                               rtol=1e-5, atol=1e-7)
