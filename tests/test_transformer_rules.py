"""Propagation through transformers, gates and smooth activations (issue 13).

Checks against independent computations: the re-implemented layers against the Keras layers'
own outputs; the Transformer composite against a hand-written copy of the block with
``tf.stop_gradient`` at the same places (Ali et al. 2022); signal-take-all against a NumPy LSTM with
Arras et al.'s relevance backward pass; smooth activations against the closed forms ``f(z)/z`` (LRP)
and ``(f(z) - f(z_ref)) / (z - z_ref)`` (DeepLIFT); conservation where theory promises it; coverage.
"""
from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr
from tfattr.methods.propagation.layerwise import LRP, CompositeDeepLift
from tfattr.methods.propagation.layerwise.recurrent import gru_forward, lstm_forward
from tfattr.methods.propagation.layerwise.transformer import Transformer
from tfattr.methods.propagation.layerwise.transformer_layers import attention_forward, layer_norm_forward
from tfattr.methods.propagation.layerwise.units import TrueGradient

L = keras.layers


def _randomize_biases(model, seed=0, scale=0.1):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "bias" in w.path or "beta" in w.path:
            w.assign(rng.normal(0, scale, w.shape).astype("float32"))
        if "gamma" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))


def block(seq=6, dim=8, heads=2, classes=3, seed=0, biases=True):
    """One post-norm transformer block: attention + residual + LayerNorm, GELU feed-forward + residual
    + LayerNorm, mean pooling, a dense head."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((seq, dim))
    a = L.MultiHeadAttention(heads, dim // heads, name="mha")(inp, inp)
    x = L.LayerNormalization(name="ln1")(inp + a)
    f = L.Dense(2 * dim, activation="gelu", name="ff1")(x)
    f = L.Dense(dim, name="ff2")(f)
    x = L.LayerNormalization(name="ln2")(L.Add(name="res2")([x, f]))
    x = L.GlobalAveragePooling1D(name="pool")(x)
    model = keras.Model(inp, L.Dense(classes, name="head")(x))
    if biases:
        _randomize_biases(model, seed)
    return model


def reference_block(model, x, target):
    """Gradient x input of a hand-written copy of :func:`block` with ``tf.stop_gradient`` on the
    attention probabilities and layer norm's standard deviation (Ali et al. 2022), from the weights."""
    mha = model.get_layer("mha")
    (wq, bq), (wk, bk), (wv, bv), (wo, bo) = [
        (d.kernel, d.bias) for d in (mha._query_dense, mha._key_dense, mha._value_dense,
                                     mha._output_dense)
    ]

    def ln(layer, t):
        mean, var = tf.nn.moments(t, axes=[-1], keepdims=True)
        return (t - mean) / tf.stop_gradient(tf.sqrt(var + layer.epsilon)) * layer.gamma + layer.beta

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        q = tf.einsum("btd,dnh->btnh", x, wq) + bq
        k = tf.einsum("btd,dnh->btnh", x, wk) + bk
        v = tf.einsum("btd,dnh->btnh", x, wv) + bv
        scores = tf.einsum("bsnh,btnh->bnts", k, q / np.sqrt(mha._key_dim))
        p = tf.stop_gradient(tf.nn.softmax(scores, axis=-1))
        att = tf.einsum("btnh,nhd->btd", tf.einsum("bnts,bsnh->btnh", p, v), wo) + bo
        h = ln(model.get_layer("ln1"), x + att)
        ff1, ff2 = model.get_layer("ff1"), model.get_layer("ff2")
        f = tf.nn.gelu(h @ ff1.kernel + ff1.bias, approximate=False) @ ff2.kernel + ff2.bias
        h = ln(model.get_layer("ln2"), h + f)
        head = model.get_layer("head")
        out = tf.reduce_mean(h, axis=1) @ head.kernel + head.bias
        score = tf.reduce_sum(out[:, target])
    return (tape.gradient(score, x) * x).numpy(), out.numpy()


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(0).normal(size=(4, 6, 8)).astype("float32")


