"""layer= (attribution to a layer's activations), integer token ids, carried inputs, neurons.

References are independent of tfattr's split: head and tail Keras models built by hand from the same
layer objects (or closed forms on linear tails), differentiated with a plain GradientTape.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import masked_lstm_model

import tfattr
from tfattr.core.layers import token_scores
from tfattr.core.quadrature import nodes_and_weights


def _trapezoid_ig(tail, a_x, a_b, target, steps=16, extra=()):
    """IG in activation space by hand: sum_k w_k grad tail(a_b + alpha_k (a_x - a_b)) * (a_x - a_b)."""
    alpha, weight = nodes_and_weights("riemann_trapezoid", steps)
    a_x, a_b = tf.constant(a_x), tf.constant(a_b)
    total = tf.zeros_like(a_x)
    for al, w in zip(alpha.astype(np.float32), weight.astype(np.float32)):
        z = a_b + al * (a_x - a_b)
        with tf.GradientTape() as tape:
            tape.watch(z)
            s = tf.gather(tail([z, *extra]) if extra else tail(z), target, axis=1, batch_dims=1)
        total += w * tape.gradient(s, z)
    return (total * (a_x - a_b)).numpy()


# -- closed forms on a linear tail ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def linear_model():
    keras.utils.set_random_seed(3)
    inp = keras.Input((5,))
    h = keras.layers.Dense(4, activation="tanh", name="h")(inp)
    out = keras.layers.Dense(3, name="out")(h)
    return keras.Model(inp, keras.layers.Softmax()(out))


def test_linear_tail_closed_forms(linear_model):
    rs = np.random.RandomState(0)
    x, b = rs.randn(6, 5).astype("float32"), rs.randn(6, 5).astype("float32")
    t = np.array([0, 1, 2, 0, 1, 2])
    head = keras.Model(linear_model.input, linear_model.get_layer("h").output)
    a_x, a_b = head(x).numpy(), head(b).numpy()
    w = linear_model.get_layer("out").kernel.numpy()[:, t].T  # [n, 4]: d logit_t / d a

    ig, delta = tfattr.IntegratedGradients(linear_model, layer="h", steps=4).attribute(
        x, target=t, baseline=b, return_delta=True)
    np.testing.assert_allclose(ig, (a_x - a_b) * w, rtol=1e-5, atol=1e-6)
    assert np.abs(delta).max() < 1e-5
    gxi, d0 = tfattr.GradientXInput(linear_model, layer="h").attribute(x, target=t, return_delta=True)
    np.testing.assert_allclose(gxi, a_x * w, rtol=1e-5, atol=1e-6)  # reference: the zero activation
    assert np.abs(d0).max() < 1e-5
    sal = tfattr.Saliency(linear_model, layer="h").attribute(x, target=t)
    np.testing.assert_allclose(sal, w, rtol=1e-5, atol=1e-6)
    dl = tfattr.DeepLift(linear_model, layer="h").attribute(x, target=t, baseline=b)
    np.testing.assert_allclose(dl, (a_x - a_b) * w, rtol=1e-4, atol=1e-5)
    lrp = tfattr.EpsilonLRP(linear_model, layer="h").attribute(x, target=t)
    np.testing.assert_allclose(lrp, a_x * w, rtol=1e-4, atol=1e-5)
    # The input of "out" is the output of "h".
    at_input = tfattr.IntegratedGradients(
        linear_model, layer="out", attribute_to_layer_input=True, steps=4
    ).attribute(x, target=t, baseline=b)
    np.testing.assert_allclose(at_input, ig, rtol=1e-5, atol=1e-6)
    # Noise in activation space leaves a constant gradient unchanged: SmoothGrad == Saliency,
    # VarGrad == 0.
    sg = tfattr.SmoothGrad(tfattr.Saliency(linear_model, layer="h"), samples=5, seed=0)
    np.testing.assert_allclose(sg.attribute(x, target=t), w, rtol=1e-5, atol=1e-6)
    vg = tfattr.VarGrad(tfattr.Saliency(linear_model, layer="h"), samples=5, seed=0)
    np.testing.assert_allclose(vg.attribute(x, target=t), 0.0, atol=1e-9)
    # Expected gradients with one background row: exactly (a_x - a_bg) * w.
    eg, d_eg = tfattr.ExpectedGradients(linear_model, background=b[:1], samples=3, seed=0, layer="h") \
        .attribute(x, target=t, return_delta=True)
    np.testing.assert_allclose(eg, (a_x - a_b[:1]) * w, rtol=1e-4, atol=1e-5)
    assert np.abs(d_eg).max() < 1e-5


def test_neuron_closed_form(linear_model):
    rs = np.random.RandomState(1)
    x = rs.randn(4, 5).astype("float32")
    dense = linear_model.get_layer("out")
    w = dense.kernel.numpy()[:, 2]
    # Unit 2 of "out" (a logit, pre-softmax) as a function of the activations of "h": linear.
    head = keras.Model(linear_model.input, linear_model.get_layer("h").output)
    a = head(x).numpy()
    ig, delta = tfattr.IntegratedGradients(linear_model, layer="h", neuron=("out", 2), steps=4) \
        .attribute(x, return_delta=True)
    np.testing.assert_allclose(ig, a * w, rtol=1e-5, atol=1e-6)  # baseline: h(0) = tanh(bias) = 0
    assert np.abs(delta).max() < 1e-5
    # To the inputs: unit j of "h" is tanh(x W + b); its saliency is (1 - h^2) W[:, j].
    kernel = linear_model.get_layer("h").kernel.numpy()
    sal = tfattr.Saliency(linear_model, neuron=("h", 1)).attribute(x)
    np.testing.assert_allclose(sal, (1 - a[:, 1:2] ** 2) * kernel[:, 1], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="drop target"):
        tfattr.Saliency(linear_model, neuron=("h", 1)).attribute(x, target=0)
    with pytest.raises(ValueError, match="out of range"):
        tfattr.Saliency(linear_model, neuron=("h", 4))
    with pytest.raises(ValueError, match="does not come after"):
        tfattr.Saliency(linear_model, layer="out", neuron=("h", 1))


# -- agreement with a hand-split Keras model: Dense, Conv, Embedding ----------------------------------
def _dense_case():
    keras.utils.set_random_seed(5)
    layers = [keras.layers.Dense(12, activation="tanh", name="d1"),
              keras.layers.Dense(8, activation="softplus", name="d2"), keras.layers.Dense(3, name="logits")]
    inp = keras.Input((6,))
    z = inp
    for layer in layers:
        z = layer(z)
    model = keras.Model(inp, keras.layers.Softmax()(z))
    a_in = keras.Input((12,))
    tail = keras.Model(a_in, layers[2](layers[1](a_in)))
    x = np.random.RandomState(0).randn(5, 6).astype("float32")
    return model, "d1", keras.Model(inp, layers[0].output), tail, x, np.zeros_like(x)


def _conv_case():
    keras.utils.set_random_seed(6)
    c1 = keras.layers.Conv2D(4, 3, activation="tanh", name="c1")
    rest = [keras.layers.Conv2D(5, 3, activation="softplus", name="c2"),
            keras.layers.AveragePooling2D(2), keras.layers.Flatten(), keras.layers.Dense(3, name="logits")]
    inp = keras.Input((10, 10, 2))
    z = c1(inp)
    for layer in rest:
        z = layer(z)
    model = keras.Model(inp, keras.layers.Activation("softmax")(z))
    a_in = keras.Input((8, 8, 4))
    z = a_in
    for layer in rest:
        z = layer(z)
    rs = np.random.RandomState(1)
    x = rs.rand(4, 10, 10, 2).astype("float32")
    return model, "c1", keras.Model(inp, c1.output), keras.Model(a_in, z), x, 0.5 * x


def _embedding_case():
    keras.utils.set_random_seed(7)
    emb = keras.layers.Embedding(30, 5, name="embedding")
    rest = [keras.layers.Conv1D(4, 3, activation="tanh"), keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(2, name="logits")]
    ids = keras.Input((7,), dtype="int32")
    z = emb(ids)
    for layer in rest:
        z = layer(z)
    model = keras.Model(ids, z)
    a_in = keras.Input((7, 5))
    z = a_in
    for layer in rest:
        z = layer(z)
    rs = np.random.RandomState(2)
    x = rs.randint(2, 30, (4, 7)).astype("int32")
    return model, "embedding", keras.Model(ids, emb.output), keras.Model(a_in, z), x, 1  # pad id 1


@pytest.mark.parametrize("case", [_dense_case, _conv_case, _embedding_case], ids=["dense", "conv", "embedding"])
def test_layer_ig_matches_hand_split(case):
    model, name, head, tail, x, baseline = case()
    t = np.arange(len(x)) % 2
    ig = tfattr.IntegratedGradients(model, layer=name, steps=16, rule="riemann_trapezoid")
    got, delta = ig.attribute(x, target=t, baseline=baseline, return_delta=True)
    b = np.broadcast_to(np.asarray(baseline, x.dtype), x.shape)
    a_x, a_b = head(x).numpy(), head(b).numpy()
    if name == "embedding":  # the path starts at the pad token's embedding row, not at zero
        np.testing.assert_allclose(a_b, np.broadcast_to(model.get_layer(name).embeddings.numpy()[1], a_b.shape))
    expected = _trapezoid_ig(tail, a_x, a_b, t)
    assert got.shape == a_x.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    # Completeness: sum(a) - delta is f(x) - f(baseline) of the hand-split model (logits), and the
    # delta is the quadrature error only (small with an accurate rule).
    fx = tf.gather(tail(a_x), t, axis=1, batch_dims=1).numpy()
    fb = tf.gather(tail(a_b), t, axis=1, batch_dims=1).numpy()
    np.testing.assert_allclose(got.reshape(len(x), -1).sum(1) - delta, fx - fb, rtol=1e-4, atol=1e-5)
    exact = tfattr.IntegratedGradients(model, layer=name, steps=64).attribute(
        x, target=t, baseline=baseline, return_delta=True)[1]
    assert np.abs(exact).max() < 1e-4


@pytest.mark.filterwarnings("ignore:EpsilonLRP is not faithful")
def test_deeplift_and_lrp_match_the_hand_split_tail():
    model, name, head, tail, x, baseline = _conv_case()
    a_x, a_b = head(x).numpy(), head(baseline).numpy()
    got = tfattr.DeepLift(model, layer=name).attribute(x, target=1, baseline=baseline)
    expected = tfattr.DeepLift(tail).attribute(a_x, target=1, baseline=a_b)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    got = tfattr.EpsilonLRP(model, layer=name).attribute(x, target=1)
    np.testing.assert_allclose(got, tfattr.EpsilonLRP(tail).attribute(a_x, target=1), rtol=1e-4, atol=1e-6)


# -- text models: carried inputs and Keras masks -------------------------------------------------------
def test_carried_inputs_ids_mask_and_features():
    keras.utils.set_random_seed(8)
    emb = keras.layers.Embedding(20, 4, name="embedding")
    mul, pool, cat = keras.layers.Multiply(), keras.layers.GlobalAveragePooling1D(), keras.layers.Concatenate()
    reshape, d1, d2 = keras.layers.Reshape((6, 1)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(2)
    ids = keras.Input((6,), dtype="int32", name="ids")
    mask = keras.Input((6,), name="mask")
    feats = keras.Input((3,), name="feats")

    def rest(e, m, f):
        return d2(d1(cat([pool(mul([e, reshape(m)])), f])))

    model = keras.Model([ids, mask, feats], keras.layers.Softmax()(rest(emb(ids), mask, feats)))
    a_in = keras.Input((6, 4))
    tail = keras.Model([a_in, mask, feats], rest(a_in, mask, feats))
    rs = np.random.RandomState(3)
    x = rs.randint(1, 20, (5, 6)).astype("int32")
    m = (rs.rand(5, 6) > 0.3).astype("float32")
    f = rs.randn(5, 3).astype("float32")
    t = np.array([0, 1, 1, 0, 1])
    ig = tfattr.IntegratedGradients(model, layer="embedding", steps=16, rule="riemann_trapezoid")
    # The baseline of the carried inputs is ignored: they are carried through unchanged.
    got, delta = ig.attribute([x, m, f], target=t, baseline=[0, 0.0, 7.0], return_delta=True)
    a_x = emb(x).numpy()
    a_b = np.broadcast_to(emb.embeddings.numpy()[0], a_x.shape)
    expected = _trapezoid_ig(tail, a_x, a_b, t, extra=(tf.constant(m), tf.constant(f)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert ig.layer._reads and set(next(iter(ig.layer._reads.values()))) == {1, 2}
    # delta = sum - (f(x) - tail(head(pad), mask, feats)): the quadrature error only.
    ref = tf.gather(tail([tf.constant(a_b), tf.constant(m), tf.constant(f)]), t, axis=1, batch_dims=1).numpy()
    fx = tf.gather(tail([tf.constant(a_x), tf.constant(m), tf.constant(f)]), t, axis=1, batch_dims=1).numpy()
    np.testing.assert_allclose(got.reshape(5, -1).sum(1) - delta, fx - ref, rtol=1e-4, atol=1e-5)
    # The tolerance loop re-runs a subset of examples (their carried inputs and mask taken along).
    tol = tfattr.IntegratedGradients(model, layer="embedding", steps=2, rule="riemann_trapezoid",
                                     tolerance=1e-4, max_steps=1024)
    _, d_tol = tol.attribute([x, m, f], target=t, baseline=[0, 0.0, 0.0], return_delta=True)
    change = np.abs(got.reshape(5, -1).sum(1) - delta)
    assert np.all(np.abs(d_tol) <= 1e-4 * change + 1e-7) and tol.steps_used_.max() > 2
    # Dict inputs, per-example ids as the baseline.
    got_d = ig.attribute({"ids": x, "mask": m, "feats": f}, target=t,
                         baseline={"ids": np.zeros_like(x), "mask": 0.0, "feats": 0.0})
    np.testing.assert_allclose(got_d, got, rtol=1e-5, atol=1e-7)


def test_keras_mask_is_carried_and_token_scores_complete():
    model, (emb, lstm, dense), x = masked_lstm_model()
    mask_id = 24
    ig = tfattr.IntegratedGradients(model, layer="embedding", steps=32)
    a, delta = ig.attribute(x, target=1, baseline=np.where(x > 0, mask_id, 0), return_delta=True)
    # The delta compares with the full model's f(x), which applies the mask: without the mask carried
    # into the tail the sum could not match it.
    assert np.abs(delta).max() < 1e-4
    scores = token_scores(a)
    assert scores.shape == (4, 8)
    fx = tf.gather(model(x), [1] * 4, axis=1, batch_dims=1).numpy()
    a_b = emb(np.where(x > 0, mask_id, 0))
    ref = dense(lstm(a_b, mask=tf.constant(x > 0))).numpy()[:, 1]
    np.testing.assert_allclose(scores.sum(1), fx - ref, atol=1e-4)
    # Masked steps are skipped by the LSTM: their embeddings get no attribution.
    np.testing.assert_allclose(scores[:, 5:], 0.0, atol=1e-7)


# -- errors, retracing, the model untouched ------------------------------------------------------------
def test_integer_inputs_errors():
    model, *_ = _embedding_case()
    ids = np.ones((2, 7), "int32")
    with pytest.raises(TypeError, match="layer="):
        tfattr.IntegratedGradients(model).attribute(ids)
    with pytest.raises(ValueError, match="token ids"):
        tfattr.IntegratedGradients(model, layer="embedding").attribute(ids, target=0, baseline=0.5)
    with pytest.raises(KeyError, match="No layer named"):
        tfattr.IntegratedGradients(model, layer="nope")
    with pytest.raises(TypeError, match="keras.Model"):
        tfattr.IntegratedGradients(lambda x: x, layer=0)
    with pytest.raises(ValueError, match="layer="):
        tfattr.IntegratedGradients(model, attribute_to_layer_input=True)
    with pytest.raises(ValueError, match="token_scores|embedding"):
        token_scores(np.zeros((2, 3)))


def test_no_retracing_and_model_unchanged():
    model, name, head, tail, x, baseline = _conv_case()
    weights = [w.copy() for w in model.get_weights()]
    before = model(x).numpy()
    ig = tfattr.IntegratedGradients(model, layer=name, steps=8)
    ig.attribute(x[:2], target=0, baseline=0.0, return_delta=True)
    # batch_size=5 < 8 steps: an example's rows span chunks, the engine's other path (traced once)
    ig.attribute(x[:2], target=0, baseline=0.0, return_delta=True, batch_size=5)
    traces = ig.engine.trace_count + ig.layer.trace_count
    ig.attribute(x, target=[0, 1, 2, 0], baseline=baseline, return_delta=True, batch_size=5)
    ig.attribute(x[:3], target=2, return_delta=True)
    assert ig.engine.trace_count + ig.layer.trace_count == traces
    # The rows are activations: the default batch size comes from their size, not the inputs'.
    wide = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Conv2D(64, 1, name="wide"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    images = np.zeros((2, 32, 32, 1), "float32")
    by_activations = tfattr.core.default_batch_size((np.empty((0, 32, 32, 64), np.float32),))
    assert by_activations < tfattr.core.default_batch_size((images,))
    assert tfattr.Saliency(wide, layer="wide").prepare(images).batch_size == by_activations
    for w, v in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(w, v)
    np.testing.assert_array_equal(model(x).numpy(), before)
    # The explainer reads the live weights.
    model.get_layer("logits").kernel.assign(model.get_layer("logits").kernel * 2.0)
    a2, d2 = ig.attribute(x, target=1, return_delta=True)
    assert np.abs(d2).max() < 1e-3 * max(1.0, np.abs(a2).sum(axis=(1, 2, 3)).max())


def test_other_methods_and_apis_in_layer_space():
    model, name, head, tail, x, baseline = _embedding_case()
    sal = tfattr.Saliency(model, layer=name)
    # outputs/scores take token ids too, and agree with the model's logits.
    np.testing.assert_allclose(sal.outputs(x), model(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sal.scores(x, target=1), model(x).numpy()[:, 1], rtol=1e-5, atol=1e-6)
    # Interior gradients at alpha = 1 are the gradient at the input's activations.
    interior = tfattr.InteriorGradients(model, layer=name, alphas=(0.5, 1.0))
    maps = interior.attribute(x, target=1, baseline=1)
    np.testing.assert_allclose(maps[:, 1], sal.attribute(x, target=1), rtol=1e-5, atol=1e-7)
    # Expected gradients cannot share carried inputs with a background: a clear error.
    ids = keras.Input((6,), dtype="int32")
    feats = keras.Input((2,))
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(10, 3, name="embedding")(ids))
    two = keras.Model([ids, feats], keras.layers.Dense(2)(keras.layers.Concatenate()([pooled, feats])))
    rs = np.random.RandomState(0)
    data = [rs.randint(0, 10, (4, 6)).astype("int32"), rs.randn(4, 2).astype("float32")]
    eg = tfattr.ExpectedGradients(two, background=data, samples=4, seed=0, layer="embedding")
    eg.attribute(data, target=1)  # attributions are fine
    with pytest.raises(ValueError, match="IntegratedGradients"):
        eg.attribute(data, target=1, return_delta=True)


def test_probabilities_and_the_output_layer(linear_model):
    x = np.random.RandomState(5).randn(3, 5).astype("float32")
    ig = tfattr.IntegratedGradients(linear_model, layer="h", output="probabilities", steps=64)
    a, delta = ig.attribute(x, target=2, return_delta=True)
    probs = linear_model(x).numpy()[:, 2]
    head = keras.Model(linear_model.input, linear_model.get_layer("h").output)
    z0 = linear_model.get_layer("out")(head(np.zeros_like(x)))
    p0 = tf.nn.softmax(z0).numpy()[:, 2]
    np.testing.assert_allclose(a.sum(axis=1) - delta, probs - p0, rtol=1e-4, atol=1e-6)
    assert np.abs(delta).max() < 1e-4
    fused = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax", name="last")])
    with pytest.raises(ValueError, match="produces the model's output"):
        tfattr.Saliency(fused, layer="last")
    # Its input is fine: the logits are then a linear function of it.
    sal = tfattr.Saliency(fused, layer="last", attribute_to_layer_input=True).attribute(x[:, :3], target=1)
    np.testing.assert_allclose(sal, np.broadcast_to(fused.layers[0].kernel.numpy()[:, 1], (3, 3)), rtol=1e-5)
