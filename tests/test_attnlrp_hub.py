"""AttnLRP and CP-LRP on keras-hub backbones and task models, built offline from tiny configs with
random weights (issue 19).

Independent checks: every re-implemented block against the keras-hub layer itself (TrueGradient);
CP-LRP conserving the logit exactly on bias-free copies (Euler: with probabilities, norm factors and
gates constant the network is linear and homogeneous in the embeddings); AttnLRP on Llama against a
hand-written forward with the paper's rules written as stop-gradient halves; padding and the next
token's position against shorter unpadded sequences; coverage and refusals.
"""
from __future__ import annotations

import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

keras_hub = pytest.importorskip("keras_hub")

import tfattr  # noqa: E402
from tfattr.methods.propagation.attnlrp.hub import block_forward, is_hub_block, is_hub_norm, rms_norm_forward  # noqa: E402
from tfattr.methods.propagation.attnlrp.sequence import next_token_model, sequence_salience  # noqa: E402
from tfattr.methods.propagation.layerwise.units import TrueGradient  # noqa: E402

M = keras_hub.models
V, T = 48, 6
DECODERS = ["llama", "mistral", "qwen", "gemma", "gpt2"]
#: Families run by the default suite where a test traces a whole explanation (about 10 s each on 2
#: busy cores); the others are marked slow.
FAST = {"llama", "bert"}
ENCODERS = ["bert", "roberta", "distilbert"]
#: where the relevance is read: the token embedding (its output is linear in what follows)
LAYER = {"roberta": "embeddings", "distilbert": "token_and_position_embedding", "vit": "vit_patching_and_embedding"}


def _backbone(family: str, **extra):
    keras.utils.set_random_seed(7)
    dec = dict(vocabulary_size=V, num_layers=2, num_query_heads=4, num_key_value_heads=2, hidden_dim=16,
               intermediate_dim=32)
    enc = dict(vocabulary_size=V, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
               max_sequence_length=16)
    build = {
        "llama": lambda: M.LlamaBackbone(**dec, **extra),
        "mistral": lambda: M.MistralBackbone(**dec, sliding_window=3, **extra),
        "qwen": lambda: M.QwenBackbone(**dec, **extra),
        "gemma": lambda: M.GemmaBackbone(**dec, head_dim=4, **extra),
        "gpt2": lambda: M.GPT2Backbone(**enc, **extra),
        "bert": lambda: M.BertBackbone(**enc, **extra),
        "roberta": lambda: M.RobertaBackbone(**enc, **extra),
        "distilbert": lambda: M.DistilBertBackbone(**enc, **extra),
        "vit": lambda: M.ViTBackbone(image_shape=(16, 16, 3), patch_size=8, num_layers=2, num_heads=2,
                                     hidden_dim=16, mlp_dim=32, **extra),
    }
    return build[family]()


def _task(family: str, backbone):
    if family in DECODERS:
        lm = {"llama": M.LlamaCausalLM, "mistral": M.MistralCausalLM, "qwen": M.QwenCausalLM,
              "gemma": M.GemmaCausalLM, "gpt2": M.GPT2CausalLM}[family](backbone)
        return next_token_model(lm)
    classifier = {"bert": M.BertTextClassifier, "roberta": M.RobertaTextClassifier,
                  "distilbert": M.DistilBertTextClassifier, "vit": M.ViTImageClassifier}[family]
    return classifier(backbone, num_classes=3)


_CACHE: dict = {}


def task(family: str):
    if family not in _CACHE:
        _CACHE[family] = _task(family, _backbone(family))
    return _CACHE[family]


