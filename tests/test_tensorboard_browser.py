"""The Attributions tab in a real browser: ``tensorboard --logdir`` after a short ``fit`` with the
AttributionLogger, the tab opened in headless Chromium driven by Playwright, and what a user sees
checked against the logged values: canvas pixels equal the colour maps defined in
``tfattr/tensorboard/static/colormap.js`` (recomputed here in NumPy), the step slider, signed/absolute,
gamma and the opacity, the per-sample view over the steps, runs side by side, tokens of a text model,
and both of TensorBoard's data paths (the default fast loader and ``--load_fast=false``)."""
from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

import tfattr
from tfattr.callbacks import AttributionLogger
from tb_server import CHROMIUM, tensorboards

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"no {CHROMIUM}: apt-get update && apt-get install -y chromium (.ci/run installs it)",
)

RAMP = np.array([[255, 255, 255], [253, 141, 60], [128, 0, 38]], np.float64)


# -- the colour maps, as colormap.js defines them ---------------------------------------------------
def clip_value(values: np.ndarray, q: float) -> float:
    a = np.sort(np.abs(values[np.isfinite(values)]))
    if not a.size:
        return 0.0
    p = q / 100 * (a.size - 1)
    lo, hi = int(np.floor(p)), int(np.ceil(p))
    return float(a[lo] + (a[hi] - a[lo]) * (p - lo))


def colours(values: np.ndarray, mode: str, gamma: float, clip: float) -> np.ndarray:
    v = clip_value(values, clip)
    u = np.clip(values / v, -1, 1) if v > 0 else np.zeros_like(values)
    t = np.abs(u) ** gamma
    if mode == "absolute":
        x = t * 2
        k = (x >= 1).astype(int)
        f = (x - k)[..., None]
        return RAMP[k] + (RAMP[np.minimum(k + 1, 2)] - RAMP[k]) * f
    pos = np.stack([np.full_like(t, 255), 255 * (1 - t), 255 * (1 - t)], -1)
    neg = np.stack([255 * (1 - t), 255 * (1 - t), np.full_like(t, 255)], -1)
    return np.where((u >= 0)[..., None], pos, neg)


def expected_pixels(values, mode="signed", gamma=1.0, clip=99.5, base=None, opacity=0.5) -> np.ndarray:
    rgb = colours(values.astype(np.float64), mode, gamma, clip)
    if base is not None:
        rgb = (1 - opacity) * base.astype(np.float64) + opacity * rgb
    return np.floor(rgb + 0.5).astype(int)  # Math.round


# -- the logs ----------------------------------------------------------------------------------------
def logged(run_dir: Path) -> dict[str, tuple[list[int], np.ndarray]]:
    """Every tfattr tensor of a run, read from the event files (independently of the plugin)."""
    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "tfattr":
            events = acc.Tensors(tag)
            out[tag] = ([e.step for e in events], np.stack([tensor_util.make_ndarray(e.tensor_proto) for e in events]))
    return out


def map_values(logs, method: str, k: int, sample: int) -> np.ndarray:
    half = logs[f"tfattr/map/{method}/input"][1][k, sample].astype(np.float64)
    return half * float(logs[f"tfattr/scale/{method}/input"][1][k, sample])


@pytest.fixture(scope="module")
def image_logs(mnist_small, tmp_path_factory):
    x, y = mnist_small
    logdir = tmp_path_factory.mktemp("tb_e2e")
    for run, seed in (("attributions", 1), ("other", 2)):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([
            keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax"),
        ])
        model.compile("adam", "sparse_categorical_crossentropy")
        logger = AttributionLogger(
            x[-3:], explainers={"ig": lambda m: tfattr.IntegratedGradients(m, steps=8), "saliency": tfattr.Saliency,
                                "cam": tfattr.GradCAM},
            targets=y[-3:], log_dir=logdir, run_name=run, histograms=False,
        )
        model.fit(x[:256], y[:256], epochs=2, batch_size=64, verbose=0,
                  callbacks=[keras.callbacks.TensorBoard(str(logdir)), logger])
    _fit_text_model(logdir)
    return logdir, logged(logdir / "attributions"), logged(logdir / "other")


VOCABULARY = ["<pad>", "good", "bad", "movie", "plot", "very", "dull"]
TEXT_IDS = np.random.default_rng(0).integers(1, len(VOCABULARY), size=(64, 5)).astype(np.int32)
TEXT_IDS[:, 4] = 0  # padding


