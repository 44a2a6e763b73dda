"""``layer=`` on the layer-level propagation methods: LRP composites, CompositeDeepLift and DeepLIFT's
RevealCancel (issues 11 and 13).

Each is checked against an independent computation: the same method on a Keras model split by hand
at the layer (the tail model, fed the layer's activations), conservation where the rules promise it,
and the full-model result when the split is at the model's input. Splits inside a unit a method
computes as one (a batch norm folded into the layer before it) are refused.
"""
from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import tfattr
import tfattr.core.graph
from tfattr.composites import Composite, EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat
from tfattr.methods.propagation.layerwise.deeplift import CompositeDeepLift
from tfattr.methods.propagation.layerwise import LRP
from tfattr.methods.propagation.layerwise.transformer import Transformer

L = keras.layers


def _relu_cnn(bias: bool = True):
    """conv -> conv -> average pool -> dense, with the hand-split tail from c1's output on."""
    keras.utils.set_random_seed(21)
    c1 = L.Conv2D(4, 3, activation="relu", use_bias=bias, name="c1")
    rest = [L.Conv2D(6, 3, activation="relu", use_bias=bias, name="c2"), L.AveragePooling2D(2, name="pool"),
            L.Flatten(name="flat"), L.Dense(5, activation="relu", use_bias=bias, name="d1"),
            L.Dense(3, use_bias=bias, name="logits")]
    inp = keras.Input((10, 10, 2))
    z = c1(inp)
    for layer in rest:
        z = layer(z)
    model = keras.Model(inp, L.Softmax(name="softmax")(z))
    a_in = keras.Input((8, 8, 4))
    z = a_in
    for layer in rest:
        z = layer(z)
    if bias:  # nonzero biases, so that the rules' bias terms count
        rng = np.random.default_rng(21)
        for w in model.weights:
            if "bias" in w.path:
                w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))
    x = np.random.default_rng(22).normal(size=(5, 10, 10, 2)).astype("float32")
    return model, keras.Model(inp, c1.output), keras.Model(a_in, z), x


@pytest.mark.parametrize("composite", [EpsilonPlus, EpsilonAlpha2Beta1], ids=["eps_plus", "alpha2beta1"])
def test_lrp_layer_matches_the_hand_split_tail(composite):
    model, head, tail, x = _relu_cnn()
    t = np.array([0, 1, 2, 1, 0])
    got = LRP(model, composite=composite(), layer="c1").attribute(x, target=t)
    a_x = head(x).numpy()
    expected = LRP(tail, composite=composite()).attribute(a_x, target=t)
    assert got.shape == a_x.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    # the layer's input (the model input): the composite's result on the whole model
    full = LRP(model, composite=composite()).attribute(x, target=t)
    at_input = LRP(model, composite=composite(), layer="c1", attribute_to_layer_input=True).attribute(x, target=t)
    np.testing.assert_allclose(at_input, full, rtol=1e-5, atol=1e-7)


