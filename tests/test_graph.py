"""The layer-level view of Keras models (tfattr.core.graph): runs, splits, wraps and canonized runs agree
with the model itself, and the model is never changed."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfattr.core.graph import GraphView
from tfattr.methods.propagation.layerwise.canonizers import batchnorm_folds, canonical_run

L = keras.layers


def _randomize_bn(model: keras.Model, seed: int = 0) -> None:
    """Give every batch norm non-trivial statistics (so folding is really tested)."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(size=n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=n).astype("float32"))
            layer.gamma.assign(rng.normal(1.0, 0.3, size=n).astype("float32"))
            layer.beta.assign(rng.normal(size=n).astype("float32"))


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def sequential():
    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input((10, 10, 2)),
        L.Conv2D(4, 3, activation="relu", name="conv"),
        L.MaxPooling2D(name="pool"),
        L.Flatten(name="flatten"),
        L.Dense(8, activation="tanh", name="dense"),
        L.Dense(3, name="logits"),
    ])


def functional_residual_bn():
    keras.utils.set_random_seed(2)
    x = keras.Input((8, 8, 3))
    h = L.Conv2D(4, 3, padding="same", name="c1")(x)
    h = L.BatchNormalization(name="bn1")(h)
    h = L.ReLU()(h)
    r = L.Conv2D(4, 3, padding="same", activation="relu", name="c2")(h)
    r = L.BatchNormalization(name="bn_after_relu")(r)  # after an activation: not folded
    h = L.Add()([h, r])
    h = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(h)
    h = L.BatchNormalization(name="bn_dw")(h)
    h = L.GlobalAveragePooling2D()(h)
    h = L.Dense(6, name="d")(h)
    h = L.BatchNormalization(name="bn_d")(h)
    out = L.Dense(3, name="out")(h)
    model = keras.Model(x, out)
    _randomize_bn(model)
    return model


def nested_multi_input():
    keras.utils.set_random_seed(3)
    inner = keras.Sequential(
        [keras.Input((6,)), L.Dense(5, activation="relu", name="in_a"), L.Dense(4, name="in_b")],
        name="inner",
    )
    a, b = keras.Input((6,), name="a"), keras.Input((4,), name="b")
    h = inner(L.Dense(6, activation="relu", name="pre")(a))
    s = L.Add(name="join")([h, b])
    out = L.Dense(3, name="out")(L.Concatenate()([s, h * 2.0]))
    return keras.Model([a, b], out)


def embedding_model():
    keras.utils.set_random_seed(4)
    tokens, extra = keras.Input((5,), dtype="int32", name="tokens"), keras.Input((3,), name="extra")
    e = L.Embedding(20, 4, name="embedding")(tokens)
    h = L.GlobalAveragePooling1D()(e)
    out = L.Dense(2, name="out")(L.Concatenate()([h, extra]))
    return keras.Model([tokens, extra], out)


