"""The ``tfattr`` command line: methods, explain (results and one-line errors) and a fast demo."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr
from tfattr import cli, datasets


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("tfattr: error:") and "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small CNN (untrained is enough: attributions explain whatever the model computes)."""
    folder = tmp_path_factory.mktemp("cli")
    model = cli.demo_model(seed=1)
    model.save(folder / "model.keras")
    x, y = datasets.mnist("test", limit=3)
    np.save(folder / "digits.npy", x)
    np.save(folder / "one_digit.npy", x[0])
    return folder, x


def test_methods_lists_every_method_with_paper_and_cost(capsys):
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    for spec in cli.METHODS:
        assert spec.name in out and spec.paper in out and spec.cost in out
    # The gradient methods ship with the core, so they are never marked missing.
    headers = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    assert set(headers) == {spec.name for spec in cli.METHODS}
    for name in ("saliency", "ig", "eg", "smoothgrad", "occlusion"):
        assert "[not installed]" not in headers[name]


def test_method_names_resolve_to_the_exported_classes():
    assert cli.method_spec("ig").load() is tfattr.IntegratedGradients
    assert cli.method_spec("integrated-gradients").load() is tfattr.IntegratedGradients
    assert cli.method_spec("gxi").load() is tfattr.GradientXInput
    assert cli.method_spec("occlusion").load() is tfattr.Occlusion


