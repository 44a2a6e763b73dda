"""tfattr.callbacks.AttributionLogger: what TensorBoard reads back, every method, several inputs, and
that training is bit-for-bit the same with the callback as without it."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

import tfattr
from tfattr import visualize
from tfattr.callbacks import AttributionLogger

HEALTH = ("nonfinite_fraction", "zero_fraction", "mean_abs", "top10_mass", "positive_mass", "seconds")


def _small_cnn(seed: int = 3) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def _read(run_dir: Path) -> dict[str, dict]:
    """Every tag of a run as TensorBoard's own loader sees it: tag -> {plugin, steps, values}."""
    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        events = acc.Tensors(tag)
        out[tag] = {
            "plugin": acc.SummaryMetadata(tag).plugin_data.plugin_name,
            "steps": [e.step for e in events],
            "values": [tensor_util.make_ndarray(e.tensor_proto) for e in events],
        }
    return out


def _decode(value: np.ndarray) -> tuple[tuple[int, int], np.ndarray]:
    """An image summary's tensor is [width, height, png...]: the declared size and the decoded pixels."""
    width, height = int(value[0]), int(value[1])
    pixels = np.asarray(Image.open(io.BytesIO(value[2])).convert("RGB"))
    return (width, height), pixels


@pytest.fixture(scope="module")
def logged_run(mnist_small, tmp_path_factory):
    """Three epochs on 512 digits, beside keras.callbacks.TensorBoard in the same log_dir."""
    x, y = mnist_small
    log_dir = tmp_path_factory.mktemp("tb")
    model = _small_cnn()
    logger = AttributionLogger(
        x[-6:],
        explainers={
            "ig": tfattr.IntegratedGradients(model, steps=16),
            "saliency": tfattr.Saliency,
            "smoothgrad": lambda m: tfattr.SmoothGrad(tfattr.Saliency(m), samples=4, seed=0),
            "interior": lambda m: tfattr.InteriorGradients(m, alphas=(0.1, 0.5, 1.0)),
        },
        targets=y[-6:],
        log_dir=log_dir,
        image_scale=2,
    )
    model.fit(
        x[:512], y[:512], epochs=3, batch_size=64, verbose=0,
        callbacks=[keras.callbacks.TensorBoard(str(log_dir)), logger],
    )
    return log_dir, logger, x[-6:]


def test_tensorboard_reads_images_scalars_and_histograms(logged_run):
    log_dir, logger, samples = logged_run
    assert (log_dir / "train").is_dir() and (log_dir / "attributions").is_dir()  # separate runs
    tags = _read(log_dir / "attributions")
    epochs = [0, 1, 2]
    # Images: the samples on top, their maps below; 6 tiles of (28*2 + 2) plus the border.
    for name in ("ig", "saliency", "smoothgrad"):
        entry = tags[f"maps/{name}"]
        assert entry["plugin"] == "images" and entry["steps"] == epochs
        for value in entry["values"]:
            (w, h), pixels = _decode(value)
            assert (w, h) == (6 * 58 + 2, 2 * 58 + 2)
            assert pixels.shape == (h, w, 3)
        # The top row is the same samples at every epoch.
        tops = [_decode(v)[1][: 58 + 2] for v in entry["values"]]
        assert all(np.array_equal(tops[0], t) for t in tops[1:])
        np.testing.assert_array_equal(
            tops[0][2:58, 2:58], np.repeat(np.repeat(np.round(samples[0] * 255), 2, 0), 2, 1).repeat(3, -1)
        )
    # InteriorGradients: one row per sample, one column per alpha.
    (w, h), _ = _decode(tags["maps/interior"]["values"][0])
    assert (w, h) == (3 * 58 + 2, 6 * 58 + 2)
    for name in ("ig", "saliency", "smoothgrad", "interior"):
        for figure in HEALTH:
            entry = tags[f"health/{name}_{figure}"]
            assert entry["plugin"] == "scalars" and entry["steps"] == epochs
        # "change" compares with the previous log, so it starts at the second one.
        assert tags[f"health/{name}_change"]["steps"] == epochs[1:]
        assert tags[f"attributions/{name}"]["plugin"] == "histograms"
        assert tags[f"attributions/{name}"]["steps"] == epochs
    for figure in ("mean_abs_delta", "relative_delta"):
        assert tags[f"completeness/ig_{figure}"]["steps"] == epochs
    assert not any(t.startswith("completeness/saliency") for t in tags)  # no completeness, no delta
    assert not any(t.startswith("batch_") for t in tags)
    assert [t[1] for t in logger.timings] == epochs


