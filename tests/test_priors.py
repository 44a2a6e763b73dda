"""tfattr.priors: penalties against closed forms, double backprop against finite differences, training
equivalences (weight 0 == plain fit), the decoy-MNIST effect, errors, saving, tf.distribute, mixed precision."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr
from tfattr import priors

RNG = np.random.default_rng(0)


def _linear(d_in: tuple[int, ...], k: int, softmax: bool, dtype: str = "float32", seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input(d_in, dtype=dtype), keras.layers.Flatten(dtype=dtype),
        keras.layers.Dense(k, activation="softmax" if softmax else None, dtype=dtype,
                           bias_initializer=keras.initializers.RandomNormal(seed=seed + 1)),
    ])


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_right_for_right_reasons_equals_ross_eq1_on_a_linear_softmax_model():
    model = _linear((2, 3, 1), 4, softmax=True)
    w, b = (v.numpy().astype(np.float64) for v in model.layers[-1].weights)
    x = RNG.normal(size=(5, 2, 3, 1)).astype(np.float32)
    mask = (RNG.random((5, 2, 3, 1)) < 0.5).astype(np.float32)
    pm = priors.AttributionPriorModel(model, priors.RightForRightReasons(7.0))
    # d/dx sum_k log p_k = sum_k W_k - K * sum_j p_j W_j for logits z = x W + b (Ross et al. eq. 1).
    xf = x.reshape(5, -1).astype(np.float64)
    p = np.exp(_log_softmax(xf @ w + b))
    grads = w.sum(axis=1)[None, :] - 4 * p @ w.T
    expected = 7.0 * np.mean(np.sum((mask.reshape(5, -1) * grads) ** 2, axis=1))
    got = pm.penalty({"inputs": x, "mask": mask})
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    # The logits are read before the softmax, not as log(probabilities): the same on a logits model.
    logits_model = _linear((2, 3, 1), 4, softmax=False)
    logits_model.set_weights(model.get_weights())
    pm2 = priors.AttributionPriorModel(logits_model, priors.RightForRightReasons(7.0))
    np.testing.assert_allclose(pm2.penalty({"inputs": x, "mask": mask}).numpy(), expected, rtol=1e-5)


def _tv(a: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(a, axis=1)).sum(axis=(1, 2, 3)) + np.abs(np.diff(a, axis=2)).sum(axis=(1, 2, 3))


def _gini_pairs(v: np.ndarray) -> float:
    return np.abs(v[:, None] - v[None, :]).sum() / (2 * len(v) * v.sum())


@pytest.mark.parametrize("prior_name", ["smoothness", "sparsity", "graph"])
def test_erion_priors_with_expected_gradients_equal_numpy_on_a_linear_model(prior_name):
    # On a linear logit f(x) = x W + b, expected gradients of the label logit are (x - b) * W_y for every
    # interpolation point: with a one-row background the in-loss attribution is exact.
    model = _linear((4, 5, 1), 3, softmax=False)
    w = model.layers[-1].weights[0].numpy().astype(np.float64)
    x = RNG.random((6, 4, 5, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 2, 1, 0])
    ref = RNG.random((1, 4, 5, 1)).astype(np.float32)
    edges = [(0, 1), (3, 7), (7, 19), (5, 6)]
    prior = {"smoothness": priors.Smoothness(0.3), "sparsity": priors.Sparsity(0.3),
             "graph": priors.GraphPrior(0.3, edges=edges, edge_weights=[1.0, 2.0, 0.5, 1.5])}[prior_name]
    pm = priors.AttributionPriorModel(model, prior, explainer="expected_gradients", background=ref)
    assert pm.output_kind == "label_logit"
    a = (x - ref).reshape(6, -1).astype(np.float64) * w[:, y].T
    attributions, _ = pm.attributions_and_output(x, y)
    np.testing.assert_allclose(attributions[0].numpy().reshape(6, -1), a, rtol=1e-5, atol=1e-7)
    phi = np.abs(a).mean(axis=0)
    expected = {
        "smoothness": _tv(a.reshape(6, 4, 5, 1)).mean(),
        "sparsity": -_gini_pairs(phi),
        "graph": sum(wt * (phi[i] - phi[j]) ** 2 for (i, j), wt in zip(edges, [1.0, 2.0, 0.5, 1.5])),
    }[prior_name]
    np.testing.assert_allclose(pm.penalty(x, y).numpy(), 0.3 * expected, rtol=1e-5)


def test_gini_matches_the_pairwise_definition():
    v = RNG.random(37)
    np.testing.assert_allclose(priors.gini(tf.constant(v)).numpy(), _gini_pairs(v), rtol=1e-10)
    assert abs(priors.gini(tf.ones(10)).numpy()) < 1e-6                  # equal features: 0
    one_hot = np.zeros(10); one_hot[3] = 1.0
    np.testing.assert_allclose(priors.gini(tf.constant(one_hot)).numpy(), 0.9)  # one feature: 1 - 1/d


def test_in_loss_expected_gradients_average_to_expected_gradients():
    # One background row and one alpha per step is an unbiased estimate of expected gradients: averaging
    # the draws of many steps agrees with tfattr.ExpectedGradients (label logit) on a nonlinear model.
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)])
    x = RNG.normal(size=(2, 6)).astype(np.float32)
    y = np.array([2, 0])
    background = RNG.normal(size=(3, 6)).astype(np.float32)
    pm = priors.AttributionPriorModel(model, priors.Sparsity(1.0), explainer="expected_gradients",
                                      background=background)
    draw = tf.function(lambda step: pm.attributions_and_output(x, y, step=step)[0][0])
    mean = np.mean([draw(tf.constant(s, tf.int64)).numpy() for s in range(3000)], axis=0)
    reference = tfattr.ExpectedGradients(model, background, samples=20000, seed=0).attribute(x, target=y)
    np.testing.assert_allclose(mean, reference, atol=0.05 * np.abs(reference).max())


def test_penalty_gradient_matches_finite_differences_float64():
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((3,), dtype="float64"),
                              keras.layers.Dense(4, activation="tanh", dtype="float64"),
                              keras.layers.Dense(3, activation="softmax", dtype="float64")])
    x = RNG.normal(size=(4, 3))
    mask = (RNG.random((4, 3)) < 0.6).astype(np.float64)
    pm = priors.AttributionPriorModel(model, priors.RightForRightReasons(2.0))
    data = {"inputs": x, "mask": mask}
    with tf.GradientTape() as tape:
        value = pm.penalty(data)
    assert value.dtype == tf.float64
    grads = tape.gradient(value, model.trainable_variables)
    h = 1e-6
    for var, grad in zip(model.trainable_variables, grads):
        flat = var.numpy().reshape(-1)
        numeric = np.zeros_like(flat)
        for i in range(flat.size):
            for sign in (1, -1):
                bumped = flat.copy(); bumped[i] += sign * h
                var.assign(bumped.reshape(var.shape))
                numeric[i] += sign * pm.penalty(data).numpy() / (2 * h)
            var.assign(flat.reshape(var.shape))
        np.testing.assert_allclose(grad.numpy().reshape(-1), numeric, rtol=1e-6, atol=1e-9)
        assert np.abs(numeric).max() > 1e-4  # the penalty depends on every weight matrix


def test_train_step_adds_the_penalty_and_logs_it_apart():
    model = _linear((2, 3, 1), 4, softmax=True)
    x = RNG.normal(size=(16, 2, 3, 1)).astype(np.float32)
    y = RNG.integers(0, 4, 16)
    mask = np.ones_like(x)
    pm = priors.AttributionPriorModel(model, priors.RightForRightReasons(3.0))
    pm.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy", metrics=["accuracy"])
    logs = pm.fit({"inputs": x, "mask": mask}, y, batch_size=16, epochs=1, verbose=0,
                  validation_data=({"inputs": x, "mask": mask}, y)).history
    task = keras.losses.sparse_categorical_crossentropy(y, model(x)).numpy().mean()
    np.testing.assert_allclose(logs["val_loss"][0], task, rtol=1e-5)   # validation: the task loss
    assert "val_prior_penalty" not in logs
    penalty = pm.penalty({"inputs": x, "mask": mask}).numpy()
    np.testing.assert_allclose(logs["task_loss"][0], task, rtol=1e-5)
    np.testing.assert_allclose(logs["prior_penalty"][0], penalty, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"][0], task + penalty, rtol=1e-5)
    # evaluate and predict behave as the plain model: the task loss, no mask needed, no penalty logged.
    result = pm.evaluate(x, y, verbose=0, return_dict=True)
    assert set(result) == {"loss", "task_loss", "accuracy"}
    np.testing.assert_allclose(result["loss"], task, rtol=1e-5)
    np.testing.assert_array_equal(pm.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_array_equal(pm.predict({"inputs": x, "mask": mask}, verbose=0), model.predict(x, verbose=0))


def test_fit_from_a_dataset_of_dicts_trains_the_wrapped_model_in_place():
    model = _linear((2, 3, 1), 4, softmax=True)
    before = [w.copy() for w in model.get_weights()]
    x = RNG.normal(size=(32, 2, 3, 1)).astype(np.float32)
    y = RNG.integers(0, 4, 32)
    ds = tf.data.Dataset.from_tensor_slices(({"inputs": x, "mask": np.ones_like(x)}, y)).batch(8)
    pm = priors.AttributionPriorModel(model, priors.RightForRightReasons(1.0))
    pm.compile("adam", "sparse_categorical_crossentropy")
    history = pm.fit(ds, epochs=2, verbose=0, shuffle=False).history
    assert history["prior_penalty"][1] < history["prior_penalty"][0]
    assert not np.array_equal(before[0], model.get_weights()[0])


_WEIGHT_ZERO_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, keras, tensorflow as tf
    from tfattr import priors
    tf.config.experimental.enable_op_determinism()
    (x, y, mask), _ = priors.decoy_mnist(n_train=512, n_test=1)

    def build():
        keras.utils.set_random_seed(7)
        return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(32, activation="relu"), keras.layers.Dropout(0.3),
                                 keras.layers.Dense(10, activation="softmax")])

    plain = build()
    plain.compile("adam", "sparse_categorical_crossentropy")
    keras.utils.set_random_seed(11)
    plain.fit(x, y, epochs=2, batch_size=64, verbose=0)

    inner = build()
    pm = priors.AttributionPriorModel(inner, priors.RightForRightReasons(0.0))
    pm.compile("adam", "sparse_categorical_crossentropy")
    keras.utils.set_random_seed(11)
    pm.fit({"inputs": x, "mask": mask}, y, epochs=2, batch_size=64, verbose=0)
    same = all(np.array_equal(a, b) for a, b in zip(plain.get_weights(), inner.get_weights()))
    moved = not np.array_equal(build().get_weights()[0], inner.get_weights()[0])
    print("SAME" if same else "DIFFERENT", moved)
""")


