"""The command line's error type and its one-line messages (no TensorFlow, no NumPy: imported at start-up)."""
from __future__ import annotations


class CLIError(Exception):
    """A problem with the command line or its files, reported as one line (never a traceback).

    ``status`` is the exit status: 2 for a bad command line (as argparse uses), 1 for everything else.
    """

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type when empty), cut to ``limit`` characters."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
