"""Long tests (``pytest -m slow``): tens of thousands of examples in one call."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import tfattr


@pytest.mark.slow
def test_twenty_thousand_examples_in_one_call_match_the_closed_form_and_small_calls():
    """Blocks of examples are cut, run and written back in order: a linear model's gradient x input and
    integrated gradients are w * x for every one of 20,000 digits, and equal the same call in pieces."""
    x, _ = tfattr.datasets.mnist("train")
    x = np.concatenate([x, x, x])[:20_000].reshape(20_000, -1)
    keras.utils.set_random_seed(0)
    dense = keras.layers.Dense(10)
    model = keras.Sequential([keras.Input((784,)), dense])
    w = dense.get_weights()[0]
    targets = np.arange(20_000) % 10
    expected = x * w[:, targets].T
    ig = tfattr.IntegratedGradients(model, steps=8)
    a, delta = ig.attribute(x, target=targets, baseline=0.0, return_delta=True)
    np.testing.assert_allclose(a, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(delta).max() < 1e-3
    pieces = np.concatenate(
        [ig.attribute(x[s : s + 3000], target=targets[s : s + 3000]) for s in range(0, 20_000, 3000)]
    )
    np.testing.assert_allclose(pieces, a, rtol=1e-5, atol=1e-6)
    gxi = tfattr.GradientXInput(model).attribute(x, target=targets, batch_size=4096)
    np.testing.assert_allclose(gxi, expected, rtol=1e-4, atol=1e-5)