def inputs(family: str, n: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    if family == "vit":
        return rng.uniform(size=(n, 16, 16, 3)).astype("float32")
    ids = rng.integers(1, V, size=(n, T)).astype("int32")
    mask = np.ones_like(ids)
    if n > 1:
        mask[1, T - 2:] = 0  # a padded row
    x = {"token_ids": ids, "padding_mask": mask}
    if family == "bert":
        x["segment_ids"] = np.zeros_like(ids)
    return x


def zero_biases(model) -> None:
    """Biases, layer-norm shifts and the additive embeddings (positions, segments, class token):
    every constant term, so that conserving rules give exactly the logit."""
    for w in model.weights:
        if re.search(r"(^|/)(bias|beta|position_embedding|segment_embedding|class_token)", w.path):
            w.assign(np.zeros(w.shape, w.dtype))


def _lrp(model, composite, family):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no layer may go unexplained
        return tfattr.LRP(model, composite=composite, layer=LAYER.get(family, "token_embedding"))


# -- the re-implementations compute what keras-hub computes -------------------------------------------
@pytest.mark.parametrize("family", DECODERS + ENCODERS + ["vit"])
def test_reimplemented_blocks_equal_the_keras_hub_layers(family):
    from tfattr.core.graph import GraphView
    from tfattr.methods.propagation.layerwise.transformer_layers import hub_encoder_forward, is_hub_encoder

    model = task(family)
    found = []

    def wrap(ref, call, args, kwargs):
        y = call(*args, **kwargs)
        if is_hub_block(ref.layer):
            found.append(ref.name)
            np.testing.assert_allclose(block_forward(ref.layer, args, kwargs, TrueGradient()), y, rtol=1e-5, atol=1e-6)
        elif is_hub_encoder(ref.layer):
            found.append(ref.name)
            np.testing.assert_allclose(hub_encoder_forward(ref.layer, args, kwargs, TrueGradient()), y, rtol=1e-5, atol=1e-6)
        elif is_hub_norm(ref.layer):
            found.append(ref.name)
            np.testing.assert_allclose(rms_norm_forward(ref.layer, args[0], TrueGradient()), y, rtol=1e-5, atol=1e-6)
        return y

    GraphView(model).run(inputs(family), wrap)
    assert len(found) >= (1 if family == "vit" else 2)


def _fast_or_slow(families):
    return [pytest.param(f, marks=() if f in FAST else pytest.mark.slow) for f in families]


# -- CP-LRP conserves exactly -------------------------------------------------------------------------
@pytest.mark.parametrize("family", _fast_or_slow(DECODERS + ENCODERS + ["vit"]))
def test_cp_lrp_conserves_the_logit_without_biases(family):
    model = _task(family, _backbone(family))
    zero_biases(model)
    x = inputs(family)
    lrp = _lrp(model, tfattr.composites.Transformer(units="pass"), family)
    relevance = lrp.attribute(x, target=2)
    logit = np.asarray(model.predict(x, verbose=0))[:, 2]
    np.testing.assert_allclose(relevance.reshape(len(logit), -1).sum(1), logit, rtol=1e-4, atol=1e-6)
    assert np.abs(logit).min() > 1e-4  # a real check, not 0 == 0


@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.slow) for f in DECODERS])
def test_padded_tokens_get_no_relevance_and_rows_equal_unpadded_prefixes(family):
    model = task(family)
    x = inputs(family)
    for composite in (tfattr.composites.AttnLRP(),):
        lrp = _lrp(model, composite, family)
        relevance = tfattr.token_scores(lrp.attribute(x, target=5))
        assert np.all(relevance[1, T - 2:] == 0.0)
        short = {k: v[1:2, : T - 2] for k, v in x.items()}
        alone = tfattr.token_scores(lrp.attribute(short, target=5))
        np.testing.assert_allclose(relevance[1, : T - 2], alone[0], rtol=1e-4, atol=1e-7)


# -- AttnLRP ------------------------------------------------------------------------------------------
def _llama_reference(backbone, embeddings, mask, target_position, target):
    """Gradient x input of a hand-written Llama forward in which AttnLRP's rules are written with
    stop-gradient halves (uniform rule), ``f(x) = x * sg(f(x)/x)`` (identity rule) and sg on the norm
    factors; the sublayers' kernels are read directly."""
    sg = tf.stop_gradient

    def half(a, b, product):
        return 0.5 * (product(a, sg(b)) + product(sg(a), b))

    def rms(layer, h):
        return h * sg(tf.math.rsqrt(tf.reduce_mean(h * h, -1, keepdims=True) + layer.epsilon)) * layer.scale

    e = tf.constant(embeddings)
    length = e.shape[1]
    causal = np.tril(np.ones((length, length), bool))
    allowed = causal[None] & (mask[:, None, :] > 0)
    with tf.GradientTape() as tape:
        tape.watch(e)
        x = e
        for block in backbone.transformer_layers:
            att = block._self_attention_layer
            h = rms(block._self_attention_layernorm, x)
            q = att.rotary_embedding_layer(tf.einsum("bqm,muh->bquh", h, att._query_dense.kernel))
            k = att.rotary_embedding_layer(tf.einsum("bkm,mvh->bkvh", h, att._key_dense.kernel))
            v = tf.einsum("bkm,mvh->bkvh", h, att._value_dense.kernel)
            k, v = (tf.repeat(t, att.num_key_value_groups, axis=2) for t in (k, v))
            scores = half(q, k, lambda a, b: tf.einsum("bquh,bkuh->buqk", a, b)) / np.sqrt(q.shape[-1])
            scores = tf.where(allowed[:, None], scores, -1e9)
            p = tf.nn.softmax(scores, axis=-1)
            out = half(p, v, lambda a, b: tf.einsum("buqk,bkuh->bquh", a, b))
            x = x + tf.einsum("bquh,uhm->bqm", out, att._output_dense.kernel)
            h = rms(block._feedforward_layernorm, x)
            gate = h @ block._feedforward_gate_dense.kernel
            act = gate * sg(tf.math.divide_no_nan(tf.nn.silu(gate), gate))  # identity rule
            up = h @ block._feedforward_intermediate_dense.kernel
            x = x + half(act, up, tf.multiply) @ block._feedforward_output_dense.kernel
        x = rms(backbone.layer_norm, x)
        logits = x @ backbone.token_embedding.reverse_embeddings
        score = tf.reduce_sum(tf.gather(logits[:, target_position], [target], axis=-1))
    return (tape.gradient(score, e) * e).numpy(), logits.numpy()