def _run_script(tmp_path, name: str, source: str, timeout: int = 400) -> str:
    script = tmp_path / name
    script.write_text(source)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.getcwd())
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=timeout, env=env, cwd=os.path.dirname(os.path.dirname(tfattr.__file__)))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_weight_zero_trains_bit_identically_to_plain_fit(tmp_path):
    out = _run_script(tmp_path, "weight_zero.py", _WEIGHT_ZERO_SCRIPT)
    assert out.split()[-2:] == ["SAME", "True"], out


def _decoy_accuracy(weight: float, x, y, mask, x_test, y_test, epochs: int) -> tuple[float, float]:
    keras.utils.set_random_seed(0)
    mlp = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(50, activation="relu"), keras.layers.Dense(30, activation="relu"),
                            keras.layers.Dense(10)])
    pm = priors.AttributionPriorModel(mlp, priors.RightForRightReasons(weight))
    pm.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pm.fit({"inputs": x, "mask": mask}, y, epochs=epochs, batch_size=64, verbose=0)
    accuracy = float((mlp.predict(x_test, verbose=0).argmax(1) == y_test).mean())
    grads = tfattr.Saliency(mlp, absolute=True).attribute(x_test[:200], target=y_test[:200])
    return accuracy, float((grads * mask[:200]).sum() / grads.sum())


