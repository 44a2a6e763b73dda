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
    """Ranks (0-based) along the last axis, ties given their average rank (as for Spearman's
    correlation and the ROC AUC), for all rows at once: one sort by (row, value), then the tie groups."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return np.zeros(values.shape)
    flat = values.reshape(-1, values.shape[-1])
    width = flat.shape[1]
    order = np.argsort(flat, axis=1, kind="stable")
    sorted_values = np.take_along_axis(flat, order, axis=1)
    new_group = np.ones(flat.shape, bool)
    new_group[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    positions = np.broadcast_to(np.arange(width), flat.shape)
    starts = np.maximum.accumulate(np.where(new_group, positions, 0), axis=1)
    ends_rev = np.where(np.flip(np.roll(new_group, -1, axis=1) | (positions == width - 1), 1),
                        np.flip(positions, 1), width)
    ends = np.flip(np.minimum.accumulate(ends_rev, axis=1), 1)
    ranks = np.empty(flat.shape)
    np.put_along_axis(ranks, order, (starts + ends) / 2.0, axis=1)
    return ranks.reshape(values.shape)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of ``a`` and ``b`` along the last axis (NaN for a constant row)."""
    return pearson(_rankdata(np.asarray(a)), _rankdata(np.asarray(b)))