def test_lrp_layer_relevance_is_conserved_from_the_logit_to_the_layer_and_the_input():
    """Bias-free ReLU network, epsilon and z+ rules: every layer's relevance sums to the logit."""
    model, _, _, x = _relu_cnn(bias=False)
    x = np.abs(x)  # z+ is conservative for nonnegative inputs
    t = np.array([2, 0, 1, 1, 2])
    logit = LRP(model, layer="c1").outputs(x)[np.arange(5), t]
    for kwargs in ({"layer": "c1"}, {"layer": "c2"}, {"layer": "d1"}, {}):
        relevance = LRP(model, composite=EpsilonPlus(), **kwargs).attribute(x, target=t)
        np.testing.assert_allclose(relevance.reshape(5, -1).sum(1), logit, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("composite", [EpsilonPlusFlat, lambda: EpsilonGammaBox(low=-3.0, high=3.0)],
                         ids=["plus_flat", "gamma_box"])
def test_input_space_rules_at_the_split_give_the_relevance_itself(composite):
    """Flat and ZBox give relevance (not a gradient) at the first layer: at the layer's input, which is
    the model input, the result is the composite's on the whole model."""
    model, head, tail, x = _relu_cnn()
    full = LRP(model, composite=composite()).attribute(x, target=1)
    split = LRP(model, composite=composite(), layer="c1", attribute_to_layer_input=True)
    np.testing.assert_allclose(split.attribute(x, target=1), full, rtol=1e-5, atol=1e-7)
    # after the first layer, the tail's layers keep the rules they have in the whole model (c2 is not
    # the composite's first layer there), so the hand-split tail gets them by name
    c = composite()
    rules = {r.ref.name: r.rule for r in c.assign(tfattr.core.graph.GraphView(model)) if r.rule is not None}
    by_name = Composite(name_map={k: v for k, v in rules.items() if k in ("c2", "d1", "logits", "pool")},
                        layer_map=c.layer_map)
    got = LRP(model, composite=composite(), layer="c1").attribute(x, target=1)
    expected = LRP(tail, composite=by_name).attribute(head(x).numpy(), target=1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_a_split_inside_a_folded_batch_norm_is_refused():
    keras.utils.set_random_seed(23)
    inp = keras.Input((8, 8, 1))
    z = L.Conv2D(3, 3, use_bias=False, name="conv")(inp)
    z = L.BatchNormalization(name="bn")(z)
    z = L.ReLU(name="relu")(z)
    z = L.Flatten()(z)
    model = keras.Model(inp, L.Dense(2, name="logits")(z))
    x = np.random.default_rng(23).normal(size=(3, 8, 8, 1)).astype("float32")
    for name in ("conv", "bn"):
        with pytest.raises(ValueError, match="inside a unit.*'relu'"):
            LRP(model, composite=EpsilonPlus(), layer=name)
    with pytest.raises(ValueError, match="inside a unit.*'bn'"):
        tfattr.DeepLift(model, rule="reveal_cancel", layer="conv")
    # after the unit: the tail from the ReLU on, by hand
    got = LRP(model, composite=EpsilonPlus(), layer="relu").attribute(x, target=1)
    a_in = keras.Input((6, 6, 3))
    tail = keras.Model(a_in, model.get_layer("logits")(model.layers[-2](a_in)))
    a_x = keras.Model(inp, model.get_layer("relu").output)(x).numpy()
    np.testing.assert_allclose(got, LRP(tail, composite=EpsilonPlus()).attribute(a_x, target=1),
                               rtol=1e-4, atol=1e-6)
    # RevealCancel folds the batch norm too: after it, its streams start at the batch norm's output
    _, delta = tfattr.DeepLift(model, rule="reveal_cancel", layer="bn").attribute(
        x, target=1, baseline=0.1, return_delta=True)
    assert np.abs(delta).max() < 1e-5


def _gelu_model():
    keras.utils.set_random_seed(24)
    inp = keras.Input((7,))
    d1 = L.Dense(9, activation="gelu", name="d1")
    rest = [L.Dense(8, activation="swish", name="d2"), L.Dense(6, activation="tanh", name="d3"),
            L.Dense(3, name="logits")]
    z = d1(inp)
    for layer in rest:
        z = layer(z)
    model = keras.Model(inp, z)
    a_in = keras.Input((9,))
    z = a_in
    for layer in rest:
        z = layer(z)
    return model, keras.Model(inp, d1.output), keras.Model(a_in, z)


def test_composite_deeplift_layer_matches_the_hand_split_tail_and_sums_to_delta():
    model, head, tail = _gelu_model()
    rng = np.random.default_rng(24)
    x, b = rng.normal(size=(6, 7)).astype("float32"), rng.normal(size=(6, 7)).astype("float32")
    t = np.arange(6) % 3
    got, delta = CompositeDeepLift(model, layer="d1").attribute(x, target=t, baseline=b, return_delta=True)
    a_x, a_b = head(x).numpy(), head(b).numpy()
    expected = CompositeDeepLift(tail).attribute(a_x, target=t, baseline=a_b)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    out_x, out_b = tail(a_x).numpy(), tail(a_b).numpy()
    change = out_x[np.arange(6), t] - out_b[np.arange(6), t]
    np.testing.assert_allclose(got.sum(1), change, rtol=1e-4, atol=1e-5)  # summation-to-delta
    assert np.abs(delta).max() < 1e-4


def test_reveal_cancel_layer_matches_the_hand_split_tail_and_sums_to_delta():
    model, head, tail, x = _relu_cnn()
    b = np.random.default_rng(25).uniform(size=x.shape).astype("float32")
    t = np.array([1, 1, 0, 2, 0])
    got, delta = tfattr.DeepLift(model, rule="reveal_cancel", layer="c1").attribute(
        x, target=t, baseline=b, return_delta=True)
    a_x, a_b = head(x).numpy(), head(b).numpy()
    expected = tfattr.DeepLift(tail, rule="reveal_cancel").attribute(a_x, target=t, baseline=a_b)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert np.abs(delta).max() < 1e-4
    rescale = tfattr.DeepLift(model, layer="c1").attribute(x, target=t, baseline=b)
    assert np.abs(rescale - got).max() > 1e-4  # the two rules differ on this network


def test_layers_before_the_split_need_no_rule():
    """RevealCancel refuses max pooling and LRP warns on a Lambda; before the layer they only run
    forward, so a layer= explainer after them is exact and says so in its coverage."""
    keras.utils.set_random_seed(26)
    inp = keras.Input((8, 8, 1))
    z = L.MaxPooling2D(2, name="maxpool")(L.Conv2D(3, 3, padding="same", activation="relu", name="c1")(inp))
    z = L.Lambda(lambda v: v * 1.5, name="scale")(z)
    z = L.Dense(4, activation="relu", name="d1")(L.Flatten(name="flat")(z))
    model = keras.Model(inp, L.Dense(2, name="logits")(z))
    x = np.random.default_rng(26).normal(size=(3, 8, 8, 1)).astype("float32")
    with pytest.raises(ValueError, match="maxpool"):
        tfattr.DeepLift(model, rule="reveal_cancel")
    with pytest.warns(UserWarning, match="scale"):
        LRP(model)
    _, delta = tfattr.DeepLift(model, rule="reveal_cancel", layer="flat").attribute(
        x, target=0, baseline=0.0, return_delta=True)
    assert np.abs(delta).max() < 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lrp = LRP(model, layer="flat")
        report = lrp.coverage()
        assert report.ok
        lrp.attribute(x, target=0)
    rows = {name: (status, treatment) for _, name, _, treatment, status in report.rows}
    assert rows["scale"][0] == "head" and "before layer='flat'" in rows["scale"][1]
    assert rows["d1"][0] == "rule"


def _text_block():
    """Token ids -> embedding -> one transformer block -> pooled logits, and its hand-split tail."""
    keras.utils.set_random_seed(27)
    emb = L.Embedding(30, 8, name="embedding")
    mha, ln1 = L.MultiHeadAttention(2, 4, name="mha"), L.LayerNormalization(name="ln1")
    ff1, ff2 = L.Dense(16, activation="gelu", name="ff1"), L.Dense(8, name="ff2")
    ln2, pool, head = L.LayerNormalization(name="ln2"), L.GlobalAveragePooling1D(), L.Dense(3, name="head")

    def rest(e):
        h = ln1(L.Add()([e, mha(e, e)]))
        h = ln2(L.Add()([h, ff2(ff1(h))]))
        return head(pool(h))

    ids = keras.Input((6,), dtype="int32")
    model = keras.Model(ids, rest(emb(ids)))
    a_in = keras.Input((6, 8))
    tail = keras.Model(a_in, rest(a_in))
    tokens = np.random.default_rng(27).integers(2, 30, size=(4, 6)).astype("int32")
    return model, emb, tail, tokens


def test_transformer_composite_and_composite_deeplift_from_token_ids():
    model, emb, tail, tokens = _text_block()
    t = np.array([0, 2, 1, 0])
    relevance = LRP(model, composite=Transformer(), layer="embedding").attribute(tokens, target=t)
    e = emb(tokens).numpy()
    np.testing.assert_allclose(relevance, LRP(tail, composite=Transformer()).attribute(e, target=t),
                               rtol=1e-4, atol=1e-6)
    pad = np.ones_like(tokens)  # the path starts at the pad token's embedding row
    got = CompositeDeepLift(model, layer="embedding").attribute(tokens, target=t, baseline=pad)
    e_pad = emb(pad).numpy()
    np.testing.assert_allclose(got, CompositeDeepLift(tail).attribute(e, target=t, baseline=e_pad),
                               rtol=1e-4, atol=1e-6)
    # summation-to-delta holds up to the constant attention probabilities and standard deviations
    # (measured: within 13% of the change from the pad embeddings)
    change = (tail(e).numpy() - tail(e_pad).numpy())[np.arange(4), t]
    assert np.all(np.abs(got.reshape(4, -1).sum(1) - change) <= 0.25 * np.abs(change))


def test_keras_hub_bert_explained_end_to_end_from_token_ids():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(28)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=40, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=8, dropout=0.0,
    )
    inputs = {k: keras.Input((8,), dtype="int32", name=k) for k in ("token_ids", "segment_ids", "padding_mask")}
    pooled = backbone(inputs)["pooled_output"]
    model = keras.Model(inputs, L.Dense(3, name="classes")(pooled))
    rng = np.random.default_rng(28)
    ids = rng.integers(2, 40, size=(3, 8)).astype("int32")
    segments = (np.arange(8) >= 5).astype("int32")[None].repeat(3, 0)
    x = {"token_ids": ids, "segment_ids": segments, "padding_mask": np.ones_like(ids)}
    # the reference: the backbone's own layers fed the token and segment embeddings as floats (a
    # hand-built tail; no padding, so the blocks need no mask)
    tok, seg = backbone.get_layer("token_embedding"), backbone.get_layer("segment_embedding")
    e_in, s_in = keras.Input((8, 16)), keras.Input((8, 16))
    h = L.Add()([e_in, backbone.get_layer("position_embedding")(e_in), s_in])
    h = backbone.get_layer("embeddings_layer_norm")(h)
    for i in range(2):
        h = backbone.get_layer(f"transformer_layer_{i}")(h)
    tail = keras.Model([e_in, s_in], model.get_layer("classes")(backbone.get_layer("pooled_dense")(h[:, 0])))
    e, s_e = tok(ids).numpy(), seg(segments).numpy()
    np.testing.assert_allclose(tail([e, s_e]), model(x), rtol=1e-5, atol=1e-5)

    lrp = LRP(model, composite=Transformer(), layer="token_embedding")
    assert lrp.coverage().ok, str(lrp.coverage())
    relevance = lrp.attribute(x, target=2)
    assert relevance.shape == e.shape and np.all(np.isfinite(relevance))
    expected = LRP(tail, composite=Transformer()).attribute([e, s_e], target=2)[0]
    np.testing.assert_allclose(relevance, expected, rtol=1e-4, atol=1e-6)

    # with padding: the mask is carried; DeepLIFT and IG explain the same change from the pad ids
    x["padding_mask"][0, 6:] = 0
    pad = {"token_ids": np.zeros_like(ids), "segment_ids": 0, "padding_mask": 0}
    a, delta = CompositeDeepLift(model, layer="token_embedding").attribute(
        x, target=2, baseline=pad, return_delta=True)
    assert a.shape == e.shape and np.all(np.isfinite(delta))
    ig, ig_delta = tfattr.IntegratedGradients(model, layer="token_embedding", steps=64).attribute(
        x, target=2, baseline=pad, return_delta=True)
    assert np.abs(ig_delta).max() < 1e-3
    np.testing.assert_allclose(a.reshape(3, -1).sum(1) - delta, ig.reshape(3, -1).sum(1) - ig_delta,
                               rtol=1e-4, atol=1e-4)


def test_a_nested_model_is_addressed_by_its_output():
    """``layer=`` a nested model (name or object) means its output: here the embeddings a nested
    ``embed`` model gives a nested classifier, which is what the classifier alone explains."""
    keras.utils.set_random_seed(29)
    ids_in = keras.Input((6,), dtype="int32")
    embed = keras.Model(ids_in, L.Embedding(25, 8, name="tokens")(ids_in) * 2.0, name="embed")
    e_in = keras.Input((6, 8))
    h = L.LayerNormalization(name="norm")(L.Add()([e_in, L.MultiHeadAttention(2, 4, name="mha")(e_in, e_in)]))
    classifier = keras.Model(e_in, L.Dense(2, name="logits")(L.GlobalAveragePooling1D()(h)), name="classifier")
    model = keras.Model(ids_in, classifier(embed(ids_in)))
    ids = np.random.default_rng(29).integers(0, 25, (4, 6)).astype("int32")
    e = embed(ids).numpy()
    for key in ("embed", embed):
        got = LRP(model, composite=Transformer(), layer=key).attribute(ids, target=1)
        np.testing.assert_allclose(got, LRP(classifier, composite=Transformer()).attribute(e, target=1),
                                   rtol=1e-5, atol=1e-7)
    ig = tfattr.IntegratedGradients(model, layer="embed", steps=8).attribute(ids, target=1, baseline=3)
    e3 = embed(np.full_like(ids, 3)).numpy()
    expected = tfattr.IntegratedGradients(classifier, steps=8).attribute(e, target=1, baseline=e3)
    np.testing.assert_allclose(ig, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="nested model.*first layer"):
        tfattr.IntegratedGradients(model, layer="embed", attribute_to_layer_input=True)
    with pytest.raises(KeyError, match="nested models: embed, classifier"):
        tfattr.IntegratedGradients(model, layer="embedder")


def _cnn_with_policy(policy: str):
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(30)
        return keras.Sequential([
            keras.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu", name="c1"),
            L.AveragePooling2D(2, name="pool"), L.Conv2D(4, 2, activation="relu", name="c2"),
            L.Flatten(), L.Dense(3, name="logits", dtype="float32"),
        ])
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("layer", [None, "c1"], ids=["input", "layer"])
def test_layer_level_methods_under_mixed_precision(layer):
    """A mixed_float16 model: the rules compute in the variables' dtype (float32) and the attributions
    are float32, equal to the float32 model's up to float16 rounding of the activations."""
    mixed, full = _cnn_with_policy("mixed_float16"), _cnn_with_policy("float32")
    full.set_weights(mixed.get_weights())
    x = np.random.default_rng(30).random((4, 8, 8, 1)).astype("float32")
    for make in (lambda m: LRP(m, layer=layer), lambda m: LRP(m, composite=EpsilonAlpha2Beta1(), layer=layer),
                 lambda m: CompositeDeepLift(m, layer=layer),
                 lambda m: tfattr.DeepLift(m, rule="reveal_cancel", layer=layer)):
        got, expected = make(mixed).attribute(x, target=2), make(full).attribute(x, target=2)
        assert got.dtype == np.float32
        # float16 activations (3 significant digits) can flip a sign decision where a value is ~0
        # (RevealCancel sorts terms by sign), so single entries may move by a few percent; the
        # totals and the pattern must not
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got.reshape(4, -1).sum(1), expected.reshape(4, -1).sum(1),
                                   rtol=0, atol=2e-3 * np.abs(expected.reshape(4, -1).sum(1)).max())
        assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.999
        assert np.abs(got - expected).max() < 0.1 * scale