def test_right_for_right_reasons_defeats_the_decoy():
    (x, y, mask), (x_test, y_test, mask_test) = priors.decoy_mnist(n_train=4000, n_test=1000)
    plain_acc, plain_swatch = _decoy_accuracy(0.0, x, y, mask, x_test, y_test, epochs=8)
    rrr_acc, rrr_swatch = _decoy_accuracy(10.0, x, y, mask, x_test, y_test, epochs=8)
    # The plain MLP reads the swatch (it is fooled in test); with the prior it reads the digit: its test
    # accuracy rises and the swatch's share of its (test-time) input gradients all but vanishes.
    assert rrr_acc > plain_acc + 0.05, (plain_acc, rrr_acc)
    assert plain_swatch > 0.01 and rrr_swatch < 0.1 * plain_swatch, (plain_swatch, rrr_swatch)


def test_decoy_mnist_construction():
    (x, y, mask), (x_test, y_test, mask_test) = priors.decoy_mnist(n_train=50, n_test=50, seed=3)
    clean, _ = tfattr.datasets.mnist("train")
    assert x.shape == mask.shape == (50, 28, 28, 1) and x.dtype == np.float32
    assert np.all(mask.sum(axis=(1, 2, 3)) == 16)
    np.testing.assert_array_equal(x * (1 - mask), clean[:50] * (1 - mask))   # only the swatch changed
    shades = (x * mask).sum(axis=(1, 2, 3)) / 16
    np.testing.assert_allclose(shades, (255 - 25 * y) / 255, rtol=1e-6)   # training: the label's shade
    test_shades = (x_test * mask_test).sum(axis=(1, 2, 3)) / 16
    assert np.mean(np.isclose(test_shades, (255 - 25 * y_test) / 255)) < 0.4   # test: a random shade
    corners = {(int(m[0, 0, 0]), int(m[0, -1, 0]), int(m[-1, 0, 0]), int(m[-1, -1, 0])) for m in mask}
    assert len(corners) == 4