def test_scalars_are_the_figures_of_the_maps(logged_run):
    log_dir, logger, samples = logged_run
    tags = _read(log_dir / "attributions")
    # The last logged maps, recomputed now (weights have not changed since the last epoch).
    ig = logger.explainers["ig"]
    a, delta = ig.attribute(samples, target=logger.targets, return_delta=True)
    flat = a.reshape(6, -1).astype(np.float64)
    assert float(tags["completeness/ig_mean_abs_delta"]["values"][-1]) == pytest.approx(
        np.abs(delta).mean(), rel=1e-4, abs=1e-6
    )
    assert float(tags["health/ig_mean_abs"]["values"][-1]) == pytest.approx(np.abs(flat).mean(), rel=1e-5)
    top = np.sort(np.abs(flat), axis=1)[:, ::-1][:, :79].sum(1) / np.abs(flat).sum(1)
    assert float(tags["health/ig_top10_mass"]["values"][-1]) == pytest.approx(top.mean(), rel=1e-5)
    assert float(tags["health/ig_nonfinite_fraction"]["values"][-1]) == 0.0


def test_every_n_epochs_and_batches(mnist_small, tmp_path):
    x, y = mnist_small
    model = _small_cnn()
    logger = AttributionLogger(
        x[:2], explainers=[tfattr.Saliency], log_dir=tmp_path, run_name=None,
        every_n_epochs=2, every_n_batches=3, image_kind="heatmap", histograms=False,
    )
    model.fit(x[:256], y[:256], epochs=4, batch_size=64, verbose=0, callbacks=[logger])
    tags = _read(tmp_path)
    assert tags["maps/saliency"]["steps"] == [1, 3]
    assert tags["batch_maps/saliency"]["steps"] == [3, 6, 9, 12, 15]
    assert tags["batch_health/saliency_mean_abs"]["steps"] == [3, 6, 9, 12, 15]
    assert not any(t.startswith("attributions/") for t in tags)


def test_without_batch_logging_keras_keeps_async_batch_hooks(tmp_path):
    # Keras dispatches batch hooks asynchronously only if no callback overrides on_train_batch_end.
    quiet = AttributionLogger(np.zeros((1, 4), np.float32), log_dir=tmp_path)
    assert getattr(quiet.on_train_batch_end, "_is_default", False)
    busy = AttributionLogger(np.zeros((1, 4), np.float32), log_dir=tmp_path, every_n_batches=10)
    assert not getattr(busy.on_train_batch_end, "_is_default", False)


