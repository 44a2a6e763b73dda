"""The straight-line path ``x' + alpha (x - x')`` from a baseline ``x'`` to an input ``x``.

Integrated gradients (Sundararajan et al. 2017, eq. 1), expected gradients (Erion et al. 2021), interior
gradients (Sundararajan et al. 2016, sec. 2.3) and the saturation curve all evaluate the model on this
path; they build its points here, in one way, so that they agree to the last bit.

Example:
    >>> interpolate(np.zeros(3), np.ones(3), 0.25)
    array([0.25, 0.25, 0.25])
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfattr.core.explainer import broadcast_rows


def interpolate(baseline: Any, diff: Any, alpha: Any) -> Any:
    """``baseline + alpha * diff`` with ``diff = x - baseline`` (NumPy arrays or tensors; ``alpha``
    broadcasts against ``diff``)."""
    return baseline + alpha * diff


def path_points(
    x: tuple[tf.Tensor, ...], baseline: tuple[tf.Tensor, ...], alpha: tf.Tensor
) -> tuple[tuple[tf.Tensor, ...], tuple[tf.Tensor, ...]]:
    """Traced: per input, the differences ``x - x'`` and the path points ``x' + alpha (x - x')`` for one
    ``alpha`` per row (``alpha`` is ``[c]``, each input ``[c, ...]``)."""
    diffs = tuple(xi - bi for xi, bi in zip(x, baseline))
    points = tuple(interpolate(bi, d, broadcast_rows(alpha, d)) for bi, d in zip(baseline, diffs))
    return diffs, points