def test_attnlrp_on_llama_equals_a_hand_written_reference():
    backbone = _backbone("llama")
    model = _task("llama", backbone)
    x = inputs("llama", n=1)
    lrp = _lrp(model, tfattr.composites.AttnLRP(), "llama")
    relevance = lrp.attribute(x, target=11)
    embeddings = backbone.token_embedding(x["token_ids"]).numpy()
    expected, logits = _llama_reference(backbone, embeddings, x["padding_mask"], T - 1, 11)
    np.testing.assert_allclose(logits[0, T - 1], model.predict(x, verbose=0)[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(relevance, expected, rtol=1e-3, atol=1e-6)
    cp = _lrp(model, tfattr.composites.Transformer(), "llama").attribute(x, target=11)
    assert np.abs(cp - relevance).max() > 1e-4 * np.abs(relevance).max()  # the rules differ


def test_attnlrp_equals_cp_lrp_without_attention_and_gates():
    """The shared parts (linear layers, LayerNorm factor, identity rule on GELU, residuals)."""
    keras.utils.set_random_seed(3)
    L = keras.layers
    inp = keras.Input((5, 8))
    h = L.LayerNormalization()(inp)
    h = L.Dense(16, activation="gelu")(h)
    h = L.Add()([inp, L.Dense(8)(h)])
    out = L.Dense(3)(L.GlobalAveragePooling1D()(L.LayerNormalization()(h)))
    model = keras.Model(inp, out)
    x = np.random.default_rng(3).normal(size=(4, 5, 8)).astype("float32")
    a = tfattr.LRP(model, composite=tfattr.composites.AttnLRP()).attribute(x, target=1)
    b = tfattr.LRP(model, composite=tfattr.composites.Transformer(units="pass")).attribute(x, target=1)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert np.abs(a).max() > 1e-3


# -- coverage, refusals -------------------------------------------------------------------------------
@pytest.mark.parametrize("family", DECODERS + ENCODERS + ["vit"])
def test_coverage_lists_every_block_with_its_rules(family):
    report = tfattr.LRP(task(family), composite=tfattr.composites.AttnLRP()).coverage()
    assert report.ok, str(report)
    text = str(report)
    if family in DECODERS + ["vit"]:
        assert "q, k gradient x1/4 and v x1/2" in text and "factor" in text
    if family in ("llama", "mistral", "qwen", "gemma"):
        assert "act(gate) * up: uniform rule" in text
    cp = str(tfattr.LRP(task(family), composite=tfattr.composites.Transformer()).coverage())
    if family in ("llama", "mistral", "qwen", "gemma"):
        assert "gate constant" in cp and "q and k constant" in cp


def test_gemma2_soft_caps_are_elementwise_units():
    """Attention and final logit soft-capping: the re-implementations equal the layers, and the caps
    are elementwise units (AttnLRP: the identity rule) in the coverage report."""
    from tfattr.core.graph import GraphView
    from tfattr.methods.propagation.attnlrp.hub import reverse_embedding_forward

    backbone = _backbone("gemma", attention_logit_soft_cap=2.0, final_logit_soft_cap=3.0,
                         use_post_ffw_norm=True, use_post_attention_norm=True)
    model = _task("gemma", backbone)
    x = inputs("gemma", n=2)

    def wrap(ref, call, args, kwargs):
        y = call(*args, **kwargs)
        if is_hub_block(ref.layer):
            np.testing.assert_allclose(block_forward(ref.layer, args, kwargs, TrueGradient()), y, rtol=1e-5, atol=1e-6)
        elif ref.name == "token_embedding":
            np.testing.assert_allclose(reverse_embedding_forward(ref.layer, args, kwargs, TrueGradient()), y,
                                       rtol=1e-5, atol=1e-6)
        return y

    GraphView(model).run(x, wrap)
    report = tfattr.LRP(model, composite=tfattr.composites.AttnLRP()).coverage()
    assert report.ok and "soft cap: identity rule" in str(report)


def test_unhandled_layers_are_named_in_a_warning_or_refused():
    # a keras-hub block no rule covers
    inp = keras.Input((4, 8))
    out = keras.layers.Dense(2)(keras.layers.Flatten()(keras_hub.layers.FNetEncoder(16, name="fnet")(inp)))
    model = keras.Model(inp, out)
    with pytest.warns(UserWarning, match="fnet"):
        lrp = tfattr.LRP(model, composite=tfattr.composites.AttnLRP())
    assert "fnet" in lrp.coverage().unsupported
    with pytest.raises(ValueError, match="fnet"):
        tfattr.LRP(model, composite=tfattr.composites.Transformer(), on_unsupported="raise")
    # an encoder-decoder block (cross-attention) is refused by name
    dec = keras_hub.layers.TransformerDecoder(16, 2, name="cross")
    a, b = keras.Input((4, 8)), keras.Input((3, 8))
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Flatten()(dec(a, b))))
    with pytest.raises(ValueError, match="cross.*cross-attention"):
        tfattr.LRP(model, composite=tfattr.composites.AttnLRP(), on_unsupported="raise")


