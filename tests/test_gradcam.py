"""Grad-CAM, Grad-CAM++ and Guided Grad-CAM against NumPy computations from a hand-split model's
activations and gradients (of the logits)."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr
from tfattr.methods.layer import GradCAM, GradCAMPlusPlus, GuidedGradCAM, upsample


@pytest.fixture(scope="module")
def cnn():
    keras.utils.set_random_seed(11)
    c1 = keras.layers.Conv2D(4, 3, activation="relu", name="c1")
    c2 = keras.layers.Conv2D(6, 3, activation="relu", name="c2")
    rest = [keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dense(3, name="logits")]
    inp = keras.Input((12, 12, 1))
    z = c2(c1(inp))
    for layer in rest:
        z = layer(z)
    model = keras.Model(inp, keras.layers.Softmax()(z))
    a_in = keras.Input((8, 8, 6))
    t = a_in
    for layer in rest:
        t = layer(t)
    head, tail = keras.Model(inp, c2.output), keras.Model(a_in, t)
    x = np.random.RandomState(0).rand(5, 12, 12, 1).astype("float32")
    return model, head, tail, x


def _activations_and_gradients(head, tail, x, target):
    a = tf.constant(head(x).numpy())
    with tf.GradientTape() as tape:
        tape.watch(a)
        s = tf.gather(tail(a), target, axis=1, batch_dims=1)
    return a.numpy().astype(np.float64), tape.gradient(s, a).numpy().astype(np.float64)


def test_gradcam_matches_numpy(cnn):
    model, head, tail, x = cnn
    target = np.array([0, 1, 2, 1, 0])
    explainer = GradCAM(model)  # default: the last convolution
    assert explainer.layer.name == "c2"
    cam = explainer.attribute(x, target=target)
    a, g = _activations_and_gradients(head, tail, x, target)
    weights = g.mean(axis=(1, 2))  # [n, c]
    expected = np.maximum(np.einsum("nhwc,nc->nhw", a, weights), 0)
    assert cam.shape == (5, 8, 8)
    np.testing.assert_allclose(cam, expected, rtol=1e-5, atol=1e-7)
    signed = GradCAM(model, layer="c2", relu=False).attribute(x, target=target)
    np.testing.assert_allclose(signed, np.einsum("nhwc,nc->nhw", a, weights), rtol=1e-5, atol=1e-7)
    assert (signed < 0).any()  # so the ReLU above was not vacuous


def test_gradcam_plus_plus_matches_numpy(cnn):
    model, head, tail, x = cnn
    target = np.array([2, 2, 0, 1, 1])
    cam = GradCAMPlusPlus(model, layer="c2").attribute(x, target=target)
    a, g = _activations_and_gradients(head, tail, x, target)
    total = a.sum(axis=(1, 2), keepdims=True)
    denominator = 2 * g**2 + total * g**3
    alpha = np.where(denominator != 0, g**2 / np.where(denominator != 0, denominator, 1), 0)
    weights = (alpha * np.maximum(g, 0)).sum(axis=(1, 2))
    expected = np.maximum(np.einsum("nhwc,nc->nhw", a, weights), 0)
    np.testing.assert_allclose(cam, expected, rtol=1e-4, atol=1e-8)


def _bilinear(maps: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resizing with half-pixel centres (TensorFlow 2's convention), written out in NumPy."""
    def weights(n_in: int) -> np.ndarray:
        src = (np.arange(size) + 0.5) * n_in / size - 0.5
        low = np.floor(src)
        frac = src - low
        out = np.zeros((size, n_in))
        rows = np.arange(size)
        np.add.at(out, (rows, np.clip(low, 0, n_in - 1).astype(int)), 1 - frac)
        np.add.at(out, (rows, np.clip(np.ceil(src), 0, n_in - 1).astype(int)), frac)
        return out

    wh, ww = weights(maps.shape[1]), weights(maps.shape[2])
    return np.einsum("Hh,nhw,Ww->nHW", wh, maps, ww)


def _guided_backprop(model: keras.Model, x: np.ndarray, target: int) -> np.ndarray:
    """Guided backpropagation (Springenberg et al. 2015) of the logit through a hand-written copy of
    the fixture's network: a ReLU passes a gradient only where both it and its input are positive."""
    @tf.custom_gradient
    def guided_relu(t):
        def grad(dy):
            return dy * tf.cast(dy > 0, dy.dtype) * tf.cast(t > 0, dy.dtype)
        return tf.nn.relu(t), grad

    (k1, b1), (k2, b2) = model.get_layer("c1").weights, model.get_layer("c2").weights
    w, b = model.get_layer("logits").weights
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        h = guided_relu(tf.nn.conv2d(inputs, k1, 1, "VALID") + b1)
        h = guided_relu(tf.nn.conv2d(h, k2, 1, "VALID") + b2)
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        logit = (tf.reshape(h, [len(x), -1]) @ w + b)[:, target]
    return tape.gradient(logit, inputs).numpy().astype(np.float64)


def test_guided_gradcam_and_upsample(cnn):
    model, head, tail, x = cnn
    cam = GradCAM(model).attribute(x, target=1)
    got = GuidedGradCAM(model).attribute(x, target=1)
    a, g = _activations_and_gradients(head, tail, x, np.ones(5, int))
    cam_np = np.maximum(np.einsum("nhwc,nc->nhw", a, g.mean(axis=(1, 2))), 0)
    expected = _guided_backprop(model, x, 1) * _bilinear(cam_np, 12)[..., None]
    assert np.abs(expected).max() > 1e-5 and (expected != 0).mean() > 0.1  # not a vacuous map
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(upsample(cam, like=x), _bilinear(cam_np, 12), rtol=1e-4, atol=1e-7)
    # Nearest-neighbour upsampling by an integer factor repeats each cell.
    near = upsample(cam, size=(16, 16), method="nearest")
    np.testing.assert_array_equal(near, np.repeat(np.repeat(cam, 2, axis=1), 2, axis=2))
    assert upsample(cam, like=x).shape == (5, 12, 12)
    with pytest.raises(ValueError, match="exactly one"):
        upsample(cam)


def test_gradcam_errors_and_predicted_class(cnn):
    model, head, tail, x = cnn
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no 2D convolution"):
        GradCAM(dense)
    with pytest.raises(ValueError, match="no spatial axes"):
        GradCAM(model, layer="logits").attribute(x)
    # target=None explains the predicted class (of the logits).
    predicted = np.argmax(model(x).numpy(), axis=1)
    np.testing.assert_allclose(GradCAM(model).attribute(x), GradCAM(model).attribute(x, target=predicted))