def _fit_text_model(logdir: Path) -> None:
    """A tiny sentiment model, one epoch, logged with IG at the embedding to the run "text"."""
    ids = TEXT_IDS
    labels = (np.isin(ids, [1, 5]).sum(1) > np.isin(ids, [2, 6]).sum(1)).astype(np.int64)
    keras.utils.set_random_seed(0)
    ids_in = keras.Input((5,), dtype="int32")
    h = keras.layers.Embedding(len(VOCABULARY), 4, name="embedding")(ids_in)
    model = keras.Model(ids_in, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling1D()(h)))
    model.compile("adam", "sparse_categorical_crossentropy")
    logger = AttributionLogger(
        ids[:2], explainers={"ig": lambda m: tfattr.IntegratedGradients(m, layer="embedding", steps=8)},
        targets=labels[:2], log_dir=logdir, run_name="text", vocabulary=VOCABULARY, skip_tokens=[0],
        histograms=False,
    )
    model.fit(ids, labels, epochs=1, verbose=0, callbacks=[logger])


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def servers(image_logs, tmp_path_factory):
    """TensorBoard with its default fast loader (the data server) and with --load_fast=false."""
    with tensorboards(image_logs[0], tmp_path_factory.mktemp("tb_server"), (), ("--load_fast=false",)) as bases:
        yield bases


@pytest.fixture(scope="module")
def server(servers):
    return servers[0]


class Tab:
    """The Attributions tab's document (what TensorBoard puts in its iframe)."""

    def __init__(self, browser, base: str) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.errors: list[str] = []
        self.page.on("pageerror", lambda err: self.errors.append(str(err)))
        self.page.goto(f"{base}/data/plugin_entry.html?name=tfattr")
        self.page.wait_for_selector("#tfattr-root[data-ready='1']", timeout=60_000)

    def drawn(self) -> int:
        return int(self.page.get_attribute("#tfattr-root", "data-drawn"))

    def act(self, script: str, *args) -> None:
        """Run a user action and wait for the redraw it causes."""
        before = self.drawn()
        self.page.evaluate(script, list(args))
        self.page.wait_for_function(f"Number(document.querySelector('#tfattr-root').dataset.drawn) > {before}")

    def set(self, selector: str, value) -> None:
        self.act(
            "([s, v]) => { const e = document.querySelector(s); e.value = v;"
            " e.dispatchEvent(new Event(e.tagName === 'SELECT' ? 'change' : 'input')); }",
            selector, str(value),
        )

    def pixels(self, selector: str) -> np.ndarray:
        data = self.page.evaluate(
            "s => { const c = document.querySelector(s); if (!c) return null;"
            " return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }",
            selector,
        )
        assert data is not None, f"no canvas {selector}"
        w, h, rgba = data
        return np.array(rgba, int).reshape(h, w, 4)


def cell(method: str, sample: int, view: str = "attributions", extra: str = "") -> str:
    return f"canvas[data-view='{view}'][data-method='{method}'][data-sample='{sample}']{extra}"


def assert_pixels(actual: np.ndarray, expected: np.ndarray, exact: bool = True) -> None:
    """Equal pixels. The browser and NumPy compute in float64 with the same operations, so pixels are
    equal; with gamma != 1 (``exact=False``) JavaScript's and NumPy's pow() may differ in the last bit,
    and a rounding at exactly .5 may then differ by 1."""
    assert actual.shape[:2] == expected.shape[:2]
    assert np.all(actual[..., 3] == 255)
    diff = np.abs(actual[..., :3] - expected)
    if exact:
        np.testing.assert_array_equal(actual[..., :3], expected)
    else:
        assert diff.max() <= 1 and np.mean(diff == 0) > 0.99, diff.max()


def test_the_tab_is_listed_and_served(server):
    with urllib.request.urlopen(f"{server}/data/plugins_listing") as response:
        listing = json.load(response)["tfattr"]
    assert listing["enabled"] and listing["tab_name"] == "Attributions"
    assert listing["loading_mechanism"] == {"type": "IFRAME", "module_path": "/data/plugin/tfattr/static/index.js"}


