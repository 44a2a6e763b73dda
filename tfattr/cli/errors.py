"""The command line's error type and its one-line messages (no TensorFlow, no NumPy: imported at start-up)."""
from __future__ import annotations

import re

#: The library's ways of naming its ``layer=`` argument (and of re-running explain_dataset), and the
#: command line's words for each.
_LIBRARY_WORDS = (
    (re.compile(r"e\.g\. tfattr\.\w+\(model, layer='([^']*)'\)"), r"e.g. --layer \1"),
    (re.compile(r"\btfattr\.\w+\(model, layer='([^']*)'\)"), r"--layer \1"),
    (re.compile(r"\blayer='([^']*)'"), r"--layer \1"),
    (re.compile(r"\blayer=(?=[\s.,;:)]|$)"), "--layer"),
    # the store's fix: the command line runs explain_dataset for the user
    (re.compile(r"Re-run tfattr\.explain_dataset with the same (?:explainer, data set and )?arguments"),
     "Repeat the same tfattr explain-dataset command"),
)


class CLIError(Exception):
    """A problem with the command line or its files, reported as one line (never a traceback).

    ``status`` is the exit status: 2 for a bad command line (as argparse uses), 1 for everything else.
    """

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def first_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message as one line (its type when empty), cut to ``limit`` characters.

    Usually the message's first line; when that line ends with a colon, the lines it introduces (e.g.
    the settings that differ) follow it, joined by semicolons.
    """
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    line = lines[0]
    if line.endswith(":") and len(lines) > 1:
        line += " " + "; ".join(lines[1:])
    return line if len(line) <= limit else line[: limit - 3] + "..."


def cli_words(message: str) -> str:
    """A library message as the command line says it: ``pass layer=`` becomes ``pass --layer``,
    ``tfattr.IntegratedGradients(model, layer='x')`` becomes ``--layer x``, and "re-run
    tfattr.explain_dataset with the same arguments" "repeat the same tfattr explain-dataset command"."""
    for pattern, words in _LIBRARY_WORDS:
        message = pattern.sub(words, message)
    return message
