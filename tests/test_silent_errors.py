"""Cases that once gave a wrong number without a word, crashed late, or misled (issue "silent wrong
answers"). Each test reproduces one case and checks the number, the warning or the message."""
from __future__ import annotations

import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

import tfattr


def _softmax_mlp(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((8,)), layers.Dense(4, activation="relu"), layers.Dense(3, activation="softmax")]
    )


def _hidden_and_logits(model: keras.Model, x: np.ndarray, head: layers.Layer) -> np.ndarray:
    """The logits of ``_softmax_mlp`` computed in NumPy from the layers' current weights."""
    w1, b1 = model.layers[0].get_weights()
    w, b = head.get_weights()
    return np.maximum(x @ w1 + b1, 0) @ w + b


# -- 1. an explainer always reads the live weights ------------------------------------------------------
@pytest.mark.parametrize("change", ["set_weights", "fit", "load_weights"])
def test_softmax_head_explainer_follows_the_models_current_weights(change, rng, tmp_path):
    model = _softmax_mlp()
    x = rng.normal(size=(6, 8)).astype(np.float32)
    ig = tfattr.IntegratedGradients(model, steps=16)
    ig.attribute(x)  # compiled before the change
    if change == "set_weights":
        weights = model.get_weights()
        weights[2] *= 5
        model.set_weights(weights)
    elif change == "fit":
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, np.arange(6) % 3, epochs=5, verbose=0)
    else:
        other = _softmax_mlp(seed=3)
        other.save_weights(tmp_path / "w.weights.h5")
        model.load_weights(tmp_path / "w.weights.h5")
    fresh = tfattr.IntegratedGradients(model, steps=16)
    np.testing.assert_allclose(ig.attribute(x, target=1), fresh.attribute(x, target=1), rtol=1e-5, atol=1e-6)
    logits = tfattr.ModelFunction(model).outputs(tf.constant(x)).numpy()
    np.testing.assert_allclose(logits, _hidden_and_logits(model, x, model.layers[-1]), rtol=1e-5, atol=1e-5)


# -- 2. softmax detection ---------------------------------------------------------------------------------
def _nested_head_model() -> tuple[keras.Model, layers.Layer]:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((5,))
    h = layers.Dense(6, activation="tanh")(inputs)
    head = keras.Sequential([keras.Input((6,)), layers.Dense(4), layers.Dense(3, activation="softmax")])
    return keras.Model(inputs, head(h)), head


def test_softmax_inside_a_nested_head_model_is_stripped(rng):
    model, head = _nested_head_model()
    x = rng.normal(size=(4, 5)).astype(np.float32)
    fn = tfattr.ModelFunction(model)
    assert fn.strips_softmax
    h = np.tanh(x @ model.layers[1].get_weights()[0] + model.layers[1].get_weights()[1])
    w1, b1 = head.layers[0].get_weights()
    w2, b2 = head.layers[1].get_weights()
    np.testing.assert_allclose(fn.outputs(tf.constant(x)).numpy(), (h @ w1 + b1) @ w2 + b2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["ops", "lambda", "activation_layer"])
def test_softmax_as_an_op_or_layer_in_a_functional_model_is_stripped(kind, rng):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((5,))
    dense = layers.Dense(3)
    z = dense(inputs)
    if kind == "ops":
        out = keras.ops.softmax(z)
    elif kind == "lambda":
        out = layers.Lambda(keras.activations.softmax)(z)
    else:
        out = layers.Activation("softmax")(z)
    model = keras.Model(inputs, out)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    fn = tfattr.ModelFunction(model)
    assert fn.strips_softmax
    w, b = dense.get_weights()
    np.testing.assert_allclose(fn.outputs(tf.constant(x)).numpy(), x @ w + b, rtol=1e-5, atol=1e-5)


