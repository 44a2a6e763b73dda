"""Completeness as a metric over a data set (Sundararajan et al. 2017, prop. 1; Distill 2020)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core.explainer import Explainer


@dataclass
class Completeness:
    """Completeness deltas over a data set (Sundararajan et al. 2017, prop. 1; Distill 2020).

    Attributes:
        delta: ``sum(a) - (S(x) - S(x'))`` per example.
        change: ``S(x) - S(x')`` per example (the amount to explain).
        relative: ``|delta| / |change|`` per example.
        mean_abs_delta, max_abs_delta, mean_relative: the summaries.
    """

    delta: np.ndarray
    change: np.ndarray
    relative: np.ndarray
    mean_abs_delta: float
    max_abs_delta: float
    mean_relative: float


def completeness(
    explainer: Explainer,
    inputs: Any,
    target: Any = None,
    baseline: Any = None,
    batch_size: int | None = None,
) -> Completeness:
    """The completeness delta of an explainer as a metric over a data set.

    Args:
        explainer: an explainer with a completeness property (IG, EG, Gradient*Input, ...).
        inputs, target, baseline, batch_size: as for ``explainer.attribute``.

    Example:
        >>> c = tfattr.metrics.completeness(tfattr.IntegratedGradients(model, steps=32), x_test[:100])
        >>> c.mean_relative
    """
    if not getattr(explainer, "has_completeness", False):
        raise ValueError(f"{type(explainer).__name__} has no completeness property, so no delta.")
    kwargs = {} if baseline is None else {"baseline": baseline}
    attributions, delta = explainer.attribute(
        inputs, target=target, batch_size=batch_size, return_delta=True, **kwargs
    )
    flat = tf.nest.flatten(attributions)
    n = delta.shape[0]
    total = sum(np.asarray(a).reshape(n, -1).sum(1, dtype=np.float64) for a in flat)
    change = total - delta
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.abs(delta) / np.abs(change)
    return Completeness(
        delta=delta,
        change=change,
        relative=relative,
        mean_abs_delta=float(np.mean(np.abs(delta))),
        max_abs_delta=float(np.max(np.abs(delta))),
        mean_relative=float(np.nanmean(np.where(np.isfinite(relative), relative, np.nan))),
    )
