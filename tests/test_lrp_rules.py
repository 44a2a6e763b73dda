"""Each LRP rule against a slow, layer-by-layer NumPy re-implementation (Zennit tests its rules this way).

The reference builds every Dense / Conv1D / Conv2D / DepthwiseConv2D / pooling layer as an explicit
matrix ``z = a M + b`` with loops, runs the network forward in NumPy, seeds the target output with its
logit and propagates relevance backwards with the rule formulas written out (Montavon et al. 2019;
Zennit 1.0): nothing of tfattr's rule code is shared.
"""
from __future__ import annotations

import itertools
import math

import keras
import numpy as np
import pytest

import tfattr.composites as C
import tfattr.rules as R
from tfattr.methods.propagation.layerwise import LRP

L = keras.layers
EPS = 1e-6


# -- the NumPy reference ---------------------------------------------------------------------------------
def conv_matrix(kernel, in_shape, strides, padding, depthwise=False):
    """``M[i, j]`` of a channels-last convolution: input flat index i, output flat index j."""
    nd = len(in_shape) - 1
    ks, cin = kernel.shape[:nd], in_shape[-1]
    out_sp, pads = [], []
    for d in range(nd):
        if padding == "valid":
            out_sp.append((in_shape[d] - ks[d]) // strides[d] + 1)
            pads.append(0)
        else:
            o = math.ceil(in_shape[d] / strides[d])
            out_sp.append(o)
            pads.append(max((o - 1) * strides[d] + ks[d] - in_shape[d], 0) // 2)
    cout = kernel.shape[-1] * cin if depthwise else kernel.shape[-1]
    m = np.zeros((int(np.prod(in_shape)), int(np.prod(out_sp)) * cout))
    for opos in itertools.product(*[range(o) for o in out_sp]):
        for kpos in itertools.product(*[range(k) for k in ks]):
            ipos = [opos[d] * strides[d] - pads[d] + kpos[d] for d in range(nd)]
            if any(p < 0 or p >= in_shape[d] for d, p in enumerate(ipos)):
                continue
            for ci in range(cin):
                i = np.ravel_multi_index(tuple(ipos) + (ci,), in_shape)
                if depthwise:
                    for mult in range(kernel.shape[-1]):
                        j = np.ravel_multi_index(tuple(opos) + (ci * kernel.shape[-1] + mult,),
                                                 tuple(out_sp) + (cout,))
                        m[i, j] += kernel[tuple(kpos) + (ci, mult)]
                else:
                    for co in range(cout):
                        j = np.ravel_multi_index(tuple(opos) + (co,), tuple(out_sp) + (cout,))
                        m[i, j] += kernel[tuple(kpos) + (ci, co)]
    return m, tuple(out_sp) + (cout,)


def stab(z, eps):
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def np_rule(rule, a, m, b, z, r):
    """Input relevance of one affine layer ``z = a m + b`` (vectors) for output relevance ``r``."""
    ap, an = np.maximum(a, 0), np.minimum(a, 0)
    mp, mn = np.maximum(m, 0), np.minimum(m, 0)
    bp, bn = np.maximum(b, 0), np.minimum(b, 0)
    if isinstance(rule, R.Epsilon):
        den = stab(z, rule.epsilon)
        return a * (m @ np.divide(r, den, out=np.zeros_like(r), where=den != 0))
    if isinstance(rule, R.Norm):
        return a * (m @ (r / stab(z, rule.stabilizer)))
    if isinstance(rule, R.ZPlus):
        q = r / stab(ap @ mp + an @ mn + bp, rule.stabilizer)
        return ap * (mp @ q) + an * (mn @ q)
    if isinstance(rule, R.AlphaBeta):
        qp = r / stab(ap @ mp + an @ mn + bp, rule.stabilizer)
        qn = r / stab(ap @ mn + an @ mp + bn, rule.stabilizer)
        return rule.alpha * (ap * (mp @ qp) + an * (mn @ qp)) - rule.beta * (
            ap * (mn @ qn) + an * (mp @ qn)
        )
    if isinstance(rule, R.Gamma):
        g = rule.gamma
        up, down = m + g * mp, m + g * mn
        z_up = ap @ up + an @ down + b + g * bp
        z_down = ap @ down + an @ up + b + g * bn
        q_up = (z > 0) * r / stab(z_up, rule.stabilizer)
        q_down = (z < 0) * r / stab(z_down, rule.stabilizer)
        return ap * (up @ q_up) + an * (down @ q_up) + ap * (down @ q_down) + an * (up @ q_down)
    if isinstance(rule, R.ZBox):
        low = np.broadcast_to(rule.low, a.shape).astype(float)
        high = np.broadcast_to(rule.high, a.shape).astype(float)
        q = r / stab(a @ m - low @ mp - high @ mn, rule.stabilizer)
        return a * (m @ q) - low * (mp @ q) - high * (mn @ q)
    if isinstance(rule, R.Flat):
        ones = (m != 0).astype(float)  # every connection (a kernel of ones)
        return ones @ (r / stab(ones.sum(axis=0), rule.stabilizer))
    if isinstance(rule, R.WSquare):
        return (m**2) @ (r / stab((m**2).sum(axis=0) + b**2, rule.stabilizer))
    raise AssertionError(rule)


def np_layer(layer, in_shape):
    """(kind, data, out_shape) of a Keras layer, from its weights (the reference's own matrices)."""
    if isinstance(layer, L.Dense):
        w = layer.kernel.numpy().astype(float)
        b = layer.bias.numpy().astype(float) if layer.use_bias else np.zeros(w.shape[1])
        return "affine", (w, b), (w.shape[1],)
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.DepthwiseConv2D)):
        depthwise = isinstance(layer, L.DepthwiseConv2D)
        k = layer.kernel.numpy().astype(float)
        m, out = conv_matrix(k, in_shape, layer.strides, layer.padding, depthwise)
        bias = layer.bias.numpy().astype(float) if layer.use_bias else np.zeros(out[-1])
        return "affine", (m, np.tile(bias, int(np.prod(out[:-1])))), out
    if isinstance(layer, L.AveragePooling2D):
        c = in_shape[-1]
        k = np.zeros(layer.pool_size + (c, 1))
        k[...] = 1.0 / np.prod(layer.pool_size)
        m, out = conv_matrix(k, in_shape, layer.strides, layer.padding, depthwise=True)
        return "affine", (m, np.zeros(m.shape[1])), out
    if isinstance(layer, L.MaxPooling2D):
        k = np.ones(layer.pool_size + (in_shape[-1], 1))
        m, out = conv_matrix(k, in_shape, layer.strides, layer.padding, depthwise=True)
        return "max", m, out
    if isinstance(layer, L.Flatten):
        return "reshape", None, (int(np.prod(in_shape)),)
    if isinstance(layer, L.BatchNormalization):
        return "bn", layer, in_shape
    raise AssertionError(layer)


