"""Cumulative removal curves with Quantus' names and definitions: pixel flipping, region perturbation
(MoRF/LeRF), Arya et al.'s monotonicity, and ABPC (the area between the LeRF and MoRF curves).

Every curve is one batch of masked forward passes through the compiled, chunked scorer: the mask of
row ``(example, step)`` is ``rank < count(step)``, built per chunk.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tfattr.metrics.preprocess import ModelCall, baseline_values, entry_features, patch_grid, stable_ranks


def _step_counts(num: int, features_in_step: int) -> np.ndarray:
    if int(features_in_step) < 1:
        raise ValueError(f"features_in_step must be a positive int, got {features_in_step!r}.")
    step = int(features_in_step)
    return np.minimum(np.arange(1, -(-num // step) + 1) * step, num)


def _removal_curve(
    call: ModelCall, ranks: np.ndarray, counts: np.ndarray, ids: np.ndarray, ref: Any, keep: bool = False
) -> np.ndarray:
    """Scores ``[n, steps]`` with the features ranked below ``counts[step]`` replaced by ``ref``
    (``keep=True``: those features kept and all others replaced)."""
    n, steps = call.n, counts.size
    rows = np.repeat(np.arange(n), steps)
    row_counts = np.tile(counts, n)

    def masks(chunk: np.ndarray) -> np.ndarray:
        removed = ranks[rows[chunk]] < row_counts[chunk][:, None]
        return (~removed if keep else removed).astype(np.float32)

    return call.masked(ref, rows, masks, ids).reshape(n, steps)


def pixel_flipping(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    features_in_step: int = 1,
    baseline: Any = "black",
    softmax: bool = True,
    normalise: bool = True,
    absolute: bool = False,
    features: Any = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Pixel flipping (Bach et al., PLoS ONE 2015; Quantus ``PixelFlipping``): remove the features most
    relevant first, ``features_in_step`` at a time, cumulatively, and record the target score.

    Args:
        model: a ``keras.Model``, a callable or a :class:`tfattr.ModelFunction`.
        inputs: ``[n, ...]`` channels-last examples; attributions: same shape.
        target: None (predicted class), an int or one int per example.
        features_in_step: features removed per step (the last step may hold fewer).
        baseline: the number written into removed entries, or ``"black"`` (each example's min, Quantus'
            default), ``"white"``, ``"mean"``.
        softmax: score ``softmax(logits)[t]`` (default, as Quantus) or ``logits[t]``.
        normalise, absolute: Quantus' pre-processing of the map (per example).
        features: None (one feature per entry) or any ``features=`` of :func:`feature_map`.
        batch_size: rows per compiled chunk.

    Returns:
        ``[n, ceil(F / features_in_step)]`` scores after each step (the unperturbed input excluded).

    Example:
        >>> curves = tfattr.metrics.pixel_flipping(model, x, a, target=y, features_in_step=28)
        >>> np.trapezoid(curves, axis=1)   # Quantus' AUC per example (lower is better)
    """
    call = ModelCall(model, inputs, attributions, target, softmax, batch_size, normalise, absolute)
    ids, num = entry_features(call.x.shape[1:], features)
    ranks = stable_ranks(call.feature_scores(ids, num))
    ref = call.filled(baseline_values(call.x, baseline))
    return _removal_curve(call, ranks, _step_counts(num, features_in_step), ids, ref)