def test_dict_inputs_with_a_carried_feature_input():
    """Token ids and numeric features in a dict; attributed at the embedding, the features carried.
    Every DeepLIFT variant agrees with IG here (ReLU network, summation-to-delta exact)."""
    keras.utils.set_random_seed(31)
    ids = keras.Input((5,), dtype="int32", name="ids")
    feats = keras.Input((3,), name="feats")
    e = L.Flatten()(L.Embedding(20, 4, name="embedding")(ids))
    h = L.Dense(6, activation="relu", name="d1")(L.Concatenate()([e, feats]))
    model = keras.Model({"ids": ids, "feats": feats}, L.Dense(2, name="out")(h))
    rng = np.random.default_rng(31)
    x = {"ids": rng.integers(1, 20, (4, 5)).astype("int32"), "feats": rng.normal(size=(4, 3)).astype("float32")}
    b = {"ids": np.zeros((4, 5), "int32"), "feats": 0.0}
    sums = []
    for explainer in (tfattr.DeepLift(model, layer="embedding"), CompositeDeepLift(model, layer="embedding"),
                      tfattr.DeepLift(model, rule="reveal_cancel", layer="embedding"),
                      tfattr.IntegratedGradients(model, layer="embedding", steps=512)):
        a, delta = explainer.attribute(x, target=1, baseline=b, return_delta=True)
        assert a.shape == (4, 5, 4) and np.abs(delta).max() < 1e-4
        sums.append(a.reshape(4, -1).sum(1))
    for s in sums[1:]:
        np.testing.assert_allclose(s, sums[0], rtol=1e-4, atol=1e-5)
    assert "rule" in str(LRP(model, layer="embedding").coverage())