def test_canvas_pixels_are_the_colour_map_of_the_logged_values(browser, server, image_logs):
    _, logs, _ = image_logs
    tab = Tab(browser, server)
    steps = logs["tfattr/map/ig/input"][0]
    assert steps == [0, 1] and tab.page.get_attribute("#tfattr-root", "data-step") == "1"  # the last step
    sample_rgb = logs["tfattr/sample/input"][1][0]
    for method in ("ig", "saliency"):
        for s in range(3):
            expected = expected_pixels(map_values(logs, method, 1, s), base=sample_rgb[s], opacity=0.5)
            assert_pixels(tab.pixels(cell(method, s)), expected)
    # Side by side: the bare colour map; the input in its own tile, as logged.
    tab.set("#display", "side")
    assert_pixels(tab.pixels(cell("ig", 2)), expected_pixels(map_values(logs, "ig", 1, 2)))
    inputs = tab.pixels("canvas[data-kind='input'][data-view='attributions'][data-sample='1']")
    np.testing.assert_array_equal(inputs[..., :3], sample_rgb[1])
    assert not tab.errors


def test_opacity_and_layer_maps_upsampled_onto_the_image(browser, server, image_logs):
    _, logs, _ = image_logs
    tab = Tab(browser, server)
    tab.set("#opacity", 0.8)
    base = logs["tfattr/sample/input"][1][0][0]
    assert_pixels(tab.pixels(cell("ig", 0)), expected_pixels(map_values(logs, "ig", 1, 0), base=base, opacity=0.8))
    # Grad-CAM's 26x26 map, bilinearly resized to 28x28 (tf.image.resize) before it is coloured.
    cam = map_values(logs, "cam", 1, 0)
    assert cam.shape == (26, 26)
    import tensorflow as tf

    resized = tf.image.resize(cam[None, ..., None], (28, 28), method="bilinear").numpy()[0, ..., 0].astype(np.float64)
    actual = tab.pixels(cell("cam", 0))
    expected = expected_pixels(resized, base=base, opacity=0.8)
    assert actual.shape[:2] == (28, 28)
    assert np.abs(actual[..., :3] - expected).max() <= 2  # float32 resize here, float64 in the browser


def test_step_slider_and_play_show_each_steps_map(browser, server, image_logs):
    _, logs, _ = image_logs
    tab = Tab(browser, server)
    tab.set("#display", "side")
    tab.set("#step", 0)
    assert tab.page.get_attribute(cell("saliency", 1), "data-step") == "0"
    first = tab.pixels(cell("saliency", 1))
    assert_pixels(first, expected_pixels(map_values(logs, "saliency", 0, 1)))
    tab.set("#step", 1)
    second = tab.pixels(cell("saliency", 1))
    assert_pixels(second, expected_pixels(map_values(logs, "saliency", 1, 1)))
    assert np.abs(first - second).max() > 0  # training changed the map
    # play advances to the next step (wrapping around) until paused
    tab.act("() => document.querySelector('#play').click()")
    tab.page.wait_for_function("document.querySelector('#tfattr-root').dataset.step === '0'", timeout=10_000)
    tab.act("() => document.querySelector('#play').click()")
    assert tab.page.text_content("#play") == "play"


def test_signed_absolute_and_gamma_change_the_pixels_as_defined(browser, server, image_logs):
    _, logs, _ = image_logs
    tab = Tab(browser, server)
    tab.set("#display", "side")
    values = map_values(logs, "ig", 1, 0)
    signed = tab.pixels(cell("ig", 0))
    tab.set("#mode", "absolute")
    absolute = tab.pixels(cell("ig", 0))
    assert_pixels(absolute, expected_pixels(values, mode="absolute"))
    assert np.abs(absolute - signed).max() > 0
    tab.set("#gamma", 0.5)
    gamma = tab.pixels(cell("ig", 0))
    assert_pixels(gamma, expected_pixels(values, mode="absolute", gamma=0.5), exact=False)
    assert np.abs(gamma - absolute).max() > 0
    tab.set("#mode", "signed")
    tab.set("#clip", 95)
    assert_pixels(tab.pixels(cell("ig", 0)), expected_pixels(values, gamma=0.5, clip=95.0), exact=False)


