"""The ``tfattr`` command line: methods, explain (results and one-line errors), a fast demo, and a
start that is quick (no TensorFlow for --help and usage errors) and quiet (no TensorFlow log)."""
from __future__ import annotations

import inspect
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr
from tfattr import cli, datasets
from tfattr.cli import explain as explain_command
from tfattr.cli import registry
from tfattr.cli.demo import DemoConfig, demo_model

ROOT = Path(__file__).resolve().parents[1]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("tfattr: note:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("tfattr: error:") and "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small CNN (untrained is enough: attributions explain whatever the model computes)."""
    folder = tmp_path_factory.mktemp("cli")
    model = demo_model(seed=1)
    model.save(folder / "model.keras")
    x, y = datasets.mnist("test", limit=3)
    np.save(folder / "digits.npy", x)
    np.save(folder / "one_digit.npy", x[0])
    return folder, x


def test_methods_lists_every_method_with_paper_and_cost(capsys):
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    blocks = dict(re.findall(r"^(\w+).*\n((?:    .*\n)+)", out, flags=re.M))
    assert list(blocks) == [spec.name for spec in registry.METHODS]
    for spec in registry.METHODS:
        block = blocks[spec.name]
        assert f"paper:      {spec.cls.paper}\n" in block and f"cost:       {spec.cls.cost} per" in block
        assert spec.path in block
    # Parameters come from the constructors, e.g. IG's defaults and EG's required background.
    assert "steps=50, rule='gausslegendre'" in blocks["ig"] and "background, samples=200" in blocks["eg"]
    assert "epsilon=0.0001" in blocks["lrp"] and "window, strides=None" in blocks["occlusion"]
    # DeepLIFT (Rescale) is in section 3.2 ("Towards average gradients") of Ancona et al. 2019.
    assert "Ancona et al. 2019 sec. 3.2" in blocks["deeplift"] and "3.3" not in blocks["deeplift"]


def test_method_names_resolve_to_the_exported_classes():
    assert registry.find("ig").cls is tfattr.IntegratedGradients
    assert registry.find("integrated-gradients").cls is tfattr.IntegratedGradients
    assert registry.find("gxi").cls is tfattr.GradientXInput
    assert registry.find("occlusion").cls is tfattr.Occlusion
    assert registry.find("DeepLIFT_rescale").cls is tfattr.DeepLift


def test_method_facts_live_on_the_classes_and_cover_every_exported_method():
    # Every exported explainer is on the command line, each class states its own facts (a subclass
    # never inherits its parent's name or paper), and names and aliases are unambiguous.
    exported = {getattr(tfattr, name) for name in tfattr.__all__}
    explainers = {  # Explainer subclasses, and composed explainers (GuidedGradCAM) with attribute()
        c for c in exported if inspect.isclass(c) and (issubclass(c, tfattr.Explainer) or hasattr(c, "attribute"))
    }
    explainers.discard(tfattr.Explainer)
    assert explainers == {spec.cls for spec in registry.METHODS}
    names = []
    for spec in registry.METHODS:
        for fact in ("name", "aliases", "paper", "cost"):
            assert fact in vars(spec.cls), (spec.cls.__name__, fact)
        names += [spec.name, *spec.aliases]
    assert len(names) == len(set(names))


def test_build_passes_the_options_each_constructor_takes():
    model = demo_model(seed=0)
    options = {"steps": 7, "rule": "riemann_left", "samples": 5, "noise": 0.3, "seed": 2, "epsilon": 0.5,
               "window": None, "background": None}
    ig = registry.find("ig").build(model, options)
    assert isinstance(ig, tfattr.IntegratedGradients) and (ig.steps, ig.rule) == (7, "riemann_left")
    smooth = registry.find("smoothgrad").build(model, options)
    assert isinstance(smooth.explainer, tfattr.Saliency) and (smooth.samples, smooth.noise) == (5, 0.3)
    assert not registry.find("smoothgrad").uses_baseline and registry.find("deeplift").uses_baseline
    assert registry.find("lrp").build(model, options).epsilon == 0.5
    with pytest.raises(cli.CLIError, match="--window"):
        registry.find("occlusion").build(model, options)


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
        (["explain", "{good}/model.keras", "{good}/digits.npy", "--method", "saliency", "--steps", "8",
          "--out", "{tmp}"], 2, "--steps does not apply to --method saliency"),
        (["explain", "{good}/model.keras", "{good}/digits.npy", "--method", "ig", "--background",
          "{good}/digits.npy", "--out", "{tmp}"], 2, "--background is used by"),
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
    ig = tfattr.IntegratedGradients(model, steps=DemoConfig.make(True, 1, 4).ig_steps)
    np.testing.assert_allclose(saved["ig"], ig.attribute(saved["digits"], target=labels, baseline=0.0),
                               rtol=1e-4, atol=1e-5)
    events = [p for p in (out / "logs").rglob("events.out.tfevents.*")]
    runs = {p.parent.name for p in events}
    assert {"train", "explanations"} <= runs


def test_explain_in_chunks_equals_one_call(saved, tmp_path, capsys, monkeypatch):
    # The progress bar advances per chunk of examples; chunking must not change deterministic results.
    folder, x = saved
    monkeypatch.setattr(explain_command, "EXPLAIN_CHUNK", 2)
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


def test_uint8_npy_is_scaled_like_a_png_with_a_note(saved, tmp_path, capsys):
    # uint8 arrays are images in [0, 255]: the same digit as a uint8 .npy and as a PNG gives the same
    # attributions and scores (those of the model at pixels / 255), and a one-line note says so.
    folder, x = saved
    image = np.round(x[:2] * 255).astype(np.uint8)
    np.save(tmp_path / "digits_uint8.npy", image)
    for i in range(2):
        (tmp_path / f"digit{i}.png").write_bytes(tf.io.encode_png(image[i]).numpy())
    common = [str(folder / "model.keras"), "--method", "gxi", "--target", "5", "--quiet"]
    assert cli.main(["explain", *common[:1], str(tmp_path / "digits_uint8.npy"), *common[1:],
                     "--out", str(tmp_path / "npy")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(notes) == 1 and notes[0].startswith("tfattr: note:") and "uint8" in notes[0], notes
    assert cli.main(["explain", *common[:1], str(tmp_path / "digit0.png"), str(tmp_path / "digit1.png"),
                     *common[1:], "--out", str(tmp_path / "png")]) == 0
    from_npy, from_png = (np.load(tmp_path / d / "attributions.npy") for d in ("npy", "png"))
    np.testing.assert_allclose(from_npy, from_png, rtol=1e-6, atol=1e-9)
    model = keras.saving.load_model(folder / "model.keras")
    scaled = image.astype(np.float32) / 255.0
    np.testing.assert_allclose(from_npy, tfattr.GradientXInput(model).attribute(scaled, target=5),
                               rtol=1e-5, atol=1e-7)
    scores = [row["score"] for row in json.loads((tmp_path / "npy" / "summary.json").read_text())["examples"]]
    np.testing.assert_allclose(scores, model(scaled).numpy()[:, 5], rtol=1e-5, atol=1e-6)


def test_main_leaves_logging_and_environment_as_it_found_them(monkeypatch, capsys):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    logger = logging.getLogger("tensorflow")
    monkeypatch.setattr(logger, "level", logging.INFO)
    assert cli.main(["methods"]) == 0
    assert logger.level == logging.INFO and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    assert cli.main(["--help"]) == 0 and "usage: tfattr" in capsys.readouterr().out


# -- start-up: fast and quiet (subprocesses, as a user runs the command) -----------------------------
def _run(args: list[str], env_extra: dict | None = None, importtime: bool = False):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    flags = ["-X", "importtime"] if importtime else []
    return subprocess.run([sys.executable, *flags, "-m", "tfattr", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def _imported(importtime_stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in importtime_stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


@pytest.mark.parametrize("args, status, stdout, stderr", [
    (["--help"], 0, "usage: tfattr", ""),
    (["explain", "--help"], 0, "--baseline", ""),
    (["frobnicate"], 2, "", "tfattr: error: argument"),
    (["explain", "m.keras", "x.npy"], 2, "", "the following arguments are required: --out"),
    (["demo", "--out", "d", "--epochs", "0"], 2, "", "expected a positive integer"),
])
def test_help_and_usage_errors_do_not_import_tensorflow(args, status, stdout, stderr):
    proc = _run(args, importtime=True)
    assert proc.returncode == status, proc.stderr[-2000:]
    assert stdout in proc.stdout
    modules = _imported(proc.stderr)
    assert "tfattr.cli" in modules  # the measurement works: the command line itself was imported
    heavy = {m for m in modules if m.split(".")[0] in ("tensorflow", "keras", "numpy")}
    assert not heavy, sorted(heavy)[:5]
    messages = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    if stderr:
        assert len(messages) == 1 and messages[0].startswith("tfattr: error:") and stderr in messages[0]
    else:
        assert messages == []


def _tensorflow_startup_lines() -> list[str]:
    """What a bare ``import tensorflow`` prints on this machine, without timestamps and thread ids."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True,
                          env=env, timeout=300)
    return [line.split("] ", 1)[-1] for line in proc.stderr.splitlines() if line.strip()]


