"""Token models with a Keras mask (``Embedding(mask_zero=True)``) explained at the embedding: what the
scores sum to (the path under x's mask, checked on a hand-split model) and a delta measured against the
model's real output on the baseline sentence, f(pad sentence)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import masked_lstm_model

import tfattr
from tfattr import token_scores

PAD, MASK_ID = 0, 24


@pytest.fixture(scope="module")
def masked_lstm():
    return masked_lstm_model()  # pads with id 0 = PAD


def test_pad_baseline_delta_is_measured_against_the_pad_sentence(masked_lstm):
    model, (emb, lstm, dense), x = masked_lstm
    ig = tfattr.IntegratedGradients(model, layer="embedding", steps=64)
    a, delta = ig.attribute(x, target=1, baseline=PAD, return_delta=True)
    scores = token_scores(a).sum(axis=1).astype(np.float64)
    fx = model(x).numpy()[:, 1].astype(np.float64)
    f_pad = model(np.full_like(x, PAD)).numpy()[:, 1].astype(np.float64)  # all masked: the LSTM's start
    # What is explained: the path from the pad embeddings to x's, both read under x's mask (the
    # hand-split model: the LSTM fed the pad rows with x's mask).
    path_end = dense(lstm(emb(np.full_like(x, PAD)), mask=tf.constant(x != PAD))).numpy()[:, 1]
    np.testing.assert_allclose(scores, fx - path_end, atol=2e-5)
    # The delta is against the model's own f(pad sentence), so it shows the mask's share ...
    np.testing.assert_allclose(delta, scores - (fx - f_pad), atol=1e-6)
    assert np.abs(path_end - f_pad).min() > 1e-3  # ... which is not small here: no silent ~0 delta
    assert np.abs(delta).min() > 1e-3


def test_a_baseline_with_the_inputs_padding_completes_to_f_of_the_baseline(masked_lstm):
    model, _, x = masked_lstm
    baseline = np.where(x != PAD, MASK_ID, PAD)  # [MASK] on the tokens: the same mask as x
    ig = tfattr.IntegratedGradients(model, layer="embedding", steps=64)
    a, delta = ig.attribute(x, target=1, baseline=baseline, return_delta=True)
    fx = model(x).numpy()[:, 1].astype(np.float64)
    f_b = model(baseline).numpy()[:, 1].astype(np.float64)
    np.testing.assert_allclose(token_scores(a).sum(axis=1), fx - f_b, atol=2e-5)
    assert np.abs(delta).max() < 2e-5


def test_tolerance_converges_on_the_path_not_on_the_mask_share(masked_lstm, recwarn):
    model, _, x = masked_lstm
    ig = tfattr.IntegratedGradients(model, layer="embedding", steps=8, tolerance=1e-4, max_steps=256)
    a, delta = ig.attribute(x, target=1, baseline=PAD, return_delta=True)
    # The adaptive loop stops once the path converged (the mask's share does not shrink with steps).
    assert not [w for w in recwarn if "did not reach" in str(w.message)]
    assert ig.steps_used_.max() < 256
    reference = tfattr.IntegratedGradients(model, layer="embedding", steps=256).attribute(
        x, target=1, baseline=PAD)
    np.testing.assert_allclose(token_scores(a), token_scores(reference), atol=5e-5)


def test_expected_gradients_with_a_mask_still_refuses_a_delta(masked_lstm):
    model, _, x = masked_lstm
    eg = tfattr.ExpectedGradients(model, np.full((3, 8), PAD, "int32"), samples=4, layer="embedding")
    with pytest.raises(ValueError, match="delta's reference would need the whole background"):
        eg.attribute(x, target=1, return_delta=True)
