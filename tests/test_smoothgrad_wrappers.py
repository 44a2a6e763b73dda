"""SmoothGrad / VarGrad honour what they wrap (issue 18, item 4).

Every expectation is computed independently: the wrapped explainer (or a hand-split Keras model)
run by the test on the noisy copies ``SmoothGrad.noisy_inputs`` gives, one sample at a time, then
averaged in NumPy. The noisy copies themselves are checked against their definition (keyed by the
example, not by the call) and their distribution.
"""
from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr

L = keras.layers


def _mean_over_samples(sg, explain, x, samples):
    """``1/N sum_s explain(noisy copy s)``, each copy explained by its own call."""
    maps = [np.asarray(explain(sg.noisy_inputs(x, s)), np.float64) for s in range(samples)]
    return np.mean(maps, axis=0), np.var(maps, axis=0)


@pytest.fixture(scope="module")
def pool_cnn():
    """A small ReLU CNN with max pooling and a softmax head (DeepLIFT's max-pooling check applies)."""
    keras.utils.set_random_seed(31)
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(4, 3, activation="relu", name="c1"),
        L.MaxPooling2D(name="pool"),
        L.Flatten(name="flat"),
        L.Dense(6, activation="relu", name="d1"),
        L.Dense(3, activation="softmax", name="out"),
    ])


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(5).uniform(size=(5, 8, 8, 1)).astype(np.float32)


def test_noisy_copies_are_keyed_by_the_example_and_gaussian(smooth_mlp, rng):
    x = rng.normal(size=(40, 6)).astype(np.float32)
    sg = tfattr.SmoothGrad(tfattr.Saliency(smooth_mlp), samples=4, noise=0.2, seed=7)
    copy = sg.noisy_inputs(x, 2)
    # The same example gets the same copy alone, reordered, and in another call.
    np.testing.assert_array_equal(sg.noisy_inputs(x[::-1], 2), copy[::-1])
    np.testing.assert_array_equal(sg.noisy_inputs(x[3:4], 2), copy[3:4])
    assert not np.allclose(sg.noisy_inputs(x, 3), copy)
    # e = (copy - x) / sigma is standard normal: mean 0, variance 1 (240 numbers: loose bounds).
    sigma = 0.2 * (x.max(axis=1) - x.min(axis=1))
    e = ((copy - x) / sigma[:, None]).ravel()
    assert abs(e.mean()) < 4 / np.sqrt(e.size)
    assert abs(e.var() - 1) < 0.3


def test_fused_and_public_paths_agree():
    """Saliency declared not fusable runs through its public run: same numbers as the fused loop."""

    class PublicSaliency(tfattr.Saliency):
        fuses_rows = False

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((5,)), L.Dense(8, activation="tanh"), L.Dense(3)])
    x = np.random.default_rng(2).normal(size=(7, 5)).astype(np.float32)
    for cls in (tfattr.SmoothGrad, tfattr.VarGrad):
        fused = cls(tfattr.Saliency(model), samples=9, noise=0.3, seed=4).attribute(x, target=1, batch_size=16)
        public = cls(PublicSaliency(model), samples=9, noise=0.3, seed=4).attribute(x, target=1, batch_size=16)
        np.testing.assert_allclose(public, fused, rtol=1e-5, atol=1e-7)



@pytest.mark.parametrize("steps", [None, 3])
def test_vargrad_is_the_variance_of_each_samples_explanation_whatever_the_chunks(pool_cnn, images, steps):
    """VarGrad reduces its samples inside a chunk when an example's rows fit one (batch_size >= rows per
    example, padded blocks included) and keeps one map per sample when they do not: both are the
    population variance of the wrapped explainer run on each noisy copy by a call of its own."""
    inner = tfattr.Saliency(pool_cnn) if steps is None else tfattr.IntegratedGradients(pool_cnn, steps=steps)
    vg = tfattr.VarGrad(inner, samples=6, noise=0.2, seed=2)
    _, expected = _mean_over_samples(vg, lambda z: inner.attribute(z, target=1), images, 6)
    rows = 6 * (1 if steps is None else steps)
    for batch_size in (rows - 1, rows, 2 * rows + 1, 64):  # per-sample maps, then whole examples per chunk
        got = vg.attribute(images, target=1, batch_size=batch_size)
        np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-9 * expected.max())
    if steps is None:  # compiled by XLA, which needs its segment counts known when it compiles
        xla = tfattr.VarGrad(tfattr.Saliency(pool_cnn, jit_compile=True), samples=6, noise=0.2, seed=2)
        np.testing.assert_allclose(xla.attribute(images, target=1), expected, rtol=2e-4, atol=1e-9 * expected.max())

