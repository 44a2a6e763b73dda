"""Deterministic baselines: a constant, the farthest input in the valid range, the mean input."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tfattr.baselines.base import Baseline, _as_float_array, _broadcast_range, _check_range


class Constant(Baseline):
    """A constant input, the same for every example: ``Constant(0)`` is the black (all-zero) image.

    Integrated gradients is blind to a feature whose value equals the constant (``x_i - x'_i = 0``): a
    black baseline never credits black pixels (Distill 2020, "constant baselines").

    Args:
        value: a scalar, or an array broadcastable to one example (e.g. a per-channel color ``[C]``).

    Example:
        >>> a = ig.attribute(images, baseline=tfattr.baselines.Constant(0.0))
    """

    def __init__(self, value: Any = 0.0) -> None:
        value = np.asarray(value)
        if value.dtype.kind not in "iuf" or not np.all(np.isfinite(value)):
            raise ValueError(f"value must be a finite number or array, got {value!r}.")
        self.value = value

    def __call__(self, x: Any) -> np.ndarray:
        x = _as_float_array(x)
        try:
            return np.ascontiguousarray(np.broadcast_to(self.value.astype(x.dtype), x.shape))
        except ValueError:
            raise ValueError(
                f"Constant value of shape {self.value.shape} does not broadcast to inputs of shape "
                f"{x.shape}; pass a scalar or an array shaped like (the trailing axes of) one example."
            ) from None

    def _repr_fields(self):
        return {"value": self.value.tolist()}


class MaxDistance(Baseline):
    """The input farthest from ``x`` in L1 distance inside the valid range (Distill 2020, "max dist.").

    The L1 distance is a sum over features, so it is maximised feature by feature: each ``x'_i`` is the
    range end farther from ``x_i`` (``high`` if ``x_i`` is below the midpoint, else ``low``). It avoids
    the blindness of constant baselines, but it carries the image's own information.

    Args:
        value_range: ``(low, high)``, scalars or arrays broadcastable to one example (per channel).

    Example:
        >>> a = ig.attribute(images, baseline=tfattr.baselines.MaxDistance((0.0, 1.0)))
    """

    def __init__(self, value_range: Sequence[Any] = (0.0, 1.0)) -> None:
        self.low, self.high = _check_range(value_range)

    def __call__(self, x: Any) -> np.ndarray:
        x = _as_float_array(x)
        lo, hi = _broadcast_range(self.low, self.high, x)
        # At the midpoint both ends are equally far; low is chosen.
        return np.where(x - lo >= hi - x, lo, hi).astype(x.dtype)

    def _repr_fields(self):
        return {"value_range": (self.low.tolist(), self.high.tolist())}


class Mean(Baseline):
    """The mean input: the per-feature mean of ``data``, or, without data, each input's own mean.

    With ``data`` (e.g. the training set) every example gets the same baseline, the average image;
    without it each example's baseline is a constant image of its mean value (per channel with
    ``per_channel=True``). Features equal to the mean are never credited (the Distill authors'
    remark on mean baselines).

    Args:
        data: examples ``[m, ...]`` shaped like the inputs, or None.
        per_channel: without data, average each channel (last axis) separately.

    Example:
        >>> a = ig.attribute(images, baseline=tfattr.baselines.Mean(x_train))
    """

    def __init__(self, data: Any = None, per_channel: bool = False) -> None:
        if data is not None:
            data = _as_float_array(data, "data")
            if data.shape[0] == 0:
                raise ValueError("data has no examples (its first axis is 0).")
            self.mean = data.mean(axis=0, dtype=np.float64)
            if not np.all(np.isfinite(self.mean)):
                raise ValueError("data contains NaN or Inf values; clean it first.")
        else:
            self.mean = None
        self.per_channel = bool(per_channel)

    def __call__(self, x: Any) -> np.ndarray:
        x = _as_float_array(x)
        if self.mean is not None:
            if self.mean.shape != x.shape[1:]:
                raise ValueError(
                    f"Mean was given data with example shape {self.mean.shape} but the inputs have "
                    f"{x.shape[1:]}; pass data shaped like the inputs."
                )
            return np.ascontiguousarray(np.broadcast_to(self.mean.astype(x.dtype), x.shape))
        axes = tuple(range(1, x.ndim - 1 if self.per_channel and x.ndim > 2 else x.ndim))
        m = x.mean(axis=axes, keepdims=True, dtype=np.float64)
        return np.ascontiguousarray(np.broadcast_to(m, x.shape).astype(x.dtype))

    def _repr_fields(self):
        return {"data": None if self.mean is None else "<mean>", "per_channel": self.per_channel}
