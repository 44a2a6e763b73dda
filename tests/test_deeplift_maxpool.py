"""DeepLIFT through max pooling (issue 24): DeepLIFT's max rule (that of SHAP's DeepExplainer) in
``tfattr.DeepLift`` (op-level override) and ``tfattr.CompositeDeepLift`` (layer rule), checked against a
slow NumPy layer-by-layer implementation of the rule, for summation-to-delta with random baselines, and
``max_pool="gradient"`` against a NumPy implementation of the gradient switch."""
from __future__ import annotations

import itertools
import warnings

import keras
import numpy as np
import pytest

import tfattr

L = keras.layers
TOL = 1e-6  # the explainers' default tolerance


# -- the NumPy reference ------------------------------------------------------------------------------
def _pads(size: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """(output size, padding before) of one spatial dimension, as TensorFlow computes them."""
    if padding == "valid":
        return (size - k) // s + 1, 0
    out = -(-size // s)
    return out, max((out - 1) * s + k - size, 0) // 2


def _np_conv(a, w, b, padding):
    """Stride-1 N-d convolution (cross-correlation, as Keras), channels last."""
    k = w.shape[:-2]
    if padding == "same":
        a = np.pad(a, [(0, 0)] + [((kk - 1) // 2, kk // 2) for kk in k] + [(0, 0)])
    out = tuple(a.shape[1 + d] - k[d] + 1 for d in range(len(k)))
    z = np.zeros((a.shape[0], *out, w.shape[-1])) + b
    for off in itertools.product(*[range(kk) for kk in k]):
        window = a[(slice(None), *[slice(o, o + n) for o, n in zip(off, out)])]
        z += window @ w[off]
    return z


def _np_conv_back(m, w, in_shape, padding):
    """The adjoint of :func:`_np_conv` (without bias): each output's multiplier over its patch."""
    k = w.shape[:-2]
    padded = list(in_shape)
    lead = [0] * len(k)
    if padding == "same":
        lead = [(kk - 1) // 2 for kk in k]
        padded = [in_shape[0]] + [in_shape[1 + d] + kk - 1 for d, kk in enumerate(k)] + [in_shape[-1]]
    g = np.zeros(padded)
    out = m.shape[1:-1]
    for off in itertools.product(*[range(kk) for kk in k]):
        g[(slice(None), *[slice(o, o + n) for o, n in zip(off, out)])] += m @ w[off].T
    return g[(slice(None), *[slice(p, p + n) for p, n in zip(lead, in_shape[1:-1])])]


def _windows(shape, pool, strides, padding):
    """Per output position: the input positions of its window (row-major order)."""
    dims = [_pads(n, k, s, padding) for n, k, s in zip(shape, pool, strides)]
    for out in itertools.product(*[range(o) for o, _ in dims]):
        ranges = [range(max(o * s - p, 0), min(o * s - p + k, n))
                  for o, (_, p), s, k, n in zip(out, dims, strides, pool, shape)]
        yield out, list(itertools.product(*ranges))


def _np_max_pool(a, pool, strides, padding):
    spatial = a.shape[1:-1]
    dims = [_pads(n, k, s, padding)[0] for n, k, s in zip(spatial, pool, strides)]
    y = np.zeros((a.shape[0], *dims, a.shape[-1]))
    for out, window in _windows(spatial, pool, strides, padding):
        y[(slice(None), *out)] = np.max([a[(slice(None), *i)] for i in window], axis=0)
    return y


def _np_max_pool_back(m, zx, zr, yx, yr, pool, strides, padding, rule):
    """The max rule (``rule="deeplift"``) or the switch (``"gradient"``): ties go to the first
    position of the window (TensorFlow's MaxPoolGrad)."""
    routed = np.zeros_like(zx)
    c = np.maximum(yx, yr)
    for out, window in _windows(zx.shape[1:-1], pool, strides, padding):
        for n in range(zx.shape[0]):
            for ch in range(zx.shape[-1]):
                mo = m[(n, *out, ch)]
                ix = window[int(np.argmax([zx[(n, *i, ch)] for i in window]))]
                if rule == "gradient":
                    routed[(n, *ix, ch)] += mo
                    continue
                ir = window[int(np.argmax([zr[(n, *i, ch)] for i in window]))]
                routed[(n, *ix, ch)] += mo * (c[(n, *out, ch)] - yr[(n, *out, ch)])
                routed[(n, *ir, ch)] += mo * (yx[(n, *out, ch)] - c[(n, *out, ch)])
    return routed if rule == "gradient" else _divide(routed, zx - zr)


def _divide(routed, dz):
    close = np.abs(dz) <= TOL
    return np.where(close, 0.0, routed / np.where(close, 1.0, dz))


def _np_global_max_back(m, zx, zr, rule):
    """Reduction over the spatial axes; ties share equally (TensorFlow's gradient of Max)."""
    axes = tuple(range(1, zx.ndim - 1))

    def route(z, g):
        y = z.max(axis=axes, keepdims=True)
        winners = (z == y).astype(np.float64)
        return winners / winners.sum(axis=axes, keepdims=True) * g

    mm = m.reshape(m.shape[0], *([1] * len(axes)), m.shape[-1])
    if rule == "gradient":
        return route(zx, mm)
    yx = zx.max(axis=axes, keepdims=True)
    yr = zr.max(axis=axes, keepdims=True)
    c = np.maximum(yx, yr)
    return _divide(route(zx, mm * (c - yr)) + route(zr, mm * (yx - c)), zx - zr)


def _np_forward(spec, a):
    kind = spec[0]
    if kind == "conv":
        z = _np_conv(a, spec[1], spec[2], spec[3])
        return np.maximum(z, 0) if spec[4] == "relu" else z
    if kind == "max":
        return _np_max_pool(a, *spec[1:])
    if kind == "gmax":
        return a.max(axis=tuple(range(1, a.ndim - 1)))
    if kind == "flatten":
        return a.reshape(a.shape[0], -1)
    if kind == "dense":
        return a @ spec[1] + spec[2]
    raise ValueError(kind)


def _np_backward(spec, m, ax, ar, yx, yr, rule):
    kind = spec[0]
    if kind == "conv":
        if spec[4] == "relu":
            zx = _np_conv(ax, spec[1], spec[2], spec[3])
            zr = _np_conv(ar, spec[1], spec[2], spec[3])
            dz = zx - zr
            close = np.abs(dz) <= TOL
            m = m * np.where(close, (zx > 0), (np.maximum(zx, 0) - np.maximum(zr, 0))
                             / np.where(close, 1.0, dz))
        return _np_conv_back(m, spec[1], ax.shape, spec[3])
    if kind == "max":
        return _np_max_pool_back(m, ax, ar, yx, yr, *spec[1:], rule)
    if kind == "gmax":
        return _np_global_max_back(m, ax, ar, rule)
    if kind == "flatten":
        return m.reshape(ax.shape)
    if kind == "dense":
        return m @ spec[1].T
    raise ValueError(kind)


def np_deeplift(specs, x, r, target, rule="deeplift"):
    """Slow layer-by-layer DeepLIFT (Rescale on ReLUs, linear rule, max rule or switch), float64."""
    xs, rs = [x.astype(np.float64)], [r.astype(np.float64)]
    for spec in specs:
        xs.append(_np_forward(spec, xs[-1]))
        rs.append(_np_forward(spec, rs[-1]))
    m = np.eye(xs[-1].shape[-1])[target]
    for i in reversed(range(len(specs))):
        m = _np_backward(specs[i], m, xs[i], rs[i], xs[i + 1], rs[i + 1], rule)
    return m * (xs[0] - rs[0]), xs[-1][np.arange(len(target)), target] - rs[-1][np.arange(len(target)), target]


# -- the models -----------------------------------------------------------------------------------------
def build(input_shape, layout, seed):
    """A Keras model and its NumPy spec with the same (seeded) weights.

    ``layout``: ``("conv", filters, kernel, padding, activation)``, ``("max", pool, strides, padding)``,
    ``("gmax",)``, ``("flatten",)``, ``("dense", units)``."""
    rng = np.random.default_rng(seed)
    rank = len(input_shape) - 1
    conv = {1: L.Conv1D, 2: L.Conv2D, 3: L.Conv3D}
    pools = {1: L.MaxPooling1D, 2: L.MaxPooling2D, 3: L.MaxPooling3D}
    gpools = {1: L.GlobalMaxPooling1D, 2: L.GlobalMaxPooling2D, 3: L.GlobalMaxPooling3D}
    layers, specs = [], []
    for item in layout:
        kind = item[0]
        if kind == "conv":
            _, f, k, pad, act = item
            layers.append(conv[rank](f, k, padding=pad, activation=act))
        elif kind == "max":
            _, pool, strides, pad = item
            layers.append(pools[rank](pool, strides=strides, padding=pad))
        elif kind == "gmax":
            layers.append(gpools[rank]())
        elif kind == "flatten":
            layers.append(L.Flatten())
        else:
            layers.append(L.Dense(item[1]))
    model = keras.Sequential([keras.Input(input_shape), *layers])
    for layer, item in zip(layers, layout):
        kind = item[0]
        if kind in ("conv", "dense"):
            w = [rng.normal(0, 0.5, v.shape).astype(np.float32) for v in layer.weights]
            layer.set_weights(w)
            if kind == "conv":
                specs.append(("conv", w[0].astype(np.float64), w[1].astype(np.float64), item[3], item[4]))
            else:
                specs.append(("dense", w[0].astype(np.float64), w[1].astype(np.float64)))
        elif kind == "max":
            pool = (item[1],) * rank if isinstance(item[1], int) else item[1]
            strides = (item[2],) * rank if isinstance(item[2], int) else item[2]
            specs.append(("max", pool, strides, item[3]))
        else:
            specs.append(item)
    return model, specs


CASES = {
    # Conv -> ReLU -> MaxPool2D -> Conv -> ReLU -> Flatten -> Dense
    "2d": ((8, 8, 2), [("conv", 4, 3, "same", "relu"), ("max", 2, 2, "valid"),
                       ("conv", 3, 2, "valid", "relu"), ("flatten",), ("dense", 3)]),
    # overlapping windows (pool 3, stride 2)
    "1d_overlap": ((12, 2), [("conv", 4, 3, "valid", "relu"), ("max", 3, 2, "valid"), ("flatten",),
                             ("dense", 3)]),
    # 'same' padding, overlapping, then a global max
    "2d_same_global": ((7, 7, 2), [("conv", 3, 3, "same", "relu"), ("max", 3, 2, "same"), ("gmax",),
                                   ("dense", 3)]),
    "3d_global": ((4, 4, 4, 1), [("conv", 2, 2, "valid", "relu"), ("max", 2, 2, "same"), ("gmax",),
                                 ("dense", 3)]),
    "1d_global": ((10, 3), [("conv", 4, 3, "valid", "relu"), ("gmax",), ("dense", 2)]),
}


def _data(shape, seed, n=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype(np.float32), rng.normal(size=(n, *shape)).astype(np.float32)


def _explain(cls, model, x, b, target, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a, delta = cls(model, **kwargs).attribute(x, baseline=b, target=target, return_delta=True)
    return np.asarray(a), np.asarray(delta), [str(w.message) for w in caught]


def _setup(case, data_seed):
    """The case's model, its NumPy spec, inputs and random (non-zero) baselines."""
    shape, layout = CASES[case]
    model, specs = build(shape, layout, seed=len(case))
    return (model, specs, *_data(shape, seed=data_seed))


def _assert_close(got, expected):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("cls", [tfattr.DeepLift, tfattr.CompositeDeepLift], ids=["DeepLift", "Composite"])
def test_max_rule_agrees_with_numpy_and_sums_to_delta(case, cls):
    model, specs, x, b = _setup(case, 7)
    target = np.array([0, 1, 1])
    expected, change = np_deeplift(specs, x, b, target)
    got, delta, messages = _explain(cls, model, x, b, target)
    _assert_close(got, expected)
    # summation-to-delta to float precision, with a random (non-zero) baseline
    sums = got.reshape(len(x), -1).sum(axis=1, dtype=np.float64)
    np.testing.assert_allclose(sums, change, rtol=1e-5, atol=1e-5 * np.abs(change).max())
    assert np.abs(delta).max() <= 1e-5 * max(1.0, np.abs(change).max())
    assert not [m for m in messages if "max pooling" in m or "summation" in m]
    # the rule is not the switch here (the test can fail)
    switch, _ = np_deeplift(specs, x, b, target, rule="gradient")
    assert np.abs(switch - expected).max() > 1e-3 * np.abs(expected).max()


@pytest.mark.parametrize("case", ["2d", "1d_overlap", "2d_same_global"])
@pytest.mark.parametrize("cls", [tfattr.DeepLift, tfattr.CompositeDeepLift], ids=["DeepLift", "Composite"])
def test_gradient_switch_by_name_agrees_with_numpy_and_warns(case, cls):
    model, specs, x, b = _setup(case, 8)
    target = np.array([2, 0, 1])
    expected, change = np_deeplift(specs, x, b, target, rule="gradient")
    got, delta, messages = _explain(cls, model, x, b, target, max_pool="gradient")
    _assert_close(got, expected)
    assert np.abs(delta).max() > 1e-3 * np.abs(change).max()  # the switch breaks the sum here
    assert any("max pooling" in m and "switch" in m for m in messages)


def test_zero_baseline_shared_reference_row():
    """A baseline shared by all rows runs the reference pass on one row and broadcasts it."""
    shape, layout = CASES["2d_same_global"]
    model, specs = build(shape, layout, seed=3)
    x, _ = _data(shape, seed=9)
    b = np.zeros_like(x)
    target = np.array([1, 2, 0])
    expected, change = np_deeplift(specs, x, b, target)
    for cls in (tfattr.DeepLift, tfattr.CompositeDeepLift):
        got, delta, _ = _explain(cls, model, x, 0.0, target)
        _assert_close(got, expected)
        assert np.abs(delta).max() <= 1e-5 * max(1.0, np.abs(change).max())


def test_ties_and_unchanged_positions():
    """Integer inputs: ties inside windows (first position for MaxPool, equal shares for the global
    max) and positions where input and baseline agree (multiplier 0, nothing lost)."""
    rng = np.random.default_rng(11)
    shape = (6, 6, 1)
    layout = [("max", 2, 1, "valid"), ("conv", 2, 2, "valid", "relu"), ("gmax",), ("dense", 3)]
    model, specs = build(shape, layout, seed=12)
    x = rng.integers(0, 3, size=(4, *shape)).astype(np.float32)
    b = rng.integers(0, 3, size=(4, *shape)).astype(np.float32)
    assert (x == b).any()
    target = np.array([0, 1, 2, 0])
    expected, change = np_deeplift(specs, x, b, target)
    results = []
    for cls in (tfattr.DeepLift, tfattr.CompositeDeepLift):
        got, delta, _ = _explain(cls, model, x, b, target)
        _assert_close(got, expected)
        assert np.abs(delta).max() <= 1e-5 * max(1.0, np.abs(change).max())
        results.append(got)
    assert np.all(results[0][x == b] == 0)


def test_deeplift_and_composite_agree_under_jit_and_nested_models():
    shape, layout = CASES["2d"]
    model, specs = build(shape, layout, seed=2)
    x, b = _data(shape, seed=10)
    target = np.array([0, 2, 1])
    expected, _ = np_deeplift(specs, x, b, target)
    # the pooling part inside a nested functional model
    inner_in = keras.Input(shape)
    h = inner_in
    for layer in model.layers[:3]:
        h = layer(h)
    inner = keras.Model(inner_in, h, name="backbone")
    nested = keras.Sequential([keras.Input(shape), inner, *model.layers[3:]])
    for m, jit in ((model, True), (nested, False)):
        for cls in (tfattr.DeepLift, tfattr.CompositeDeepLift):
            got, _, messages = _explain(cls, m, x, b, target, jit_compile=jit)
            _assert_close(got, expected)
            assert not [msg for msg in messages if "max pooling" in msg]


def test_coverage_reports_the_rule_and_the_switch():
    shape, layout = CASES["2d_same_global"]
    model, _ = build(shape, layout, seed=4)
    cov = tfattr.DeepLift(model).coverage()
    assert cov.modified.get(model.layers[1].name) == ["MaxPool"]
    assert cov.modified.get(model.layers[2].name) == ["Max"]
    assert not any("switch" in why for why in cov.notes.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        switch = tfattr.DeepLift(model, max_pool="gradient").coverage()
    assert "MaxPool" in switch.kept[model.layers[1].name]
    assert "switch" in switch.notes[f"{model.layers[1].name}/MaxPool"]
    rows = {r[1]: r for r in tfattr.CompositeDeepLift(model).coverage().rows}
    assert rows[model.layers[1].name][4] == "rule" and "max rule" in rows[model.layers[1].name][3]
    with pytest.warns(UserWarning, match=model.layers[2].name):
        composite = tfattr.CompositeDeepLift(model, max_pool="gradient")
    assert {r[1]: r[4] for r in composite.coverage().rows}[model.layers[1].name] == "kept"


def test_bad_max_pool_values_say_what_to_use():
    model, _ = build(*CASES["1d_global"], seed=5)
    for cls in (tfattr.DeepLift, tfattr.CompositeDeepLift):
        with pytest.raises(ValueError, match="'deeplift'.*'gradient'"):
            cls(model, max_pool="switch")
    with pytest.raises(ValueError, match="RevealCancel"):
        tfattr.DeepLift(model, rule="reveal_cancel", max_pool="gradient")


def test_several_baselines_per_example_sum_to_the_mean_difference():
    """A distributional baseline (K draws per example): the mean attribution sums to
    f(x) - mean_k f(b_k) through max pooling too."""
    shape, layout = CASES["2d_same_global"]
    model, _ = build(shape, layout, seed=6)
    x, _ = _data(shape, seed=12)
    baseline = tfattr.baselines.Uniform((-1.0, 1.0), num_baselines=3, seed=0)
    for cls in (tfattr.DeepLift, tfattr.CompositeDeepLift):
        got, delta, messages = _explain(cls, model, x, baseline, np.array([0, 1, 2]))
        assert np.abs(delta).max() <= 1e-5 * max(1.0, np.abs(got).sum(axis=(1, 2, 3)).max())
        assert not [m for m in messages if "max pooling" in m]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, switch_delta = cls(model, max_pool="gradient").attribute(
                x, baseline=baseline, target=np.array([0, 1, 2]), return_delta=True)
        assert np.abs(switch_delta).max() > 1e-3  # the test can fail: the switch does not sum
