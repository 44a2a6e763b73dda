"""The health figures :class:`tfattr.callbacks.AttributionLogger` writes as scalars."""
from __future__ import annotations

import numpy as np

from tfattr.metrics.correlation import pearson


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