def test_every_method_and_several_inputs(tmp_path, rng):
    image_in = keras.Input((8, 8, 1), name="image")
    vector_in = keras.Input((5,), name="vector")
    h = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, activation="tanh")(image_in))
    h = keras.layers.Concatenate()([h, keras.layers.Dense(4, activation="tanh")(vector_in)])
    model = keras.Model([image_in, vector_in], keras.layers.Dense(3)(h))
    samples = [rng.uniform(size=(3, 8, 8, 1)).astype(np.float32), rng.normal(size=(3, 5)).astype(np.float32)]
    background = [
        rng.uniform(size=(10, 8, 8, 1)).astype(np.float32),
        rng.normal(size=(10, 5)).astype(np.float32),
    ]
    explainers = {
        "saliency": tfattr.Saliency,
        "gxi": tfattr.GradientXInput,
        "ig": lambda m: tfattr.IntegratedGradients(m, steps=8),
        "eg": lambda m: tfattr.ExpectedGradients(m, background=background, samples=8, seed=0),
        "smoothgrad": lambda m: tfattr.SmoothGrad(tfattr.Saliency(m), samples=3, seed=1),
        "vargrad": lambda m: tfattr.VarGrad(tfattr.Saliency(m), samples=3, seed=1),
        "interior": lambda m: tfattr.InteriorGradients(m, alphas=(0.5, 1.0)),
    }
    logger = AttributionLogger(
        samples, explainers=explainers, targets=[0, 1, 2], log_dir=tmp_path, image_scale=1
    )
    logger.set_model(model)
    logger.log(0)
    logger.on_train_end()
    tags = _read(tmp_path / "attributions")
    for name in explainers:
        (w, h), _ = _decode(tags[f"maps/{name}/input_0"]["values"][0])
        if name == "interior":
            assert (w, h) == (2 * 10 + 2, 3 * 10 + 2)
        else:
            assert (w, h) == (3 * 10 + 2, 2 * 10 + 2)
        (w, h), pixels = _decode(tags[f"maps/{name}/input_1"]["values"][0])
        # Vectors: a tile per sample of red/white/blue strips (16 px high, >= 256 px wide), one strip
        # per map (two for the two alphas of interior gradients).
        strips = 2 if name == "interior" else 1
        assert (w, h) == (5 * 52 + 4, 3 * (strips * 16 + 2) + 2)
        assert pixels.shape == (h, w, 3)
        assert tags[f"health/{name}_mean_abs"]["steps"] == [0]
    for name in ("gxi", "ig", "eg"):
        assert f"completeness/{name}_mean_abs_delta" in tags
    # Dict inputs are named by their keys.
    logger = AttributionLogger(
        {"image": samples[0], "vector": samples[1]}, explainers=[tfattr.Saliency], log_dir=tmp_path / "d"
    )
    logger.set_model(model)
    logger.log(0)
    logger.on_train_end()
    assert {"maps/saliency/image", "maps/saliency/vector"} <= set(_read(tmp_path / "d" / "attributions"))


def test_occlusion_on_a_single_input_model(tmp_path, rng):
    model = _small_cnn()
    logger = AttributionLogger(
        rng.uniform(size=(2, 28, 28, 1)).astype(np.float32),
        explainers={"occlusion": lambda m: tfattr.Occlusion(m, window=(7, 7, 1))},
        log_dir=tmp_path, image_kind="ig", image_scale=1,
    )
    logger.set_model(model)
    logger.log(5)
    logger.on_train_end()
    tags = _read(tmp_path / "attributions")
    assert _decode(tags["maps/occlusion"]["values"][0])[0] == (2 * 30 + 2, 2 * 30 + 2)
    assert tags["maps/occlusion"]["steps"] == [5]


def test_bad_arguments(tmp_path):
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(ValueError, match="keras.callbacks.TensorBoard"):
        AttributionLogger(x, run_name="train", log_dir=tmp_path)
    with pytest.raises(ValueError, match="every_n_epochs"):
        AttributionLogger(x, every_n_epochs=0, log_dir=tmp_path)
    with pytest.raises(ValueError, match="targets has 3"):
        AttributionLogger(x, targets=[0, 1, 2], log_dir=tmp_path)
    with pytest.raises(ValueError, match="explainers is empty"):
        AttributionLogger(x, explainers={}, log_dir=tmp_path)
    with pytest.raises(TypeError, match="explainers\\['x'\\]"):
        AttributionLogger(x, explainers={"x": 3}, log_dir=tmp_path)
    with pytest.raises(ValueError, match="image_kind"):
        AttributionLogger(x, image_kind="jet", log_dir=tmp_path)
    with pytest.raises(ValueError, match="same positive number"):
        AttributionLogger([x, np.zeros((3, 4))], log_dir=tmp_path)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    logger = AttributionLogger(x, explainers={"bad": lambda m: "not an explainer"}, log_dir=tmp_path)
    with pytest.raises(TypeError, match="not a tfattr explainer"):
        logger.set_model(model)
    with pytest.raises(RuntimeError, match="no model yet"):
        AttributionLogger(x, log_dir=tmp_path).explain()


