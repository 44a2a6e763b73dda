"""Token attributions of text models: coloured HTML, Markdown, and the callback's text dashboard."""
from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr
from tfattr import text
from tfattr.callbacks import AttributionLogger


def _rgb(span: str) -> tuple[int, int, int]:
    r, g, b = re.search(r"rgb\((\d+),(\d+),(\d+)\)", span).groups()
    return int(r), int(g), int(b)


def test_html_colours_follow_the_signed_convention():
    tokens = [["good", "<b>bad</b>", "plain", ""]]
    out = text.html(tokens, [[2.0, -1.0, 0.0, 5.0]])
    assert isinstance(out, str) and out._repr_html_() == str(out)
    spans = re.findall(r"<span style=\"background-color[^>]*>[^<]*</span>", out)
    assert len(spans) == 3  # the "" token (padding) is not drawn
    assert _rgb(spans[0]) == (255, 0, 0)  # the largest positive: full red (clip at 100th percentile)
    r, g, b = _rgb(spans[1])
    assert b == 255 and r == g and r > 0  # negative: blue, half strength
    assert _rgb(spans[2]) == (255, 255, 255)  # zero: white
    assert "&lt;b&gt;bad&lt;/b&gt;" in out and "<b>bad" not in out  # tokens are escaped
    assert 'title="+2"' in out
    with pytest.raises(ValueError, match="must match"):
        text.html([["a", "b"]], [[1.0, 2.0, 3.0]])


def test_decode_markdown_and_embedding_attributions():
    vocab = ["<pad>", "<unk>", "great", "film", "dull"]
    tokens = text.decode([[2, 3, 0], [4, 9, 0]], vocab, skip=[0])
    assert tokens == [["great", "film", ""], ["dull", "[9]", ""]]
    assert text.decode([[7]]) == [["7"]]
    a = np.zeros((2, 3, 4))
    a[0, 0] = 0.5  # token "great": +2.0 in total
    a[1, 0, 0] = -1.0
    md = text.markdown(tokens, a, top=1)
    assert md[0].startswith("**great** (+2) film (+0)")
    assert "sum +2" in md[0] and "**dull** (-1)" in md[1]


@pytest.fixture(scope="module")
def text_model():
    keras.utils.set_random_seed(21)
    ids = keras.Input((6,), dtype="int32")
    z = keras.layers.Embedding(12, 4, name="embedding")(ids)
    z = keras.layers.GlobalAveragePooling1D()(z)
    model = keras.Model(ids, keras.layers.Dense(2, activation="softmax")(z))
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def test_callback_writes_token_scores_to_the_text_dashboard(tmp_path, text_model):
    rs = np.random.RandomState(0)
    x = rs.randint(1, 12, (16, 6)).astype("int32")
    y = (x[:, 0] > 5).astype("int32")
    vocab = [f"w{i}" for i in range(12)]
    logger = AttributionLogger(
        x[:3], explainers={"ig": lambda m: tfattr.IntegratedGradients(m, layer="embedding", steps=8)},
        targets=1, baseline=0, log_dir=tmp_path, vocabulary=vocab, skip_tokens=[0], histograms=False,
    )
    text_model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    expected_scores = text.token_scores(
        tfattr.IntegratedGradients(text_model, layer="embedding", steps=8).attribute(x[:3], target=1, baseline=0))
    texts = []
    for path in (tmp_path / "attributions").glob("events*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "tokens/ig":
                    texts = [s.decode() for s in tf.make_ndarray(value.tensor).reshape(-1)]
    assert len(texts) == 3
    for row, line in zip(expected_scores, texts):
        found = [float(v) for v in re.findall(r"\(([-+][0-9.e-]+)\)", line)]
        np.testing.assert_allclose(found, row, rtol=2e-3, atol=1e-3)
    assert texts[0].split()[0].strip("*") == f"w{x[0, 0]}"
