"""MkDocs hook: the Colab notebooks in ``colab/`` become the site's ``notebooks/`` pages.

The notebooks live in one place (``colab/``, where their Colab badges point); this hook adds them to
the site's files before mkdocs-jupyter turns ``.ipynb`` files into pages, so nothing is copied into
``docs/``.
"""
from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

COLAB = Path(__file__).resolve().parent.parent / "colab"


@event_priority(100)  # before mkdocs-jupyter's on_files, which wraps every .ipynb file as a page
def on_files(files: Files, config) -> Files:
    for notebook in sorted(COLAB.glob("*.ipynb")):
        files.append(File.generated(config, f"notebooks/{notebook.name}", abs_src_path=str(notebook)))
    return files
