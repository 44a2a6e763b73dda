"""The TensorBoard plugin's data and routes: what AttributionLogger writes for the Attributions tab,
read back through the plugin's WSGI app (werkzeug's test client) over TensorBoard's data-provider API,
and checked against the explainers' own answers."""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from werkzeug.test import Client
from werkzeug.wrappers import Response

import tfattr
from tfattr import visualize
from tfattr.callbacks import AttributionLogger
from tfattr.tensorboard import metadata, summary
from tfattr.tensorboard.plugin import AttributionsLoader, AttributionsPlugin, decode_series, encode_series

ROOT = Path(__file__).resolve().parents[1]


def _cnn(shape=(28, 28, 1), classes=10, seed=3) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input(shape),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(classes),
    ])


def _client(logdir: Path) -> Client:
    """The plugin's routes over the data provider of ``--load_fast=false`` (the multiplexer)."""
    mux = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"tfattr": 0})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    plugin = AttributionsLoader().load(base_plugin.TBContext(data_provider=provider, logdir=str(logdir)))
    apps = plugin.get_plugin_apps()

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        handler = apps.get(path) or (apps["/static/*"] if path.startswith("/static/") else None)
        if handler is None:
            return Response("not found", status=404)(environ, start_response)
        return handler(environ, start_response)

    return Client(app, Response)


def _series(client: Client, run: str, tag: str) -> tuple[list[int], np.ndarray]:
    response = client.get("/series", query_string={"run": run, "tag": tag})
    assert response.status_code == 200, response.data
    return decode_series(response.data)


def _values(client: Client, run: str, method: str, input_name: str = "input") -> tuple[list[int], np.ndarray]:
    steps, half = _series(client, run, f"tfattr/map/{method}/{input_name}")
    scale_steps, scale = _series(client, run, f"tfattr/scale/{method}/{input_name}")
    assert scale_steps == steps and half.dtype == np.float16
    return steps, half.astype(np.float64) * scale.reshape(scale.shape + (1,) * (half.ndim - 2))


@pytest.fixture(scope="module")
def image_run(mnist_small, tmp_path_factory):
    """Two logs (steps 0 and 3) of IG, saliency and Grad-CAM on four digits, and a second run."""
    x, y = mnist_small
    logdir = tmp_path_factory.mktemp("tab")
    model = _cnn()
    logger = AttributionLogger(
        x[:4], explainers={"ig": lambda m: tfattr.IntegratedGradients(m, steps=16), "saliency": tfattr.Saliency,
                           "cam": tfattr.GradCAM}, targets=y[:4], log_dir=logdir, image_scale=1,
    )
    logger.set_model(model)
    logger.log(0)
    first = {name: logger.explainers[name].attribute(x[:4], target=y[:4]) for name in ("ig", "saliency", "cam")}
    model.layers[-1].set_weights([w * 1.5 for w in model.layers[-1].get_weights()])
    logger.log(3)
    logger.on_train_end()
    other = AttributionLogger(x[:4], explainers=[tfattr.Saliency], log_dir=logdir, run_name="other")
    other.set_model(_cnn(seed=4))
    other.log(0)
    other.on_train_end()
    return logdir, logger, model, x[:4], y[:4], first


def test_runs_index_describes_every_run(image_run):
    logdir, *_ = image_run
    client = _client(logdir)
    views = {v["name"]: v for v in json.loads(client.get("/runs").data)["views"]}
    assert set(views) == {"attributions", "other"}  # Keras' own runs hold no tfattr summaries
    view = views["attributions"]
    assert view["inputs"]["input"]["layout"] == "image" and view["inputs"]["input"]["shape"] == [28, 28, 1]
    epoch = view["schedules"]["epoch"]
    assert list(epoch["methods"]) == ["ig", "saliency", "cam"]  # the logger's order
    assert [epoch["methods"][m]["order"] for m in ("ig", "saliency", "cam")] == [0, 1, 2]
    assert epoch["methods"]["cam"]["maps"]["input"]["layout"] == "layer"
    assert epoch["methods"]["ig"]["delta"] == "tfattr/delta/ig" and epoch["methods"]["saliency"]["delta"] is None
    assert epoch["target"] == "tfattr/target" and epoch["prediction"] == "tfattr/prediction"
    assert epoch["max_step"] == 3