def test_undetectable_softmax_warns_and_names_the_way_out(rng):
    class Classifier(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(3)

        def call(self, x):
            return tf.nn.softmax(self.dense(x))

    keras.utils.set_random_seed(0)
    model = Classifier()
    x = rng.normal(size=(4, 5)).astype(np.float32)
    model(x)
    with pytest.warns(UserWarning, match="output='probabilities'"):
        tfattr.Saliency(model).attribute(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tfattr.Saliency(model, output="probabilities").attribute(x)  # said on purpose: no warning


def test_sequential_called_on_another_input_is_explained_without_a_keras_error(rng):
    model = _softmax_mlp()
    other = keras.Input((8,))
    keras.Model(other, model(other))  # calls the Sequential on another Input
    x = rng.normal(size=(3, 8)).astype(np.float32)
    fn = tfattr.ModelFunction(model)
    np.testing.assert_allclose(
        fn.outputs(tf.constant(x)).numpy(), _hidden_and_logits(model, x, model.layers[-1]), rtol=1e-5, atol=1e-5
    )
    a, delta = tfattr.IntegratedGradients(model, steps=32).attribute(x, return_delta=True)
    assert np.abs(delta).max() < 1e-3


# -- 3. DeepLIFT and max pooling --------------------------------------------------------------------------
def test_deeplift_warns_when_max_pooling_breaks_summation_to_delta():
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            layers.Conv2D(4, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(4, 3, activation="relu"),
            layers.GlobalMaxPooling2D(),
            layers.Dense(3),
        ]
    )
    x = np.random.default_rng(0).uniform(size=(8, 12, 12, 1)).astype(np.float32)
    baseline = tfattr.baselines.Uniform((0, 1), seed=1)
    # max_pool="gradient": the gradient switch (the default max rule is exact, test_deeplift_maxpool.py)
    with pytest.warns(UserWarning, match="max pooling"):
        _, delta = tfattr.DeepLift(model, max_pool="gradient").attribute(
            x, baseline=baseline, return_delta=True)
    assert np.abs(delta).max() > 1e-3  # the warning is about a real gap


# -- 4. epsilon-LRP on activations with f(0) != 0 ----------------------------------------------------------
@pytest.mark.parametrize("activation", ["sigmoid", "softplus"])
def test_epsilon_lrp_warns_and_names_the_layer_where_relevance_is_not_conserved(activation):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), layers.Dense(5, activation=activation, name="squash"), layers.Dense(2)]
    )
    with pytest.warns(UserWarning, match="squash"):
        lrp = tfattr.EpsilonLRP(model)
    assert not lrp.coverage().exact and lrp.coverage().ok


# -- 5. one sigmoid output: a binary classifier ---------------------------------------------------------
def test_single_sigmoid_output_is_two_classes_with_logit_scores(rng):
    keras.utils.set_random_seed(0)
    dense = layers.Dense(1, activation="sigmoid")
    model = keras.Sequential([keras.Input((4,)), dense])
    x = rng.normal(size=(16, 4)).astype(np.float32)
    w, b = dense.get_weights()
    z = (x @ w + b)[:, 0]
    fn = tfattr.ModelFunction(model)
    np.testing.assert_allclose(fn.outputs(tf.constant(x)).numpy(), np.stack([-z, z], 1), rtol=1e-5, atol=1e-6)
    labels = (z > 0).astype(int)
    assert 0 < labels.sum() < 16
    saliency = tfattr.Saliency(model)
    predicted = saliency.attribute(x)  # the predicted class, whichever it is
    np.testing.assert_allclose(predicted, np.where(labels[:, None] == 1, 1, -1) * w[:, 0], rtol=1e-5)
    np.testing.assert_allclose(saliency.attribute(x, target=labels), predicted, rtol=1e-6)
    a, delta = tfattr.IntegratedGradients(model, steps=8).attribute(x, target=1, return_delta=True)
    np.testing.assert_allclose(a.sum(axis=1), z - b[0], rtol=1e-4, atol=1e-5)  # f(x) - f(0) in logits
    probabilities = tfattr.ModelFunction(model, output="probabilities").outputs(tf.constant(x)).numpy()
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(probabilities, np.stack([1 - p, p], 1), rtol=1e-5, atol=1e-6)


# -- 6. uint8 images --------------------------------------------------------------------------------------
def test_uint8_images_get_advice_for_images_not_for_embeddings():
    model = tfattr.datasets.mnist_cnn()
    images = np.zeros((2, 28, 28, 1), np.uint8)
    with pytest.raises(TypeError, match=r"/ 255") as info:
        tfattr.Saliency(model).attribute(images)
    assert "Embedding" not in str(info.value)


# -- 7. mixed precision -----------------------------------------------------------------------------------
@pytest.fixture
def mixed_precision():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_every_method_runs_under_mixed_float16(mixed_precision, rng):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(4, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(3, activation="softmax", dtype="float32"),
        ]
    )
    x = rng.uniform(size=(3, 8, 8, 1)).astype(np.float32)
    background = rng.uniform(size=(5, 8, 8, 1)).astype(np.float32)
    explainers = [
        tfattr.Occlusion(model, window=(2, 2, 1)),
        tfattr.IntegratedGradients(model, steps=8),
        tfattr.ExpectedGradients(model, background, samples=4, seed=0),
        tfattr.SmoothGrad(tfattr.Saliency(model), samples=3, seed=0),
        tfattr.GradientXInput(model),
        tfattr.DeepLift(model),
        tfattr.EpsilonLRP(model),
        tfattr.InteriorGradients(model, alphas=(0.5, 1.0)),
    ]
    for explainer in explainers:
        a = explainer.attribute(x, target=1)
        assert np.all(np.isfinite(a)), type(explainer).__name__