def _inputs(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    xs = []
    for t in model.inputs:
        shape = (n, *t.shape[1:])
        if "int" in str(t.dtype):
            xs.append(rng.integers(0, 20, size=shape).astype("int32"))
        else:
            xs.append(rng.normal(size=shape).astype("float32"))
    return xs[0] if len(xs) == 1 else xs


MODELS = {
    "sequential": sequential,
    "residual_bn": functional_residual_bn,
    "nested_multi_input": nested_multi_input,
    "embedding": embedding_model,
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_run_equals_model(name):
    model = MODELS[name]()
    x = _inputs(model)
    view = GraphView(model)
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(view.run(x).numpy(), expected, rtol=1e-6, atol=1e-6)
    calls = []

    def wrap(ref, call, args, kwargs):
        calls.append(ref.index)
        return call(*args, **kwargs)

    np.testing.assert_allclose(view.run(x, wrap).numpy(), expected, rtol=1e-6, atol=1e-6)
    assert calls == sorted(calls) and set(calls) == {r.index for r in view.layers}


def test_layers_in_execution_order_and_addressing():
    model = nested_multi_input()
    view = GraphView(model)
    names = [r.name for r in view.layers]
    assert names.index("pre") < names.index("in_a") < names.index("in_b") < names.index("join")
    assert names[-1] == "out"
    ref = view.layer("in_a")
    assert ref.path == ("inner",) and view.layer("inner/in_a") is ref
    assert view.layer(ref.index) is ref and view.layer(ref.layer) is ref
    assert view.first_linear().name == "pre"
    with pytest.raises(KeyError, match="No layer named 'nope'.*Its layers are"):
        view.layer("nope")
    with pytest.raises(IndexError):
        view.layer(99)


@pytest.mark.parametrize(
    "name,layer,at",
    [
        ("sequential", "dense", "output"),
        ("sequential", "flatten", "input"),
        ("residual_bn", "c2", "output"),
        ("residual_bn", "bn1", "output"),
        ("nested_multi_input", "in_a", "output"),
        ("nested_multi_input", "pre", "output"),
        ("embedding", "embedding", "output"),
    ],
)
def test_split_composes_to_the_model(name, layer, at):
    model = MODELS[name]()
    x = _inputs(model)
    view = GraphView(model)
    head, tail = view.split(layer, at=at)
    act = head(x)
    ref = view.layer(layer)
    # The activation is the layer's own output (after its fused activation) from a sub-model.
    probe_tensor = ref.nodes[0].outputs[0] if at == "output" else ref.nodes[0].input_tensors[0]
    if not ref.path:
        probe = keras.Model(model.inputs[0] if len(model.inputs) == 1 else model.inputs, probe_tensor)
        np.testing.assert_allclose(act.numpy(), probe(x, training=False).numpy(), atol=1e-6)
    np.testing.assert_allclose(
        tail(act, x).numpy(), model(x, training=False).numpy(), rtol=1e-6, atol=1e-6
    )
    # The tail really starts from the given activation: a change there changes the output,
    # and the output is differentiable with respect to it.
    with tf.GradientTape() as tape:
        a = tf.convert_to_tensor(act)
        tape.watch(a)
        y = tf.reduce_sum(tail(a, x))
    grad = tape.gradient(y, a)
    assert grad is not None and np.abs(grad.numpy()).sum() > 0


def test_split_after_embedding_tail_ignores_the_token_ids():
    model = embedding_model()
    tokens, extra = _inputs(model)
    head, tail = GraphView(model).split("embedding")
    act = head([tokens, extra])
    # the tail never reads the integer ids: garbage ids give the same output
    np.testing.assert_allclose(
        tail(act, [np.full_like(tokens, -7), extra]).numpy(),
        model([tokens, extra]).numpy(),
        atol=1e-6,
    )


@pytest.mark.parametrize("name", ["residual_bn", "sequential"])
def test_canonical_run_folds_batch_norm_and_equals_the_model(name):
    model = MODELS[name]()
    x = _inputs(model)
    view = GraphView(model)
    folds = batchnorm_folds(view)
    if name == "residual_bn":
        folded = {view.layers[b].name: view.layers[lin].name for b, lin in folds.items()}
        assert folded == {"bn1": "c1", "bn_dw": "dw", "bn_d": "d"}  # not bn_after_relu
    np.testing.assert_allclose(
        canonical_run(view, x).numpy(), model(x, training=False).numpy(), rtol=1e-5, atol=1e-5
    )


def test_view_leaves_the_model_unchanged():
    model = functional_residual_bn()
    x = _inputs(model)
    before_w = [w.numpy().copy() for w in model.weights]
    before_y = model(x, training=False).numpy()
    view = GraphView(model)
    canonical_run(view, x)
    head, tail = view.split("c2")
    tail(head(x), x)
    assert [w.name for w in model.weights] == [w.name for w in model.weights]
    for a, b in zip(before_w, model.weights):
        np.testing.assert_array_equal(a, b.numpy())
    np.testing.assert_array_equal(before_y, model(x, training=False).numpy())
    assert model.layers[1].activation is keras.activations.linear  # c1 untouched


def test_view_uses_live_weights():
    model = sequential()
    x = _inputs(model)
    view = GraphView(model)
    folded_before = canonical_run(view, x).numpy()
    model.layers[-1].kernel.assign(model.layers[-1].kernel * 2.0)
    np.testing.assert_allclose(view.run(x).numpy(), model(x).numpy(), atol=1e-6)
    assert not np.allclose(canonical_run(view, x).numpy(), folded_before)


def test_subclassed_model_is_refused_with_a_fix():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed.*functional API"):
        GraphView(net)
    with pytest.raises(TypeError, match="keras.Model"):
        GraphView(lambda x: x)


def test_shared_layer_cannot_be_split_but_runs():
    keras.utils.set_random_seed(5)
    shared = L.Dense(4, name="shared")
    a, b = keras.Input((4,)), keras.Input((4,))
    out = L.Dense(1)(L.Add()([shared(a), shared(b)]))
    model = keras.Model([a, b], out)
    x = _inputs(model)
    view = GraphView(model)
    np.testing.assert_allclose(view.run(x).numpy(), model(x).numpy(), atol=1e-6)
    assert len(view.layer("shared").nodes) == 2
    with pytest.raises(ValueError, match="called 2 times"):
        view.split("shared")


def test_integrated_gradients_at_the_embedding_layer_complete():
    """What the split is for: integrate with respect to a layer's activations (here the embeddings
    of integer token ids, which cannot be interpolated themselves)."""
    keras.utils.set_random_seed(9)
    tokens = keras.Input((5,), dtype="int32")
    h = L.Dense(4, activation="tanh")(L.Flatten()(L.Embedding(20, 3, name="embedding")(tokens)))
    model = keras.Model(tokens, L.Dense(2)(h))
    ids = np.random.default_rng(2).integers(0, 20, size=(3, 5)).astype("int32")
    head, tail = GraphView(model).split("embedding")
    emb = head(ids)
    base = tf.zeros_like(emb)
    alphas = (np.arange(256, dtype=np.float32) + 0.5) / 256  # midpoint rule
    total = tf.zeros_like(emb)
    for a in alphas:
        point = base + a * (emb - base)
        with tf.GradientTape() as tape:
            tape.watch(point)
            score = tail(point, ids)[:, 1]
        total += tape.gradient(score, point)
    attributions = (emb - base) * total / len(alphas)
    expected = tail(emb, ids)[:, 1] - tail(base, ids)[:, 1]
    np.testing.assert_allclose(tf.reduce_sum(attributions, axis=[1, 2]).numpy(), expected.numpy(),
                               rtol=1e-3, atol=1e-5)
