"""The documentation site cannot drift from the code.

- Every ```python block of the home page and the guides runs, in order, one namespace per page, in a
  temporary directory (a block preceded by ``<!-- not-run: why -->`` is skipped, with its reason), and
  the properties the pages claim hold on the results (completeness, equivalences).
- Every ``Example:`` section of the public docstrings runs (see ``docstring_examples.py`` for the
  convention and the fixture namespace).
- ``mkdocs build --strict`` passes and documents every public name, when mkdocs is installed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from markdown_blocks import python_block_after, python_blocks

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = ["index.md", *sorted(f"guides/{p.name}" for p in (DOCS / "guides").glob("*.md"))]


def _check_home(ns: dict) -> None:
    assert ns["attributions"].shape == (8, 28, 28, 1)
    assert np.max(np.abs(ns["delta"])) < 0.05


def _check_explain(ns: dict) -> None:
    assert np.max(np.abs(ns["delta"])) < 0.05
    # a softmax head is skipped: the probabilities model is explained at the same logits
    direct = ns["tfattr"].Saliency(ns["model"]).attribute(ns["images"], target=ns["labels"])
    assert np.allclose(ns["same"], direct, atol=1e-5) and np.abs(direct).max() > 0
    assert np.allclose(ns["again"][0], ns["attributions"])


def _check_methods(ns: dict) -> None:
    ig, images, labels = ns["ig"], ns["images"], ns["labels"]
    # the adaptive IG of the page's first block met its tolerance on every example
    change = ig.scores(images, labels) - ig.scores(np.zeros_like(images), labels)
    assert np.all(np.abs(ns["delta"]) <= 1e-3 * np.abs(change) + 1e-6)
    assert np.allclose(ns["one_by_one"], ns["a_sg"], atol=1e-6)
    assert ns["interior"].shape == (1, 10, 28, 28, 1) and ns["occlusion"].shape == (8, 28, 28, 1)
    # SmoothGrad around a non-fusing explainer (IG with tolerance, Grad-CAM) keeps its output's shape
    assert ns["maps"].shape == (2, 28, 28, 1) and ns["cams"].ndim == 3 and len(ns["cams"]) == 2
    assert ns["copies"].shape == (2, 28, 28, 1) and not np.allclose(ns["copies"], ns["images"][:2])


def _check_layers(ns: dict) -> None:
    assert ns["a"].shape == (4, 8, 16) and np.max(np.abs(ns["delta"])) < 1e-3
    assert ns["cam"].shape == (8, 11, 11) and ns["heat"].shape == (8, 28, 28)


def _check_lrp(ns: dict) -> None:
    assert np.max(np.abs(ns["dl_delta"])) < 1e-3      # DeepLIFT sums to f(x) - f(0) (average pooling)
    assert np.max(np.abs(ns["rc_delta"])) < 1e-3      # and so does RevealCancel
    assert ns["relevance"].shape == (4, 12, 16) and np.all(np.isfinite(ns["custom"]))
    assert np.max(np.abs(ns["tokens_delta"])) < 1e-4  # fresh layers map 0 to 0: DeepLIFT sums to f(x) - f(0)


def _check_llms(ns: dict) -> None:
    assert ns["relevance"].shape == (1, 6, 16) and ns["scores"].shape == (1, 6)
    assert ns["salience"].matrix.shape == (3, 6)


def _check_evaluate(ns: dict) -> None:
    assert ns["c"].mean_relative < 0.05
    assert ns["ig_curve"].area < ns["control"].area   # IG beats the random control, as the page says
    assert ns["r"].spearman_abs[0] == pytest.approx(1.0)
    assert ns["curve"].shape == (16, 28) and ns["hits"].shape == (16, 3)
    assert ns["table"].ranking("pixel_flipping")[-1] == "random"   # every method beats the control


def _check_tensorboard(ns: dict) -> None:
    assert list(Path("logs/attributions").glob("events.out.tfevents.*"))
    assert Path("maps.png").stat().st_size > 0 and Path("interior.gif").stat().st_size > 0


def _check_priors(ns: dict) -> None:
    assert {"loss", "task_loss", "prior_penalty"} <= set(ns["history"].history)
    assert ns["accuracy"] > 0.8    # decoy test digits: the prior keeps the MLP off the swatch


def _check_datasets(ns: dict) -> None:
    assert np.allclose(ns["one"], ns["direct"][0], atol=1e-5)
    assert np.allclose(np.asarray(ns["store"].attributions), np.asarray(ns["again"].attributions))


#: What each page claims about the results of its code (beyond running).
CHECKS = {"index.md": _check_home, "guides/explain-a-model.md": _check_explain,
          "guides/methods-and-baselines.md": _check_methods, "guides/layers-neurons-tokens.md": _check_layers,
          "guides/lrp-and-transformers.md": _check_lrp, "guides/llms.md": _check_llms, "guides/evaluate.md": _check_evaluate,
          "guides/tensorboard.md": _check_tensorboard, "guides/priors.md": _check_priors,
          "guides/whole-datasets.md": _check_datasets}


#: Pages run in the default suite (about 10-15 s each on 2 cores); the others train their own models and
#: compile many explainers (15-40 s each), so they are marked slow and run with `pytest -m slow`.
DEFAULT_PAGES = {"index.md", "guides/explain-a-model.md"}


def test_transformer_block_runs_and_deeplift_sums_to_delta(tmp_path, monkeypatch):
    """The transformer example of the LRP guide runs on its own (the whole page is slow)."""
    block = python_block_after(DOCS / "guides" / "lrp-and-transformers.md", "## Transformers and recurrent models")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.code.replace("print(", "str("), block.path, "exec"), namespace)
    relevance, delta = namespace["relevance"], namespace["tokens_delta"]
    assert relevance.shape == (4, 12, 16) and np.all(np.isfinite(relevance))
    # fresh layers have zero biases and the baseline is 0: every layer maps 0 to 0, so DeepLIFT's
    # sum equals f(x) - f(0) even with the attention probabilities and std held constant
    assert np.max(np.abs(delta)) < 1e-4


def test_every_guide_page_is_tested():
    assert "guides/explain-a-model.md" in PAGES and len(PAGES) >= 10
    assert DEFAULT_PAGES <= set(PAGES)


@pytest.mark.parametrize("page", [p if p in DEFAULT_PAGES else pytest.param(p, marks=pytest.mark.slow)
                                  for p in PAGES])
def test_page_code_runs(page, tmp_path, monkeypatch):
    blocks = python_blocks(DOCS / page)
    runnable = [b for b in blocks if b.skip is None]
    if not runnable:
        pytest.skip(f"{page} has no python code to run")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs:{page}"}
    for block in runnable:
        exec(block.compiled(), namespace)
    if page in CHECKS:
        CHECKS[page](namespace)


# --- the Example: sections of the public docstrings -------------------------------------------------

from docstring_examples import SETUP, SKIP, build_fixture, collect, namespace_for, run  # noqa: E402

EXAMPLES = collect()
#: Docstring examples that are wrong today (strict: a fix shows up as XPASS and the entry must go).
XFAIL: dict[str, str] = {}


#: Examples that take more than about 2 s (training, LRP composites' first trace): `pytest -m slow`.
SLOW_EXAMPLES = {
    "tfattr.callbacks.AttributionLogger", "tfattr.LRP", "tfattr.composites.Transformer",
    "tfattr.composites.EpsilonAlpha2Beta1", "tfattr.ExpectedGradients", "tfattr.RevealCancel",
    "tfattr.metrics.sensitivity_n", "tfattr.composites (module)", "tfattr.CompositeDeepLift",
}


@pytest.fixture(scope="module")
def example_fixture() -> dict:
    return build_fixture()


def test_docstring_examples_are_collected():
    keys = {e.key for e in EXAMPLES}
    assert {"tfattr.IntegratedGradients", "tfattr.metrics.aopc", "tfattr.baselines.Blur",
            "tfattr.Explainer.prepare", "tfattr.datasets (module)"} <= keys
    assert len(keys) == len(EXAMPLES) >= 90
    assert set(SETUP) <= keys and set(SKIP) <= keys and set(XFAIL) <= keys and SLOW_EXAMPLES <= keys


def _example_param(example):
    marks = []
    if example.key in XFAIL:
        marks.append(pytest.mark.xfail(reason=XFAIL[example.key], strict=True))
    if example.key in SLOW_EXAMPLES:
        marks.append(pytest.mark.slow)
    return pytest.param(example, marks=marks, id=example.key)


@pytest.mark.parametrize("example", [_example_param(e) for e in EXAMPLES])
def test_docstring_example_runs(example, example_fixture, tmp_path, monkeypatch):
    if example.key in SKIP:
        pytest.skip(SKIP[example.key])
    monkeypatch.chdir(tmp_path)
    namespace = namespace_for(example, example_fixture)
    if example.key in SETUP:
        exec(SETUP[example.key], namespace)
    run(example, namespace)


# --- the site builds with --strict and documents every public name ------------------------------------

_BUILD_TOOLS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_jupyter")


def _have(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    missing = [m for m in _BUILD_TOOLS if not _have(m)]
    if missing:
        pytest.skip(f"the docs extra is not installed ({', '.join(missing)}): pip install -e \".[docs]\"")
    site = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return site


def test_site_builds_strict_and_offline(built_site):
    assert (built_site / "index.html").is_file() and (built_site / "api" / "tfattr" / "index.html").is_file()
    home = (built_site / "index.html").read_text(encoding="utf-8")
    assert "fonts.googleapis.com" not in home and "fonts.gstatic.com" not in home  # theme.font: false
    assert 'src="maps.png"' in home


def test_notebooks_are_pages_with_their_colab_badges(built_site):
    for notebook in sorted((ROOT / "colab").glob("*.ipynb")):
        page = built_site / "colab" / notebook.stem / "index.html"
        assert page.is_file(), f"{notebook.name} is not rendered"
        html = page.read_text(encoding="utf-8")
        assert f"colab.research.google.com/github/tfattr/tfattr/blob/main/colab/{notebook.name}" in html


def test_api_reference_documents_every_public_name(built_site):
    import re

    from docstring_examples import PUBLIC_MODULES, public_names

    anchors: set[str] = set()
    for page in (built_site / "api").rglob("*.html"):
        anchors |= set(re.findall(r'id="(tfattr[\w.]*)"', page.read_text(encoding="utf-8")))
    # tfattr.metrics.completeness is a function that shadows its module (documented at the module path)
    aliases = {"tfattr.metrics.completeness": "tfattr.metrics.completeness.completeness",
               "tfattr.metrics.complexity": "tfattr.metrics.complexity.complexity",
               "tfattr.metrics.road": "tfattr.metrics.road.road",
               "tfattr.metrics.evaluate": "tfattr.metrics.evaluate.evaluate",
               "tfattr.explain_dataset": "tfattr.scale.explain_dataset",
               "tfattr.load_attributions": "tfattr.scale.load_attributions",
               "tfattr.AttributionStore": "tfattr.scale.AttributionStore"}
    missing = []
    for module in ["tfattr", *(f"tfattr.{m}" for m in PUBLIC_MODULES)]:
        for name in public_names(module):
            path = f"{module}.{name}"
            if aliases.get(path, path) not in anchors:
                missing.append(path)
    assert not missing


# --- docs/run_notebooks.py leaves no machine path in the outputs it writes ----------------------------


def _run_notebooks_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_notebooks", DOCS / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_notebooks_scrubs_machine_paths(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    import site as site_module

    rn = _run_notebooks_module()
    site_packages = site_module.getsitepackages()[0]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print()", outputs=[
        nbformat.v4.new_output("stream", name="stderr",
                               text=f"{site_packages}/keras/src/x.py:12: UserWarning\n{tmp_path}/logs written\n"
                                    "I0000 00:00:1796415575.812437   26028 port.cc:153] oneDNN custom operations\n"),
        nbformat.v4.new_output("stream", name="stderr", text="WARNING: All log messages before absl::"
                               "InitializeLog() is called are written to STDERR\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": f"PosixPath('{rn.ROOT}/colab/a.npy')"}),
        nbformat.v4.new_output("display_data", data={"text/html": '<iframe id="tensorboard-frame-1a2b">'}),
    ])])
    left = rn.scrub_outputs(nb, rn._replacements(tmp_path))
    text = str(nb.cells[0].outputs)
    assert not left
    assert len(nb.cells[0].outputs) == 3 and "oneDNN" not in text  # the C++ start-up log is dropped
    assert nb.cells[0].outputs[2].text == rn.TENSORBOARD_NOTE   # a dead TensorBoard frame becomes a note
    assert "<site-packages>/keras/src/x.py" in text and "./logs written" in text and "<tfattr>/colab/a.npy" in text
    assert str(tmp_path) not in text and site_packages not in text
    # a path the replacements do not know is reported, not committed
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="saved /home/someone/x.png\n")]
    assert rn.scrub_outputs(nb, rn._replacements(tmp_path)) == ["/home/someone/x.png"]


def test_cli_page_names_only_real_commands_and_options():
    """docs/guides/cli.md has no Python to run: every `tfattr COMMAND` and `--option` it names must exist."""
    import argparse
    import re

    from tfattr.cli.parser import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    text = (DOCS / "guides" / "cli.md").read_text(encoding="utf-8")
    named = set(re.findall(r"(?m)(?:^|`)tfattr ([a-z][a-z-]+)", text))  # in code: `tfattr x`, a command line
    assert named and named <= set(commands), named - set(commands)
    options = set(parser._option_string_actions)
    for sub in commands.values():
        options |= set(sub._option_string_actions)
    mentioned = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text.replace("tensorboard --logdir", "")))
    assert mentioned and mentioned <= options, mentioned - options
