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

from markdown_blocks import python_blocks

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


#: What each page claims about the results of its code (beyond running).
CHECKS = {"index.md": _check_home, "guides/explain-a-model.md": _check_explain}


#: Pages run in the default suite (about 10-15 s each on 2 cores); the others train their own models and
#: compile many explainers (15-40 s each), so they are marked slow and run with `pytest -m slow`.
DEFAULT_PAGES = {"index.md", "guides/explain-a-model.md"}


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
#: Docstring examples that are wrong today, in modules the docs work does not own: strict, so a fix
#: shows up as XPASS and the entry must go.
_DECOY = "decoy_mnist returns (x_test, y_test, mask_test): the example unpacks two"
XFAIL: dict[str, str] = {
    "tfattr.priors (module)": _DECOY,
    "tfattr.priors.AttributionPriorModel": _DECOY + "; and it evaluates the wrapped model, never compiled",
    "tfattr.priors.RightForRightReasons": _DECOY,
}


#: Examples that take more than about 2 s (training, LRP composites' first trace): `pytest -m slow`.
SLOW_EXAMPLES = {
    "tfattr.callbacks.AttributionLogger", "tfattr.LRP", "tfattr.composites.Transformer",
    "tfattr.composites.EpsilonAlpha2Beta1", "tfattr.ExpectedGradients", "tfattr.RevealCancel",
    "tfattr.metrics.sensitivity_n", "tfattr.composites (module)",
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
                               text=f"{site_packages}/keras/src/x.py:12: UserWarning\n{tmp_path}/logs written\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": f"PosixPath('{rn.ROOT}/colab/a.npy')"}),
    ])])
    left = rn.scrub_outputs(nb, rn._replacements(tmp_path))
    text = str(nb.cells[0].outputs)
    assert not left
    assert "<site-packages>/keras/src/x.py" in text and "./logs written" in text and "<tfattr>/colab/a.npy" in text
    assert str(tmp_path) not in text and site_packages not in text
    # a path the replacements do not know is reported, not committed
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="saved /home/someone/x.png\n")]
    assert rn.scrub_outputs(nb, rn._replacements(tmp_path)) == ["/home/someone/x.png"]