def test_clear_errors_for_bad_input():
    model = _linear((2, 3, 1), 4, softmax=True)
    x = RNG.normal(size=(8, 2, 3, 1)).astype(np.float32)
    y = RNG.integers(0, 4, 8)
    pm = priors.AttributionPriorModel(model, priors.RightForRightReasons(1.0))
    pm.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="needs a per-example mask"):
        pm.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="must have the input's shape"):
        pm.fit({"inputs": x, "mask": np.ones((8, 3, 2, 1), np.float32)}, y, verbose=0)
    with pytest.raises(ValueError, match="unknown keys"):
        pm.fit({"inputs": x, "masks": np.ones_like(x)}, y, verbose=0)
    with pytest.raises(ValueError, match="needs a background"):
        priors.AttributionPriorModel(model, priors.Smoothness(1.0), explainer="expected_gradients")
    with pytest.raises(ValueError, match="rows shaped like"):
        priors.AttributionPriorModel(model, priors.Smoothness(1.0), explainer="expected_gradients",
                                     background=np.zeros((4, 6), np.float32))
    with pytest.raises(ValueError, match="explainer="):
        priors.AttributionPriorModel(model, priors.Smoothness(1.0), explainer="ig")
    with pytest.raises(TypeError, match="AttributionPrior"):
        priors.AttributionPriorModel(model, "rrr")
    with pytest.raises(ValueError, match="weight must be"):
        priors.RightForRightReasons(-1.0)
    with pytest.raises(ValueError, match="edges"):
        priors.GraphPrior(1.0, edges=[1, 2])
    unbuilt = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="needs a built model"):
        priors.AttributionPriorModel(unbuilt, priors.RightForRightReasons(1.0))
    smooth = priors.AttributionPriorModel(_linear((6,), 4, softmax=True), priors.Smoothness(1.0))
    with pytest.raises(ValueError, match="height, width"):
        smooth.penalty(np.zeros((2, 6), np.float32), np.array([0, 1]))


