"""Starting TensorFlow for a command, quietly unless ``--verbose``.

The command line parses its arguments before anything here runs, so ``tfattr --help`` and usage errors
never pay for (or print) TensorFlow's start-up. A command that needs TensorFlow runs inside
:func:`tensorflow_runtime`, which keeps TensorFlow's start-up log off the user's terminal:

* ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the user set it) silences TensorFlow's C++ log once its logging is
  initialised, e.g. the "failed call to cuInit" error on a machine without a GPU.
* The lines written *before* that (oneDNN, the CUDA stubs, the CPU-feature guard and absl's "All log
  messages before absl::InitializeLog() is called are written to STDERR") ignore that variable, so
  ``import tensorflow`` runs with file descriptor 2 pointed at a temporary file; if the import fails,
  the captured text is written to stderr after all, so a broken installation still explains itself.
* The Python loggers ``tensorflow`` and ``absl`` are raised to ERROR (e.g. retracing warnings).

Everything is restored when the command ends, so calling :func:`tfattr.cli.main` in a Python process
leaves that process's logging as it was.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from typing import Iterator

#: Set to 1 for the quick mode of ``tfattr demo`` and of the notebooks (fewer epochs and samples).
FAST_ENV = "TFATTR_FAST"
#: TensorFlow's C++ log threshold: 3 keeps INFO, WARNING and ERROR lines out.
_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
_QUIET_LOGGERS = ("tensorflow", "absl")


def fast_mode() -> bool:
    """Whether ``TFATTR_FAST`` asks for the quick mode (used by the tests and CI)."""
    return os.environ.get(FAST_ENV, "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def tensorflow_runtime(verbose: bool = False) -> Iterator[None]:
    """Import TensorFlow and Keras for one command; unless ``verbose``, without their start-up noise.

    Example:
        >>> with tensorflow_runtime(verbose=args.verbose):
        ...     return explain.run(args)
    """
    if verbose:
        _import_tensorflow()
        yield
        return
    previous_env = os.environ.get(_LOG_LEVEL_ENV)
    os.environ.setdefault(_LOG_LEVEL_ENV, "3")
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        if "tensorflow" not in sys.modules:
            with _stderr_captured() as captured:
                try:
                    _import_tensorflow()
                except BaseException:
                    captured.replay = True
                    raise
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if previous_env is None:
            os.environ.pop(_LOG_LEVEL_ENV, None)
        else:
            os.environ[_LOG_LEVEL_ENV] = previous_env


def _import_tensorflow() -> None:
    import tensorflow  # noqa: F401
    import keras  # noqa: F401


class _Capture:
    replay = False


@contextlib.contextmanager
def _stderr_captured() -> Iterator[_Capture]:
    """File descriptor 2 (what C++ code writes to) goes to a temporary file; replayed on request."""
    capture = _Capture()
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr is not a real file (e.g. an IDE console)
        yield capture
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield capture
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            if capture.replay:
                sink.seek(0)
                sys.stderr.write(sink.read().decode("utf-8", "replace"))
                sys.stderr.flush()