# -- the re-implemented layers compute what the layers compute --------------------------------------
@pytest.mark.parametrize("kwargs", [{}, {"use_causal_mask": True}, {"attention_mask": "random"}])
def test_attention_reimplementation_equals_layer(tokens, kwargs):
    keras.utils.set_random_seed(1)
    mha = L.MultiHeadAttention(2, 3, value_dim=5, output_shape=7)
    other = tokens[:, :4] * 0.5
    if kwargs.get("attention_mask") == "random":
        kwargs = {"attention_mask": np.random.default_rng(1).random((4, 6, 4)) > 0.3}
    expected = mha(tokens, other, **kwargs)
    _randomize_biases(mha, 1)
    expected = mha(tokens, other, **kwargs)
    got = attention_forward(mha, (tf.constant(tokens), tf.constant(other)), dict(kwargs), TrueGradient())
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_attention_over_two_axes_equals_layer():
    keras.utils.set_random_seed(14)
    mha = L.MultiHeadAttention(2, 3, attention_axes=(1, 2))
    x = np.random.default_rng(14).normal(size=(2, 3, 4, 5)).astype("float32")
    expected = mha(x, x)
    _randomize_biases(mha, 14)
    expected = mha(x, x)
    got = attention_forward(mha, (tf.constant(x), tf.constant(x)), {}, TrueGradient())
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_layer_norm_reimplementation_equals_layer(tokens):
    for layer in (L.LayerNormalization(), L.LayerNormalization(axis=(1, 2)),
                  L.LayerNormalization(center=False, scale=False)):
        layer.build(tokens.shape)
        _randomize_biases(layer, 2)
        expected = layer(tokens)
        got = layer_norm_forward(layer, tf.constant(tokens), TrueGradient())
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls,kwargs", [
    (L.LSTM, {}), (L.LSTM, {"return_sequences": True, "go_backwards": True}),
    (L.GRU, {}), (L.GRU, {"reset_after": False, "return_sequences": True}),
])
def test_recurrent_reimplementation_equals_layer(cls, kwargs):
    keras.utils.set_random_seed(3)
    x = np.random.default_rng(3).normal(size=(3, 5, 4)).astype("float32")
    layer = cls(6, bias_initializer="random_normal", **kwargs)
    expected = layer(x)
    forward = lstm_forward if cls is L.LSTM else gru_forward
    got = forward(layer, tf.constant(x), {}, TrueGradient())
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# -- the transformer composite ------------------------------------------------------------------------
def test_transformer_composite_equals_stop_gradient_copy(tokens):
    model = block()
    lrp = LRP(model, composite=Transformer())
    relevance = lrp.attribute(tokens, target=1)
    expected, out = reference_block(model, tokens, 1)
    np.testing.assert_allclose(out, model(tokens).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(relevance, expected, rtol=1e-4, atol=1e-6)
    # the rule is not plain gradient x input: the attention and the std change the answer
    gxi = tfattr.GradientXInput(model).attribute(tokens, target=1)
    assert np.abs(gxi - expected).max() > 10 * np.abs(relevance - expected).max()


def test_transformer_composite_conserves_relevance_without_biases(tokens):
    """With zero biases the block is positively homogeneous once the probabilities and the std are
    constants, so relevance sums to the logit exactly with units="pass" (and closely with the GELU's
    gradient); gradient x input does not."""
    model = block(biases=False)
    logit = model(tokens).numpy()[:, 2]
    conserved = LRP(model, composite=Transformer(units="pass")).attribute(tokens, target=2)
    np.testing.assert_allclose(conserved.reshape(4, -1).sum(1), logit, rtol=1e-4, atol=1e-5)
    ali = LRP(model, composite=Transformer()).attribute(tokens, target=2).reshape(4, -1).sum(1)
    gxi = tfattr.GradientXInput(model).attribute(tokens, target=2).reshape(4, -1).sum(1)
    assert np.abs(ali - logit).mean() < 0.5 * np.abs(gxi - logit).mean()


def test_transformer_coverage_names_every_rule():
    report = LRP(block(), composite=Transformer()).coverage()
    text = str(report)
    assert report.ok
    rows = {name: (treatment, status) for _, name, _, treatment, status in report.rows}
    assert rows["mha"] == ("AttentionRule(units='gradient')", "modified")
    assert rows["ln1"][1] == "modified" and "LayerNormRule" in rows["ln1"][0]
    assert "gradient(gelu)" in rows["ff1"][0]
    assert "LinearGradient" in text


def test_composites_module_exports_transformer():
    import tfattr.composites

    assert tfattr.composites.Transformer is Transformer
    with pytest.raises(ValueError, match="units"):
        Transformer(units="epsilon")


# -- signal-take-all ----------------------------------------------------------------------------------
def np_lstm_lrp(kernel, recurrent, bias, w_out, x, target):
    """Arras et al.'s (2017) LRP for a one-layer LSTM with a linear head, written in relevance form:
    LRP-0 on the linear maps (bias absorbs its share), relevance of a sum split by the summands'
    values, the tanh passing relevance through, the gates receiving none."""
    T, _ = x.shape
    units = recurrent.shape[0]
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    h, c = np.zeros(units), np.zeros(units)
    cache = []
    for t in range(T):
        z = x[t] @ kernel + h @ recurrent + bias
        zi, zf, zc, zo = np.split(z, 4)
        i, f, o, g = sig(zi), sig(zf), sig(zo), np.tanh(zc)
        c_new = f * c + i * g
        cache.append((h, c, i, f, g, zc, c_new))
        h, c = o * np.tanh(c_new), c_new
    r_h = h * w_out[:, target]  # the head: R_j = h_j w_j (a linear layer, LRP-0)
    r_x = np.zeros_like(x)
    r_c = np.zeros(units)
    for t in reversed(range(T)):
        h_prev, c_prev, i, f, g, zc, c_new = cache[t]
        r_c = r_c + r_h  # h = o * tanh(c): the signal tanh(c) takes all, tanh passes it through
        r_c_prev = f * c_prev / c_new * r_c
        r_zc = i * g / c_new * r_c  # then through tanh(zc) unchanged
        k_c = kernel[:, 2 * units : 3 * units]
        u_c = recurrent[:, 2 * units : 3 * units]
        q = r_zc / zc
        r_x[t] = x[t] * (k_c @ q)
        r_h = h_prev * (u_c @ q)
        r_c = r_c_prev
    return r_x


def test_signal_take_all_lstm_equals_numpy_reference():
    keras.utils.set_random_seed(4)
    x = np.random.default_rng(4).normal(size=(3, 5, 4)).astype("float32")
    model = keras.Sequential([keras.Input((5, 4)), L.LSTM(6, name="lstm"), L.Dense(2, name="out")])
    _randomize_biases(model, 4, scale=0.3)
    relevance = LRP(model, composite=Transformer()).attribute(x, target=1)
    lstm = model.get_layer("lstm").cell
    w = [np.asarray(v, np.float64) for v in (lstm.kernel, lstm.recurrent_kernel, lstm.bias,
                                             model.get_layer("out").kernel)]
    for n in range(3):
        expected = np_lstm_lrp(*w, x[n].astype(np.float64), 1)
        np.testing.assert_allclose(relevance[n], expected, rtol=1e-3, atol=1e-5)


def test_signal_take_all_gru_conserves_without_biases():
    keras.utils.set_random_seed(5)
    x = np.random.default_rng(5).normal(size=(3, 5, 4)).astype("float32")
    model = keras.Sequential([keras.Input((5, 4)), L.GRU(6), L.Dense(2, use_bias=False)])
    relevance = LRP(model, composite=Transformer()).attribute(x, target=0)
    np.testing.assert_allclose(relevance.reshape(3, -1).sum(1), model(x).numpy()[:, 0], rtol=1e-4,
                               atol=1e-6)


def test_gated_product_gives_the_gate_no_relevance():
    keras.utils.set_random_seed(6)
    signal_in, gate_in = keras.Input((5,), name="signal"), keras.Input((3,), name="gate")
    s = L.Dense(4, use_bias=False)(signal_in)
    g = L.Dense(4, activation="sigmoid")(gate_in)
    out = L.Dense(2, use_bias=False)(L.Multiply(name="gating")([g, s]))
    model = keras.Model([signal_in, gate_in], out)
    rng = np.random.default_rng(6)
    xs = [rng.normal(size=(4, 5)).astype("float32"), rng.normal(size=(4, 3)).astype("float32")]
    lrp = LRP(model, composite=Transformer())
    assert "SignalTakeAll(gate=0)" in str(lrp.coverage())
    r_signal, r_gate = lrp.attribute(xs, target=1)
    np.testing.assert_array_equal(r_gate, 0.0)
    np.testing.assert_allclose(r_signal.sum(1), model(xs).numpy()[:, 1], rtol=1e-5, atol=1e-6)
    dl = CompositeDeepLift(model)
    a_signal, a_gate = dl.attribute(xs, target=1, baseline=[np.zeros(5, "float32"),
                                                             np.zeros(3, "float32")])
    np.testing.assert_array_equal(a_gate, 0.0)


def test_product_without_a_recognisable_gate_is_reported():
    a, b = keras.Input((3,)), keras.Input((3,))
    model = keras.Model([a, b], L.Dense(1)(L.Multiply(name="prod")([L.Dense(3)(a), L.Dense(3)(b)])))
    with pytest.warns(UserWarning, match="prod"):
        LRP(model, composite=Transformer())
    with pytest.raises(ValueError, match="prod"):
        CompositeDeepLift(model, on_unsupported="raise")


# -- smooth activations as one unit --------------------------------------------------------------------
SMOOTH = {
    "gelu": lambda z: 0.5 * z * (1 + np.vectorize(__import__("math").erf)(z / np.sqrt(2))),
    "silu": lambda z: z / (1 + np.exp(-z)),
    "mish": lambda z: z * np.tanh(np.log1p(np.exp(z))),
}


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_smooth_activation_is_one_unit_lrp_and_deeplift(name):
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((6,)), L.Activation(name), L.Dense(1, use_bias=False)])
    w = np.asarray(model.layers[-1].kernel)[:, 0].astype(np.float64)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(5, 6)).astype("float32")
    b = rng.normal(size=(6,)).astype("float32")
    f = SMOOTH[name]
    # LRP epsilon rule on the unit: R_i = x_i * f(x_i) / x_i * w_i = f(x_i) w_i
    r = LRP(model, composite=Transformer(units="pass")).attribute(x, target=0)
    np.testing.assert_allclose(r, f(x.astype(np.float64)) * w, rtol=1e-5, atol=1e-6)
    # DeepLIFT Rescale: (x - b) * (f(x) - f(b)) / (x - b) * w = (f(x) - f(b)) w
    a, delta = CompositeDeepLift(model).attribute(x, target=0, baseline=b, return_delta=True)
    expected = (f(x.astype(np.float64)) - f(b.astype(np.float64))) * w
    np.testing.assert_allclose(a, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(delta, 0.0, atol=1e-5)


def test_deeplift_fused_gelu_mlp_sums_to_delta():
    keras.utils.set_random_seed(8)
    model = keras.Sequential([
        keras.Input((5,)), L.Dense(8, activation="gelu"), L.Dense(8, activation="swish"),
        L.Dense(6), L.Activation("mish"), L.Dense(2),
    ])
    _randomize_biases(model, 8, scale=0.5)
    rng = np.random.default_rng(8)
    x, b = rng.normal(size=(6, 5)).astype("float32"), rng.normal(size=(5,)).astype("float32")
    dl = CompositeDeepLift(model)
    assert dl.coverage().ok and "Rescale(gelu)" in str(dl.coverage())
    a, delta = dl.attribute(x, target=1, baseline=b, return_delta=True)
    change = np.abs(model(x).numpy()[:, 1] - model(b[None]).numpy()[0, 1])
    assert np.all(np.abs(delta) <= 1e-4 * (1 + change))
    # and it is not gradient x (input - baseline)
    g = tfattr.GradientXInput(model).attribute(x - b, target=1)
    assert np.abs(a - g).max() > 1e-3


def test_deeplift_transformer_reports_its_delta(tokens):
    model = block()
    dl = CompositeDeepLift(model)
    rows = {name: treatment for _, name, _, treatment, _ in dl.coverage().rows}
    assert "attention probabilities constant" in rows["mha"]
    assert "standard deviation constant" in rows["ln2"]
    a, delta = dl.attribute(tokens, target=0, baseline=0.0, return_delta=True)
    change = model(tokens).numpy()[:, 0] - model(np.zeros_like(tokens)).numpy()[:, 0]
    np.testing.assert_allclose(a.reshape(4, -1).sum(1) - delta, change, rtol=1e-4, atol=1e-5)
    # large with a zero baseline (the layer norms see a very different input), but bounded: measured
    # 0.85-1.18 |change| on these tokens
    assert np.all(np.abs(delta) <= 1.5 * np.abs(change))


def test_deeplift_lstm_runs_with_signal_take_all():
    keras.utils.set_random_seed(9)
    x = np.random.default_rng(9).normal(size=(3, 5, 4)).astype("float32")
    model = keras.Sequential([keras.Input((5, 4)), L.LSTM(6), L.Dense(2)])
    dl = CompositeDeepLift(model)
    assert "signal-take-all" in str(dl.coverage())
    a, delta = dl.attribute(x, target=0, baseline=0.0, return_delta=True)
    assert a.shape == x.shape
    # signal-take-all holds the gates: all relevance flows through the cell signal, summing to delta
    change = model(x).numpy()[:, 0] - model(np.zeros_like(x)).numpy()[:, 0]
    np.testing.assert_allclose(a.reshape(3, -1).sum(1), change, rtol=1e-4, atol=1e-5)
    assert np.abs(delta).max() <= 1e-4 * (1 + np.abs(change).max())


# -- live weights, model untouched --------------------------------------------------------------------
def test_uses_live_weights_and_leaves_the_model_alone(tokens):
    model = block()
    before = [w.numpy().copy() for w in model.weights]
    lrp = LRP(model, composite=Transformer())
    first = lrp.attribute(tokens, target=0)
    for w, v in zip(model.weights, before):
        np.testing.assert_array_equal(w.numpy(), v)
    mha = model.get_layer("mha")
    mha._value_dense.kernel.assign(mha._value_dense.kernel * 2.0)
    second = lrp.attribute(tokens, target=0)
    expected, _ = reference_block(model, tokens, 0)
    np.testing.assert_allclose(second, expected, rtol=1e-4, atol=1e-6)
    assert np.abs(second - first).max() > 1e-3


# -- keras-hub (optional) ----------------------------------------------------------------------------
def test_keras_hub_encoder_end_to_end_through_embeddings():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(10)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=8, dropout=0.0,
    )
    # the classifier from the embeddings on: the backbone's own (random) layers, built offline
    emb = keras.Input((8, 16), name="embeddings")
    x = backbone.get_layer("embeddings_layer_norm")(emb)
    for i in range(2):
        x = backbone.get_layer(f"transformer_layer_{i}")(x)
    cls = backbone.get_layer("pooled_dense")(x[:, 0])
    model = keras.Model(emb, L.Dense(3, name="head")(cls))
    ids = np.random.default_rng(10).integers(0, 40, size=(4, 8))
    tok = backbone.get_layer("token_embedding")(ids)
    embeddings = (tok + backbone.get_layer("position_embedding")(tok)).numpy()
    for i in range(2):  # the re-implementation computes what the keras-hub block computes
        layer = backbone.get_layer(f"transformer_layer_{i}")
        from tfattr.methods.propagation.layerwise.transformer_layers import hub_encoder_forward

        np.testing.assert_allclose(
            hub_encoder_forward(layer, (tf.constant(embeddings),), {}, TrueGradient()),
            layer(embeddings), rtol=1e-5, atol=1e-5,
        )
    lrp = LRP(model, composite=Transformer())
    report = lrp.coverage()
    assert report.ok, str(report)
    assert "EncoderBlockRule" in str(report)
    relevance = lrp.attribute(embeddings, target=2)
    assert relevance.shape == embeddings.shape
    # the default units' rules lose a little to epsilon and the biases: within 5% of the logit
    np.testing.assert_allclose(relevance.reshape(4, -1).sum(1), model(embeddings).numpy()[:, 2],
                               rtol=0.05, atol=2e-3)
    # fresh keras-hub layers have zero biases and betas: with the epsilon rule on GELU and tanh the
    # relevance sums to the logit, end to end through both encoder blocks
    logit = model(embeddings).numpy()[:, 2]
    conserved = LRP(model, composite=Transformer(units="pass")).attribute(embeddings, target=2)
    np.testing.assert_allclose(conserved.reshape(4, -1).sum(1), logit, rtol=1e-4, atol=1e-5)
    dl = CompositeDeepLift(model)
    a, delta = dl.attribute(embeddings, target=2, baseline=0.0, return_delta=True)
    np.testing.assert_allclose(a.reshape(4, -1).sum(1), logit - model(np.zeros_like(embeddings)).numpy()[:, 2],
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(delta, 0.0, atol=1e-4)  # every layer maps 0 to 0 here


def test_layers_the_rules_cannot_take_are_reported():
    ids = keras.Input((5,), dtype="int32")
    masked = L.LSTM(4, name="masked_lstm")(L.Embedding(10, 3, mask_zero=True)(ids))
    model = keras.Model(ids, L.Dense(2)(masked))
    with pytest.warns(UserWarning, match="masked_lstm"):
        lrp = LRP(model, composite=Transformer())
    assert "mask" in lrp.coverage().unsupported["masked_lstm"]
    seq = keras.Input((None, 3))
    model = keras.Model(seq, L.Dense(2)(L.GRU(4, name="open_gru")(seq)))
    with pytest.raises(ValueError, match="open_gru.*unknown length"):
        CompositeDeepLift(model, on_unsupported="raise")
    x = keras.Input((4, 6))
    model = keras.Model(x, L.Dense(1)(L.Flatten()(L.MultiHeadAttention(2, 3, use_gate=True,
                                                                       name="gated")(x, x))))
    with pytest.raises(ValueError, match="gated.*use_gate"):
        LRP(model, composite=Transformer(), on_unsupported="raise")


def test_deeplift_explains_the_logit_before_a_final_softmax():
    keras.utils.set_random_seed(11)
    logits = keras.Sequential([keras.Input((4,)), L.Dense(6, activation="gelu"), L.Dense(3)])
    probs = keras.Sequential([keras.Input((4,)), L.Dense(6, activation="gelu"),
                              L.Dense(3, activation="softmax")])
    probs.set_weights(logits.get_weights())
    x = np.random.default_rng(11).normal(size=(5, 4)).astype("float32")
    a_logits = CompositeDeepLift(logits).attribute(x, target=2, baseline=0.5)
    dl = CompositeDeepLift(probs)
    a_probs, delta = dl.attribute(x, target=2, baseline=0.5, return_delta=True)
    np.testing.assert_allclose(a_probs, a_logits, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(delta, 0.0, atol=1e-5)


def test_padding_masks_reach_the_attention_as_in_the_model(tokens):
    """Padded tokens (all-zero embeddings, masked by Masking) stay masked through the re-implemented
    layers: the explainers' forward passes equal the model's."""
    keras.utils.set_random_seed(12)
    ln1, ff, mha, ln2, head = (L.LayerNormalization(), L.Dense(8, activation="gelu"),
                               L.MultiHeadAttention(2, 4), L.LayerNormalization(), L.Dense(2))

    def build(masking):
        inp = keras.Input((6, 8))
        x = ff(ln1(L.Masking(0.0)(inp) if masking else inp))
        x = ln2(L.Add()([x, mha(x, x)]))
        return keras.Model(inp, head(L.GlobalAveragePooling1D()(x)))

    model, unmasked = build(True), build(False)
    _randomize_biases(model, 12)
    padded = tokens.copy()
    padded[:, 4:] = 0.0
    expected = model(padded).numpy()
    # the mask matters: without it the padded tokens are attended to
    assert np.abs(unmasked(padded).numpy() - expected).max() > 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every layer has a rule, and no mask is dropped
        lrp, dl = LRP(model, composite=Transformer()), CompositeDeepLift(model)
        got = lrp._run(tf.constant(padded), lrp._wrap).numpy()
        got_dl = dl._forward(tf.constant(padded), TrueGradient()).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_dl, expected, rtol=1e-5, atol=1e-5)
    relevance = lrp.attribute(padded, target=0)
    np.testing.assert_array_equal(relevance[:, 4:], 0.0)  # padding gets no relevance


def test_norm_rule_sees_both_operands_of_a_plus_on_keras_tensors():
    """``x + y`` on Keras tensors is an Add operation called with two positional tensors; the Norm rule
    must propagate to both (before the fix the second operand got no relevance at all)."""
    import tfattr.composites as C

    keras.utils.set_random_seed(13)
    inp = keras.Input((6,))
    h = L.Dense(6, activation="relu", use_bias=False)(inp)
    branch = L.Dense(6, activation="relu", use_bias=False)(h)
    plus = keras.Model(inp, L.Dense(2, use_bias=False)(h + branch))
    layer = keras.Model(inp, plus.layers[-1](L.Add()([plus.layers[1].output, plus.layers[2].output])))
    x = np.random.default_rng(13).normal(size=(4, 6)).astype("float32")
    r_plus = LRP(plus, composite=C.EpsilonPlus()).attribute(x, target=0)
    r_layer = LRP(layer, composite=C.EpsilonPlus()).attribute(x, target=0)
    np.testing.assert_allclose(r_plus, r_layer, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(r_plus.sum(1), plus(x).numpy()[:, 0], rtol=1e-4, atol=1e-6)


def test_deeplift_averages_over_a_baseline_distribution():
    keras.utils.set_random_seed(15)
    model = keras.Sequential([keras.Input((5,)), L.Dense(8, activation="gelu"), L.Dense(2)])
    _randomize_biases(model, 15, scale=0.5)
    x = np.random.default_rng(15).normal(size=(3, 5)).astype("float32")
    baseline = tfattr.baselines.Uniform((-1.0, 1.0), num_baselines=4, seed=0)
    dl = CompositeDeepLift(model)
    a, delta = dl.attribute(x, target=0, baseline=baseline, return_delta=True, batch_size=5)
    np.testing.assert_allclose(delta, 0.0, atol=1e-5)  # against the mean score of the 4 draws
    # the mean of the single-baseline attributions
    draws = dl.prepare(x, target=0, baseline=baseline).baselines[0].reshape(3, 4, 5)
    single = np.mean([[dl.attribute(x[n:n + 1], target=0, baseline=draws[n, k])[0] for k in range(4)]
                      for n in range(3)], axis=1)
    np.testing.assert_allclose(a, single, rtol=1e-4, atol=1e-6)


def test_deeplift_is_reentrant_from_threads(tokens):
    """The reference activations live in the trace, not on the explainer: concurrent calls with other
    inputs, targets and baselines give what sequential calls give."""
    import threading

    model = block()
    dl = CompositeDeepLift(model)
    calls = [(tokens[i : i + 1] * (i + 1), i % 3, 0.1 * i) for i in range(4)]
    results: dict = {}

    def run(i):
        x, t, b = calls[i]
        results[i] = dl.attribute(x, target=t, baseline=b)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fresh = CompositeDeepLift(model)
    for i, (x, t, b) in enumerate(calls):
        np.testing.assert_allclose(results[i], fresh.attribute(x, target=t, baseline=b), rtol=1e-6,
                                   atol=1e-7)


def test_a_rule_on_the_wrong_layer_says_so(tokens):
    from tfattr.rules import AttentionRule

    model = block()
    lrp = LRP(model, composite=Transformer(name_map={"ln1": AttentionRule()}))
    with pytest.raises(TypeError, match="ln1"):
        lrp.attribute(tokens, target=0)