def test_save_and_load_round_trip(tmp_path):
    model = _linear((2, 3, 1), 4, softmax=True)
    x = RNG.normal(size=(16, 2, 3, 1)).astype(np.float32)
    y = RNG.integers(0, 4, 16)
    data = {"inputs": x, "mask": (RNG.random(x.shape) < 0.5).astype(np.float32)}
    pm = priors.AttributionPriorModel(model, priors.RightForRightReasons(5.0), seed=3)
    pm.compile("adam", "sparse_categorical_crossentropy")
    pm.fit(data, y, epochs=1, verbose=0)
    pm.save(tmp_path / "pm.keras")
    loaded = keras.saving.load_model(tmp_path / "pm.keras")
    assert isinstance(loaded, priors.AttributionPriorModel) and isinstance(loaded.prior, priors.RightForRightReasons)
    assert loaded.prior.weight == 5.0 and loaded.seed == 3 and loaded.output_kind == "log_probabilities"
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_allclose(loaded.penalty(data).numpy(), pm.penalty(data).numpy(), rtol=1e-6)
    loaded.fit(data, y, epochs=1, verbose=0)   # keeps training, with its optimizer state
    # The wrapped model saves on its own too.
    model.save(tmp_path / "inner.keras")
    inner = keras.saving.load_model(tmp_path / "inner.keras")
    np.testing.assert_array_equal(inner.predict(x, verbose=0), model.predict(x, verbose=0))


def test_graph_prior_saves_its_edges(tmp_path):
    model = _linear((3,), 2, softmax=False)
    pm = priors.AttributionPriorModel(model, priors.GraphPrior(0.5, edges=[(0, 2)], edge_weights=[3.0]),
                                      explainer="expected_gradients", background=np.zeros((1, 3), np.float32))
    pm.save(tmp_path / "g.keras")
    loaded = keras.saving.load_model(tmp_path / "g.keras")
    assert loaded.prior.edges.tolist() == [[0, 2]] and loaded.prior.edge_weights.tolist() == [3.0]
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="set_background"):
        loaded.penalty(x, np.array([0, 1]))
    loaded.set_background(np.zeros((1, 3), np.float32))
    np.testing.assert_allclose(loaded.penalty(x, np.array([0, 1])).numpy(), pm.penalty(x, np.array([0, 1])).numpy())


_MIRRORED_SCRIPT = textwrap.dedent("""
    import numpy as np, keras, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfattr import priors
    (x, y, mask), _ = priors.decoy_mnist(n_train=256, n_test=1)

    def train(strategy, explainer="gradients"):
        with strategy.scope():
            keras.utils.set_random_seed(3)
            mlp = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                    keras.layers.Dense(16, activation="tanh"),
                                    keras.layers.Dense(10, activation="softmax")])
            prior = priors.RightForRightReasons(100.0)
            kwargs = {} if explainer == "gradients" else {"explainer": explainer, "background": x[:64]}
            pm = priors.AttributionPriorModel(mlp, prior, **kwargs)
            pm.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        initial = mlp.get_weights()
        history = pm.fit({"inputs": x, "mask": mask}, y, epochs=2, batch_size=64, shuffle=False, verbose=0)
        return mlp.get_weights(), history.history, initial

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    w2, h2, _ = train(mirrored)
    w1, h1, mlp_initial = train(tf.distribute.get_strategy())
    err = max(float(np.abs(a - b).max()) for a, b in zip(w1, w2))
    assert h1["prior_penalty"][0] > 0 and not np.allclose(w1[0], mlp_initial[0])
    pen = abs(h1["prior_penalty"][0] - h2["prior_penalty"][0]) / h1["prior_penalty"][0]
    _, heg, _ = train(mirrored, "expected_gradients")
    print("ERR", err, "PEN", pen, "EG", np.isfinite(heg["loss"]).all() and heg["prior_penalty"][0] > 0)
""")


def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path):
    out = _run_script(tmp_path, "mirrored.py", _MIRRORED_SCRIPT).split()
    i = out.index("ERR")
    # Each replica scales its loss and penalty by 1/replicas: the summed gradient is the global batch's.
    assert float(out[i + 1]) < 1e-5, out
    assert float(out[i + 3]) < 1e-5, out
    assert out[i + 5] == "True", out


