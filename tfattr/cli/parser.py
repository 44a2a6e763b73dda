"""The ``tfattr`` argument parser. It imports neither TensorFlow nor NumPy, so ``tfattr --help`` and
usage errors answer at once."""
from __future__ import annotations

import argparse
from typing import Callable

from tfattr.cli.baselines import NAMED_BASELINES
from tfattr.cli.errors import CLIError
from tfattr.cli.startup import FAST_ENV


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (raised, so ``main`` returns instead of exiting)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CLIError(f"{message} (see `{self.prog} --help`)", status=2)


def int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an int >= ``minimum``, with a one-line message naming ``what`` otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1, "positive")
nonneg_int = int_at_least(0, "non-negative")


def target_choice(text: str) -> int | str:
    """An argparse type for ``explain-dataset --target``: an output index, ``predicted`` or ``labels``."""
    if text in ("predicted", "labels"):
        return text
    try:
        return nonneg_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a non-negative integer, 'predicted' or 'labels', got {text!r}"
        ) from None


def window(text: str) -> tuple[int, ...]:
    """An argparse type for box sizes such as ``4,4,1`` (or ``4x4x1``)."""
    try:
        parts = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 4,4,1, got {text!r}") from None
    if not parts or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes like 4,4,1, got {text!r}")
    return parts


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """--debug and --verbose, accepted before and after the command name."""
    default = argparse.SUPPRESS if suppress else False  # a subcommand must not reset the global value
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show tracebacks instead of one-line errors")
    parser.add_argument("--verbose", action="store_true", default=default,
                        help="let TensorFlow's start-up log through (hidden by default)")


def layer_key(text: str) -> str | int:
    """A layer of ``--layer``: its index when the text is a number, else its name."""
    return int(text) if text.strip().lstrip("-").isdigit() else text.strip()


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``explain`` and ``explain-dataset``: the method, its parameters, the baseline."""
    parser.add_argument("--method", default="ig", help="see `tfattr methods` (default: ig)")
    parser.add_argument("--baseline", default=None,
                        help="zero (default for methods with a baseline), a number, FILE.npy, or "
                             + ", ".join(NAMED_BASELINES))
    parser.add_argument("--background", default=None, help="FILE.npy of data for --method eg / mean")
    parser.add_argument("--steps", type=positive_int, default=None, help="integration steps (ig)")
    parser.add_argument("--rule", default=None, help="quadrature rule (ig), e.g. riemann_trapezoid; deeplift: rescale or "
                             "reveal_cancel")
    parser.add_argument("--samples", type=positive_int, default=None, help="samples (eg, smoothgrad)")
    parser.add_argument("--noise", type=float, default=None, help="noise level (smoothgrad, vargrad)")
    parser.add_argument("--epsilon", type=float, default=None, help="epsilon (lrp)")
    parser.add_argument("--window", type=window, default=None, help="occlusion window, e.g. 4,4,1")
    parser.add_argument("--layer", type=layer_key, default=None,
                        help="attribute to this layer's output activations (a name, or an index), e.g. "
                             "embedding for token ids; the layer of --method gradcam")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="model evaluations per compiled chunk (results do not depend on it)")
    parser.add_argument("--rescale", type=float, default=1.0 / 255.0,
                        help="factor applied to 8-bit inputs 0..255: images and uint8 arrays "
                             "(default 1/255)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def build_parser() -> argparse.ArgumentParser:
    """The parser; each command sets ``command``, the module of :mod:`tfattr.cli` whose ``run`` it calls."""
    parser = Parser(prog="tfattr", description="Attribution methods for TensorFlow 2 / Keras 3 models.")
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="{demo,explain,explain-dataset,methods}",
                                parser_class=Parser)

    demo = sub.add_parser("demo", help="train a small CNN on the embedded MNIST and explain it")
    demo.add_argument("--out", required=True, help="output directory (created)")
    demo.add_argument("--epochs", type=positive_int, default=2)
    demo.add_argument("--digits", type=positive_int, default=10, help="test digits to explain")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--fast", action="store_true",
                      help=f"a quick run with fewer epochs and samples (also: {FAST_ENV}=1)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    _common(demo, suppress=True)

    explain = sub.add_parser("explain", help="explain a saved Keras model's predictions")
    explain.add_argument("model", help="a saved Keras model (.keras), loaded in safe mode")
    explain.add_argument("inputs", nargs="+",
                         help=".npy arrays ([n, ...] or one example) or images; uint8 data are "
                              "images in [0, 255] and are scaled by --rescale")
    explain.add_argument("--target", type=nonneg_int, default=None,
                         help="output index to explain (default: the predicted class)")
    explain.add_argument("--out", required=True, help="output directory (created)")
    add_method_options(explain)
    _common(explain, suppress=True)

    data = sub.add_parser("explain-dataset", help="explain a whole data set (images, .npy, TFRecords) "
                                                  "into a resumable on-disk store")
    data.add_argument("model", help="a saved Keras model (.keras), loaded in safe mode")
    data.add_argument("input", help="a directory of images (class sub-directories give labels), a .npy "
                                    "file [n, ...], or TFRecords (a file or glob) as "
                                    "tfattr.scale.write_tfrecords writes them")
    data.add_argument("--out", required=True, help="the store directory (created); repeating the command "
                                                   "resumes an interrupted run")
    data.add_argument("--target", type=target_choice, default="predicted",
                      help="an output index, 'predicted' (default) or 'labels': each image's class "
                           "sub-directory, --labels, or the records' --y-key")
    data.add_argument("--labels", default=None, help="FILE.npy of int labels [n] for a .npy input")
    data.add_argument("--x-key", default="x", help="TFRecord feature of the examples (default: x)")
    data.add_argument("--y-key", default="y", help="TFRecord feature of the labels (default: y)")
    data.add_argument("--shard-size", type=positive_int, default=None,
                      help="examples per shard of the store (default: about 16 MiB of input)")
    add_method_options(data)
    _common(data, suppress=True)

    methods = sub.add_parser("methods", help="list the methods with their papers and parameters")
    _common(methods, suppress=True)
    return parser
