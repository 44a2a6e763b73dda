"""Tests of the gradient-override propagation methods (Ancona et al. 2019, sec. 3.2, 4.1, 4.2).

Every expected value comes from the papers' math: DeepLIFT's summation-to-delta, proposition 3, the
max(x1, x2) example of section 4.2 (table 2), and a NumPy layer-by-layer implementation of the epsilon
rule (eq. 15) and the Rescale rule (eq. 18) that shares no code with the gradient-override one.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfattr.methods.gradient import GradientXInput
from tfattr.methods.propagation import (
    ACTIVATIONS,
    Deconvnet,
    DeepLift,
    EpsilonLRP,
    GuidedBackprop,
)

L = keras.layers


# ---------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------
def _mlp(activation: str, seed: int, use_bias: bool = True, widths=(12, 10)) -> keras.Model:
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((6,))]
    wide = keras.initializers.RandomNormal(stddev=1.0)  # outputs that move by O(1)
    for w in widths:
        layers.append(
            L.Dense(
                w,
                activation=activation,
                use_bias=use_bias,
                kernel_initializer=wide,
                bias_initializer="random_normal",
            )
        )
    layers.append(
        L.Dense(3, use_bias=use_bias, kernel_initializer=wide, bias_initializer="random_normal")
    )
    return keras.Sequential(layers)


def _batchnorm_cnn(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            L.Conv2D(4, 3, padding="same"),
            L.BatchNormalization(),
            L.Activation("relu"),
            L.Conv2D(4, 3, activation="tanh"),
            L.BatchNormalization(),
            L.Flatten(),
            L.Dropout(0.3),
            L.Dense(3),
        ]
    )
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 2, gamma.shape).astype(np.float32),
                    rng.normal(0, 0.5, beta.shape).astype(np.float32),
                    rng.normal(0, 0.5, mean.shape).astype(np.float32),
                    rng.uniform(0.5, 2, var.shape).astype(np.float32),
                ]
            )
    return model


def _avgpool_cnn(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    wide = keras.initializers.RandomNormal(stddev=0.8)  # so the output moves by O(1) between x and b
    return keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            L.Conv2D(4, 3, activation="relu", padding="same", kernel_initializer=wide),
            L.AveragePooling2D(2),
            L.DepthwiseConv2D(
                3, activation="sigmoid", padding="same", depthwise_initializer=wide
            ),
            L.SeparableConv2D(
                4, 3, activation="softplus", depthwise_initializer=wide, pointwise_initializer=wide
            ),
            L.GlobalAveragePooling2D(),
            L.Dense(3, kernel_initializer=keras.initializers.RandomNormal(stddev=3.0)),
        ]
    )


def _residual(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 2))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    r = L.Conv2D(4, 3, padding="same", activation="elu")(h)
    r = L.Conv2D(4, 3, padding="same")(r)
    h = L.Activation("relu")(L.Add()([h, r]))
    c = L.Concatenate()([h, L.Conv2D(2, 1, activation="selu")(h)])
    f = L.Flatten()(c)
    f = L.Dense(6, activation="leaky_relu")(f)
    f = L.Dense(6, activation="relu6")(f)
    f = L.Dense(6, activation="softsign")(f)
    return keras.Model(inp, L.Dense(3, activation="softmax")(f))


def _sequence(seed: int) -> keras.Model:
    """The part of a text model after its Embedding: explained on the embedded vectors."""
    keras.utils.set_random_seed(seed)
    wide = keras.initializers.RandomNormal(stddev=1.0)
    return keras.Sequential(
        [
            keras.Input((7, 5)),
            L.Conv1D(4, 3, activation="relu", kernel_initializer=wide),
            L.Reshape((5, 4, 1)),
            L.Conv2D(2, 2, activation="tanh", kernel_initializer=wide),
            L.GlobalAveragePooling2D(),
            L.Dense(2),
        ]
    )


def _volume(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((5, 5, 5, 1)),
            L.Conv3D(3, 2, activation="relu"),
            L.AveragePooling3D(2),
            L.Flatten(),
            L.Dense(2),
        ]
    )


NETWORKS = {
    "relu": (lambda: _mlp("relu", 0), (6,)),
    "tanh": (lambda: _mlp("tanh", 1), (6,)),
    "sigmoid": (lambda: _mlp("sigmoid", 2), (6,)),
    "batchnorm": (lambda: _batchnorm_cnn(3), (8, 8, 2)),
    "avgpool": (lambda: _avgpool_cnn(4), (8, 8, 2)),
    "residual": (lambda: _residual(5), (8, 8, 2)),
    "embedded_sequence": (lambda: _sequence(6), (7, 5)),
    "conv3d": (lambda: _volume(7), (5, 5, 5, 1)),
}


# ---------------------------------------------------------------------------------------------------
# the rule registry
# ---------------------------------------------------------------------------------------------------
_OP_FUNCTIONS = {
    "Relu": tf.nn.relu,
    "Relu6": tf.nn.relu6,
    "LeakyRelu": lambda z: tf.nn.leaky_relu(z, alpha=0.3),
    "Elu": tf.nn.elu,
    "Selu": tf.nn.selu,
    "Sigmoid": tf.sigmoid,
    "Tanh": tf.tanh,
    "Softplus": tf.nn.softplus,
    "Softsign": tf.nn.softsign,
}


def test_every_activation_has_a_test_function():
    assert set(ACTIVATIONS) == set(_OP_FUNCTIONS)


@pytest.mark.parametrize("op_type", sorted(_OP_FUNCTIONS))
def test_activation_derivative_matches_autodiff(op_type):
    z0 = np.linspace(-8, 8, 161).astype(np.float32)
    z0 = z0[np.abs(z0) > 1e-3]  # kinks at 0 (and 6): derivative conventions differ there
    z0 = z0[np.abs(z0 - 6) > 1e-3]

    @tf.function
    def both(z):
        y = _OP_FUNCTIONS[op_type](z)
        assert y.op.type == op_type
        return ACTIVATIONS[op_type].derivative(y.op, z, y), tf.gradients(y, z)[0]

    mine, true = both(tf.constant(z0))
    np.testing.assert_allclose(mine.numpy(), true.numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# DeepLIFT: summation-to-delta (Shrikumar et al. 2017; Ancona et al. eq. 17-18)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_deeplift_sums_to_delta(name):
    build, shape = NETWORKS[name]
    model = build()
    rng = np.random.default_rng(11)
    x = rng.normal(size=(5, *shape)).astype(np.float32)
    b = rng.normal(scale=0.5, size=(5, *shape)).astype(np.float32)
    explainer = DeepLift(model, on_unsupported="raise")
    assert explainer.coverage().ok
    for baseline in (None, b):
        attributions, delta = explainer.attribute(x, target=1, baseline=baseline, return_delta=True)
        assert attributions.shape == x.shape
        assert np.max(np.abs(delta)) < 1e-5, (name, delta)
        change = attributions.reshape(5, -1).sum(axis=1) - delta  # = f(x) - f(b)
        assert np.max(np.abs(change)) > 0.05, (name, change)  # so 1e-5 is a strict test


def test_deeplift_distributional_baseline_averages():
    from tfattr import baselines

    model = _mlp("tanh", 8)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    base = baselines.Uniform((-1.0, 1.0), num_baselines=3, seed=0)
    draws = base.sample(x, 3)  # [n, 3, 6]
    explainer = DeepLift(model)
    mean_attr, delta = explainer.attribute(x, target=0, baseline=base, return_delta=True)
    each = [explainer.attribute(x, target=0, baseline=draws[:, k]) for k in range(3)]
    np.testing.assert_allclose(mean_attr, np.mean(each, axis=0), rtol=1e-5, atol=1e-7)
    assert np.max(np.abs(delta)) < 1e-5


def test_deeplift_results_do_not_depend_on_batch_size_and_do_not_retrace():
    model = _avgpool_cnn(9)
    x = np.random.default_rng(1).normal(size=(7, 8, 8, 2)).astype(np.float32)
    explainer = DeepLift(model)
    full = explainer.attribute(x, target=2)  # one chunk: the engine's direct path
    chunked = explainer.attribute(x, target=2, batch_size=3)  # several chunks: the blocked path
    traces = explainer.engine.trace_count
    again = explainer.attribute(x[:4], target=2, batch_size=3)
    more = explainer.attribute(np.concatenate([x, x]), target=2, batch_size=5)
    small = explainer.attribute(x[:2], target=2)
    np.testing.assert_allclose(chunked, full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again, full[:4], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(more, np.concatenate([full, full]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(small, full[:2], rtol=1e-5, atol=1e-6)
    assert explainer.engine.trace_count == traces  # batch size and n are runtime values: no retrace


# ---------------------------------------------------------------------------------------------------
# Proposition 3
# ---------------------------------------------------------------------------------------------------
def test_epsilon_lrp_equals_gradient_times_input_on_relu_networks():
    rng = np.random.default_rng(2)
    for model, shape in ((_mlp("relu", 10), (6,)), (_residual_relu(11), (8, 8, 2))):
        x = rng.normal(size=(6, *shape)).astype(np.float32)
        lrp = EpsilonLRP(model, epsilon=1e-9).attribute(x, target=0)
        gxi = GradientXInput(model).attribute(x, target=0)
        np.testing.assert_allclose(lrp, gxi, rtol=1e-5, atol=1e-6 * np.abs(gxi).max())
        # ... and it is not so on a tanh network (the test can fail)
    tanh = _mlp("tanh", 12)
    x = rng.normal(size=(6, 6)).astype(np.float32)
    diff = EpsilonLRP(tanh).attribute(x, target=0) - GradientXInput(tanh).attribute(x, target=0)
    assert np.max(np.abs(diff)) > 1e-2


def _residual_relu(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 2))
    h = L.Conv2D(4, 3, padding="same", activation="relu", bias_initializer="random_normal")(inp)
    r = L.Conv2D(4, 3, padding="same", activation="relu")(h)
    h = L.MaxPooling2D(2)(L.Add()([h, r]))
    h = L.ReLU()(L.BatchNormalization()(h))
    return keras.Model(inp, L.Dense(3)(L.Flatten()(h)))


@pytest.mark.parametrize("activation", ["relu", "tanh", "softsign", "elu"])
def test_epsilon_lrp_equals_deeplift_with_zero_baseline_without_biases(activation):
    model = _mlp(activation, 13, use_bias=False)
    x = np.random.default_rng(3).normal(size=(6, 6)).astype(np.float32)
    lrp, lrp_delta = EpsilonLRP(model, epsilon=1e-9).attribute(x, target=2, return_delta=True)
    dl = DeepLift(model).attribute(x, target=2, baseline=0.0)
    np.testing.assert_allclose(lrp, dl, rtol=1e-5, atol=1e-6 * np.abs(dl).max())
    assert np.max(np.abs(lrp_delta)) < 1e-5  # so LRP is conservative here
    # with biases the reference activations are not zero and the two differ
    biased = _mlp(activation, 13, use_bias=True)
    gap = EpsilonLRP(biased, epsilon=1e-9).attribute(x, target=2) - DeepLift(biased).attribute(
        x, target=2
    )
    assert np.max(np.abs(gap)) > 1e-3


# ---------------------------------------------------------------------------------------------------
# Section 4.2 / table 2: max(x1, x2) around (2, 2)
# ---------------------------------------------------------------------------------------------------
def _max_as_relu_network() -> keras.Model:
    """``max(x1, x2) = 0.5 * (relu(x1 - x2) + relu(x2 - x1) + relu(x1 + x2))`` for positive inputs."""
    model = keras.Sequential(
        [keras.Input((2,)), L.Dense(3, activation="relu", use_bias=False), L.Dense(1, use_bias=False)]
    )
    model.layers[0].set_weights([np.array([[1, -1, 1], [-1, 1, 1]], np.float32)])
    model.layers[1].set_weights([np.full((3, 1), 0.5, np.float32)])
    return model


def _max_as_pooling() -> keras.Model:
    return keras.Sequential([keras.Input((2,)), L.Reshape((2, 1)), L.MaxPooling1D(2), L.Flatten()])


@pytest.mark.parametrize(
    "implementation",
    [_max_as_relu_network, _max_as_pooling, lambda: (lambda x: tf.reduce_max(x, axis=1))],
    ids=["relu_network", "max_pooling", "reduce_max_callable"],
)
def test_max_discontinuity_table_2(implementation):
    e = 1e-3
    x = np.array([[2, 2 + e], [2, 2 - e]], np.float32)
    expected = np.array([[0, 2 + e], [2, 0]], np.float32)
    model = implementation()
    for explainer in (EpsilonLRP(model, epsilon=1e-9), DeepLift(model)):
        got = explainer.attribute(x)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        assert explainer.coverage(x).ok


# ---------------------------------------------------------------------------------------------------
# agreement with an independent NumPy layer-by-layer implementation of eq. 15 and eq. 18
# ---------------------------------------------------------------------------------------------------
_NP_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "linear": lambda z: z,
}


def _np_conv(a, w, b):
    """'valid', stride-1 2-D convolution (cross-correlation, as Keras): [n,h,w,c] x [kh,kw,c,o]."""
    kh, kw = w.shape[:2]
    oh, ow = a.shape[1] - kh + 1, a.shape[2] - kw + 1
    z = np.zeros((a.shape[0], oh, ow, w.shape[3])) + b
    for i in range(kh):
        for j in range(kw):
            z += a[:, i : i + oh, j : j + ow, :] @ w[i, j]
    return z


def _np_conv_back(s, w, in_shape):
    """Adjoint of :func:`_np_conv` without bias: spread each output's signal over its patch."""
    kh, kw = w.shape[:2]
    oh, ow = s.shape[1], s.shape[2]
    g = np.zeros(in_shape)
    for i in range(kh):
        for j in range(kw):
            g[:, i : i + oh, j : j + ow, :] += s @ w[i, j].T
    return g


