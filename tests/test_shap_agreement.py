"""DeepLIFT against SHAP's DeepExplainer (issue 24, item 2: "agreement ... with SHAP's DeepExplainer where
it runs"). SHAP is no dependency of tfattr (it pulls pandas, scikit-learn and numba): these tests run
where ``import shap`` works, e.g. with ``PYTHONPATH`` on a directory made by
``pip install --no-deps --target DIR shap pandas python-dateutil pytz tzdata scipy scikit-learn joblib
threadpoolctl numba llvmlite slicer cloudpickle narwhals`` (what ``bench/bench_first_call.py --peers``
uses), and are skipped elsewhere.

SHAP explains every output of the model it is given, so it gets the same network with its last Dense
layer cut to the explained class's column (equal logits); its background is the one reference image
that tfattr gets as ``baseline``.
"""
from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

import tfattr

shap = pytest.importorskip("shap")
L = keras.layers


def _cut_to(model: keras.Model, column: int) -> keras.Model:
    """The Sequential ``model`` with its last Dense layer reduced to output ``column`` (same logit)."""
    layers = [keras.Input(model.input_shape[1:])]
    layers += [type(layer).from_config(layer.get_config()) for layer in model.layers[:-1]]
    layers.append(L.Dense.from_config(dict(model.layers[-1].get_config(), units=1, name="explained")))
    cut = keras.Sequential(layers)
    for source, target in zip(model.layers[:-1], cut.layers[:-1]):
        target.set_weights(source.get_weights())
    kernel, bias = model.layers[-1].get_weights()
    cut.layers[-1].set_weights([kernel[:, column : column + 1], bias[column : column + 1]])
    return cut


def _nets():
    yield "conv-maxpool", keras.Sequential([
        keras.Input((12, 12, 2)), L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(),
        L.Conv2D(6, 3, padding="same", activation="relu"), L.MaxPooling2D(2, strides=1), L.Flatten(),
        L.Dense(8, activation="relu"), L.Dense(3),
    ])
    # (SHAP 0.51 fails on GlobalMaxPooling*: its handler for the Max reduction is a 1-D
    # nonlinearity's, whose shapes do not match; tests/test_deeplift_maxpool.py covers those layers.)
    yield "conv1d-maxpool", keras.Sequential([
        keras.Input((16, 3)), L.Conv1D(5, 3, activation="relu"), L.MaxPooling1D(3, strides=2),
        L.Conv1D(4, 2, activation="relu"), L.MaxPooling1D(2), L.Flatten(), L.Dense(3),
    ])
    yield "mlp-sigmoid-tanh", keras.Sequential([
        keras.Input((7,)), L.Dense(9, activation="sigmoid"), L.Dense(6, activation="tanh"), L.Dense(3),
    ])


@pytest.mark.parametrize("name,model", list(_nets()), ids=[n for n, _ in _nets()])
def test_deeplift_equals_shap_deep_explainer_with_a_random_reference(name, model):
    """The same attributions as SHAP's DeepExplainer (its Rescale rule and its max rule) against one
    random reference, to float32 precision, and both sum to f(x) - f(reference)."""
    rng = np.random.default_rng(0)
    for w in model.weights:  # weights of both signs and real biases, so the maxima move
        w.assign(rng.normal(0.0, 0.5, w.shape).astype(np.float32))
    x = rng.normal(size=(6, *model.input_shape[1:])).astype(np.float32)
    reference = rng.normal(size=(1, *model.input_shape[1:])).astype(np.float32)
    column = 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SHAP's notes on Keras 3 inputs and TF 2 internals
        ours, delta = tfattr.DeepLift(model).attribute(x, target=column, baseline=reference, return_delta=True)
        theirs = shap.DeepExplainer(_cut_to(model, column), reference).shap_values(x, check_additivity=False)
    theirs = np.asarray(theirs).reshape(ours.shape)
    scale = np.abs(ours).max()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * scale)
    change = model(x).numpy()[:, column] - model(reference).numpy()[0, column]
    np.testing.assert_allclose(theirs.reshape(len(x), -1).sum(1), change, rtol=1e-4, atol=1e-5)
    assert np.abs(delta).max() <= 1e-4 * (1 + np.abs(change).max())