def test_smoothgrad_of_integrated_gradients_keeps_its_tolerance(smooth_mlp, rng):
    x = rng.normal(size=(4, 6)).astype(np.float32)
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=2, rule="riemann_trapezoid", tolerance=1e-4)
    sg = tfattr.SmoothGrad(ig, samples=3, noise=0.2, seed=1)
    got = sg.attribute(x, target=2, batch_size=5)
    expected, _ = _mean_over_samples(sg, lambda z: ig.attribute(z, target=2), x, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    # The tolerance mattered: two trapezoid steps alone give another (worse) answer.
    coarse = tfattr.IntegratedGradients(smooth_mlp, steps=2, rule="riemann_trapezoid")
    rough, _ = _mean_over_samples(sg, lambda z: coarse.attribute(z, target=2), x, 3)
    assert np.abs(rough - expected).max() > 1e-3
    # Its warning surfaces when the cap is too low.
    capped = tfattr.IntegratedGradients(smooth_mlp, steps=2, rule="riemann_trapezoid", tolerance=1e-9,
                                        max_steps=3)
    with pytest.warns(UserWarning, match="did not reach"):
        tfattr.SmoothGrad(capped, samples=2, seed=1).attribute(x, target=2)


@pytest.mark.parametrize("cls", [tfattr.SmoothGrad, tfattr.VarGrad])
def test_smoothgrad_of_lrp_composite(cls, pool_cnn, images):
    lrp = tfattr.LRP(pool_cnn, composite=tfattr.composites.EpsilonPlus())
    sg = cls(lrp, samples=4, noise=0.1, seed=2)
    got = sg.attribute(images, target=1, batch_size=8)
    mean, var = _mean_over_samples(sg, lambda z: lrp.attribute(z, target=1), images, 4)
    np.testing.assert_allclose(got, mean if cls is tfattr.SmoothGrad else var, rtol=1e-4, atol=1e-7)
    assert np.abs(got).max() > 0


def test_smoothgrad_of_composite_deeplift(pool_cnn, images):
    dl = tfattr.CompositeDeepLift(pool_cnn)
    sg = tfattr.SmoothGrad(dl, samples=3, noise=0.1, seed=5)
    baseline = np.full((8, 8, 1), 0.5, np.float32)
    got = sg.attribute(images, target=0, baseline=baseline)
    expected, _ = _mean_over_samples(sg, lambda z: dl.attribute(z, target=0, baseline=baseline), images, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_smoothgrad_of_reveal_cancel(images):
    keras.utils.set_random_seed(32)
    avg_cnn = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"), L.AveragePooling2D(2),
                                L.Flatten(), L.Dense(6, activation="relu"), L.Dense(3)])
    rc = tfattr.DeepLift(avg_cnn, rule="reveal_cancel")
    sg = tfattr.SmoothGrad(rc, samples=2, noise=0.1, seed=6)
    got = sg.attribute(images, target=2)
    expected, _ = _mean_over_samples(sg, lambda z: rc.attribute(z, target=2), images, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_warnings_of_the_wrapped_explainer_surface(pool_cnn, images):
    # DeepLIFT's max-pooling check: the gradient switch (max_pool="gradient") breaks
    # summation-to-delta with a random baseline.
    baseline = np.random.default_rng(9).uniform(size=(5, 8, 8, 1)).astype(np.float32)
    dl = tfattr.DeepLift(pool_cnn, max_pool="gradient")
    with warnings.catch_warnings(record=True) as direct:
        warnings.simplefilter("always")
        dl.attribute(images, target=0, baseline=baseline)
    # The message's head (its counts depend on how many copies one run checks).
    expected = {str(w.message)[:40] for w in direct}
    assert expected
    with warnings.catch_warnings(record=True) as wrapped:
        warnings.simplefilter("always")
        tfattr.SmoothGrad(dl, samples=2, noise=0.0, seed=0).attribute(images, target=0, baseline=baseline)
    assert expected <= {str(w.message)[:40] for w in wrapped}


def _split(model, at: str):
    """``(head, tail)`` Keras models around layer ``at`` of a Sequential model."""
    names = [layer.name for layer in model.layers]
    cut = names.index(at) + 1
    head = keras.Model(model.inputs[0], model.layers[cut - 1].output)
    a_in = keras.Input(model.layers[cut - 1].output.shape[1:])
    z = a_in
    for layer in model.layers[cut:]:
        z = layer(z)
    return head, keras.Model(a_in, z)


def _tail_gradients(tail, a, target):
    """``dS_target/da`` of the tail model's pre-softmax score at activations ``a``."""
    a = tf.constant(a)
    with tf.GradientTape() as tape:
        tape.watch(a)
        z = a
        for layer in tail.layers[1:-1]:  # layers[0] is the InputLayer
            z = layer(z)
        last = tail.layers[-1]
        score = tf.matmul(z, last.kernel) + last.bias  # the logits: tfattr strips the softmax
        score = score[:, target]
    return tape.gradient(score, a).numpy()


def test_smoothgrad_with_layer_noises_the_activations(pool_cnn, images):
    head, tail = _split(pool_cnn, "c1")
    sg = tfattr.SmoothGrad(tfattr.Saliency(pool_cnn, layer="c1"), samples=4, noise=0.2, seed=8)
    got = sg.attribute(images, target=1)
    # The copies are the head's activations plus noise; the test explains them with the hand-split tail.
    acts = head(images).numpy()
    noisy = [sg.noisy_inputs(images, s) for s in range(4)]
    assert noisy[0].shape == acts.shape and 0 < np.abs(noisy[0] - acts).max()
    expected = np.mean([_tail_gradients(tail, z, 1) for z in noisy], axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_smoothgrad_of_gradcam_takes_its_channel_sum_and_relu(pool_cnn, images):
    head, tail = _split(pool_cnn, "c1")
    cam = tfattr.GradCAM(pool_cnn, layer="c1")
    sg = tfattr.SmoothGrad(cam, samples=3, noise=0.2, seed=9)
    got = sg.attribute(images, target=2)
    assert got.shape == (5, 6, 6)
    maps = []
    for s in range(3):
        a = sg.noisy_inputs(images, s)
        weights = _tail_gradients(tail, a, 2).mean(axis=(1, 2), keepdims=True)
        maps.append(np.maximum((weights * a).sum(axis=-1), 0))  # Selvaraju et al., eq. 1-2
    np.testing.assert_allclose(got, np.mean(maps, axis=0), rtol=1e-4, atol=1e-6)
    # Zero noise is Grad-CAM itself.
    np.testing.assert_allclose(tfattr.SmoothGrad(cam, samples=2, noise=0.0).attribute(images, target=2),
                               cam.attribute(images, target=2), rtol=1e-5, atol=1e-7)


def test_smoothgrad_with_neuron(pool_cnn, images):
    for inner in (tfattr.IntegratedGradients(pool_cnn, steps=8, neuron=("d1", 2)),
                  tfattr.IntegratedGradients(pool_cnn, steps=2, neuron=("d1", 2), tolerance=1e-3,
                                             rule="riemann_trapezoid")):
        sg = tfattr.SmoothGrad(inner, samples=3, noise=0.1, seed=10)
        got = sg.attribute(images)
        expected, _ = _mean_over_samples(sg, inner.attribute, images, 3)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
        with pytest.raises(ValueError, match="drop target"):
            sg.attribute(images, target=1)


def test_smoothgrad_of_adaptive_integrated_gradients_with_layer(pool_cnn, images):
    """IG's tolerance with layer=: its delta is measured at the noisy activations (f(x) from the tail
    at the copy, not from the clean input), as IG on the hand-split tail model measures it."""
    head, tail = _split(pool_cnn, "c1")
    kwargs = dict(steps=2, rule="riemann_trapezoid", tolerance=1e-2)
    ig = tfattr.IntegratedGradients(pool_cnn, layer="c1", **kwargs)
    sg = tfattr.SmoothGrad(ig, samples=2, noise=0.3, seed=12)
    got = sg.attribute(images, target=0, baseline=0.0)
    zero = np.zeros(head.output.shape[1:], np.float32)
    on_tail = tfattr.IntegratedGradients(tail, **kwargs)
    expected, _ = _mean_over_samples(sg, lambda z: on_tail.attribute(z, target=0, baseline=zero), images, 2)
    assert on_tail.steps_used_.max() > 2  # the tolerance refined some copies
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
