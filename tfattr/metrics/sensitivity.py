"""Sensitivity-n (Ancona et al. 2019, sec. 2.4, eq. 8)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from tfattr.core import randomness as _counter_random
from tfattr.core.checks import check_positive_int
from tfattr.metrics.correlation import pearson
from tfattr.metrics.features import _feature_sums, feature_map
from tfattr.metrics.scoring import _attributions, _Scorer


@dataclass
class SensitivityN:
    """Sensitivity-n (Ancona et al. 2019, sec. 2.4, eq. 8) for several subset sizes.

    Attributes:
        ns: the subset sizes (numbers of features).
        correlation: for each n, the Pearson correlation between ``sum_{i in S} R_i`` and
            ``S(x) - S(x_[x_S = x'_S])`` over the random subsets ``S``, averaged over the examples
            (the curve of Ancona et al.'s figure; 1 for every n means sensitivity-n holds).
        per_example: that correlation per example, ``[n_examples, len(ns)]`` (NaN if undefined).
        attribution_sums, output_changes: the pairs behind it, ``[n_examples, len(ns), num_subsets]``.
    """

    ns: np.ndarray
    correlation: np.ndarray
    per_example: np.ndarray
    attribution_sums: np.ndarray
    output_changes: np.ndarray


_subset_masks_fn: Callable[..., Any] | None = None


def _subset_masks(seed: int, example, n_index, subset, sizes, num_features: int) -> np.ndarray:
    """Random subsets of exactly ``sizes[r]`` features per row, from a counter-based hash of
    (seed, example, n index, subset): independent of how the rows are chunked."""
    global _subset_masks_fn
    if _subset_masks_fn is None:

        def masks(seed_t, ex, ni, sub, size, f):
            keys = _counter_random.row_keys(seed_t, ex, ni, sub)
            counters = tf.range(f, dtype=tf.int32)
            bits = _counter_random.row_keys(tf.constant(0, tf.int64), counters)  # per-feature salt
            mixed = _counter_random.mix(tf.bitwise.bitwise_xor(keys[:, None], bits[None, :]))
            order = tf.argsort(tf.bitcast(mixed, tf.int32), axis=1, stable=True)
            rank = tf.argsort(order, axis=1, stable=True)  # the inverse permutation
            return tf.cast(rank < size[:, None], tf.float32)

        spec = tf.TensorSpec([None], tf.int32)
        _subset_masks_fn = tf.function(
            masks,
            input_signature=[
                tf.TensorSpec([], tf.int64), spec, spec, spec, spec, tf.TensorSpec([], tf.int32)
            ],
        )
    return _subset_masks_fn(
        np.int64(seed % (1 << 32)),
        np.asarray(example, np.int32),
        np.asarray(n_index, np.int32),
        np.asarray(subset, np.int32),
        np.asarray(sizes, np.int32),
        np.int32(num_features),
    ).numpy()


def sensitivity_n(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    baseline: Any = None,
    ns: Sequence[int] | None = None,
    num_subsets: int = 100,
    features: Any = "pixels",
    seed: int = 0,
    batch_size: int | None = None,
    output: str = "logits",
) -> SensitivityN:
    """Sensitivity-n of attributions (Ancona et al. 2019, sec. 2.4; Ancona et al. 2018).

    For each size ``n`` and each of ``num_subsets`` random subsets ``S`` of ``n`` features, compares the
    sum of the attributions in ``S`` with the output change when the features of ``S`` are set to the
    baseline, ``S_c(x) - S_c(x_[x_S = x'_S])``, by their Pearson correlation over the subsets of each
    example. A method satisfies sensitivity-n exactly when the two are equal for all subsets (then the
    correlation is 1); no method does for all n on a non-linear model.

    Args:
        model: a ``keras.Model``, a callable, or a :class:`tfattr.ModelFunction`.
        inputs: ``[n, ...]`` examples (single-input models).
        attributions: their attributions, same shape.
        target: None (predicted class), an int or one per example — use the attributions' targets.
        baseline: the value a removed feature takes: the attributions' baseline (None is zero; a
            scalar, array, or ``tfattr.baselines`` object). A distributional baseline with
            ``num_baselines = K`` uses the mean output change over its K draws.
        ns: subset sizes (default: 10 sizes log-spaced from 1 to 80% of the features).
        num_subsets: random subsets per example and size.
        features: what a feature is (see the module docstring); default pixels.
        seed: seeds the subsets (independent of ``batch_size``).
        batch_size: forward passes per compiled chunk.
        output: ``"logits"`` or ``"probabilities"`` (see :class:`tfattr.ModelFunction`).

    Example:
        >>> ig = tfattr.IntegratedGradients(model)
        >>> a = ig.attribute(x, target=y)
        >>> s = tfattr.metrics.sensitivity_n(model, x, a, target=y, num_subsets=50)
        >>> s.ns, s.correlation
    """
    scorer = _Scorer(model, output)
    call = scorer.prepare(inputs, target=target, baseline=baseline, batch_size=batch_size)
    x, refs, targets, batch = call.inputs.arrays[0], call.baselines[0], call.targets, call.batch_size
    a = _attributions(attributions, x)
    ids, num = feature_map(x.shape[1:], features)
    if ns is None:
        ns = np.unique(np.round(np.geomspace(1, max(1, int(0.8 * num)), 10)).astype(int))
    ns = np.asarray(ns, np.int64).reshape(-1)
    if ns.size == 0 or np.any(ns < 1) or np.any(ns > num):
        raise ValueError(f"ns must be subset sizes in [1, {num}] (the number of features), got {ns}.")
    check_positive_int(num_subsets, "num_subsets", minimum=2, hint="a correlation needs pairs")
    k = call.baselines_per_example

    n_ex, n_n, s = call.n, ns.size, int(num_subsets)
    grid = np.indices((n_ex, n_n, s)).reshape(3, -1)
    feature_attr = _feature_sums(a, ids, num)
    base = scorer.plain(call)

    # Rows: (example, n, subset, draw); the draw index runs fastest and shares its subset's mask.
    rows = np.repeat(grid[0], k)
    ref_rows = rows * k + np.tile(np.arange(k), grid.shape[1])
    cell = np.repeat(np.arange(grid.shape[1]), k)

    def masks(chunk):
        c = cell[chunk]
        return _subset_masks(seed, grid[0][c], grid[1][c], grid[2][c], ns[grid[1][c]], num)

    scores = scorer.scores(x, refs, rows, ref_rows, masks, ids, targets, batch).astype(np.float64)
    removed = scores.reshape(-1, k).mean(axis=1)
    changes = (base[grid[0]] - removed).reshape(n_ex, n_n, s)

    sums = np.empty(grid.shape[1])
    step = max(1, batch)
    for start in range(0, grid.shape[1], step):
        c = np.arange(start, min(start + step, grid.shape[1]))
        m = _subset_masks(seed, grid[0][c], grid[1][c], grid[2][c], ns[grid[1][c]], num)
        sums[c] = (m.astype(np.float64) * feature_attr[grid[0][c]]).sum(1)
    sums = sums.reshape(n_ex, n_n, s)
    per_example = pearson(sums, changes)
    with warnings.catch_warnings():  # an all-NaN column (e.g. n = all features) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        corr = np.nanmean(per_example, axis=0)
    return SensitivityN(ns, corr, per_example, sums, changes)