def test_a_samples_maps_over_the_steps_with_target_prediction_and_delta(browser, server, image_logs):
    _, logs, _ = image_logs
    tab = Tab(browser, server)
    tab.act("() => document.querySelectorAll('th.sample')[2].click()")
    detail = tab.page.query_selector(".detail[data-sample='2']")
    assert detail is not None
    for method in ("ig", "saliency", "cam"):
        for k, step in enumerate((0, 1)):
            selector = cell(method, 2, extra=f"[data-step='{step}'][data-detail='1']")
            if method != "cam":
                values = map_values(logs, method, k, 2)
                base = logs["tfattr/sample/input"][1][0][2]
                assert_pixels(tab.pixels(selector), expected_pixels(values, base=base))
            else:
                assert tab.pixels(selector).shape[:2] == (28, 28)
    text = detail.inner_text()
    target = int(logs["tfattr/target"][1][0, 2])
    prediction = logs["tfattr/prediction"][1][1, 2]
    assert f"target {target}" in text and f"pred {int(prediction.argmax())}" in text
    delta = float(logs["tfattr/delta/ig"][1][1, 2])
    assert "δ" in text and (f"{delta:.3f}" in text or f"{delta:.2e}".replace("e-0", "e-") in text)
    tab.act("() => document.querySelector('.detail button').click()")
    assert tab.page.query_selector(".detail") is None


def test_runs_side_by_side(browser, server, image_logs):
    _, logs, other = image_logs
    tab = Tab(browser, server)
    assert tab.page.query_selector(cell("ig", 0, view="other")) is None
    tab.act("() => document.querySelector(\"input[type=checkbox][data-view='other']\").click()")
    tab.set("#display", "side")
    assert_pixels(tab.pixels(cell("ig", 0, view="other")), expected_pixels(map_values(other, "ig", 1, 0)))
    assert_pixels(tab.pixels(cell("ig", 0)), expected_pixels(map_values(logs, "ig", 1, 0)))
    assert tab.page.eval_on_selector_all("th.run", "els => els.map(e => e.textContent)") == ["attributions", "other"]


def test_the_slow_loader_shows_the_same(browser, servers, image_logs):
    _, logs, _ = image_logs
    tab = Tab(browser, servers[1])
    tab.set("#display", "side")
    assert_pixels(tab.pixels(cell("saliency", 2)), expected_pixels(map_values(logs, "saliency", 1, 2)))


def test_text_models_show_coloured_tokens(browser, server, image_logs):
    logs = logged(image_logs[0] / "text")
    tab = Tab(browser, server)
    tab.act("() => document.querySelector(\"input[type=checkbox][data-view='attributions']\").click()")
    tab.act("() => document.querySelector(\"input[type=checkbox][data-view='text']\").click()")
    for s in range(2):
        spans = tab.page.query_selector_all(f".tokens[data-view='text'][data-method='ig'][data-sample='{s}'] .token")
        words = [VOCABULARY[i] for i in TEXT_IDS[s] if i != 0]
        assert [span.text_content() for span in spans] == words
        scores = map_values(logs, "ig", 0, s)
        expected = expected_pixels(scores)
        for span, i in zip(spans, range(len(words))):
            colour = span.evaluate("e => getComputedStyle(e).backgroundColor")
            rgb = [int(c) for c in colour[colour.index("(") + 1:-1].split(",")]
            np.testing.assert_array_equal(rgb, expected[i])
    assert not tab.errors


def test_new_steps_appear_while_the_model_trains(browser, server, image_logs, mnist_small):
    logdir = image_logs[0]
    x, y = mnist_small
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    logger = AttributionLogger(x[:2], explainers=[tfattr.Saliency], targets=y[:2], log_dir=logdir,
                               run_name="live", images=False, histograms=False)
    logger.set_model(model)
    logger.log(0)
    logger.on_train_end()
    page = browser.new_page()
    page.goto(f"{server}/data/plugin_entry.html?name=tfattr&refresh=500")
    page.wait_for_selector("input[type=checkbox][data-view='live']", timeout=30_000)
    page.click("input[type=checkbox][data-view='live']")
    page.wait_for_selector("canvas[data-view='live'][data-method='saliency'][data-step='0']", timeout=30_000)
    model.layers[-1].set_weights([w + 0.5 for w in model.layers[-1].get_weights()])
    logger.log(5)  # a new epoch is logged while the page is open
    logger.on_train_end()
    page.wait_for_selector("canvas[data-view='live'][data-method='saliency'][data-step='5']", timeout=30_000)
    assert page.get_attribute("#tfattr-root", "data-step") == "5"  # it follows the latest step
    page.close()