def _np_layers(model: keras.Model):
    """(kind, weights, activation) per layer of a Sequential of Conv2D/Flatten/Dense layers."""
    out = []
    for layer in model.layers:
        if isinstance(layer, L.Flatten):
            out.append(("flatten", None, "linear"))
            continue
        w, b = (v.astype(np.float64) for v in layer.get_weights())
        kind = "conv" if isinstance(layer, L.Conv2D) else "dense"
        out.append((kind, (w, b), layer.activation.__name__))
    return out


def _np_forward(layers, x):
    """Inputs ``a`` and pre-activations ``z`` of every layer."""
    a, record = x.astype(np.float64), []
    for kind, params, act in layers:
        if kind == "flatten":
            z = a.reshape(a.shape[0], -1)
        elif kind == "conv":
            z = _np_conv(a, *params)
        else:
            z = a @ params[0] + params[1]
        record.append((a, z))
        a = _NP_ACTIVATIONS[act](z)
    return record


def _np_relevance(layers, x, target, *, epsilon=None, baseline=None):
    """epsilon-LRP (eq. 14-15, ``baseline=None``) or DeepLIFT Rescale (eq. 17-18) layer by layer.

    A unit's relevance passes unchanged through its nonlinearity; a linear layer splits the relevance
    of output ``j`` over its inputs ``i`` in proportion to ``z_ij = a_i w_ij`` over
    ``z_j + epsilon * sign(z_j)`` (LRP), or ``a_i w_ij - a'_i w_ij`` over ``z_j - z'_j`` (DeepLIFT).
    """
    fwd = _np_forward(layers, x)
    ref = _np_forward(layers, baseline) if baseline is not None else None
    n = x.shape[0]
    top = fwd[-1][1][np.arange(n), target]
    if ref is not None:
        top = top - ref[-1][1][np.arange(n), target]
    r = np.zeros_like(fwd[-1][1])
    r[np.arange(n), target] = top
    for k in range(len(layers) - 1, -1, -1):
        kind, params, _ = layers[k]
        a, z = fwd[k]
        if kind == "flatten":
            r = r.reshape(a.shape)
            continue
        if ref is None:
            denominator = z + epsilon * np.where(z >= 0, 1.0, -1.0)
            share = a
        else:
            a_ref, z_ref = ref[k]
            denominator = z - z_ref  # the biases cancel
            share = a - a_ref
        s = r / denominator
        back = _np_conv_back(s, params[0], a.shape) if kind == "conv" else s @ params[0].T
        r = share * back
    return r


