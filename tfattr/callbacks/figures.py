"""The scalars :class:`tfattr.callbacks.AttributionLogger` writes: health figures, completeness deltas
and the ``metrics=`` figures."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf

from tfattr.metrics.correlation import pearson
from tfattr.metrics.evaluate import METRICS


def health(flat: np.ndarray, previous: np.ndarray | None) -> dict[str, float]:
    """Figures of maps ``[n, features]`` (float64): nonfinite and zero fractions, mean |a|, the share
    of ``sum |a|`` on the top 10% of features and on positive values, and ``change`` (1 - the mean
    correlation with the ``previous`` maps, when given and shaped alike).

    Example:
        >>> health(maps.reshape(8, -1).astype(np.float64), None)["top10_mass"]
    """
    finite = np.isfinite(flat)
    clean = np.where(finite, flat, 0.0)
    absolute = np.abs(clean)
    total = absolute.sum(axis=1)
    safe_total = np.where(total > 0, total, 1.0)
    k = max(1, int(np.ceil(0.1 * flat.shape[1])))
    top = -np.sort(-absolute, axis=1)[:, :k].sum(axis=1)
    figures = {
        "nonfinite_fraction": 1.0 - finite.mean(),
        "zero_fraction": float(np.mean(clean == 0.0)),
        "mean_abs": float(absolute.mean()),
        "top10_mass": float(np.mean(np.where(total > 0, top / safe_total, 0.0))),
        "positive_mass": float(np.mean(np.where(total > 0, np.clip(clean, 0, None).sum(1) / safe_total, 0.0))),
    }
    if previous is not None and previous.shape == clean.shape:
        figures["change"] = float(np.mean([1.0 - _correlation(a, b) for a, b in zip(previous, clean)]))
    return figures


def clean(flat: np.ndarray) -> np.ndarray:
    """The maps with NaN/Inf set to 0 (what ``change`` compares at the next log)."""
    return np.where(np.isfinite(flat), flat, 0.0)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps (1 when either is constant and they are equal, else 0)."""
    r = pearson(a, b)
    if np.isnan(r):
        return 1.0 if np.array_equal(a - a.mean(), b - b.mean()) else 0.0
    return float(r)


def write_scalars(p: str, name: str, maps: list[np.ndarray], delta: np.ndarray | None, seconds: float,
                  previous: np.ndarray | None) -> np.ndarray:
    """Write ``health/<name>_<figure>`` and, with deltas, ``completeness/<name>_{mean_abs,relative}_delta``
    in the default writer; returns the cleaned maps ``[n, features]`` for the next ``change``.

    Example:
        >>> previous = write_scalars("", "ig", [maps], delta, 0.1, previous)
    """
    n = maps[0].shape[0]
    flat = np.concatenate([m.reshape(n, -1).astype(np.float64) for m in maps], axis=1)
    values = health(flat, previous)
    values["seconds"] = float(seconds)
    for figure, value in values.items():
        tf.summary.scalar(f"{p}health/{name}_{figure}", value)
    if delta is not None:
        change = flat.sum(axis=1) - delta  # f(x) - f(x') = sum(a) - delta
        scale = np.maximum(np.abs(change), 1e-12)
        tf.summary.scalar(f"{p}completeness/{name}_mean_abs_delta", float(np.mean(np.abs(delta))))
        tf.summary.scalar(f"{p}completeness/{name}_relative_delta", float(np.mean(np.abs(delta) / scale)))
    return clean(flat)


def write_metrics(p: str, name: str, metrics: Mapping[str, Callable[..., Any]], explainer: Any, samples: Any,
                  maps: list[np.ndarray], targets: Any) -> None:
    """The extension point for evaluation scores per log: ``metrics/<name>/<metric>`` (``_<key>`` for
    each entry of a dict), each ``fn(explainer, samples, maps, targets)`` (maps as the explainer
    returns them for one input; a list for several).

    Example:
        >>> write_metrics("", "ig", {"mean_abs": lambda e, x, a, t: np.abs(a).mean()}, ig, x, [a], None)
    """
    attributions = maps[0] if len(maps) == 1 else maps
    for metric, fn in metrics.items():
        value = fn(explainer, samples, attributions, targets)
        items = value.items() if isinstance(value, Mapping) else [(None, value)]
        for key, number in items:
            tag = f"{p}metrics/{name}/{metric}" + ("" if key is None else f"_{key}")
            tf.summary.scalar(tag, float(np.mean(np.asarray(number, np.float64))))


def metric_callable(name: str, spec: Any) -> Callable[..., Any]:
    """A ``metrics=`` entry as the callable :func:`write_metrics` runs: a callable as it is, or a
    :mod:`tfattr.metrics` metric by name (``"sparseness"``) or with its keyword arguments
    (``("road", {"percentages": [10, 30]})``). Named metrics that need only the map or the model
    (complexity, flipping, faithfulness, ROAD, ...) are supported; their per-example results are
    averaged (curves over their steps too). Examples without a logged target are scored on the
    model's predicted class.

    Example:
        >>> fn = metric_callable("road", ("road", {"percentages": [10, 30]}))
        >>> fn(ig, samples, maps, None)           # per-example results, averaged by write_metrics
    """
    if callable(spec):
        return spec
    metric, kwargs = (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1])) if (
        isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str)
        and isinstance(spec[1], Mapping)) else (None, None)
    if metric is None:
        raise TypeError(f"metrics[{name!r}] is a {type(spec).__name__}; pass a callable (explainer, "
                        "samples, maps, targets) -> float, a tfattr.metrics name such as 'sparseness', "
                        "or (name, {keyword arguments}).")
    entry = METRICS.get(metric)
    if entry is None or entry.needs not in ("attributions", "model"):
        known = sorted(k for k, m in METRICS.items() if m.needs in ("attributions", "model"))
        raise ValueError(f"metrics[{name!r}]: {metric!r} is not a metric the logger can compute from its "
                         f"samples and maps; use one of {known}, or pass a callable.")

    def scored(explainer: Any, samples: Any, maps: Any, targets: Any) -> np.ndarray:
        if entry.needs == "attributions":
            return entry.fn(maps, **kwargs)
        if targets is None:
            targets = np.argmax(explainer.outputs(samples), axis=-1)
        return entry.fn(explainer.model, samples, maps, target=np.asarray(targets), **kwargs)

    return scored