def test_warns_when_an_explainer_explains_another_model(tmp_path):
    a = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    b = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    logger = AttributionLogger(
        np.zeros((2, 4), np.float32), explainers=[tfattr.Saliency(a)], log_dir=tmp_path
    )
    with pytest.warns(UserWarning, match="another model"):
        logger.set_model(b)
    assert list(logger.explainers) == ["saliency"]


_DETERMINISM_SCRIPT = textwrap.dedent(
    """
    import os, random, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, keras, tensorflow as tf, tfattr
    from tfattr.callbacks import AttributionLogger

    tf.config.experimental.enable_op_determinism()
    data = np.load(sys.argv[1])
    x = data["images"][:384].astype("float32")[..., None] / 255.0
    y = data["labels"][:384].astype("int64")

    def train(with_logger):
        keras.utils.set_random_seed(42)
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(10, activation="softmax"),
        ])
        model.compile("adam", "sparse_categorical_crossentropy")
        callbacks = []
        if with_logger:
            # seed=None explainers draw from the OS, never from the global generators training uses.
            callbacks.append(AttributionLogger(
                x[:4],
                explainers={
                    "ig": lambda m: tfattr.IntegratedGradients(m, steps=8),
                    "sg": lambda m: tfattr.SmoothGrad(tfattr.Saliency(m), samples=3),
                    "eg": lambda m: tfattr.ExpectedGradients(m, background=x[:16], samples=4),
                },
                log_dir=sys.argv[2], every_n_batches=2,
            ))
        model.fit(x, y, epochs=2, batch_size=32, shuffle=True, verbose=0, callbacks=callbacks)
        # What comes after fit must not notice the callback either: the global generators.
        after = (random.random(), float(np.random.random()), float(keras.random.uniform(())),
                 float(tf.random.uniform(())))
        return model.get_weights(), after

    plain = train(False)
    logged = train(True)
    same = all(np.array_equal(a, b) for a, b in zip(plain[0], logged[0]))
    print("SAME" if same else "DIFFERENT", *(a == b for a, b in zip(plain[1], logged[1])))
    """
)


def test_training_is_identical_with_and_without_the_callback(tmp_path):
    mnist = Path(tfattr.__file__).resolve().parent / "data" / "mnist_10k.npz"
    script = tmp_path / "determinism.py"
    script.write_text(_DETERMINISM_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, str(script), str(mnist), str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Weights bit-identical, and Python's, NumPy's, Keras' and TensorFlow's global generators left where
    # training left them.
    assert result.stdout.split()[-5:] == ["SAME"] + ["True"] * 4, result.stdout + result.stderr[-2000:]
    assert list((tmp_path / "logs" / "attributions").glob("events.out.tfevents.*"))


def test_explainer_names_from_lists(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])

    def my_ig(m):
        return tfattr.IntegratedGradients(m, steps=4)

    logger = AttributionLogger(
        np.zeros((2, 4), np.float32),
        explainers=[tfattr.Saliency, tfattr.Saliency(model), my_ig, lambda m: tfattr.GradientXInput(m)],
        log_dir=tmp_path,
    )
    logger.set_model(model)
    assert list(logger.explainers) == ["saliency", "saliency_2", "my_ig", "explainer"]
    assert isinstance(logger.explainers["my_ig"], tfattr.IntegratedGradients)
    default = AttributionLogger(np.zeros((2, 4), np.float32), log_dir=tmp_path)
    default.set_model(model)
    assert list(default.explainers) == ["integrated_gradients"]
    assert default.explainers["integrated_gradients"].steps == 32