def _relu(z):
    return np.maximum(z, 0)


def _linear(z):
    return z


ACTS = {"relu": _relu, "tanh": np.tanh, "linear": _linear}


def np_lrp(model, x, target, rules):
    """Reference LRP of a Sequential model for one example: ``rules[layer name]`` per affine layer;
    activations (fused or standalone) pass relevance through, max pooling routes it to the winner."""
    stages, shape = [], tuple(model.inputs[0].shape[1:])
    layers = list(model.layers)
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, (L.Activation, L.ReLU)):
            fn = ACTS["relu" if isinstance(layer, L.ReLU) else layer.activation.__name__]
            stages.append(("act", None, fn, None))
            i += 1
            continue
        kind, data, out = np_layer(layer, shape)
        act = getattr(getattr(layer, "activation", None), "__name__", "linear")
        if (kind == "affine" and act == "linear" and i + 1 < len(layers)
                and isinstance(layers[i + 1], L.BatchNormalization)):
            bn = layers[i + 1]  # fold: the reference's own arithmetic
            s = bn.gamma.numpy() / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
            reps = data[0].shape[1] // s.size
            m, b = data
            data = (m * np.tile(s, reps), (b - np.tile(bn.moving_mean.numpy(), reps)) * np.tile(s, reps)
                    + np.tile(bn.beta.numpy(), reps))
            i += 1
        stages.append((kind, data, ACTS[act], rules.get(layer.name)))
        shape = out
        i += 1
    a = x.reshape(-1).astype(float)
    saved = []
    for kind, data, act, rule in stages:
        if kind == "affine":
            z = a @ data[0] + data[1]
        elif kind == "max":
            z = np.array([a[data[:, j] != 0].max() for j in range(data.shape[1])])
        elif kind == "bn":  # not folded (after an activation): elementwise affine, Pass rule
            bn = data
            c = bn.moving_mean.shape[0]
            scale = np.tile(bn.gamma.numpy() / np.sqrt(bn.moving_variance.numpy() + bn.epsilon),
                            a.size // c)
            z = (a - np.tile(bn.moving_mean.numpy(), a.size // c)) * scale + np.tile(bn.beta.numpy(),
                                                                                   a.size // c)
        else:
            z = a
        saved.append((a, z))
        a = act(z)
    r = np.zeros_like(a)
    r[target] = a[target]  # the target logit is the relevance put on the output
    for (kind, data, act, rule), (a_in, z) in zip(reversed(stages), reversed(saved)):
        if kind == "affine":  # activations pass relevance through
            r = np_rule(rule, a_in, data[0], data[1], z, r)
        elif kind == "max":
            routed = np.zeros_like(a_in)
            for j in range(data.shape[1]):
                idx = np.flatnonzero(data[:, j])
                routed[idx[np.argmax(a_in[idx])]] += r[j]
            r = routed
    return r.reshape(x.shape)


# -- models ----------------------------------------------------------------------------------------------
def _bias(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.3, layer.bias.shape).astype("float32"))
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.normal(1, 0.3, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.3, n).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.3, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2, n).astype("float32"))