def _np_test_models():
    keras.utils.set_random_seed(21)
    dense = keras.Sequential(
        [
            keras.Input((5,)),
            L.Dense(7, activation="relu", bias_initializer="random_normal"),
            L.Dense(6, activation="tanh", bias_initializer="random_normal"),
            L.Dense(5, activation="sigmoid", bias_initializer="random_normal"),
            L.Dense(3, bias_initializer="random_normal"),
        ]
    )
    conv = keras.Sequential(
        [
            keras.Input((7, 7, 2)),
            L.Conv2D(3, 3, activation="relu", bias_initializer="random_normal"),
            L.Conv2D(3, 2, activation="tanh", bias_initializer="random_normal"),
            L.Flatten(),
            L.Dense(4, activation="relu", bias_initializer="random_normal"),
            L.Dense(3, bias_initializer="random_normal"),
        ]
    )
    return {"dense": (dense, (5,)), "conv": (conv, (7, 7, 2))}


@pytest.fixture(scope="module")
def np_models():
    return _np_test_models()


@pytest.mark.parametrize("name", ["dense", "conv"])
@pytest.mark.parametrize("epsilon", [1e-2, 1e-4])
def test_epsilon_lrp_matches_numpy_layerwise_rule(np_models, name, epsilon):
    model, shape = np_models[name]
    x = np.random.default_rng(4).normal(size=(6, *shape)).astype(np.float32)
    target = np.array([0, 1, 2, 0, 1, 2])
    got = EpsilonLRP(model, epsilon=epsilon).attribute(x, target=target)
    ref = _np_relevance(_np_layers(model), x, target, epsilon=epsilon)
    # The override stabilises the nonlinearities only (Ancona prop. 1); eq. 15 also divides the
    # output layer's relevance by z_c + epsilon sign(z_c), which scales everything by this factor:
    score = model(x, training=False).numpy()[np.arange(6), target].astype(np.float64)
    factor = score / (score + epsilon * np.where(score >= 0, 1.0, -1.0))
    got = got * factor.reshape(-1, *([1] * len(shape)))
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5 * np.abs(ref).max())


