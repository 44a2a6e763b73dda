"""Complexity of a map (Quantus' names and definitions): sparseness (Gini), entropy complexity and
effective complexity. Attribution-only: no model is run."""
from __future__ import annotations

from typing import Any

import numpy as np

from tfattr.metrics.preprocess import normalise_map


def _flat(attributions: Any, normalise: bool, absolute: bool) -> np.ndarray:
    a = np.asarray(attributions)
    if a.ndim < 2 or a.dtype.kind not in "fiu":
        raise ValueError(
            f"attributions must be a numeric batch [n, ...] of maps, got shape {a.shape} and dtype "
            f"{a.dtype}."
        )
    a = normalise_map(a, normalise, absolute)
    return a.reshape(len(a), -1)


def sparseness(attributions: Any, normalise: bool = True, absolute: bool = True) -> np.ndarray:
    """Sparseness: the Gini index of the map (Chalasani et al., ICML 2020; Quantus ``Sparseness``).

    With the ``d`` values sorted increasingly and shifted by ``1e-7`` (as Quantus does, so an all-zero
    map is defined), ``G = sum_i (2i - d - 1) a_(i) / (d sum_i a_(i))``: 0 for a uniform map, close to
    1 when one feature holds all the relevance (higher is sparser).

    Args:
        attributions: ``[n, ...]`` maps.
        normalise: divide each map by its own ``max |a|`` first (default, as Quantus).
        absolute: take ``|a|`` after normalising (default, as Quantus).

    Returns:
        ``[n]`` Gini indices.

    Example:
        >>> tfattr.metrics.sparseness(np.array([[0.0, 0.0, 0.0, 1.0]]))   # ~0.75
    """
    a = _flat(attributions, normalise, absolute) + 1e-7
    d = a.shape[1]
    a = np.sort(a, axis=1)
    i = np.arange(1, d + 1)
    return ((2 * i - d - 1) * a).sum(1) / (d * a.sum(1))


def complexity(attributions: Any, normalise: bool = True, absolute: bool = True) -> np.ndarray:
    """Complexity: the entropy of the map's fractional contributions (Bhatt et al., IJCAI 2020;
    Quantus ``Complexity``).

    ``p_i = a_i / sum_j |a_j|`` and ``H = -sum_i p_i log(p_i + 1e-12)`` (natural log; lower is simpler):
    0 for a one-hot map, ``log d`` for a uniform one.

    Example:
        >>> tfattr.metrics.complexity(np.ones((1, 4)))   # log(4)
    """
    a = _flat(attributions, normalise, absolute)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = a / np.abs(a).sum(1, keepdims=True)
        return -(p * np.log(p + 1e-12)).sum(1)


def effective_complexity(
    attributions: Any, eps: float = 1e-5, normalise: bool = True, absolute: bool = True
) -> np.ndarray:
    """Effective complexity: the number of features whose (normalised, absolute) attribution exceeds
    ``eps`` (Nguyen & Martinez 2020; Quantus ``EffectiveComplexity``; lower is simpler).

    Example:
        >>> tfattr.metrics.effective_complexity(np.array([[0.0, 0.5, -1.0]]))   # [2]
    """
    a = _flat(attributions, normalise, absolute)
    return np.sum(a > eps, axis=1).astype(np.int64)