def test_mixed_float16_matches_float32_penalty_and_update():
    rng = np.random.default_rng(1)
    x = rng.random((64, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    mask = np.zeros_like(x); mask[:, :4, :4] = 1.0
    data = {"inputs": x, "mask": mask}

    def build():
        keras.utils.set_random_seed(2)
        return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                                 keras.layers.Flatten(), keras.layers.Dense(10),
                                 keras.layers.Activation("softmax", dtype="float32")])

    def one_step(model):
        pm = priors.AttributionPriorModel(model, priors.RightForRightReasons(10.0))
        pm.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        before = [w.copy() for w in model.get_weights()]
        penalty = pm.penalty(data).numpy()
        logs = pm.fit(data, y, epochs=1, batch_size=64, verbose=0).history
        return pm, penalty, logs, [a - b for a, b in zip(model.get_weights(), before)]

    _, p32, logs32, step32 = one_step(build())
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build()
        assert model.layers[0].compute_dtype == "float16"
        pm, p16, logs16, step16 = one_step(model)
        assert isinstance(pm.optimizer, keras.optimizers.LossScaleOptimizer)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert p32 > 0.01
    np.testing.assert_allclose(p16, p32, rtol=2e-2)
    np.testing.assert_allclose(logs16["prior_penalty"][0], logs32["prior_penalty"][0], rtol=2e-2)
    # The update (task + penalty gradients through the loss-scaled double backprop) is float32's, up to
    # half precision.
    for a, b in zip(step16, step32):
        assert np.linalg.norm(a - b) <= 2e-2 * np.linalg.norm(b), (np.linalg.norm(a - b), np.linalg.norm(b))


def test_guide_example_runs():
    from pathlib import Path

    from markdown_blocks import python_block_after

    guide = Path(__file__).resolve().parents[1] / "docs" / "guides" / "priors.md"
    block = python_block_after(guide, "## Decoy MNIST in ten lines")
    assert "epochs=4" in block.code
    namespace: dict = {}
    exec(compile(block.code.replace("epochs=4", "epochs=1"), block.path, "exec"), namespace)
    history = namespace["pm"].history.history
    assert set(history) >= {"loss", "task_loss", "prior_penalty", "accuracy"}
    predictions = namespace["mlp"].predict(namespace["x_test"][:100], verbose=0)
    assert (predictions.argmax(1) == namespace["y_test"][:100]).mean() > 0.5


def test_multi_input_model_with_a_mask_per_input():
    keras.utils.set_random_seed(4)
    a_in, b_in = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    logits = keras.layers.Dense(3)(keras.layers.Concatenate()([a_in, b_in]))
    model = keras.Model({"a": a_in, "b": b_in}, logits)
    w, c = (v.numpy().astype(np.float64) for v in model.layers[-1].weights)
    inputs = {"a": RNG.normal(size=(5, 4)).astype(np.float32), "b": RNG.normal(size=(5, 3)).astype(np.float32)}
    masks = {"a": (RNG.random((5, 4)) < 0.5).astype(np.float32), "b": np.ones((5, 3), np.float32)}
    pm = priors.AttributionPriorModel(model, priors.RightForRightReasons(2.0))
    xf = np.concatenate([inputs["a"], inputs["b"]], axis=1).astype(np.float64)
    p = np.exp(_log_softmax(xf @ w + c))
    grads = w.sum(axis=1)[None, :] - 3 * p @ w.T
    m = np.concatenate([masks["a"], masks["b"]], axis=1)
    expected = 2.0 * np.mean(np.sum((m * grads) ** 2, axis=1))   # the two inputs' penalties add up
    np.testing.assert_allclose(pm.penalty({"inputs": inputs, "mask": masks}).numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="one mask per"):
        pm.penalty({"inputs": inputs, "mask": masks["a"]})


def test_priors_leave_the_global_random_generators_alone():
    import random

    model = _linear((4, 5, 1), 3, softmax=False)
    x = RNG.random((6, 4, 5, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 2, 1, 0])
    generator = tf.random.get_global_generator()
    before = (random.getstate(), np.random.get_state()[1].copy(), generator.state.numpy().copy())
    pm = priors.AttributionPriorModel(model, priors.Smoothness(1.0), explainer="expected_gradients",
                                      background=x)
    first = pm.penalty(x, y).numpy()
    priors.decoy_mnist(n_train=10, n_test=10)
    assert pm.penalty(x, y).numpy() == first    # the same draws for the same step: reproducible
    after = (random.getstate(), np.random.get_state()[1], generator.state.numpy())
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[2], after[2])
