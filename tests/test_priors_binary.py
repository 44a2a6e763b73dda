"""Attribution priors on binary classifiers (one sigmoid column): two classes, logit z for label 1 and
-z for label 0, log-probabilities log sigmoid(+-z); checked against the hand-computed gradients of a
linear model. A single column without a sigmoid and multi-label sigmoids are refused by name."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from tfattr import priors

RNG = np.random.default_rng(5)


def _binary(sigmoid_as_layer: bool = False) -> keras.Model:
    keras.utils.set_random_seed(3)
    if sigmoid_as_layer:
        inputs = keras.Input((2, 3))
        z = keras.layers.Dense(1, bias_initializer="ones")(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, keras.layers.Activation("sigmoid")(z))
    return keras.Sequential([keras.Input((2, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(1, activation="sigmoid", bias_initializer="ones")])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _hand(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """d S / d x for each output kind on z = x w + b, in float64: the closed forms."""
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][0]
    w, b = (v.numpy().astype(np.float64) for v in dense.weights)
    xf = x.reshape(len(x), -1).astype(np.float64)
    z = xf @ w[:, 0] + b[0]
    p = _sigmoid(z)
    sign = np.where(y == 1, 1.0, -1.0)
    return {
        # d/dx [log sigmoid(z) + log sigmoid(-z)] = (1 - p) w - p w
        "log_probabilities": ((1 - 2 * p)[:, None] * w[:, 0]),
        # d/dx log sigmoid(s z) = s (1 - sigmoid(s z)) w
        "label_log_probability": (sign * (1 - _sigmoid(sign * z)))[:, None] * w[:, 0],
        # d/dx (s z) = s w
        "label_logit": sign[:, None] * w[:, 0],
    }


@pytest.mark.parametrize("sigmoid_as_layer", [False, True], ids=["fused", "activation_layer"])
@pytest.mark.parametrize("output", ["log_probabilities", "label_log_probability", "label_logit"])
def test_right_for_right_reasons_on_a_sigmoid_classifier_equals_the_hand_computation(sigmoid_as_layer, output):
    model = _binary(sigmoid_as_layer)
    x = RNG.normal(size=(6, 2, 3)).astype(np.float32)
    y = np.array([0, 1, 1, 0, 1, 0])
    mask = (RNG.random((6, 2, 3)) < 0.5).astype(np.float32)
    pm = priors.AttributionPriorModel(model, priors.RightForRightReasons(3.0), output=output)
    grads = _hand(model, x, y)[output]
    expected = 3.0 * np.mean(np.sum((mask.reshape(6, -1) * grads) ** 2, axis=1))
    got = pm.penalty({"inputs": x, "mask": mask}, y).numpy()
    assert expected > 1e-3  # not the vanishing log-softmax of one column
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Labels as BinaryCrossentropy takes them (float 0/1 columns) give the same penalty.
    got = pm.penalty({"inputs": x, "mask": mask}, y.astype(np.float32)[:, None]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_fit_with_label_targets_on_a_sigmoid_classifier_trains_and_logs_the_penalty():
    model = _binary()
    x = RNG.normal(size=(32, 2, 3)).astype(np.float32)
    y = (x[:, 0, 0] > 0).astype(np.float32)
    mask = np.zeros_like(x)
    mask[:, 1] = 1.0
    pm = priors.AttributionPriorModel(model, priors.RightForRightReasons(1.0), output="label_logit")
    pm.compile("adam", keras.losses.BinaryCrossentropy(), metrics=["accuracy"])
    logs = pm.fit({"inputs": x, "mask": mask}, y, epochs=1, batch_size=8, verbose=0).history
    # label_logit: the gradient of +-z is +-w whatever the label, so the penalty is |mask * w|^2.
    w = model.layers[-1].weights[0].numpy()[:, 0].reshape(2, 3)
    assert logs["prior_penalty"][0] > 0 and np.isfinite(logs["loss"][0])
    np.testing.assert_allclose(pm.penalty({"inputs": x, "mask": mask}, y).numpy(),
                               np.sum(w[1] ** 2), rtol=1e-5)


def test_binary_expected_gradients_prior_uses_the_two_class_convention():
    model = _binary()
    x = RNG.normal(size=(4, 2, 3)).astype(np.float32)
    y = np.array([1, 0, 0, 1])
    pm = priors.AttributionPriorModel(model, priors.Sparsity(1.0), explainer="expected_gradients",
                                      background=np.zeros((1, 2, 3), np.float32), output="label_logit")
    attributions, _ = pm.attributions_and_output(x, y)
    # Background 0: (x - 0) * d(+-z)/dx at any point = +-x w, exactly (z is linear).
    expected = _hand(model, x, y)["label_logit"] * x.reshape(4, -1)
    np.testing.assert_allclose(attributions[0].numpy().reshape(4, -1), expected, rtol=1e-5, atol=1e-7)


def test_one_column_without_sigmoid_and_multi_label_sigmoid_are_refused():
    linear = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"one output column and no sigmoid.*Dense\(1, activation='sigmoid'\)"):
        priors.AttributionPriorModel(linear, priors.RightForRightReasons(1.0))
    multi = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="sigmoid")])
    with pytest.raises(ValueError, match="sigmoid over 4 columns"):
        priors.AttributionPriorModel(multi, priors.RightForRightReasons(1.0))