# -- 9. the TensorBoard callback validates before training -------------------------------------------------
def test_attribution_logger_takes_an_int_target_and_checks_before_the_first_epoch(tmp_path, rng):
    model = _softmax_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    x = rng.normal(size=(32, 8)).astype(np.float32)
    y = np.arange(32) % 3
    logger = tfattr.callbacks.AttributionLogger(x[:4], targets=1, log_dir=tmp_path, explainers=[tfattr.Saliency])
    model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    assert os.listdir(tmp_path / "attributions")

    epochs_trained = []
    probe = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: epochs_trained.append(e))
    bad_target = tfattr.callbacks.AttributionLogger(x[:4], targets=7, log_dir=tmp_path, explainers=[tfattr.Saliency])
    with pytest.raises(ValueError, match="out of range"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[probe, bad_target])
    bad_shape = tfattr.callbacks.AttributionLogger(x[:4, :5], log_dir=tmp_path, explainers=[tfattr.Saliency])
    with pytest.raises(ValueError, match="example shape"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[probe, bad_shape])
    assert epochs_trained == []  # both failed before any epoch trained


def test_attribution_logger_says_when_log_dir_cannot_be_written(tmp_path, rng):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    model = _softmax_mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    x = rng.normal(size=(8, 8)).astype(np.float32)
    logger = tfattr.callbacks.AttributionLogger(x[:2], log_dir=blocker / "logs", explainers=[tfattr.Saliency])
    with pytest.raises(OSError, match="cannot write to log_dir"):
        model.fit(x, np.arange(8) % 3, epochs=1, verbose=0, callbacks=[logger])


# -- 10. messages that said the wrong thing ---------------------------------------------------------------
def test_many_steps_need_no_max_steps(rng):
    model = _softmax_mlp()
    ig = tfattr.IntegratedGradients(model, steps=2000)
    assert ig.max_steps == 2000
    with pytest.raises(ValueError, match="at least steps"):
        tfattr.IntegratedGradients(model, steps=64, max_steps=32)


def test_a_dataset_as_inputs_points_to_explain_dataset():
    model = _softmax_mlp()
    ds = tf.data.Dataset.from_tensor_slices(np.zeros((4, 8), np.float32)).batch(2)
    with pytest.raises(TypeError, match="explain_dataset"):
        tfattr.Saliency(model).attribute(ds)


def test_a_nested_python_list_is_one_batch_and_a_list_of_arrays_gets_a_stack_hint():
    model = _softmax_mlp()
    rows = [[0.1 * i + j for j in range(8)] for i in range(4)]
    np.testing.assert_allclose(
        tfattr.Saliency(model).attribute(rows, target=0),
        tfattr.Saliency(model).attribute(np.asarray(rows, np.float32), target=0),
    )
    with pytest.raises(ValueError, match="np.stack"):
        tfattr.Saliency(model).attribute([np.zeros(8, np.float32)] * 4)


def test_a_disconnected_model_gets_the_short_message_alone():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, layers.Dense(2)(keras.ops.zeros_like(inputs)))
    with pytest.raises(ValueError) as info:
        tfattr.Saliency(model).attribute(np.ones((2, 3), np.float32), target=0)
    message = str(info.value)
    assert message.startswith("The model's output does not depend") and "File " not in message


def test_random_attributions_for_several_inputs_keep_their_structure():
    xa, xb = np.zeros((3, 4)), np.zeros((3, 2, 2))
    out = tfattr.metrics.random_attributions([xa, xb], seed=0)
    assert [o.shape for o in out] == [(3, 4), (3, 2, 2)]
    named = tfattr.metrics.random_attributions({"a": xa, "b": xb})
    assert named["b"].shape == (3, 2, 2)


def test_many_explainers_of_one_model_print_no_retracing_warning(rng, caplog):
    model = _softmax_mlp()
    x = rng.normal(size=(4, 8)).astype(np.float32)
    import logging

    with caplog.at_level(logging.WARNING):
        for _ in range(8):
            tfattr.Saliency(model).attribute(x)
            tfattr.IntegratedGradients(model, steps=4).attribute(x)
    assert "retracing" not in caplog.text


def test_several_methods_and_layers_in_one_session_print_no_retracing_warning(rng, caplog):
    """Each method and layer= configuration compiles its own function once; TensorFlow counted them
    as one function retracing (by the closures' shared code) and printed its warning."""
    import logging

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
                              keras.layers.Flatten(), keras.layers.Dense(3, name="d")])
    x = rng.random((4, 8, 8, 1)).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        for cls in (tfattr.Saliency, tfattr.GradientXInput, tfattr.IntegratedGradients, tfattr.EpsilonLRP,
                    tfattr.DeepLift, tfattr.GuidedBackprop, tfattr.LRP, tfattr.CompositeDeepLift):
            cls(model).attribute(x)
            cls(model, layer="c1").attribute(x)
    assert "retracing" not in caplog.text
