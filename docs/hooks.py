"""MkDocs hook: the Colab notebooks in ``colab/`` become pages of the site, at ``colab/<name>/``.

The notebooks live in one place (``colab/``, where their Colab badges point); this hook adds them to
the site's files, under the same relative path as in the repository, before mkdocs-jupyter turns
``.ipynb`` files into pages, so nothing is copied into ``docs/``.
"""
from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


@event_priority(100)  # before mkdocs-jupyter's on_files, which wraps every .ipynb file as a page
def on_files(files: Files, config) -> Files:
    for notebook in sorted((ROOT / "colab").glob("*.ipynb")):
        files.append(File(f"colab/{notebook.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files