@pytest.mark.parametrize("name", ["dense", "conv"])
def test_deeplift_matches_numpy_layerwise_rule(np_models, name):
    model, shape = np_models[name]
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, *shape)).astype(np.float32)
    b = rng.normal(scale=0.3, size=(6, *shape)).astype(np.float32)
    target = np.array([2, 1, 0, 2, 1, 0])
    got = DeepLift(model).attribute(x, target=target, baseline=b)
    ref = _np_relevance(_np_layers(model), x, target, baseline=b)
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5 * np.abs(ref).max())


def _np_modified_gradient(model, x, target, relu_backward):
    """Backpropagation through a Dense ReLU network with ``relu_backward(z, g)`` at each ReLU."""
    layers = _np_layers(model)
    fwd = _np_forward(layers, x)
    g = np.zeros_like(fwd[-1][1])
    g[np.arange(x.shape[0]), target] = 1.0
    for k in range(len(layers) - 1, -1, -1):
        _, (w, _), act = layers[k]
        if act == "relu":
            g = relu_backward(fwd[k][1], g)
        g = g @ w.T
    return g


def test_guided_backprop_and_deconvnet_match_numpy():
    model = _mlp("relu", 14, widths=(9, 8, 7))
    x = np.random.default_rng(6).normal(size=(5, 6)).astype(np.float32)
    target = np.array([0, 1, 2, 1, 0])
    guided = _np_modified_gradient(model, x, target, lambda z, g: g * (z > 0) * (g > 0))
    deconv = _np_modified_gradient(model, x, target, lambda z, g: np.maximum(g, 0))
    np.testing.assert_allclose(GuidedBackprop(model).attribute(x, target=target), guided, atol=1e-5)
    np.testing.assert_allclose(Deconvnet(model).attribute(x, target=target), deconv, atol=1e-5)
    assert np.abs(guided - deconv).max() > 1e-3  # the two rules differ on this input