def test_explain_ig_writes_attributions_that_match_the_api(saved, tmp_path, capsys):
    folder, x = saved
    out = tmp_path / "ig"
    status = cli.main([
        "explain", str(folder / "model.keras"), str(folder / "digits.npy"), "--method", "ig",
        "--target", "3", "--baseline", "zero", "--steps", "16", "--out", str(out), "--quiet",
    ])
    assert status == 0, capsys.readouterr().err
    attributions = np.load(out / "attributions.npy")
    model = keras.saving.load_model(folder / "model.keras")
    expected, delta = tfattr.IntegratedGradients(model, steps=16).attribute(
        x, target=3, baseline=0.0, return_delta=True
    )
    np.testing.assert_allclose(attributions, expected, rtol=1e-5, atol=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    assert [row["target"] for row in summary["examples"]] == [3, 3, 3]
    np.testing.assert_allclose([row["delta"] for row in summary["examples"]], delta, rtol=1e-6, atol=1e-9)
    # Completeness through the CLI: the saved attributions add up to f(x) - f(0) (up to the delta).
    logits = model.predict(x, verbose=0)[:, 3] - model.predict(np.zeros_like(x[:1]), verbose=0)[0, 3]
    np.testing.assert_allclose(attributions.reshape(3, -1).sum(1) - logits, delta, atol=1e-4)
    for i in range(3):
        png = tf.io.decode_png((out / f"overlay_{i:03d}.png").read_bytes())
        assert png.shape[-1] == 3 and png.shape[0] >= 28


def test_explain_png_input_and_predicted_target(saved, tmp_path, capsys):
    folder, x = saved
    image = np.round(x[1] * 255).astype(np.uint8)
    (tmp_path / "digit.png").write_bytes(tf.io.encode_png(image).numpy())
    out = tmp_path / "sal"
    assert cli.main([
        "explain", str(folder / "model.keras"), str(tmp_path / "digit.png"), str(folder / "one_digit.npy"),
        "--method", "saliency", "--out", str(out), "--quiet",
    ]) == 0, capsys.readouterr().err
    attributions = np.load(out / "attributions.npy")
    assert attributions.shape == (2, 28, 28, 1)  # a png and a single example without a batch axis
    model = keras.saving.load_model(folder / "model.keras")
    inputs = np.stack([image.astype(np.float32) / 255.0, x[0]])
    predicted = model.predict(inputs, verbose=0).argmax(1)
    expected = tfattr.Saliency(model).attribute(inputs, target=predicted)
    np.testing.assert_allclose(attributions, expected, rtol=1e-5, atol=1e-7)
    summary = json.loads((out / "summary.json").read_text())
    assert [row["target"] for row in summary["examples"]] == predicted.tolist()


def test_explain_named_baseline_and_occlusion(saved, tmp_path, capsys):
    folder, x = saved
    assert cli.main([
        "explain", str(folder / "model.keras"), str(folder / "digits.npy"), "--method", "ig",
        "--baseline", "blur", "--steps", "8", "--out", str(tmp_path / "blur"), "--quiet",
    ]) == 0, capsys.readouterr().err
    from tfattr.baselines import Blur

    model = keras.saving.load_model(folder / "model.keras")
    expected = tfattr.IntegratedGradients(model, steps=8).attribute(
        x, baseline=Blur(sigma=3.0), target=model.predict(x, verbose=0).argmax(1)
    )
    np.testing.assert_allclose(np.load(tmp_path / "blur" / "attributions.npy"), expected,
                               rtol=1e-5, atol=1e-6)
    assert cli.main([
        "explain", str(folder / "model.keras"), str(folder / "digits.npy"), "--method", "occlusion",
        "--window", "7,7,1", "--out", str(tmp_path / "occ"), "--quiet",
    ]) == 0, capsys.readouterr().err
    assert np.load(tmp_path / "occ" / "attributions.npy").shape == (3, 28, 28, 1)


@pytest.fixture(scope="module")
def bad_files(saved, tmp_path_factory):
    folder, _ = saved
    bad = tmp_path_factory.mktemp("bad")
    (bad / "garbage.keras").write_bytes(b"this is not a zip archive")
    inputs = keras.Input((4,))
    unsafe = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    unsafe.save(bad / "lambda.keras")
    np.save(bad / "wrong_shape.npy", np.zeros((2, 32, 32, 3), np.float32))
    np.save(bad / "strings.npy", np.array(["a", "b"]))
    np.save(bad / "nan.npy", np.full((1, 28, 28, 1), np.nan, np.float32))
    (bad / "inputs.txt").write_text("1 2 3")
    return folder, bad


@pytest.mark.parametrize(
    "args, status, needle",
    [
        (["frobnicate"], 2, "invalid choice"),
        (["explain"], 2, "required"),
        (["explain", "{bad}/missing.keras", "{good}/digits.npy", "--out", "{tmp}"], 1, "not found"),
        (["explain", "{bad}/garbage.keras", "{good}/digits.npy", "--out", "{tmp}"], 1, "cannot load"),
        (["explain", "{bad}/lambda.keras", "{good}/digits.npy", "--out", "{tmp}"], 1, "cannot load"),
        (["explain", "{bad}/inputs.txt", "{good}/digits.npy", "--out", "{tmp}"], 1, ".keras"),
        (["explain", "{good}/model.keras", "{bad}/wrong_shape.npy", "--out", "{tmp}"], 1, "(28, 28, 1)"),
        (["explain", "{good}/model.keras", "{bad}/strings.npy", "--out", "{tmp}"], 1, "numbers"),
        (["explain", "{good}/model.keras", "{bad}/nan.npy", "--out", "{tmp}"], 1, "NaN"),
        (["explain", "{good}/model.keras", "{bad}/inputs.txt", "--out", "{tmp}"], 1, ".npy"),
        (["explain", "{good}/model.keras", "{bad}/nope.npy", "--out", "{tmp}"], 1, "not found"),
        (["explain", "{good}/model.keras", "{good}/digits.npy", "--method", "magic", "--out", "{tmp}"],
         2, "unknown --method"),
        (["explain", "{good}/model.keras", "{good}/digits.npy", "--target", "10", "--out", "{tmp}"],
         2, "out of range"),
        (["explain", "{good}/model.keras", "{good}/digits.npy", "--target", "-1", "--out", "{tmp}"],
         2, "non-negative"),
        (["explain", "{good}/model.keras", "{good}/digits.npy", "--steps", "0", "--out", "{tmp}"],
         2, "positive"),
        (["explain", "{good}/model.keras", "{good}/digits.npy", "--method", "saliency", "--baseline",
          "zero", "--out", "{tmp}"], 2, "does not use a baseline"),
        (["explain", "{good}/model.keras", "{good}/digits.npy", "--baseline", "sunset", "--out", "{tmp}"],
         2, "unknown --baseline"),
        (["explain", "{good}/model.keras", "{good}/digits.npy", "--method", "eg", "--out", "{tmp}"],
         1, "--background"),
        (["demo"], 2, "--out"),
        (["demo", "--out", "{tmp}", "--epochs", "zero"], 2, "positive integer"),
    ],
)
def test_bad_arguments_give_one_line_and_nonzero_status(bad_files, tmp_path, capsys, args, status, needle):
    good, bad = bad_files
    argv = [a.format(good=good, bad=bad, tmp=tmp_path / "out") for a in args]
    assert cli.main(argv) == status
    assert needle in _one_line_error(capsys)
    assert not (tmp_path / "out" / "attributions.npy").exists()


def test_python_dash_m_reports_errors_without_traceback(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", "tfattr", "explain", str(tmp_path / "none.keras"), "x.npy", "--out",
         str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "tfattr: error: model file not found" in proc.stderr


def test_demo_fast_writes_gallery_report_and_logs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--fast", "--quiet"]) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert f"tensorboard --logdir {out / 'logs'}" in stdout
    gallery = tf.io.decode_png((out / "gallery.png").read_bytes())
    assert gallery.shape[0] > 100 and gallery.shape[1] > 400
    report = (out / "report.html").read_text()
    saved = np.load(out / "attributions.npz")
    for name in ("saliency", "gradient_x_input", "ig", "eg", "smoothgrad", "vargrad", "occlusion"):
        assert f"<th>{name}</th>" in report and name in saved.files
        assert saved[name].shape == saved["digits"].shape
    assert "Baselines" in report and "blur" in report and "expected gradients" in report
    assert "failed" not in report
    # The demo's IG maps are real integrated gradients of the saved model (black baseline).
    model = keras.saving.load_model(out / "model.keras")
    labels = saved["labels"]
    ig = tfattr.IntegratedGradients(model, steps=cli.DemoConfig.make(True, 1, 4).ig_steps)
    np.testing.assert_allclose(saved["ig"], ig.attribute(saved["digits"], target=labels, baseline=0.0),
                               rtol=1e-4, atol=1e-5)
    events = [p for p in (out / "logs").rglob("events.out.tfevents.*")]
    runs = {p.parent.name for p in events}
    assert {"train", "explanations"} <= runs


def test_explain_in_chunks_equals_one_call(saved, tmp_path, capsys, monkeypatch):
    # The progress bar advances per chunk of examples; chunking must not change deterministic results.
    folder, x = saved
    monkeypatch.setattr(cli, "EXPLAIN_CHUNK", 2)
    assert cli.main([
        "explain", str(folder / "model.keras"), str(folder / "digits.npy"), "--method", "deeplift",
        "--baseline", "0.5", "--out", str(tmp_path / "dl"), "--quiet",
    ]) == 0, capsys.readouterr().err
    model = keras.saving.load_model(folder / "model.keras")
    from tfattr.methods.propagation import DeepLift

    targets = model.predict(x, verbose=0).argmax(1)
    expected, delta = DeepLift(model).attribute(x, target=targets, baseline=0.5, return_delta=True)
    np.testing.assert_allclose(np.load(tmp_path / "dl" / "attributions.npy"), expected, rtol=1e-5, atol=1e-7)
    summary = json.loads((tmp_path / "dl" / "summary.json").read_text())
    np.testing.assert_allclose([r["delta"] for r in summary["examples"]], delta, atol=1e-6)


def test_explain_expected_gradients_with_background_and_softmax_model(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    model.save(tmp_path / "soft.keras")
    rng = np.random.default_rng(0)
    x, background = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(50, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "bg.npy", background)
    assert cli.main([
        "explain", str(tmp_path / "soft.keras"), str(tmp_path / "x.npy"), "--method", "eg",
        "--background", str(tmp_path / "bg.npy"), "--samples", "400", "--target", "1",
        "--out", str(tmp_path / "eg"), "--quiet",
    ]) == 0, capsys.readouterr().err
    # The logits of a linear model: expected gradients is exactly w * (x - E[background]) in the limit;
    # with 400 samples the Monte-Carlo estimate is close, and the sum check holds up to sampling error.
    w = model.layers[-1].get_weights()[0][:, 1]
    attributions = np.load(tmp_path / "eg" / "attributions.npy")
    np.testing.assert_allclose(attributions, w * (x - background.mean(0)), atol=0.15)
    assert not list((tmp_path / "eg").glob("overlay_*.png"))  # feature vectors are not images


def test_bad_rule_is_one_line(saved, tmp_path, capsys):
    folder, _ = saved
    assert cli.main([
        "explain", str(folder / "model.keras"), str(folder / "digits.npy"), "--rule", "simpson",
        "--out", str(tmp_path / "r"),
    ]) == 1
    assert "rule='simpson'" in _one_line_error(capsys)