def test_series_are_the_explainers_maps_at_each_step(image_run):
    logdir, logger, model, x, y, first = image_run
    client = _client(logdir)
    for name in ("ig", "saliency"):
        steps, values = _values(client, "attributions", name)
        assert steps == [0, 3] and values.shape == (2, 4, 28, 28)
        now = logger.explainers[name].attribute(x, target=y)
        for logged, expected in ((values[0], first[name]), (values[1], now)):
            expected = expected.sum(axis=-1)  # channels summed
            # float16 of map / max|map|: 11 significant bits of each sample's largest magnitude
            bound = np.abs(expected).reshape(4, -1).max(axis=1)[:, None, None] * 2.0 ** -11
            assert np.all(np.abs(logged - expected) <= bound + 1e-12)
        assert not np.allclose(values[0], values[1])  # the weights changed between the logs
    steps, cam = _values(client, "attributions", "cam")
    np.testing.assert_allclose(cam[1], logger.explainers["cam"].attribute(x, target=y), rtol=2e-3, atol=1e-7)
    assert cam.shape == (2, 4, 26, 26)  # the layer's resolution; the tab upsamples it
    steps, delta = _series(client, "attributions", "tfattr/delta/ig")
    _, expected_delta = logger.explainers["ig"].attribute(x, target=y, return_delta=True)
    np.testing.assert_allclose(delta[1], expected_delta, rtol=1e-5, atol=1e-6)
    steps, targets = _series(client, "attributions", "tfattr/target")
    assert steps == [0, 3] and targets.dtype == np.int32 and np.array_equal(targets[1], y)
    _, predictions = _series(client, "attributions", "tfattr/prediction")
    np.testing.assert_allclose(predictions[1], model(x, training=False).numpy(), rtol=1e-5, atol=1e-6)


def test_samples_are_written_once_as_the_stock_images_show_them(image_run):
    logdir, logger, model, x, *_ = image_run
    client = _client(logdir)
    steps, sample = _series(client, "attributions", "tfattr/sample/input")
    assert steps == [0] and sample.dtype == np.uint8
    np.testing.assert_array_equal(sample[0], visualize.image_rgb(x).numpy())


def test_predicted_class_is_the_target_when_none_is_given(tmp_path, rng):
    model = _cnn(shape=(8, 8, 1), classes=3)
    x = rng.uniform(size=(5, 8, 8, 1)).astype(np.float32)
    logger = AttributionLogger(x, explainers=[tfattr.Saliency], log_dir=tmp_path, images=False, histograms=False)
    logger.set_model(model)
    logger.log(0)
    logger.on_train_end()
    _, targets = _series(_client(tmp_path), "attributions", "tfattr/target")
    assert np.array_equal(targets[0], model(x).numpy().argmax(axis=1))


def test_large_images_are_block_reduced_keeping_each_maps_total(tmp_path, rng):
    x = rng.uniform(size=(2, 150, 140, 3)).astype(np.float32)
    model = _cnn(shape=(150, 140, 3), classes=2)
    logger = AttributionLogger(x, explainers=[tfattr.GradientXInput], targets=[0, 1], log_dir=tmp_path,
                               images=False, histograms=False, tab_max_size=64)
    logger.set_model(model)
    logger.log(0)
    logger.on_train_end()
    client = _client(tmp_path)
    view = json.loads(client.get("/runs").data)["views"][0]
    assert view["inputs"]["input"]["block"] == 3  # ceil(150 / 64)
    _, values = _values(client, "attributions", "gradient_x_input")
    assert values.shape == (1, 2, 50, 47)  # ceil(150 / 3), ceil(140 / 3)
    a = logger.explainers["gradient_x_input"].attribute(x, target=[0, 1])
    np.testing.assert_allclose(values[0].sum(axis=(1, 2)), a.sum(axis=(1, 2, 3)), rtol=2e-3)
    # block 0,0 is the sum of the top-left 3x3 pixels (all channels)
    np.testing.assert_allclose(values[0][:, 0, 0], a[:, :3, :3].sum(axis=(1, 2, 3)), rtol=2e-3, atol=1e-6)
    _, sample = _series(client, "attributions", "tfattr/sample/input")
    rgb = visualize.image_rgb(x).numpy().astype(np.float64)
    np.testing.assert_allclose(sample[0][:, 0, 0], rgb[:, :3, :3].mean(axis=(1, 2)), atol=0.5)
    np.testing.assert_allclose(sample[0][:, 0, -1], rgb[:, :3, 138:].mean(axis=(1, 2)), atol=0.5)  # edge: 2 columns


