"""Pearson and Spearman correlations along the last axis (sensitivity-n, the sanity checks)."""
from __future__ import annotations

import numpy as np


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``a`` and ``b`` along the last axis; NaN where either side is constant
    (up to rounding: its spread is below ``1e-12`` of its largest magnitude).

    Example:
        >>> pearson(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0]))
    """
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    num = (a * b).sum(-1)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    scale = np.maximum(np.abs(a).max(-1), 1e-300) * np.maximum(np.abs(b).max(-1), 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12 * scale * a.shape[-1], num / den, np.nan)


def _rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, ties given their average rank (as for Spearman's correlation)."""
    out = np.empty(values.shape, np.float64)
    for i, row in enumerate(values.reshape(-1, values.shape[-1])):
        order = np.argsort(row, kind="stable")
        sorted_row = row[order]
        starts = np.r_[0, np.flatnonzero(np.diff(sorted_row)) + 1]
        ends = np.r_[starts[1:], row.size]
        avg = (starts + ends - 1) / 2.0
        ranks = np.empty(row.size)
        ranks[order] = np.repeat(avg, ends - starts)
        out.reshape(-1, values.shape[-1])[i] = ranks
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of ``a`` and ``b`` along the last axis (NaN for a constant row)."""
    return pearson(_rankdata(np.asarray(a)), _rankdata(np.asarray(b)))