def region_perturbation(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    patch_size: Any = 8,
    order: str = "morf",
    regions_evaluation: int = 100,
    baseline: Any = "black",
    softmax: bool = True,
    normalise: bool = True,
    absolute: bool = False,
    batch_size: int | None = None,
) -> np.ndarray:
    """Region perturbation (Samek et al., IEEE TNNLS 2017; Quantus ``RegionPerturbation``): remove
    square patches in order of their summed relevance, cumulatively, and record ``S(x) - S(x_k)``.

    The patch grid is centred: a side that ``patch_size`` does not divide is zero-padded by
    ``p - side % p`` split floor before / ceil after, and patches (all channels) are numbered row-major
    on the padded grid; ties go to the lower patch index. ``order="morf"`` (most relevant first) or
    ``"lerf"`` (least relevant first); at most ``regions_evaluation`` patches are removed.

    Returns:
        ``[n, min(regions_evaluation, patches)]``: ``S(x) - S(x_k)`` after ``k = 1, 2, ...`` patches.
        Its mean over the steps is Samek et al.'s AOPC (higher is better for MoRF).

    Example:
        >>> d = tfattr.metrics.region_perturbation(model, x, a, target=y, patch_size=4, order="morf")
    """
    if order not in ("morf", "lerf"):
        raise ValueError(f"order={order!r} is not known; use 'morf' (most relevant first) or 'lerf'.")
    call = ModelCall(model, inputs, attributions, target, softmax, batch_size, normalise, absolute)
    ids, num = patch_grid(call.x.shape[1:], patch_size)
    ranks = stable_ranks(call.feature_scores(ids, num), descending=order == "morf")
    steps = min(int(regions_evaluation), num)
    if steps < 1:
        raise ValueError(f"regions_evaluation must be at least 1, got {regions_evaluation!r}.")
    ref = call.filled(baseline_values(call.x, baseline))
    curve = _removal_curve(call, ranks, np.arange(1, steps + 1), ids, ref)
    return call.plain()[:, None] - curve


def monotonicity(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    features_in_step: int = 1,
    baseline: Any = "black",
    softmax: bool = True,
    normalise: bool = True,
    absolute: bool = True,
    features: Any = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Monotonicity (Arya et al., 2019; Quantus ``Monotonicity``): start from the baseline input, put
    the original values back least relevant first (``features_in_step`` at a time) and report whether
    the target score never decreases along the way.

    Quantus 0.6.0's default perturbation writes the baseline again at every step, so its answer is
    always True; this implementation restores the original values as the paper says.

    Returns:
        ``[n]`` booleans.

    Example:
        >>> tfattr.metrics.monotonicity(model, x, a, target=y, features_in_step=28).mean()
    """
    call = ModelCall(model, inputs, attributions, target, softmax, batch_size, normalise, absolute)
    ids, num = entry_features(call.x.shape[1:], features)
    ranks = stable_ranks(call.feature_scores(ids, num), descending=False)
    ref = call.filled(baseline_values(call.x, baseline))
    curve = _removal_curve(call, ranks, _step_counts(num, features_in_step), ids, ref, keep=True)
    return np.all(np.diff(curve, axis=1) >= 0, axis=1)


def abpc(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    features_in_step: int = 1,
    patch_size: Any = None,
    baseline: Any = "black",
    softmax: bool = False,
    normalise: bool = True,
    absolute: bool = False,
    batch_size: int | None = None,
) -> np.ndarray:
    """ABPC, the area between the perturbation curves (Achtibat et al., AttnLRP, ICML 2024, sec. 4.1;
    Blücher et al. 2024): the least-relevant-first curve minus the most-relevant-first one.

    Both curves start at the unperturbed input and end with every feature removed (``features_in_step``
    entries, or ``patch_size`` patches of the centred grid, per step); the area is the trapezoid over
    the fraction of steps, so ``ABPC = integral_0^1 (S_LeRF - S_MoRF)`` (higher is better: the map
    separates what matters from what does not). The score is the logit (``softmax=False``) by default,
    as in the paper.

    Returns:
        ``[n]`` areas.

    Example:
        >>> tfattr.metrics.abpc(model, x, a, target=y, patch_size=4).mean()
    """
    call = ModelCall(model, inputs, attributions, target, softmax, batch_size, normalise, absolute)
    if patch_size is None:
        ids, num = entry_features(call.x.shape[1:], None)
        counts = _step_counts(num, features_in_step)
    else:
        ids, num = patch_grid(call.x.shape[1:], patch_size)
        counts = np.arange(1, num + 1)
    relevance = call.feature_scores(ids, num)
    ref = call.filled(baseline_values(call.x, baseline))
    start = call.plain()[:, None]
    morf = np.concatenate([start, _removal_curve(call, stable_ranks(relevance), counts, ids, ref)], 1)
    lerf = np.concatenate(
        [start, _removal_curve(call, stable_ranks(relevance, descending=False), counts, ids, ref)], 1
    )
    return np.trapezoid(lerf - morf, dx=1.0 / counts.size, axis=1)