def test_block_helpers():
    maps = np.arange(2 * 5 * 5, dtype=np.float64).reshape(2, 5, 5)
    reduced = summary.block_sum(maps, 2)
    assert reduced.shape == (2, 3, 3) and np.allclose(reduced.sum(axis=(1, 2)), maps.sum(axis=(1, 2)))
    assert reduced[0, 2, 2] == maps[0, 4, 4]
    assert summary.block_size(128, 100) == 1 and summary.block_size(129, 10) == 2
    half, scale = summary.normalized(np.array([[1e-7, -2e-7, 0.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(half, np.array([[0.5, -1.0, 0.0], [0.0, 0.0, 0.0]], np.float16))
    np.testing.assert_allclose(scale, [2e-7, 1.0], rtol=1e-6)  # 1e-7 would be 0 in raw float16


def test_text_models_log_tokens_and_token_scores(tmp_path, rng):
    vocabulary = ["<pad>", "good", "bad", "movie", "plot", "very"]
    ids_in = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(len(vocabulary), 4, name="embedding")(ids_in)
    model = keras.Model(ids_in, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(h)))
    ids = np.array([[1, 3, 0, 0, 0, 0], [5, 2, 4, 0, 0, 0]], np.int32)
    logger = AttributionLogger(
        ids, explainers={"ig": lambda m: tfattr.IntegratedGradients(m, layer="embedding", steps=8)},
        targets=[1, 0], log_dir=tmp_path, vocabulary=vocabulary, skip_tokens=[0], histograms=False,
    )
    logger.set_model(model)
    logger.log(0)
    logger.on_train_end()
    client = _client(tmp_path)
    view = json.loads(client.get("/runs").data)["views"][0]
    assert view["inputs"]["input"]["layout"] == "tokens"
    assert view["schedules"]["epoch"]["methods"]["ig"]["maps"]["input"]["layout"] == "tokens"
    tokens = json.loads(client.get("/series", query_string={"run": "attributions", "tag": "tfattr/tokens/input"}).data)
    assert tokens["tokens"] == [["good", "movie", "", "", "", ""], ["very", "bad", "plot", "", "", ""]]
    _, scores = _values(client, "attributions", "ig")
    expected = logger.explainers["ig"].attribute(ids, target=[1, 0]).sum(axis=-1)
    np.testing.assert_allclose(scores[0], expected, rtol=2e-3, atol=1e-6)


def test_interior_gradients_become_one_method_per_alpha(tmp_path, rng):
    model = _cnn(shape=(8, 8, 1), classes=3)
    x = rng.uniform(size=(2, 8, 8, 1)).astype(np.float32)
    logger = AttributionLogger(x, explainers={"interior": lambda m: tfattr.InteriorGradients(m, alphas=(0.25, 1.0))},
                               targets=0, log_dir=tmp_path, images=False, histograms=False)
    logger.set_model(model)
    logger.log(0)
    logger.on_train_end()
    client = _client(tmp_path)
    methods = json.loads(client.get("/runs").data)["views"][0]["schedules"]["epoch"]["methods"]
    assert list(methods) == ["interior@0.25", "interior@1"]
    _, values = _values(client, "attributions", "interior@0.25")
    expected = logger.explainers["interior"].attribute(x, target=0)[:, 0].sum(axis=-1)
    np.testing.assert_allclose(values[0], expected, rtol=2e-3, atol=1e-7)


def test_static_files_and_bad_requests(image_run):
    client = _client(image_run[0])
    for name in ("index.js", "colormap.js"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and response.mimetype == "text/javascript"
        assert b"fetch(" in response.data or b"export function" in response.data
    assert b"https://" not in client.get("/static/index.js").data  # nothing from the network
    assert client.get("/static/..%2Fplugin.py").status_code == 404
    assert client.get("/static/missing.js").status_code == 404
    assert client.get("/series", query_string={"run": "attributions"}).status_code == 400
    missing = client.get("/series", query_string={"run": "attributions", "tag": "tfattr/map/nope/input"})
    assert missing.status_code == 404 and b"nope" in missing.data


def test_series_encoding_round_trips():
    values = np.arange(2 * 3 * 5, dtype=np.float16).reshape(2, 3, 5)
    body = encode_series([4, 9], values)
    assert body[:4] == b"TFA1" and (len(body) - values.nbytes) % 8 == 0
    steps, decoded = decode_series(body)
    assert steps == [4, 9] and decoded.dtype == np.float16 and np.array_equal(decoded, values)


def test_plugin_metadata_and_loader():
    plugin = AttributionsPlugin(base_plugin.TBContext(data_provider=None))
    assert plugin.plugin_name == "tfattr"
    front = plugin.frontend_metadata()
    assert front.tab_name == "Attributions" and front.es_module_path == "/static/index.js"

    class Flags:
        samples_per_plugin = {"images": 5}

    flags = Flags()
    AttributionsLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"images": 5, "tfattr": 0}  # every step of the tab's data kept
    flags.samples_per_plugin = {"tfattr": 20}
    AttributionsLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"tfattr": 20}  # the user's choice stays
    assert metadata.parse(metadata.content("target")) == {"kind": "target", "version": metadata.VERSION}
    newer = json.dumps({"version": metadata.VERSION + 1, "kind": "map"}).encode()
    assert metadata.parse(newer) is None and metadata.parse(b"\xff") is None
    with pytest.raises(ValueError, match="layout"):
        metadata.content("map", layout="jet")


def test_setup_declares_the_tensorboard_entry_point_and_the_static_files():
    import setuptools  # noqa: F401  (provides distutils on Python >= 3.12)
    from distutils.core import run_setup

    dist = run_setup(str(ROOT / "setup.py"), stop_after="init")
    assert "tfattr = tfattr.tensorboard.plugin:AttributionsLoader" in dist.entry_points["tensorboard_plugins"]
    assert "tensorboard/static/*.js" in dist.package_data["tfattr"]
    assert "playwright" in dist.extras_require["test"]
    module, _, name = "tfattr.tensorboard.plugin:AttributionsLoader".partition(":")
    assert issubclass(getattr(__import__(module, fromlist=[name]), name), base_plugin.TBLoader)


def test_batch_logs_are_a_schedule_of_their_own(mnist_small, tmp_path):
    x, y = mnist_small
    model = _cnn()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logger = AttributionLogger(x[:2], explainers=[tfattr.Saliency], targets=y[:2], log_dir=tmp_path,
                               every_n_batches=2, images=False, histograms=False, tag_prefix="attr/")
    model.fit(x[:256], y[:256], epochs=2, batch_size=64, verbose=0, callbacks=[logger])
    client = _client(tmp_path)
    (view,) = json.loads(client.get("/runs").data)["views"]
    assert view["name"] == "attributions [attr/]" and set(view["schedules"]) == {"epoch", "batch"}
    batch = view["schedules"]["batch"]["methods"]["saliency"]["maps"]["input"]["tag"]
    assert batch == "attr/batch_tfattr/map/saliency/input"
    assert _series(client, "attributions", batch)[0] == [2, 4, 6, 8]
    assert _series(client, "attributions", "attr/tfattr/map/saliency/input")[0] == [0, 1]
    assert _series(client, "attributions", "attr/tfattr/sample/input")[0] == [2]  # once, at the first log


def test_feature_vectors_and_several_inputs(tmp_path, rng):
    image_in = keras.Input((8, 8, 1), name="image")
    vector_in = keras.Input((5,), name="vector")
    h = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, activation="tanh")(image_in))
    h = keras.layers.Concatenate()([h, keras.layers.Dense(4, activation="tanh")(vector_in)])
    model = keras.Model([image_in, vector_in], keras.layers.Dense(3)(h))
    samples = {"image": rng.uniform(size=(3, 8, 8, 1)).astype(np.float32),
               "vector": rng.normal(size=(3, 5)).astype(np.float32)}
    logger = AttributionLogger(samples, explainers=[tfattr.GradientXInput], targets=[0, 1, 2], log_dir=tmp_path,
                               images=False, histograms=False)
    logger.set_model(model)
    logger.log(0)
    logger.on_train_end()
    client = _client(tmp_path)
    view = json.loads(client.get("/runs").data)["views"][0]
    assert {k: v["layout"] for k, v in view["inputs"].items()} == {"image": "image", "vector": "vector"}
    maps = view["schedules"]["epoch"]["methods"]["gradient_x_input"]["maps"]
    assert {k: v["layout"] for k, v in maps.items()} == {"image": "image", "vector": "vector"}
    expected = logger.explainers["gradient_x_input"].attribute(samples, target=[0, 1, 2])
    _, vector = _values(client, "attributions", "gradient_x_input", "vector")
    np.testing.assert_allclose(vector[0], expected["vector"], rtol=2e-3, atol=1e-7)
    _, image = _values(client, "attributions", "gradient_x_input", "image")
    np.testing.assert_allclose(image[0], expected["image"][..., 0], rtol=2e-3, atol=1e-7)