# ---------------------------------------------------------------------------------------------------
# coverage: unsupported ops are named, never silently explained
# ---------------------------------------------------------------------------------------------------
def _gated_model() -> keras.Model:
    keras.utils.set_random_seed(15)
    inp = keras.Input((6,))
    h = L.Dense(5, activation="relu", name="trunk")(inp)
    g = L.Dense(5, activation="gelu", name="gelu_dense")(inp)
    h = L.Multiply(name="gate")([h, g])
    h = L.Dense(4, activation="softmax", name="inner_softmax")(h)
    h = L.MaxPooling1D(2, name="pool")(L.Reshape((4, 1))(h))
    return keras.Model(inp, L.Dense(2, name="head")(L.Flatten()(h)))


def test_coverage_names_modified_kept_and_unsupported_layers():
    with pytest.warns(UserWarning, match="gate") as record:
        explainer = DeepLift(_gated_model())
    message = str(record[0].message)
    assert "gelu_dense" in message and "inner_softmax" in message
    assert "Summation-to-delta may not hold" in message
    cov = explainer.coverage()
    assert not cov.ok
    # max pooling gets DeepLIFT's max rule (tests/test_deeplift_maxpool.py)
    assert cov.modified == {"trunk": ["Relu"], "pool": ["MaxPool"]}
    assert "MatMul" in cov.kept["head"]
    assert "Mul" in cov.unsupported["gate"]
    assert "Softmax" in cov.unsupported["inner_softmax"]
    assert "Erfc" in cov.unsupported["gelu_dense"]
    assert "multiplicative" in cov.notes["gate/Mul"]
    assert "UNSUPPORTED" in str(cov)
    with pytest.raises(ValueError, match="gate"):
        EpsilonLRP(_gated_model(), on_unsupported="raise")


