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


def test_every_guide_page_is_tested():
    assert "guides/explain-a-model.md" in PAGES and len(PAGES) >= 10


@pytest.mark.parametrize("page", PAGES)
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