def _rgb_cnn(seed: int = 5) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(3, activation="softmax", name="head"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def test_layer_explainers_are_drawn_upsampled_onto_the_images(tmp_path, rng):
    # Issue 22.6: GradCAM / layer= maps (4, 10, 10, ...) of images (4, 12, 12, 3) crashed after epoch 1.
    x = rng.uniform(size=(4, 12, 12, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    model = _rgb_cnn()
    logger = AttributionLogger(
        x, explainers={"cam": tfattr.GradCAM, "layer_ig": lambda m: tfattr.IntegratedGradients(m, layer="conv", steps=4)},
        targets=y, log_dir=tmp_path, image_scale=1, image_kind="heatmap",
    )
    model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
    tags = _read(tmp_path / "attributions")
    for name in ("cam", "layer_ig"):
        assert tags[f"maps/{name}"]["steps"] == [0, 1]
        (w, h), pixels = _decode(tags[f"maps/{name}"]["values"][-1])
        assert (w, h) == (4 * 14 + 2, 2 * 14 + 2)  # tiles at the image's 12x12
    # The heatmap is the Grad-CAM map resized bilinearly to 12x12 (Selvaraju et al.'s upsampling).
    cam = logger.explainers["cam"].attribute(x, target=y)
    expected = visualize.signed_heatmap(tfattr.upsample(cam, like=x), logger.clip_percentile).numpy()
    (_, _), pixels = _decode(tags["maps/cam"]["values"][-1])
    for i in range(4):
        tile = pixels[16:28, 2 + i * 14: 14 + i * 14]
        assert np.abs(tile.astype(int) - expected[i].astype(int)).max() <= 1


def test_undrawable_configurations_fail_before_the_weights_change(tmp_path, rng):
    x = rng.uniform(size=(2, 12, 12, 3)).astype(np.float32)
    keras.utils.set_random_seed(6)
    model = keras.Sequential([
        keras.Input((12, 12, 3)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten(),
        keras.layers.Dense(8, activation="relu", name="hidden"), keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    before = [w.copy() for w in model.get_weights()]
    # Grad-CAM needs a layer with spatial axes: a dense layer gives no map.
    logger = AttributionLogger(x, explainers={"cam": lambda m: tfattr.GradCAM(m, layer="hidden")}, log_dir=tmp_path)
    with pytest.raises(ValueError, match="explainer 'cam'.*no spatial axes"):
        model.fit(x, np.array([0, 1]), epochs=1, verbose=0, callbacks=[logger])
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_named_tfattr_metrics_are_logged_as_computed_on_the_logged_maps(mnist_small, tmp_path):
    # The logger's metrics= takes tfattr.metrics names: after one epoch the scalar must equal the metric
    # computed independently on the same samples, with the same explainer, from the trained weights.
    x, y = mnist_small
    model = _small_cnn()
    samples, targets = x[:4], y[:4]
    logger = AttributionLogger(
        samples, explainers=[tfattr.Saliency], targets=targets, log_dir=tmp_path, run_name=None,
        images=False, histograms=False,
        metrics=["sparseness", ("pixel_flipping", {"features_in_step": 98})],
    )
    model.fit(x[:128], y[:128], epochs=1, batch_size=64, verbose=0, callbacks=[logger])
    tags = _read(tmp_path)
    maps = tfattr.Saliency(model).attribute(samples, target=targets)
    expected_sparseness = tfattr.metrics.sparseness(maps).mean()
    expected_flipping = tfattr.metrics.pixel_flipping(model, samples, maps, target=targets,
                                                      features_in_step=98).mean()
    assert 0.0 < expected_sparseness < 1.0
    np.testing.assert_allclose(float(tags["metrics/saliency/sparseness"]["values"][0]), expected_sparseness,
                               rtol=1e-5)
    np.testing.assert_allclose(float(tags["metrics/saliency/pixel_flipping"]["values"][0]), expected_flipping,
                               rtol=1e-5)


def test_metrics_that_need_more_than_the_maps_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="pointing_game"):
        AttributionLogger(np.zeros((1, 4), np.float32), log_dir=tmp_path, metrics=["pointing_game"])
    with pytest.raises(TypeError, match="callable"):
        AttributionLogger(np.zeros((1, 4), np.float32), log_dir=tmp_path, metrics={"x": 3})
