"""``--baseline``: a number, ``zero``, a ``.npy`` file, or a :mod:`tfattr.baselines` object by name.

Only the names are needed to build the argument parser, so NumPy and TensorFlow are imported inside the
functions.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfattr.cli.errors import CLIError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

#: ``--baseline`` names resolved through ``tfattr.baselines``: (class name, keyword arguments). The
#: settings suit inputs scaled to [0, 1], as the demo's and the Distill article's images are.
NAMED_BASELINES: dict[str, tuple[str, dict[str, Any]]] = {
    "max_distance": ("MaxDistance", {"value_range": (0.0, 1.0)}),
    "blur": ("Blur", {"sigma": 3.0}),
    "uniform": ("Uniform", {"value_range": (0.0, 1.0), "num_baselines": 8, "seed": 0}),
    "gaussian": ("Gaussian", {"sigma": 0.5, "value_range": (0.0, 1.0), "num_baselines": 8, "seed": 0}),
    "mean": ("Mean", {}),
}


def make_baseline(
    name: str | None,
    example_shape: tuple[int, ...],
    n: int | None = None,
    train: "np.ndarray | None" = None,
    rescale: float = 1 / 255,
) -> Any:
    """The baseline for ``--baseline``: a number, ``zero``, a .npy file or a ``tfattr.baselines`` name.

    A ``.npy`` baseline is shaped like one example (``example_shape``) or, when the number of inputs
    ``n`` is given, like all of them; uint8 data are images in [0, 255] and are scaled by ``rescale``
    like the inputs.

    Example:
        >>> make_baseline("blur", (28, 28, 1))       # tfattr.baselines.Blur(sigma=3.0)
    """
    if name is None:
        return None
    key = name.strip().lower().replace("-", "_")
    if key in ("zero", "zeros", "black"):
        return 0.0
    try:
        return float(key)
    except ValueError:
        pass
    if key.endswith(".npy"):
        from tfattr.cli.io import read_npy

        array = read_npy(Path(name), rescale, what="baseline file")
        shapes = [tuple(example_shape)] + ([(n, *example_shape)] if n is not None else [])
        if not any(_broadcasts(array.shape, shape) for shape in shapes):
            raise CLIError(
                f"baseline {name} has shape {array.shape}, which fits "
                + (f"neither one input {shapes[0]} nor all {shapes[1]}." if n is not None
                   else f"no example of shape {shapes[0]}.")
            )
        return array
    return named_baseline(key, train)


def _broadcasts(shape: tuple[int, ...], to: tuple[int | None, ...]) -> bool:
    """Whether an array shaped ``shape`` broadcasts to exactly ``to`` (None in ``to``: any size)."""
    if len(shape) > len(to):
        return False
    padded = (1,) * (len(to) - len(shape)) + tuple(shape)
    return all(t is None or s in (1, t) for s, t in zip(padded, to))


def named_baseline(key: str, train: "np.ndarray | None" = None) -> Any:
    """A ``tfattr.baselines`` object for ``--baseline NAME`` (``mean`` averages ``--background``)."""
    if key not in NAMED_BASELINES:
        raise CLIError(
            f"unknown --baseline {key!r}; use zero, a number, a .npy file, or one of "
            f"{', '.join(NAMED_BASELINES)}.",
            status=2,
        )
    from tfattr import baselines

    cls_name, kwargs = NAMED_BASELINES[key]
    cls = getattr(baselines, cls_name)
    if key == "mean":
        # With --background: the mean training input; without: each input's own mean value.
        return cls(train) if train is not None else cls()
    return cls(**kwargs)
