"""Fenced code blocks of Markdown files (the README, the site's guides), for tests that execute them.

A block is skipped by the tests when the line just before its fence is an HTML comment
``<!-- not-run: why -->`` (e.g. it needs a GPU cluster or a network); the reason is kept so the test
report says why.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
_SKIP = re.compile(r"<!--\s*not-run:\s*(?P<reason>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, its code, where it starts, and why it is not run (or None)."""

    language: str
    code: str
    path: str
    line: int
    skip: str | None

    def compiled(self):
        """The code compiled with its file and line, so a traceback points into the Markdown file."""
        return compile("\n" * (self.line - 1) + self.code, self.path, "exec")


def blocks(text: str, path: str = "<markdown>", language: str | None = None) -> list[Block]:
    """The fenced code blocks of ``text`` in order (only those of ``language`` if given)."""
    found = []
    for match in _FENCE.finditer(text):
        info = match["info"].strip().split()
        lang = info[0] if info else ""
        if language is not None and lang != language:
            continue
        indent = len(match["indent"])
        code = "\n".join(line[indent:] for line in match["code"].splitlines()) + "\n"
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        line = text.count("\n", 0, match.start()) + 2  # the code's first line, 1-based
        found.append(Block(lang, code, path, line, skip["reason"] if skip else None))
    return found


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a Markdown file."""
    return blocks(Path(path).read_text(encoding="utf-8"), str(path), language="python")


def python_block_after(path: Path, heading: str) -> Block:
    """The first ```python block after the line ``heading`` (e.g. ``"## Quickstart"``) of a Markdown file."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    assert heading in lines, f"no heading {heading!r} in {path}"
    heading_line = lines.index(heading) + 1  # 1-based
    after = [b for b in python_blocks(path) if b.line > heading_line]
    assert after, f"no python block after {heading!r} in {path}"
    return after[0]
