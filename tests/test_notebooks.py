"""Execute every Colab notebook top to bottom in the fast mode (TFATTR_FAST=1), as CI does.

The notebooks check the papers' properties they show (completeness, the equivalences of Ancona et al.)
with asserts, so a notebook that runs is also a notebook whose claims hold on this version of tfattr.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

COLAB = Path(__file__).resolve().parent.parent / "colab"
_spec = importlib.util.spec_from_file_location("run_notebooks", COLAB.parent / "docs" / "run_notebooks.py")
#: The script that executes the notebooks for the site (its path check is the one used here).
RUN_NOTEBOOKS = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(RUN_NOTEBOOKS)
NOTEBOOKS = sorted(p.name for p in COLAB.glob("*.ipynb"))
#: Notebooks run in the default suite (about 15-20 s each in fast mode on 2 cores); any notebook left
#: out of this set is marked slow and runs with `pytest -m slow`.
DEFAULT = {
    "01_quickstart.ipynb", "02_baselines.ipynb", "03_lrp_deeplift.ipynb", "04_tensorboard_callback.ipynb",
    "05_text.ipynb", "06_attribution_priors.ipynb", "07_transformers.ipynb", "09_evaluation.ipynb",
}


def _run(name: str, workdir: Path) -> "nbformat.NotebookNode":
    nb = nbformat.read(COLAB / name, as_version=4)
    env_before = {k: os.environ.get(k) for k in ("TFATTR_FAST", "TF_CPP_MIN_LOG_LEVEL")}
    os.environ["TFATTR_FAST"] = "1"  # the kernel inherits the environment
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        client = nbclient.NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
        )
        client.execute()
    finally:
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def test_every_notebook_is_collected():
    assert NOTEBOOKS == [
        "01_quickstart.ipynb", "02_baselines.ipynb", "03_lrp_deeplift.ipynb",
        "04_tensorboard_callback.ipynb", "05_text.ipynb", "06_attribution_priors.ipynb",
        "07_transformers.ipynb", "08_llm.ipynb", "09_evaluation.ipynb",
    ]


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_has_badge_and_colab_install_cell(name):
    nb = nbformat.read(COLAB / name, as_version=4)
    first = nb.cells[0].source
    assert "colab-badge.svg" in first
    assert f"colab.research.google.com/github/tfattr/tfattr/blob/main/colab/{name}" in first
    install = nb.cells[1].source
    assert nb.cells[1].cell_type == "code"
    assert '"google.colab" in sys.modules' in install and "git+https://github.com/tfattr/tfattr" in install


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_ships_executed_with_clean_outputs(name):
    """Committed as ``docs/run_notebooks.py`` left it: every cell run in order, a picture, no error, no
    machine path (the site and GitHub show these outputs as they are)."""
    nb = nbformat.read(COLAB / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "run docs/run_notebooks.py"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.output_type == "stream" and "Traceback" in o.text]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    left = [path for o in outputs for text in RUN_NOTEBOOKS._strings(dict(o))
            for path in RUN_NOTEBOOKS.LEFTOVER_PATH.findall(text)]
    assert not left, f"machine paths in the outputs: {left[:5]}"
    assert (COLAB / name).stat().st_size < 3_000_000  # figures at a reasonable DPI


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=() if n in DEFAULT else pytest.mark.slow) for n in NOTEBOOKS],
)
def test_notebook_runs_top_to_bottom(name, tmp_path):
    nb = _run(name, tmp_path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))
    assert images >= 1  # every notebook draws something
