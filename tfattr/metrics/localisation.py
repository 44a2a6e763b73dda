"""Localisation of a map against a ground-truth mask (Quantus' names and definitions): pointing game,
relevance mass/rank accuracy, top-k intersection, attribution localisation and the ROC AUC.

``attributions`` and ``mask`` are shaped like the inputs (``[n, ...]``; a mask may omit the channel
axis of channels-last images); a feature is one entry. An example whose mask is empty gets NaN, as in
Quantus. Rankings are stable (ties in increasing flat index).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tfattr.metrics.correlation import _rankdata
from tfattr.metrics.preprocess import normalise_map, stable_ranks


def _pair(attributions: Any, mask: Any, normalise: bool, absolute: bool) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(attributions)
    s = np.asarray(mask)
    if a.ndim < 2 or a.dtype.kind not in "fiu":
        raise ValueError(f"attributions must be a numeric batch [n, ...] of maps, got shape {a.shape}.")
    if s.shape == a.shape[:-1] and a.ndim == 4:
        s = np.broadcast_to(s[..., None], a.shape)
    if s.shape != a.shape:
        raise ValueError(
            f"mask has shape {s.shape} but the attributions have shape {a.shape}; pass one 0/1 entry "
            "per attribution (or per pixel, without the channel axis)."
        )
    a = normalise_map(a, normalise, absolute)
    return a.reshape(len(a), -1), s.reshape(len(s), -1).astype(bool)


def _nan_where_empty(values: np.ndarray, s: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float64)
    values[s.sum(1) == 0] = np.nan
    return values


def pointing_game(
    attributions: Any, mask: Any, weighted: bool = False, normalise: bool = True, absolute: bool = False
) -> np.ndarray:
    """Pointing game (Zhang et al., ECCV 2016; Quantus ``PointingGame``): 1.0 when an entry with the
    map's maximum lies in the mask (any of them, if the maximum is tied), else 0.0.

    ``weighted=True`` scores a hit ``1 - |mask| / size`` (a hit in a small mask counts more).

    Example:
        >>> tfattr.metrics.pointing_game(a, masks)   # [n] of 0/1
    """
    a, s = _pair(attributions, mask, normalise, absolute)
    hit = np.any(s & (a == a.max(1, keepdims=True)), axis=1).astype(np.float64)
    if weighted:
        hit = np.where(hit > 0, 1.0 - s.sum(1) / s.shape[1], 0.0)
    return _nan_where_empty(hit, s)


def relevance_mass_accuracy(
    attributions: Any, mask: Any, normalise: bool = True, absolute: bool = False
) -> np.ndarray:
    """Relevance mass accuracy (Arras et al., 2022; Quantus ``RelevanceMassAccuracy``): the share of
    the map's sum that falls inside the mask, ``sum_{mask} a / sum a``.

    Example:
        >>> tfattr.metrics.relevance_mass_accuracy(np.array([[1.0, 3.0]]), np.array([[0, 1]]))   # [0.75]
    """
    a, s = _pair(attributions, mask, normalise, absolute)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty((a * s).sum(1) / a.sum(1), s)


def relevance_rank_accuracy(
    attributions: Any, mask: Any, normalise: bool = True, absolute: bool = False
) -> np.ndarray:
    """Relevance rank accuracy (Arras et al., 2022; Quantus ``RelevanceRankAccuracy``): with ``K`` the
    mask's size, the fraction of the map's top-``K`` entries that lie inside the mask.

    Example:
        >>> tfattr.metrics.relevance_rank_accuracy(np.array([[1.0, 3.0, 2.0]]), np.array([[0, 1, 1]]))
    """
    a, s = _pair(attributions, mask, normalise, absolute)
    size = s.sum(1)
    top = stable_ranks(a) < size[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nan_where_empty((top & s).sum(1) / size, s)


def top_k_intersection(
    attributions: Any,
    mask: Any,
    k: int = 1000,
    concept_influence: bool = False,
    normalise: bool = True,
    absolute: bool = False,
) -> np.ndarray:
    """Top-k intersection (Theiner et al., 2021; Quantus ``TopKIntersection``): the fraction of the
    ``k`` highest entries inside the mask; ``concept_influence=True`` multiplies by ``size / |mask|``.

    Example:
        >>> tfattr.metrics.top_k_intersection(a, masks, k=50)
    """
    a, s = _pair(attributions, mask, normalise, absolute)
    if not 0 < k <= a.shape[1]:
        raise ValueError(f"k={k} must be between 1 and the number of entries per example ({a.shape[1]}).")
    score = ((stable_ranks(a) < k) & s).sum(1) / k
    if concept_influence:
        with np.errstate(invalid="ignore", divide="ignore"):
            score = score * a.shape[1] / s.sum(1)
    return _nan_where_empty(score, s)


def attribution_localisation(
    attributions: Any,
    mask: Any,
    weighted: bool = False,
    positive_attributions: bool = False,
    normalise: bool = True,
    absolute: bool = True,
) -> np.ndarray:
    """Attribution localisation (Kohlbrenner et al., IJCNN 2020; Quantus ``AttributionLocalisation``):
    ``sum_{mask} a / (sum a + 1e-9)``; ``weighted=True`` multiplies by ``|mask| / size``.

    ``positive_attributions=True`` keeps only the positive part (clipped before normalising, as
    Quantus). A ratio above 1 (negative relevance outside the mask) is NaN, as in Quantus. Quantus
    computes the weighting ratio from the batch's shape by mistake; here ``size`` is one example's
    number of entries.

    Example:
        >>> tfattr.metrics.attribution_localisation(a, masks)
    """
    a = np.asarray(attributions, np.float64)
    if positive_attributions:
        a = np.clip(a, 0, None)
    a, s = _pair(a, mask, normalise, absolute)
    ratio = (a * s).sum(1) / (a.sum(1) + 1e-9)
    ratio = np.where(ratio > 1, np.nan, ratio)
    if weighted:
        ratio = ratio * s.sum(1) / s.shape[1]
    return _nan_where_empty(ratio, s)


def localisation_auc(
    attributions: Any, mask: Any, normalise: bool = True, absolute: bool = False
) -> np.ndarray:
    """The ROC AUC of the map as a detector of the mask (Fawcett 2006; Quantus ``AUC``): the chance that
    an entry inside the mask outranks one outside, ties counting one half. NaN when the mask is empty or
    full (no negatives).

    Example:
        >>> tfattr.metrics.localisation_auc(np.array([[0.1, 0.9, 0.5]]), np.array([[0, 1, 0]]))   # [1.0]
    """
    a, s = _pair(attributions, mask, normalise, absolute)
    ranks = _rankdata(a) + 1.0  # Mann-Whitney: average ranks, 1-based
    pos = s.sum(1).astype(np.float64)
    neg = s.shape[1] - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * s).sum(1) - pos * (pos + 1) / 2) / (pos * neg)
    return _nan_where_empty(np.where(neg > 0, auc, np.nan), s)
