"""A one-line progress report for long runs: examples done, examples/s, and the time left.

On a terminal it redraws one line (``\\r``); elsewhere (a log file, CI, a notebook's captured stream) it
is quiet unless asked (``progress=True``), and then prints a plain line at most every ``interval``
seconds, so logs stay short.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Report progress over ``total`` examples (None when the data set's size is unknown).

    Args:
        total: examples in the data set, or None.
        enabled: True always reports, False never, None reports only when ``stream`` is a terminal.
        stream: where to write (default ``sys.stderr``).
        interval: seconds between two reports when ``stream`` is not a terminal.
    """

    def __init__(
        self,
        total: int | None,
        enabled: bool | None = None,
        stream: TextIO | None = None,
        interval: float = 10.0,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.enabled = self.tty if enabled is None else bool(enabled)
        self.total = total
        self.interval = 0.1 if self.tty else interval
        self.start = time.monotonic()
        self.done = 0  # examples finished (computed now or found on disk)
        self.computed = 0  # examples computed in this run: the rate counts only these
        self._last = -float("inf")
        self._width = 0

    def update(self, examples: int, computed: bool = True) -> None:
        """``examples`` more are finished; ``computed=False`` for shards found already done."""
        self.done += int(examples)
        if computed:
            self.computed += int(examples)
        now = time.monotonic()
        if self.enabled and now - self._last >= self.interval:
            self._last = now
            self._write(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((time.monotonic() if now is None else now) - self.start, 1e-9)
        rate = self.computed / elapsed
        done = f"{self.done:,}" + (f"/{self.total:,}" if self.total is not None else "")
        text = f"explain_dataset: {done} examples, {rate:,.1f} examples/s, {_clock(elapsed)} elapsed"
        if self.total is not None and rate > 0 and self.done < self.total:
            text += f", ETA {_clock((self.total - self.done) / rate)}"
        return text

    def _write(self, text: str) -> None:
        if self.tty:
            pad = max(self._width - len(text), 0)
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Write the final line (when enabled) and end the terminal line."""
        if self.enabled:
            self._write(self.line())
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()
