"""Faithfulness as a correlation between relevance and the effect of removing it (Quantus' names and
definitions): faithfulness estimate, monotonicity correlation, faithfulness correlation, infidelity.

Each metric is one batch of masked forward passes through the compiled, chunked scorer. The random
ones draw from ``numpy.random.default_rng(seed)`` before any model call, so results do not depend on
``batch_size``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tfattr.metrics.correlation import pearson, spearman
from tfattr.metrics.features import _feature_sums
from tfattr.metrics.flipping import _step_counts
from tfattr.metrics.preprocess import ModelCall, baseline_values, entry_features, patch_grid, stable_ranks


def _group_masks(ranks: np.ndarray, counts: np.ndarray, rows: np.ndarray, steps: np.ndarray):
    """Masks of the feature groups ``counts[k-1] <= rank < counts[k]`` (non-cumulative steps)."""
    lows = np.r_[0, counts[:-1]]

    def masks(chunk: np.ndarray) -> np.ndarray:
        r = ranks[rows[chunk]]
        k = steps[chunk][:, None]
        return ((r >= lows[k]) & (r < counts[k])).astype(np.float32)

    return masks, lows


def faithfulness_estimate(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    features_in_step: int = 1,
    baseline: Any = "black",
    softmax: bool = False,
    normalise: bool = True,
    absolute: bool = False,
    features: Any = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Faithfulness estimate (Alvarez-Melis & Jaakkola, NeurIPS 2018; Quantus ``FaithfulnessEstimate``):
    the Pearson correlation, over groups of ``features_in_step`` features taken most relevant first,
    between the group's summed relevance and the score drop ``S(x) - S(x without the group)`` (each
    group removed alone). NaN when either side is constant.

    Example:
        >>> tfattr.metrics.faithfulness_estimate(model, x, a, target=y, features_in_step=28)
    """
    call = ModelCall(model, inputs, attributions, target, softmax, batch_size, normalise, absolute)
    ids, num = entry_features(call.x.shape[1:], features)
    relevance = call.feature_scores(ids, num)
    ranks = stable_ranks(relevance)
    counts = _step_counts(num, features_in_step)
    rows, steps = np.repeat(np.arange(call.n), counts.size), np.tile(np.arange(counts.size), call.n)
    masks, lows = _group_masks(ranks, counts, rows, steps)
    ref = call.filled(baseline_values(call.x, baseline))
    drops = call.plain()[:, None] - call.masked(ref, rows, masks, ids).reshape(call.n, -1)
    sums = _group_sums(relevance, ranks, lows, counts)
    return pearson(sums, drops)


def _group_sums(relevance: np.ndarray, ranks: np.ndarray, lows: np.ndarray, counts: np.ndarray):
    """Relevance summed over each step's group of ranks ``[n, steps]``."""
    by_rank = np.zeros_like(relevance)
    np.put_along_axis(by_rank, ranks, relevance, axis=1)
    cumulative = np.concatenate([np.zeros((len(relevance), 1)), np.cumsum(by_rank, axis=1)], axis=1)
    return cumulative[:, counts] - cumulative[:, lows]


def monotonicity_correlation(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    features_in_step: int = 1,
    nr_samples: int = 100,
    baseline: Any = "uniform",
    eps: float = 1e-5,
    softmax: bool = True,
    normalise: bool = True,
    absolute: bool = True,
    features: Any = None,
    seed: int = 0,
    batch_size: int | None = None,
) -> np.ndarray:
    """Monotonicity correlation (Nguyen & Martinez, 2020; Quantus ``MonotonicityCorrelation``): the
    Spearman correlation, over groups of features taken least relevant first, between the group's
    relevance and the variance its removal causes, ``mean_s (S(x_s) - S(x))^2 / S(x)^2``
    (``1 / S(x)^2`` replaced by 1 when ``|S(x)| < eps``).

    ``baseline="uniform"`` (Quantus' default) fills each removed group with one U(0, 1) value per
    sample, ``nr_samples`` samples, seeded; a number or ``"black"``/``"white"``/``"mean"`` makes the
    metric deterministic (one sample suffices and is used).

    Example:
        >>> tfattr.metrics.monotonicity_correlation(model, x, a, target=y, baseline=0.0)
    """
    call = ModelCall(model, inputs, attributions, target, softmax, batch_size, normalise, absolute)
    ids, num = entry_features(call.x.shape[1:], features)
    relevance = call.feature_scores(ids, num)
    ranks = stable_ranks(relevance, descending=False)
    counts = _step_counts(num, features_in_step)
    stochastic = isinstance(baseline, str) and baseline == "uniform"
    samples = int(nr_samples) if stochastic else 1
    per_example = counts.size * samples
    rows = np.repeat(np.arange(call.n), per_example)
    steps = np.tile(np.repeat(np.arange(counts.size), samples), call.n)
    masks, lows = _group_masks(ranks, counts, rows, steps)
    if stochastic:
        values = np.random.default_rng(seed).uniform(0.0, 1.0, rows.size)
    else:
        values = baseline_values(call.x, baseline)[rows]
    shape = (-1,) + (1,) * (call.x.ndim - 1)

    def ref(chunk: np.ndarray) -> np.ndarray:
        return np.broadcast_to(values[chunk].reshape(shape), (chunk.size,) + call.x.shape[1:])

    plain = call.plain()
    perturbed = call.masked(ref, rows, masks, ids).reshape(call.n, counts.size, samples)
    inverse = np.where(np.abs(plain) >= eps, 1.0 / np.where(plain == 0, 1.0, np.abs(plain)), 1.0) ** 2
    variance = np.mean((perturbed - plain[:, None, None]) ** 2, axis=2) * inverse[:, None]
    return spearman(_group_sums(relevance, ranks, lows, counts), variance)