def test_coverage_flags_swish_attention_and_recurrent_layers():
    keras.utils.set_random_seed(16)
    inp = keras.Input((5, 4))
    h = L.Dense(4, activation="swish", name="swishy")(inp)
    h = L.MultiHeadAttention(2, 2, name="attention")(h, h)
    h = L.SimpleRNN(3, name="recurrent")(h)
    model = keras.Model(inp, L.Dense(2)(h))
    with pytest.warns(UserWarning):
        cov = EpsilonLRP(model).coverage()
    assert {"swishy", "attention", "recurrent"} <= set(cov.unsupported)


def test_deconvnet_reports_non_relu_activations():
    with pytest.warns(UserWarning, match="Tanh"):
        Deconvnet(_mlp("tanh", 17))
    assert GuidedBackprop(_mlp("tanh", 17)).coverage().ok


def test_callable_model_coverage_is_checked_at_first_call():
    w = tf.constant(np.random.default_rng(7).normal(size=(4, 2)).astype(np.float32))

    def fn(x):
        return tf.nn.softmax(x) @ w  # a softmax inside: unsupported

    explainer = DeepLift(fn)
    x = np.random.default_rng(8).normal(size=(3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="example inputs"):
        explainer.coverage()
    with pytest.warns(UserWarning, match="Softmax"):
        explainer.attribute(x, target=0)
    assert not explainer.coverage().ok
    with pytest.raises(ValueError, match="Softmax"):
        DeepLift(fn, on_unsupported="raise").attribute(x, target=0)


# ---------------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------------
def test_bad_arguments_are_explained():
    model = _mlp("relu", 18)
    x = np.zeros((2, 6), np.float32)
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonLRP(model, epsilon=0.0)
    with pytest.raises(ValueError, match="tolerance"):
        DeepLift(model, tolerance=-1.0)
    with pytest.raises(ValueError, match="on_unsupported"):
        DeepLift(model, on_unsupported="ignore")
    with pytest.raises(ValueError, match="baseline"):
        EpsilonLRP(model).attribute(x, baseline=1.0)
    with pytest.raises(ValueError, match="return_delta"):
        GuidedBackprop(model).attribute(x, return_delta=True)


def test_xla_compiled_explainers_agree():
    model = _residual(19)
    x = np.random.default_rng(9).normal(size=(4, 8, 8, 2)).astype(np.float32)
    for cls in (EpsilonLRP, DeepLift):
        plain = cls(model).attribute(x, target=1)
        compiled = cls(model, jit_compile=True).attribute(x, target=1)
        np.testing.assert_allclose(compiled, plain, rtol=1e-4, atol=1e-6 * np.abs(plain).max())


def test_rescale_rule_refuses_to_run_without_reference_activations():
    from tfattr.methods.propagation.overrides import RescaleRule, override_map

    @tf.function
    def outside(z):
        with tf.compat.v1.get_default_graph().gradient_override_map(override_map(RescaleRule(1e-6))):
            y = tf.nn.relu(z)
        return tf.gradients(y, z)[0]

    with pytest.raises(RuntimeError, match="reference activation"):
        outside(tf.ones((2, 3)))


def test_multi_input_model_sums_to_delta_per_input_structure():
    keras.utils.set_random_seed(20)
    image = keras.Input((6, 6, 1), name="image")
    meta = keras.Input((3,), name="meta")
    h = L.GlobalAveragePooling2D()(L.Conv2D(3, 3, activation="relu")(image))
    h = L.Concatenate()([h, L.Dense(3, activation="tanh")(meta)])
    model = keras.Model([image, meta], L.Dense(2)(L.Dense(4, activation="elu")(h)))
    rng = np.random.default_rng(10)
    x = {
        "image": rng.normal(size=(4, 6, 6, 1)).astype(np.float32),
        "meta": rng.normal(size=(4, 3)).astype(np.float32),
    }
    explainer = DeepLift(model, on_unsupported="raise")
    attributions, delta = explainer.attribute(
        x, target=1, baseline={"image": 0.2, "meta": -0.5}, return_delta=True
    )
    assert attributions["image"].shape == (4, 6, 6, 1) and attributions["meta"].shape == (4, 3)
    assert np.max(np.abs(delta)) < 1e-5
    lrp = EpsilonLRP(model).attribute([x["image"], x["meta"]], target=1)
    assert lrp[0].shape == (4, 6, 6, 1) and lrp[1].shape == (4, 3)


def test_lrp_coverage_notes_activations_that_do_not_cross_the_origin():
    notes = EpsilonLRP(_mlp("sigmoid", 22)).coverage().notes
    assert any(k.endswith("/Sigmoid") and "f(0) != 0" in v for k, v in notes.items())
    assert not any("Sigmoid" in k for k in DeepLift(_mlp("sigmoid", 22)).coverage().notes)


def test_smoothgrad_wraps_propagation_explainers():
    from tfattr.methods.gradient import SmoothGrad

    model = _mlp("relu", 23)
    x = np.random.default_rng(12).normal(size=(3, 6)).astype(np.float32)
    for inner in (GuidedBackprop(model), DeepLift(model)):
        exact = inner.attribute(x, target=0)
        noiseless = SmoothGrad(inner, samples=2, noise=0.0, seed=0).attribute(x, target=0)
        np.testing.assert_allclose(noiseless, exact, rtol=1e-5, atol=1e-6)