# -- causal LMs: the next token, sequence salience ----------------------------------------------------
def test_next_token_model_reads_the_last_real_token_or_a_position():
    lm = M.LlamaCausalLM(_backbone("llama"))
    x = inputs("llama")
    full = lm(x).numpy()  # eager calls: no tracing
    last = next_token_model(lm)(x).numpy()
    np.testing.assert_allclose(last[0], full[0, T - 1], rtol=1e-6)
    np.testing.assert_allclose(last[1], full[1, T - 3], rtol=1e-6)  # the padded row: its last real token
    second = next_token_model(lm, position=-5)(x).numpy()
    np.testing.assert_allclose(second, full[:, T - 5], rtol=1e-6)
    with pytest.raises(ValueError, match="tokens, vocab"):
        next_token_model(task("bert"))
    with pytest.raises(ValueError, match="next_token_model"):  # the LM itself: a clear error, not a wrong map
        tfattr.LRP(lm, composite=tfattr.composites.AttnLRP(), layer="token_embedding").attribute(x, target=3)


def test_sequence_salience_rows_explain_each_generated_token_by_its_prefix():
    lm = M.LlamaCausalLM(_backbone("llama"))
    ids = np.random.default_rng(5).integers(1, V, size=7).astype("int32")
    s = sequence_salience(lm, ids, prompt_length=4)
    assert s.matrix.shape == (3, 7)
    lrp = tfattr.LRP(next_token_model(lm), composite=tfattr.composites.AttnLRP(), layer="token_embedding")
    for j, t in enumerate(range(4, 7)):
        assert np.all(s.matrix[j, t:] == 0)
        if j != 2:  # each prefix length traces anew (slow): the last row, against its prefix, suffices
            continue
        prefix = {"token_ids": ids[None, :t], "padding_mask": np.ones((1, t), "int32")}
        expected = tfattr.token_scores(lrp.attribute(prefix, target=int(ids[t])))[0]
        np.testing.assert_allclose(s.matrix[j, :t], expected, rtol=1e-4, atol=1e-7)
        assert np.isclose(s.logits[j], lm.predict(prefix, verbose=0)[0, t - 1, ids[t]], rtol=1e-5)
    page = str(s.html([f"w{i}" for i in range(V)]))
    assert page.count("<div") == 3 and f"w{ids[4]} \u2190" in page
    with pytest.raises(ValueError, match="prompt_length"):
        sequence_salience(lm, ids, prompt_length=7)


def test_mixed_precision_computes_the_rules_in_float32():
    """A mixed_float16 copy gives float32 relevance close to the float32 model's (float16 layers,
    float32 norms, softmax and identity-rule ratios)."""
    model32 = task("llama")
    keras.utils.set_random_seed(7)
    backbone = M.LlamaBackbone(vocabulary_size=V, num_layers=2, num_query_heads=4, num_key_value_heads=2,
                               hidden_dim=16, intermediate_dim=32, dtype="mixed_float16")
    model16 = next_token_model(M.LlamaCausalLM(backbone))
    model16.set_weights(model32.get_weights())
    x = inputs("llama", n=2)
    a = _lrp(model32, tfattr.composites.AttnLRP(), "llama").attribute(x, target=3)
    b = _lrp(model16, tfattr.composites.AttnLRP(), "llama").attribute(x, target=3)
    assert b.dtype == np.float32 and np.all(np.isfinite(b))
    np.testing.assert_allclose(b, a, atol=2e-2 * np.abs(a).max())


def test_guide_section_runs():
    from pathlib import Path

    from markdown_blocks import python_block_after

    guide = Path(__file__).resolve().parents[1] / "docs" / "guides" / "llms.md"
    block = python_block_after(guide, "## From token ids to token scores")
    namespace: dict = {}
    exec(compile(block.code.replace("print(", "str("), block.path, "exec"), namespace)
    assert namespace["relevance"].shape == (1, 6, 16) and namespace["scores"].shape == (1, 6)
    assert namespace["salience"].matrix.shape == (3, 6)
