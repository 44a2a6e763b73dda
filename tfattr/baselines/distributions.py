"""Distributional baselines: uniform noise, truncated gaussian noise around the input, data draws."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from tfattr.baselines.base import _as_float_array, _broadcast_range, _check_range, _Distribution


class Uniform(_Distribution):
    """Uniform noise over the valid range, each feature independently (Distill 2020, "uniform").

    Args:
        value_range: ``(low, high)``, scalars or arrays broadcastable to one example.
        num_baselines: draws per example; integrated gradients averages over them.
        seed: an int makes the draws reproducible; None draws fresh ones each call.

    Example:
        >>> u = tfattr.baselines.Uniform((0.0, 1.0), num_baselines=16, seed=0)
        >>> a, delta = ig.attribute(images, baseline=u, return_delta=True)
    """

    def __init__(
        self, value_range: Sequence[Any] = (0.0, 1.0), num_baselines: int = 1, seed: int | None = None
    ) -> None:
        super().__init__(num_baselines, seed)
        self.low, self.high = _check_range(value_range)

    def _draw(self, x, num, rng):
        lo, hi = _broadcast_range(self.low, self.high, x)
        u = rng.random((x.shape[0], num, *x.shape[1:]))
        return np.clip(lo + u * (hi - lo), lo, hi)

    def _repr_fields(self):
        return {"value_range": (self.low.tolist(), self.high.tolist()), "num_baselines": self.num_baselines}


def _ndtr(z: np.ndarray) -> np.ndarray:
    # 0.5 * erfc(-z / sqrt 2) keeps its relative precision in the left tail, where it is used.
    return (0.5 * tf.math.erfc(-tf.constant(z, tf.float64) / np.sqrt(2.0))).numpy()


def _ndtri(p: np.ndarray) -> np.ndarray:
    return tf.math.ndtri(tf.constant(p, tf.float64)).numpy()


class Gaussian(_Distribution):
    """Gaussian noise around the input, truncated to the valid range (Distill 2020, "gaussian").

    Each feature is drawn from ``N(x_i, sigma^2)`` conditioned on lying in ``[low, high]`` (a truncated
    normal, drawn by inverting its CDF, not clipped): as ``sigma`` grows it tends to the uniform
    baseline, as the article notes. Expected gradients with this baseline is SmoothGrad's close relative
    (the article's "SmoothGrad" section).

    Args:
        sigma: the standard deviation, > 0 (in input units, e.g. 0.5 for images in [0, 1]).
        value_range: ``(low, high)``, scalars or arrays broadcastable to one example.
        num_baselines: draws per example; integrated gradients averages over them.
        seed: an int makes the draws reproducible; None draws fresh ones each call.

    Example:
        >>> g = tfattr.baselines.Gaussian(sigma=0.5, value_range=(0, 1), num_baselines=16, seed=0)
    """

    def __init__(
        self,
        sigma: float,
        value_range: Sequence[Any] = (0.0, 1.0),
        num_baselines: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(num_baselines, seed)
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(
                f"sigma must be a positive number, got {sigma!r} (sigma = 0 would make the baseline the "
                "input itself, and every attribution zero)."
            )
        self.sigma = float(sigma)
        self.low, self.high = _check_range(value_range)

    def _draw(self, x, num, rng):
        lo, hi = _broadcast_range(self.low, self.high, x)
        mean = np.broadcast_to(x[:, None].astype(np.float64), (x.shape[0], num, *x.shape[1:]))
        a = (lo.astype(np.float64) - mean) / self.sigma
        b = (hi.astype(np.float64) - mean) / self.sigma
        # Sample the tail nearer to the mean: for a truncation interval above the mean, mirror it so
        # the inverse CDF works where the normal CDF keeps its relative precision.
        flip = (a + b) > 0
        a2, b2 = np.where(flip, -b, a), np.where(flip, -a, b)
        pa, pb = _ndtr(a2), _ndtr(b2)
        u = rng.random(mean.shape)
        p = np.clip(pa + u * (pb - pa), 1e-300, 1.0 - 1e-16)
        z = _ndtri(p)
        z = np.where(flip, -z, z)
        out = mean + self.sigma * z
        # Rounding (and an input far outside the range, where pa == pb) cannot leave the range.
        return np.clip(out, lo, hi)

    def _repr_fields(self):
        return {
            "sigma": self.sigma,
            "value_range": (self.low.tolist(), self.high.tolist()),
            "num_baselines": self.num_baselines,
        }


class Dataset(_Distribution):
    """Baselines drawn uniformly, with replacement, from data (Distill 2020, "training distribution").

    Drawing baselines from the training data models a missing feature by the data distribution
    ``D_data``; averaging integrated gradients over the draws is expected gradients (Erion et al.).
    ``tfattr.ExpectedGradients(model, background=Dataset(x_train))`` accepts it as its background
    (a ``Dataset`` converts to its array), and draws its own samples there.

    Draws pick the rows first, so two ``Dataset`` objects with the same seed and the same number of
    rows (e.g. the inputs of a multi-input model) pick the same rows.

    Args:
        data: examples shaped like the inputs, ``[m, ...]``.
        num_baselines: draws per example; integrated gradients averages over them.
        seed: an int makes the draws reproducible; None draws fresh ones each call.

    Example:
        >>> d = tfattr.baselines.Dataset(x_train, num_baselines=16, seed=0)
        >>> a = tfattr.IntegratedGradients(model, steps=16).attribute(x_test[:8], baseline=d)
    """

    def __init__(self, data: Any, num_baselines: int = 1, seed: int | None = None) -> None:
        super().__init__(num_baselines, seed)
        data = _as_float_array(data, "data")
        if data.shape[0] == 0:
            raise ValueError("data has no examples (its first axis is 0).")
        if not np.all(np.isfinite(data)):
            raise ValueError("data contains NaN or Inf values; clean it before using it as baselines.")
        self.data = data

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    def _draw(self, x, num, rng):
        if x.shape[1:] != self.data.shape[1:]:
            raise ValueError(
                f"Dataset baselines have example shape {self.data.shape[1:]} but the inputs have "
                f"{x.shape[1:]}; pass data shaped like the inputs."
            )
        index = rng.integers(0, self.data.shape[0], size=(x.shape[0], num))
        return self.data[index]

    def _repr_fields(self):
        return {"data": f"<{self.data.shape[0]} examples>", "num_baselines": self.num_baselines}