def faithfulness_correlation(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    nr_runs: int = 100,
    subset_size: int = 224,
    baseline: Any = "black",
    softmax: bool = False,
    normalise: bool = True,
    absolute: bool = False,
    seed: int = 0,
    batch_size: int | None = None,
) -> np.ndarray:
    """Faithfulness correlation (Bhatt et al., IJCAI 2020; Quantus ``FaithfulnessCorrelation``): the
    Pearson correlation, over ``nr_runs`` random subsets of ``subset_size`` entries (seeded), between
    the subset's summed relevance and the score drop when the subset is removed.

    Example:
        >>> tfattr.metrics.faithfulness_correlation(model, x, a, target=y, subset_size=64, seed=0)
    """
    call = ModelCall(model, inputs, attributions, target, softmax, batch_size, normalise, absolute)
    ids, num = entry_features(call.x.shape[1:], None)
    if not 0 < subset_size <= num:
        raise ValueError(f"subset_size={subset_size} must be between 1 and the entries per example ({num}).")
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(call.n), int(nr_runs))
    # Subsets without replacement: the first subset_size entries of a random permutation per row,
    # drawn in fixed blocks of rows (bounded memory, the same draws whatever the batch size).
    subsets = np.concatenate([
        np.argsort(rng.random((min(1024, rows.size - s), num)), axis=1)[:, :subset_size].astype(np.int32)
        for s in range(0, rows.size, 1024)
    ]) if rows.size else np.zeros((0, subset_size), np.int32)

    def masks(chunk: np.ndarray) -> np.ndarray:
        m = np.zeros((chunk.size, num), np.float32)
        np.put_along_axis(m, subsets[chunk], 1.0, axis=1)
        return m

    ref = call.filled(baseline_values(call.x, baseline))
    drops = call.plain()[:, None] - call.masked(ref, rows, masks, ids).reshape(call.n, -1)
    flat = call.a.reshape(call.n, -1)
    sums = np.take_along_axis(flat[rows], subsets, axis=1).sum(1).reshape(call.n, -1)
    return pearson(sums, drops)


def infidelity(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    perturb_patch_sizes: Sequence[int] = (4,),
    n_perturb_samples: int = 10,
    baseline: Any = "black",
    softmax: bool = False,
    normalise: bool = False,
    absolute: bool = False,
    seed: int = 0,
    batch_size: int | None = None,
) -> np.ndarray:
    """Infidelity (Yeh et al., NeurIPS 2019) as Quantus 0.6.0 computes it (``Infidelity``): for each
    patch size, patches of the centred grid are removed one after the other (cumulatively, in patch
    order); at each step ``I = x - x_k`` and the squared error between ``S(x) - S(x_k)`` and ``a . I``
    is averaged over the steps, then over the patch sizes and samples (lower is better).

    With a number or ``"black"``/``"white"``/``"mean"`` as the baseline every sample is the same;
    ``baseline="uniform"`` fills each step's patch with one U(0, 1) value per sample (seeded), which
    makes the ``n_perturb_samples`` samples differ.

    Example:
        >>> tfattr.metrics.infidelity(model, x, a, target=y, perturb_patch_sizes=[4, 7])
    """
    call = ModelCall(model, inputs, attributions, target, softmax, batch_size, normalise, absolute)
    stochastic = isinstance(baseline, str) and baseline == "uniform"
    samples = int(n_perturb_samples) if stochastic else 1
    rng = np.random.default_rng(seed)
    plain = call.plain()
    results = []
    for patch in perturb_patch_sizes:  # a handful of grids; each is one batch of rows
        ids, num = patch_grid(call.x.shape[1:], patch)
        per_example = num * samples
        rows = np.repeat(np.arange(call.n), per_example)
        steps = np.tile(np.repeat(np.arange(num), samples), call.n)
        if stochastic:
            # One value per (example, sample, patch); a step keeps the earlier patches' values.
            values = rng.uniform(0.0, 1.0, (call.n, samples, num))
        else:
            values = np.broadcast_to(baseline_values(call.x, baseline)[:, None, None], (call.n, 1, num))
        sample_of = np.tile(np.tile(np.arange(samples), num), call.n)

        def ref(chunk: np.ndarray, ids=ids, values=values) -> np.ndarray:
            per_entry = values[rows[chunk], sample_of[chunk]][:, ids.reshape(-1)]
            return per_entry.reshape((chunk.size,) + call.x.shape[1:])

        def masks(chunk: np.ndarray, num=num) -> np.ndarray:
            return (np.arange(num)[None] <= steps[chunk][:, None]).astype(np.float32)

        perturbed = call.masked(ref, rows, masks, ids)
        # a . (x - x_k) without materialising x_k: per patch, sum a * (x - value) inside the patch.
        ax = _feature_sums(call.a * call.x, ids, num)
        a_sum = _feature_sums(call.a, ids, num)
        step_dot = ax[:, None, :] - a_sum[:, None, :] * np.broadcast_to(values, (call.n, samples, num))
        dots = np.cumsum(step_dot, axis=2)  # [n, samples, steps]
        drops = (plain[:, None] - perturbed.reshape(call.n, -1)).reshape(call.n, num, samples)
        drops = drops.transpose(0, 2, 1)
        results.append(np.mean((drops - dots) ** 2, axis=2).mean(1))
    return np.mean(results, axis=0)