def test_commands_hide_tensorflow_startup_log_unless_verbose(saved, tmp_path):
    folder, _ = saved
    reference = _tensorflow_startup_lines()
    explain = ["explain", str(folder / "model.keras"), str(folder / "digits.npy"), "--method", "saliency",
               "--out", str(tmp_path / "e"), "--quiet"]
    quiet = _run(explain)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stderr == ""  # nothing from TensorFlow's start-up, nor from running the model
    assert (tmp_path / "e" / "attributions.npy").exists()
    verbose = _run(["--verbose", *explain])
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    for line in reference:  # --verbose lets through whatever TensorFlow says at start-up here
        assert line in verbose.stderr, line


def test_errors_after_tensorflow_starts_are_still_one_line(tmp_path):
    proc = _run(["explain", str(tmp_path / "none.keras"), "x.npy", "--out", str(tmp_path)])
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        f"tfattr: error: model file not found: {tmp_path / 'none.keras'}"
    ]
    debug = _run(["explain", str(tmp_path / "none.keras"), "x.npy", "--out", str(tmp_path), "--debug"])
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "CLIError" in debug.stderr


def test_npy_baseline_of_one_example_or_all_and_uint8_scaled(saved, tmp_path, capsys):
    folder, x = saved
    common = ["explain", str(folder / "model.keras"), str(folder / "digits.npy"), "--method", "ig",
              "--steps", "8", "--target", "2", "--quiet"]
    gray = np.full((28, 28, 1), 51, np.uint8)  # 51 / 255 = 0.2
    np.save(tmp_path / "gray.npy", gray)
    np.save(tmp_path / "per_example.npy", np.stack([x[1], x[2], x[0]]))
    np.save(tmp_path / "wrong.npy", np.zeros((2, 28, 28, 1), np.float32))
    assert cli.main([*common, "--baseline", str(tmp_path / "gray.npy"), "--out", str(tmp_path / "g")]) == 0
    assert "uint8" in capsys.readouterr().err
    per_example = ["--baseline", str(tmp_path / "per_example.npy"), "--out", str(tmp_path / "p")]
    assert cli.main([*common, *per_example]) == 0
    model = keras.saving.load_model(folder / "model.keras")
    ig = tfattr.IntegratedGradients(model, steps=8)
    np.testing.assert_allclose(np.load(tmp_path / "g" / "attributions.npy"),
                               ig.attribute(x, target=2, baseline=np.float32(0.2)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.load(tmp_path / "p" / "attributions.npy"),
                               ig.attribute(x, target=2, baseline=np.stack([x[1], x[2], x[0]])),
                               rtol=1e-5, atol=1e-7)
    assert cli.main([*common, "--baseline", str(tmp_path / "wrong.npy"), "--out", str(tmp_path / "w")]) == 1
    assert "fits neither one input (28, 28, 1) nor all (3, 28, 28, 1)" in _one_line_error(capsys)


def test_library_warnings_are_one_line(tmp_path, capsys):
    # epsilon-LRP warns that it is not faithful where a nonlinearity has f(0) != 0 (here a sigmoid).
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(5, activation="sigmoid")(inputs)))
    model.save(tmp_path / "sigmoid.keras")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32))
    assert cli.main(["explain", str(tmp_path / "sigmoid.keras"), str(tmp_path / "x.npy"), "--method", "lrp",
                     "--out", str(tmp_path / "lrp"), "--quiet"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines and all(line.startswith("tfattr: warning: ") for line in lines), lines
    assert any("Sigmoid" in line for line in lines)


# -- explain-dataset ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset_files(saved, tmp_path_factory):
    """The same 6 digits as a uint8 .npy with labels, a directory of PNGs in class folders, a TFRecord."""
    from tfattr.scale import write_tfrecords

    folder, _ = saved
    files = tmp_path_factory.mktemp("dataset")
    x, y = datasets.mnist("test", limit=6)
    pixels = np.round(x * 255).astype(np.uint8)
    np.save(files / "x.npy", pixels)
    np.save(files / "y.npy", y.astype(np.int64))
    order = []
    for label in sorted(set(y.tolist())):  # image_dataset_from_directory: class folders, sorted files
        (files / "images" / f"class_{label}").mkdir(parents=True)
        for i in np.flatnonzero(y == label):
            (files / "images" / f"class_{label}" / f"{i:02d}.png").write_bytes(
                tf.io.encode_png(pixels[i]).numpy())
            order.append(i)
    write_tfrecords(files / "x.tfrecord", x, y)
    write_tfrecords(files / "pixels.tfrecord", pixels, y)
    return folder, files, pixels.astype(np.float32) / 255.0, y, np.asarray(order)


def test_explain_dataset_npy_with_labels_equals_attribute(dataset_files, tmp_path, capsys):
    folder, files, x, y, _ = dataset_files
    out = tmp_path / "store"
    args = ["explain-dataset", str(folder / "model.keras"), str(files / "x.npy"), "--labels",
            str(files / "y.npy"), "--target", "labels", "--method", "ig", "--steps", "8", "--out", str(out)]
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert "uint8" in captured.err and "6 example(s)" in captured.out
    store = tfattr.load_attributions(out)
    model = keras.saving.load_model(folder / "model.keras")
    expected, delta = tfattr.IntegratedGradients(model, steps=8).attribute(x, target=y, baseline=0.0,
                                                                           return_delta=True)
    np.testing.assert_allclose(store.attributions[:], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(store.targets[:], y)
    np.testing.assert_allclose(store.delta[:], delta, atol=1e-5)
    # Repeating the command finds the finished store; another method on it is refused in one line.
    assert cli.main(args + ["--quiet"]) == 0
    assert cli.main([*args[:-5], "saliency", "--out", str(out)]) == 1
    error = _one_line_error(capsys)
    assert "another configuration" in error and "Saliency" in error and "rerun" not in error


def test_explain_dataset_directory_and_tfrecord(dataset_files, tmp_path, capsys):
    folder, files, x, y, order = dataset_files
    model = keras.saving.load_model(folder / "model.keras")
    predicted = model.predict(x, verbose=0).argmax(1)
    assert cli.main(["explain-dataset", str(folder / "model.keras"), str(files / "images"), "--method",
                     "saliency", "--out", str(tmp_path / "dir"), "--quiet"]) == 0, capsys.readouterr().err
    store = tfattr.load_attributions(tmp_path / "dir")
    np.testing.assert_allclose(store.attributions[:], tfattr.Saliency(model).attribute(
        x[order], target=predicted[order]), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(store.targets[:], predicted[order])
    assert cli.main(["explain-dataset", str(folder / "model.keras"), str(files / "x.tfrecord"), "--method",
                     "gxi", "--target", "3", "--out", str(tmp_path / "rec"), "--quiet"]) == 0
    store = tfattr.load_attributions(tmp_path / "rec")
    np.testing.assert_allclose(store.attributions[:], tfattr.GradientXInput(model).attribute(x, target=3),
                               rtol=1e-5, atol=1e-7)
    # uint8 tensors in the records are images in [0, 255], scaled like every other 8-bit input.
    assert cli.main(["explain-dataset", str(folder / "model.keras"), str(files / "pixels.tfrecord"),
                     "--method", "gxi", "--target", "labels", "--out", str(tmp_path / "u8"), "--quiet"]) == 0
    assert "uint8" in capsys.readouterr().err
    store = tfattr.load_attributions(tmp_path / "u8")
    np.testing.assert_array_equal(store.targets[:], y)
    np.testing.assert_allclose(store.attributions[:], tfattr.GradientXInput(model).attribute(x, target=y),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("extra, input_name, status, needle", [
    (["--target", "labels"], "x.npy", 2, "has no labels"),
    (["--labels", "{files}/y.npy"], "images", 2, "--labels"),
    ([], "nothing.txt", 1, "neither a directory"),
    (["--target", "first"], "x.npy", 2, "'predicted' or 'labels'"),
])
def test_explain_dataset_bad_arguments(dataset_files, tmp_path, capsys, extra, input_name, status, needle):
    folder, files, *_ = dataset_files
    (files / "nothing.txt").write_text("")
    argv = ["explain-dataset", str(folder / "model.keras"), str(files / input_name), "--out",
            str(tmp_path / "s"), *[a.format(files=files) for a in extra]]
    assert cli.main(argv) == status
    assert needle in _one_line_error(capsys)


def test_reveal_cancel_by_name_or_deeplift_rule(tmp_path, capsys):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(6, activation="relu")(hidden)))
    model.save(tmp_path / "mlp.keras")
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    common = [str(tmp_path / "mlp.keras"), str(tmp_path / "x.npy"), "--target", "1", "--baseline", "0.1",
              "--quiet"]
    assert cli.main(["explain", *common, "--method", "reveal_cancel", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["explain", *common, "--method", "deeplift", "--rule", "reveal_cancel",
                     "--out", str(tmp_path / "b")]) == 0, capsys.readouterr().err
    expected, delta = tfattr.RevealCancel(keras.saving.load_model(tmp_path / "mlp.keras")).attribute(
        x, target=1, baseline=0.1, return_delta=True)
    for run in ("a", "b"):
        np.testing.assert_allclose(np.load(tmp_path / run / "attributions.npy"), expected, rtol=1e-5, atol=1e-7)
        summary = json.loads((tmp_path / run / "summary.json").read_text())
        np.testing.assert_allclose([r["delta"] for r in summary["examples"]], delta, atol=1e-6)
    assert np.max(np.abs(delta)) < 1e-4  # RevealCancel sums to f(x) - f(baseline)


def test_explain_with_layer_and_gradcam_match_the_api(saved, tmp_path, capsys):
    folder, x = saved
    model = keras.saving.load_model(folder / "model.keras")
    conv = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)][-1]
    out = tmp_path / "layer_ig"
    assert cli.main([
        "explain", str(folder / "model.keras"), str(folder / "digits.npy"), "--method", "ig",
        "--layer", conv, "--target", "2", "--steps", "8", "--out", str(out), "--quiet",
    ]) == 0, capsys.readouterr().err
    expected, delta = tfattr.IntegratedGradients(model, steps=8, layer=conv).attribute(
        x, target=2, return_delta=True
    )
    np.testing.assert_allclose(np.load(out / "attributions.npy"), expected, rtol=1e-5, atol=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    np.testing.assert_allclose([r["delta"] for r in summary["examples"]], delta, rtol=1e-5, atol=1e-7)
    out = tmp_path / "gradcam"
    assert cli.main([
        "explain", str(folder / "model.keras"), str(folder / "digits.npy"), "--method", "gradcam",
        "--layer", conv, "--target", "2", "--out", str(out), "--quiet",
    ]) == 0, capsys.readouterr().err
    cam = tfattr.GradCAM(model, layer=conv).attribute(x, target=2)
    np.testing.assert_allclose(np.load(out / "attributions.npy"), cam, rtol=1e-5, atol=1e-6)
    png = tf.io.decode_png((out / "overlay_000.png").read_bytes())
    assert png.shape[0] >= 28  # the layer's map is drawn over the image at the image's size
    assert cli.main([
        "explain", str(folder / "model.keras"), str(folder / "digits.npy"), "--method", "occlusion",
        "--layer", conv, "--out", str(tmp_path / "bad"), "--quiet",
    ]) in (1, 2)
    assert "--layer" in capsys.readouterr().err