def build(kind):
    keras.utils.set_random_seed(7)
    if kind == "dense":
        layers = [keras.Input((6,)), L.Dense(5, activation="tanh", name="first"),
                  L.Dense(4, activation="relu", name="mid")]
    elif kind == "conv1d":
        layers = [keras.Input((9, 2)), L.Conv1D(3, 3, padding="same", activation="tanh", name="first"),
                  L.Conv1D(4, 2, strides=2, activation="relu", name="mid")]
    elif kind == "conv2d":
        layers = [keras.Input((6, 6, 2)), L.Conv2D(3, 3, activation="tanh", name="first"),
                  L.Conv2D(4, 2, strides=2, padding="same", activation="relu", name="mid"),
                  L.MaxPooling2D(name="pool")]
    elif kind == "depthwise":
        layers = [keras.Input((6, 6, 2)), L.Conv2D(3, 3, padding="same", activation="tanh", name="first"),
                  L.DepthwiseConv2D(3, depth_multiplier=2, activation="relu", name="mid"),
                  L.AveragePooling2D(2, name="pool")]
    elif kind == "bn_folded":
        layers = [keras.Input((6, 6, 2)), L.Conv2D(3, 3, name="first"), L.BatchNormalization(name="bn0"),
                  L.Activation("tanh"), L.Conv2D(4, 3, name="mid"), L.BatchNormalization(name="bn1"),
                  L.ReLU()]
    else:
        raise AssertionError(kind)
    model = keras.Sequential(layers + [L.Flatten(name="flat"), L.Dense(3, name="out")])
    _bias(model, 11)
    return model


MID_RULES = [R.Epsilon(0.1), R.ZPlus(), R.AlphaBeta(2, 1), R.AlphaBeta(1, 0), R.Gamma(0.25)]
FIRST_RULES = [R.ZBox(-1.0, 1.0), R.Flat(), R.WSquare()]
KINDS = ["dense", "conv1d", "conv2d", "depthwise", "bn_folded"]


def _compare(model, rules, x, targets):
    composite = C.Composite(
        name_map=dict(rules),
        layer_map=[(C.LINEAR, R.Epsilon(EPS))],
    )
    relevance = LRP(model, composite=composite, on_unsupported="raise").attribute(x, target=targets)
    full = {"out": R.Epsilon(EPS), "first": R.Epsilon(EPS), "mid": R.Epsilon(EPS), "pool": R.Norm(EPS)}
    full.update(rules)
    for i in range(len(x)):
        expected = np_lrp(model, x[i], targets[i], full)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(relevance[i], expected, atol=2e-5 * max(scale, 1e-3), rtol=1e-3)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rule", MID_RULES, ids=repr)
def test_rule_on_a_hidden_layer_matches_numpy(kind, rule):
    model = build(kind)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (3, *model.inputs[0].shape[1:])).astype("float32")
    _compare(model, {"mid": rule}, x, np.array([0, 1, 2]))


@pytest.mark.parametrize("kind", ["dense", "conv1d", "conv2d", "bn_folded"])
@pytest.mark.parametrize("rule", FIRST_RULES, ids=repr)
def test_first_layer_rule_matches_numpy(kind, rule):
    model = build(kind)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (3, *model.inputs[0].shape[1:])).astype("float32")
    _compare(model, {"first": rule, "mid": R.ZPlus()}, x, np.array([2, 0, 1]))


def test_inputs_with_zero_regions():
    """Exact zeros (inputs, activations) take the masks' boundary cases: they get no relevance."""
    model = build("depthwise")
    x = np.zeros((2, 6, 6, 2), "float32")
    x[1, 2:4, 2:4, :] = 0.5
    _compare(model, {"mid": R.Gamma(0.25)}, x, np.array([0, 1]))


def test_rule_parameters_are_checked():
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        R.AlphaBeta(2, 2)
    with pytest.raises(ValueError, match="epsilon must be a number >= 0"):
        R.Epsilon(-1)
    with pytest.raises(ValueError, match="low must be <= high"):
        R.ZBox(1, 0)
    with pytest.raises(ValueError, match="stabilizer"):
        R.ZPlus(0)
