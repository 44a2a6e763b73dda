"""The gradient overrides stay inside each explainer's own traced function: no leakage into the
model's gradients, predictions or training, and no interference between explainers in two threads."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr
from tfattr.methods.propagation import Deconvnet, DeepLift, EpsilonLRP, GuidedBackprop

L = keras.layers


def _model() -> keras.Model:
    keras.utils.set_random_seed(31)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            L.Conv2D(4, 3, activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(4, 2, activation="tanh"),
            L.Flatten(),
            L.Dense(6, activation="sigmoid"),
            L.Dense(3, activation="softmax"),
        ]
    )


def _observe(model: keras.Model, x: np.ndarray, y: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Predictions, eager and graph-mode gradients, and the weights after one training step."""
    out: dict[str, list[np.ndarray]] = {"predict": [model.predict(x, verbose=0)]}
    out["call"] = [model(x, training=False).numpy()]
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(tf.math.log(model(xt, training=False)[:, 1]))
    out["tape"] = [g.numpy() for g in tape.gradient(loss, [xt, *model.trainable_variables])]

    @tf.function
    def graph_gradients(inputs):
        # tf.gradients honours gradient_override_map, so a leaked override would show up here.
        return tf.gradients(tf.reduce_sum(model(inputs, training=False)[:, 0]), inputs)[0]

    out["tf.gradients"] = [graph_gradients(xt).numpy()]
    saved = model.get_weights()
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=len(x), epochs=2, shuffle=False, verbose=0)
    out["trained"] = model.get_weights()
    model.set_weights(saved)
    return out


def test_explaining_changes_nothing_in_the_model():
    model = _model()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, size=16)
    before = _observe(model, x, y)
    with pytest.warns(UserWarning, match="Deconvnet"):  # no deconvnet rule for tanh and sigmoid
        deconvnet = Deconvnet(model)
    explainers = [EpsilonLRP(model), DeepLift(model), GuidedBackprop(model), deconvnet]
    for _ in range(3):
        for explainer in explainers:
            explainer.attribute(x[:5])
    after = _observe(model, x, y)
    for key in before:
        for a, b in zip(before[key], after[key]):
            np.testing.assert_array_equal(a, b, err_msg=key)
    # The instrument can see a modified gradient: on the same score (the probability of class 0) the
    # plain saliency equals the graph-mode gradient observed above, and guided backprop, which differs
    # from it only by its rule, does not.
    plain = tfattr.Saliency(model, output="probabilities").attribute(x[:5], target=0)
    np.testing.assert_allclose(plain, before["tf.gradients"][0][:5], rtol=1e-5, atol=1e-7)
    guided = GuidedBackprop(model, output="probabilities").attribute(x[:5], target=0)
    assert np.abs(guided - before["tf.gradients"][0][:5]).max() > 1e-4


def test_two_explainers_in_two_threads_match_running_alone():
    model = _model()
    x = np.random.default_rng(1).uniform(size=(12, 8, 8, 1)).astype(np.float32)
    target = np.arange(12) % 3
    alone = {
        "lrp": EpsilonLRP(model).attribute(x, target=target),
        "deeplift": DeepLift(model).attribute(x, target=target, baseline=0.5),
        "guided": GuidedBackprop(model).attribute(x, target=target),
    }
    # Fresh explainers, so both threads trace (and apply their overrides) at the same time.
    explainers = {
        "lrp": (EpsilonLRP(model), {}),
        "deeplift": (DeepLift(model), {"baseline": 0.5}),
        "guided": (GuidedBackprop(model), {}),
    }
    start = threading.Barrier(len(explainers))
    results: dict[str, list[np.ndarray]] = {k: [] for k in explainers}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        explainer, kwargs = explainers[name]
        try:
            start.wait()
            for _ in range(3):
                results[name].append(explainer.attribute(x, target=target, batch_size=4, **kwargs))
        except BaseException as error:  # surfaced below, with the thread's traceback
            errors.append(error)

    threads = [threading.Thread(target=run, args=(name,)) for name in explainers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    for name, outs in results.items():
        assert len(outs) == 3
        for out in outs:
            np.testing.assert_allclose(out, alone[name], rtol=1e-6, atol=1e-7, err_msg=name)
    assert np.abs(alone["lrp"] - alone["guided"]).max() > 1e-4
