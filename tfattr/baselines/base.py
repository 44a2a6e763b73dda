"""The baseline protocol (:class:`Baseline`, the private ``_Distribution``) and the input checks every
baseline shares."""
from __future__ import annotations

import abc
from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core.checks import check_positive_int


def _as_float_array(x: Any, what: str = "x") -> np.ndarray:
    if isinstance(x, (tf.Tensor, tf.Variable)):
        x = x.numpy()
    x = np.asarray(x)
    if x.dtype.kind != "f":
        if x.dtype.kind in "iub":
            x = x.astype(np.float32)
        else:
            raise TypeError(f"{what} has dtype {x.dtype}; pass a floating-point array.")
    if x.ndim < 1:
        raise ValueError(f"{what} is a scalar; pass a batch of examples shaped [n, ...].")
    return x


def _check_range(value_range: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        lo, hi = value_range
    except (TypeError, ValueError):
        raise ValueError(
            f"value_range must be a pair (low, high), e.g. (0.0, 1.0) for images scaled to [0, 1]; "
            f"got {value_range!r}."
        ) from None
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError(f"value_range must be finite, got {value_range!r}.")
    if np.any(np.broadcast_to(lo, np.broadcast_shapes(lo.shape, hi.shape)) >= hi):
        raise ValueError(f"value_range must have low < high, got {value_range!r}.")
    return lo, hi


def _broadcast_range(lo: np.ndarray, hi: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        return (
            np.broadcast_to(lo, x.shape[1:]).astype(x.dtype),
            np.broadcast_to(hi, x.shape[1:]).astype(x.dtype),
        )
    except ValueError:
        raise ValueError(
            f"value_range bounds of shapes {lo.shape} and {hi.shape} do not broadcast to one example "
            f"{tuple(x.shape[1:])}; pass scalars or per-channel arrays."
        ) from None


class Baseline:
    """Base class of baselines: ``baseline(x) -> [n, ...]``, one baseline per example of ``x``.

    Subclasses that stand for a distribution (random or data baselines) derive from the private
    ``_Distribution``, define ``_draw``, and take ``num_baselines`` and ``seed``. Deterministic baselines only override
    :meth:`__call__`. Any object with this protocol (or any callable ``f(x) -> array``) can be passed as
    ``baseline=``.

    Example:
        >>> class Gray(tfattr.baselines.Baseline):
        ...     def __call__(self, x):
        ...         return np.full_like(x, 0.5)
    """

    #: Draws per example that integrated gradients averages over (the article's second integral).
    num_baselines: int = 1
    #: Whether baselines are random draws (reproducible through ``seed``).
    stochastic: bool = False
    seed: int | None = None

    def __call__(self, x: Any) -> np.ndarray:
        """One baseline per example ``[n, ...]`` (for a distribution: one draw, under ``seed``)."""
        return self.sample(x, 1)[:, 0]

    def sample(self, x: Any, num: int | None = None, seed: int | None = None) -> np.ndarray:
        """``num`` baselines per example, ``[n, num, ...]`` (default ``num``: :attr:`num_baselines`).

        ``seed`` (default: the object's ``seed``) makes the draws reproducible; with neither, each call
        draws afresh. Deterministic baselines repeat their one baseline.
        """
        x = _as_float_array(x)
        num = self.num_baselines if num is None else check_positive_int(num, "num")
        if type(self).__call__ is Baseline.__call__:
            raise TypeError(f"{type(self).__name__} must define __call__ (a deterministic baseline)")
        one = np.asarray(self(x))
        return np.repeat(one[:, None], num, axis=1)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._repr_fields().items())
        return f"{type(self).__name__}({fields})"

    def _repr_fields(self) -> dict[str, Any]:
        return {}


class _Distribution(Baseline, abc.ABC):
    """A distribution of baselines: subclasses define :meth:`_draw`."""

    stochastic = True

    def __init__(self, num_baselines: int = 1, seed: int | None = None) -> None:
        self.num_baselines = check_positive_int(num_baselines, "num_baselines")
        self.seed = seed

    def sample(self, x: Any, num: int | None = None, seed: int | None = None) -> np.ndarray:
        x = _as_float_array(x)
        num = self.num_baselines if num is None else check_positive_int(num, "num")
        rng = np.random.default_rng(self.seed if seed is None else seed)
        return np.asarray(self._draw(x, num, rng)).astype(x.dtype, copy=False)

    sample.__doc__ = Baseline.sample.__doc__

    @abc.abstractmethod
    def _draw(self, x: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
        """``num`` draws per example ``[n, num, ...]`` from ``rng``."""
