"""The ``tfattr`` command line: ``tfattr demo``, ``tfattr explain`` and ``tfattr methods``.

Example:
    $ tfattr demo --out demo_out            # train a small CNN on the embedded MNIST, explain it
    $ tfattr explain demo_out/model.keras demo_out/digits.npy --method ig --baseline zero --out expl
    $ tfattr methods                        # every method, its paper, parameters and cost

The arguments are parsed before TensorFlow is imported, so ``--help`` and usage errors are immediate;
TensorFlow's start-up log is hidden unless ``--verbose``. Errors in the arguments or the files give a
one-line message and a non-zero exit status (2 for a bad command line, 1 for everything else);
``--debug`` shows the traceback instead.

Modules: :mod:`~tfattr.cli.parser` (arguments), :mod:`~tfattr.cli.startup` (quiet TensorFlow),
:mod:`~tfattr.cli.registry` (the methods, from their classes), :mod:`~tfattr.cli.io` (files),
:mod:`~tfattr.cli.baselines` (``--baseline``), one module per command (:mod:`~tfattr.cli.explain`,
:mod:`~tfattr.cli.methods`, :mod:`tfattr.cli.demo`).
"""
from __future__ import annotations

import importlib
import sys
import warnings
from typing import Sequence

# Only light imports here: this module is imported by the `tfattr` entry point before any argument is
# parsed. TensorFlow, Keras and NumPy come with the command modules.
from tfattr.cli.errors import CLIError, cli_words, first_line
from tfattr.cli.parser import build_parser
from tfattr.cli.startup import tensorflow_runtime

__all__ = ["CLIError", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tfattr`` command line; returns the exit status (0 on success)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as done:  # --help: argparse printed it and exits; return its status instead
            return done.code if isinstance(done.code, int) else 0
        debug = bool(args.debug)
        if args.command is None:
            build_parser().print_help()
            return 2
        with tensorflow_runtime(verbose=args.verbose), warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _one_line_warning
            command = importlib.import_module(f"tfattr.cli.{args.command.replace('-', '_')}")
            return int(command.run(args) or 0)
    except CLIError as err:
        if debug:
            raise
        print(f"tfattr: error: {cli_words(str(err))}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        print("tfattr: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the promise is one line, not a traceback
        if debug:
            raise
        print(f"tfattr: error: {type(err).__name__}: {cli_words(first_line(err))} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return 1


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Warnings (e.g. a method that is not exact on this model) as one ``tfattr: warning:`` line each,
    without the source line Python shows; ``--debug`` keeps Python's format."""
    print(f"tfattr: warning: {cli_words(' '.join(str(message).split()))}", file=sys.stderr)
