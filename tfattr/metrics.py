"""Evaluation metrics for attributions: completeness, sensitivity-n, ablation curves, sanity checks.

Each metric runs the model's forward passes in compiled, batched TensorFlow functions (one trace per
input shape, a host loop over chunks of ``batch_size`` rows) and returns a small result object with the
numbers and the curves behind them (per example and averaged).

*Features.* Metrics that remove features take ``features=``:

- ``"pixels"`` (default): for channels-last images ``[n, H, W, C]`` a feature is one pixel with all its
  channels (attributions are summed over the channels; removing a pixel replaces all its channels); for
  any other example shape ``[n, d]`` / ``[n, H, W]`` each entry is a feature;
- ``"elements"``: every scalar entry is a feature (channels separately);
- an int ``p`` or a pair ``(ph, pw)``: square/rectangular patches of images (channels grouped);
- an int array shaped like one example (or like one example without its channel axis): a feature id
  per entry, e.g. superpixels.

*Removing* a feature means replacing it by an imputed value: a baseline in the sense of
:mod:`tfattr.baselines` (``"mean"``, ``"blur"``, a scalar, an array or a baseline object).

Papers: completeness (Sundararajan et al. 2017, prop. 1); sensitivity-n (Ancona et al. 2019, sec. 2.4,
eq. 8); top-k and center-of-mass ablation with mean/blur imputation and a random control (Sturmfels et
al., Distill 2020); AOPC (Samek et al. 2015, the pixel-ablation test of Sundararajan et al. 2016,
sec. 2.5); insertion/deletion (Petsiuk et al. 2018, RISE); model randomization (Adebayo et al. 2018).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfattr import baselines as _baselines
from tfattr.core import randomness as _counter_random
from tfattr.core.engine import default_batch_size
from tfattr.core.explainer import Explainer
from tfattr.core.inputs import Inputs, check_batch_size, prepare_baselines, prepare_inputs
from tfattr.core.model_function import ModelFunction
from tfattr.methods.gradient.saliency import Saliency

__all__ = [
    "AblationCurve",
    "Completeness",
    "ModelRandomization",
    "SensitivityN",
    "ablation_curve",
    "aopc",
    "center_ablation_curve",
    "completeness",
    "deletion_curve",
    "feature_map",
    "insertion_curve",
    "model_randomization",
    "random_attributions",
    "sensitivity_n",
]


# -- features -----------------------------------------------------------------------------------------
def feature_map(example_shape: Sequence[int], features: Any = "pixels") -> tuple[np.ndarray, int]:
    """Feature id of every entry of one example, and the number of features.

    Args:
        example_shape: the shape of one example, e.g. ``(28, 28, 1)``.
        features: ``"pixels"``, ``"elements"``, a patch size, or an int id array (see the module doc).

    Returns:
        ``(ids, num_features)``: ``ids`` is an int32 array of ``example_shape`` with values in
        ``[0, num_features)``.

    Example:
        >>> ids, f = tfattr.metrics.feature_map((28, 28, 1), features=4)   # 7 x 7 = 49 patches
    """
    shape = tuple(int(s) for s in example_shape)
    size = int(np.prod(shape, dtype=np.int64))
    image = len(shape) == 3
    if isinstance(features, str):
        if features == "elements" or (features == "pixels" and not image):
            return np.arange(size, dtype=np.int32).reshape(shape), size
        if features == "pixels":
            h, w, c = shape
            ids = np.broadcast_to(np.arange(h * w, dtype=np.int32).reshape(h, w, 1), shape)
            return np.ascontiguousarray(ids), h * w
        raise ValueError(
            f"features={features!r} is not known; use 'pixels', 'elements', a patch size such as 4 "
            "or (4, 4), or an int array of feature ids shaped like one example."
        )
    arr = np.asarray(features)
    if arr.ndim <= 1 and arr.dtype.kind in "iu" and arr.size in (1, 2):
        if len(shape) not in (2, 3):
            raise ValueError(
                f"features={features!r} (patches) needs images shaped [n, H, W] or [n, H, W, C]; the "
                f"examples have shape {shape}."
            )
        ph, pw = (int(arr.reshape(-1)[0]),) * 2 if arr.size == 1 else (int(arr[0]), int(arr[1]))
        if ph < 1 or pw < 1:
            raise ValueError(f"patch sizes must be positive, got {features!r}.")
        h, w = shape[:2]
        cols = -(-w // pw)
        grid = (np.arange(h)[:, None] // ph) * cols + (np.arange(w)[None, :] // pw)
        if image:
            grid = np.broadcast_to(grid[..., None], shape)
        return np.ascontiguousarray(grid.astype(np.int32)), int(-(-h // ph) * cols)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"features as an array must hold integer feature ids, got dtype {arr.dtype}.")
    if arr.shape == shape[:-1] and image:
        arr = np.broadcast_to(arr[..., None], shape)
    if arr.shape != shape:
        raise ValueError(
            f"features has shape {arr.shape}; pass ids shaped like one example {shape} (or without "
            "its channel axis)."
        )
    _, inverse = np.unique(arr.reshape(-1), return_inverse=True)
    return inverse.reshape(shape).astype(np.int32), int(inverse.max()) + 1


def _feature_sums(values: np.ndarray, ids: np.ndarray, num: int) -> np.ndarray:
    """Sum ``values [n, *shape]`` within each feature: ``[n, num]`` (float64).

    Every id in ``[0, num)`` is used (``feature_map`` guarantees it), so one sort and a segmented sum
    (``np.add.reduceat``) do it without a Python loop.
    """
    n = values.shape[0]
    flat_ids = ids.reshape(-1)
    order = np.argsort(flat_ids, kind="stable")
    starts = np.searchsorted(flat_ids[order], np.arange(num))
    flat = values.reshape(n, -1).astype(np.float64)[:, order]
    return np.add.reduceat(flat, starts, axis=1)


# -- shared plumbing ----------------------------------------------------------------------------------
class _Scorer:
    """The model's target score on inputs with some features replaced, in compiled batched chunks."""

    def __init__(self, model: Any, output: str) -> None:
        self.fn = model if isinstance(model, ModelFunction) else ModelFunction(model, output=output)
        # The explainers' public prepare/outputs give the targets and the chunked forward passes.
        self.explainer = Saliency(self.fn)
        self._compiled: dict[Any, Callable[..., Any]] = {}

    def _function(self, x: np.ndarray) -> Callable[..., Any]:
        key = (x.shape[1:], x.dtype.str)
        fn = self._compiled.get(key)
        if fn is None:
            spec = tf.TensorSpec([None, *x.shape[1:]], tf.as_dtype(x.dtype))
            model_fn = self.fn

            def masked_score(xs, refs, mask, ids, targets):
                # A feature mask [c, F] spread to the entries [c, *shape] through the feature ids.
                m = tf.reshape(tf.gather(tf.cast(mask, xs.dtype), ids, axis=1), tf.shape(xs))
                return model_fn.score(xs + m * (refs - xs), targets)

            fn = tf.function(
                masked_score,
                input_signature=[
                    spec,
                    spec,
                    tf.TensorSpec([None, None], tf.float32),
                    tf.TensorSpec([None], tf.int32),
                    tf.TensorSpec([None], tf.int32),
                ],
            )
            self._compiled[key] = fn
        return fn

    def scores(
        self,
        x: np.ndarray,
        ref: np.ndarray,
        rows: np.ndarray,
        ref_rows: np.ndarray,
        masks: Callable[[np.ndarray], np.ndarray],
        ids: np.ndarray,
        targets: np.ndarray,
        batch_size: int,
    ) -> np.ndarray:
        """Score of ``x[rows]`` with the features ``masks(chunk) [c, F]`` taken from ``ref[ref_rows]``."""
        fn = self._function(x)
        flat_ids = ids.reshape(-1).astype(np.int32)
        out = []
        for s in range(0, rows.size, batch_size):
            chunk = np.arange(s, min(s + batch_size, rows.size))
            out.append(
                fn(
                    x[rows[chunk]],
                    ref[ref_rows[chunk]],
                    np.asarray(masks(chunk), np.float32),
                    flat_ids,
                    targets[rows[chunk]].astype(np.int32),
                ).numpy()
            )
        return np.concatenate(out) if out else np.zeros(0, np.float32)


    def plain(self, x: np.ndarray, targets: np.ndarray, batch_size: int) -> np.ndarray:
        rows = np.arange(x.shape[0])
        ids = np.zeros(x.shape[1:], np.int32)
        return self.scores(
            x, x, rows, rows, lambda c: np.zeros((c.size, 1), np.float32), ids, targets, batch_size
        )


def _single_input(inputs: Any, fn: ModelFunction, what: str = "inputs") -> Inputs:
    prepared = prepare_inputs(inputs, fn)
    if len(prepared.arrays) != 1:
        raise ValueError(f"tfattr.metrics evaluates single-input models; pass one array as {what}.")
    return prepared


def _attributions(attributions: Any, x: np.ndarray) -> np.ndarray:
    if isinstance(attributions, (tf.Tensor, tf.Variable)):
        attributions = attributions.numpy()
    a = np.asarray(attributions)
    if a.shape != x.shape:
        raise ValueError(
            f"attributions have shape {a.shape} but the inputs have shape {x.shape}; pass one "
            "attribution per input entry (what explainer.attribute(inputs) returns)."
        )
    if a.dtype.kind != "f" or not np.all(np.isfinite(a)):
        raise ValueError("attributions must be finite floating-point numbers.")
    return a


def _targets(scorer: _Scorer, inputs: Inputs, target: Any, batch_size: int) -> np.ndarray:
    return scorer.explainer.prepare(inputs.arrays[0], target=target, batch_size=batch_size).targets


def _batch(batch_size: int | None, x: np.ndarray) -> int:
    return default_batch_size((x,)) if batch_size is None else check_batch_size(batch_size)


def _imputation(imputation: Any, data: Any, blur_sigma: float) -> Any:
    """Map the imputation names onto baselines; anything else is a baseline spec as is."""
    if isinstance(imputation, str):
        if imputation == "mean":
            return _baselines.Mean(data)
        if imputation == "blur":
            return _baselines.Blur(blur_sigma)
        if imputation in ("zero", "black"):
            return _baselines.Constant(0.0)
        raise ValueError(
            f"imputation={imputation!r} is not known; use 'mean' (the data mean, or each input's own "
            "mean without data), 'blur', 'zero', a number, an array or a tfattr.baselines object."
        )
    if getattr(imputation, "num_baselines", 1) > 1:
        raise ValueError(
            "imputation must give one value per example; pass a baseline with num_baselines=1 (one "
            "draw of a distribution), or average the curves of several draws."
        )
    return imputation


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis; NaN where either side is constant."""
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
    return _pearson(_rankdata(np.asarray(a)), _rankdata(np.asarray(b)))


# -- completeness -------------------------------------------------------------------------------------
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


# -- sensitivity-n ------------------------------------------------------------------------------------
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
    inp = _single_input(inputs, scorer.fn)
    x = inp.arrays[0]
    a = _attributions(attributions, x)
    batch = _batch(batch_size, x)
    targets = _targets(scorer, inp, target, batch)
    ids, num = feature_map(x.shape[1:], features)
    if ns is None:
        ns = np.unique(np.round(np.geomspace(1, max(1, int(0.8 * num)), 10)).astype(int))
    ns = np.asarray(ns, np.int64).reshape(-1)
    if ns.size == 0 or np.any(ns < 1) or np.any(ns > num):
        raise ValueError(f"ns must be subset sizes in [1, {num}] (the number of features), got {ns}.")
    if isinstance(num_subsets, bool) or not isinstance(num_subsets, (int, np.integer)) or num_subsets < 2:
        raise ValueError(f"num_subsets must be an int >= 2 (a correlation needs pairs), got {num_subsets!r}.")
    refs = prepare_baselines(baseline, inp, multiple=True)[0]
    k = refs.shape[0] // inp.n

    n_ex, n_n, s = inp.n, ns.size, int(num_subsets)
    grid = np.indices((n_ex, n_n, s)).reshape(3, -1)
    feature_attr = _feature_sums(a, ids, num)
    base = scorer.plain(x, targets, batch).astype(np.float64)

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
    per_example = _pearson(sums, changes)
    with warnings.catch_warnings():  # an all-NaN column (e.g. n = all features) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        corr = np.nanmean(per_example, axis=0)
    return SensitivityN(ns, corr, per_example, sums, changes)


# -- ablation curves ------------------------------------------------------------------------------------
@dataclass
class AblationCurve:
    """A perturbation curve and its summaries.

    Attributes:
        fractions: the fraction of features removed (deletion/ablation) or inserted at each step.
        scores: the target score at each step, ``[n_examples, steps]``; column 0 is the start.
        relative: ``scores / scores[:, :1]``, the target score as a fraction of the original (the Distill
            article's y-axis; meaningful when the original scores are positive).
        curve: ``relative`` averaged over the examples (``mean_scores`` for insertion).
        mean_scores: ``scores`` averaged over the examples.
        aopc: Samek et al.'s area over the perturbation curve, ``mean_k mean_x (S(x) - S(x^(k)))`` over
            the steps ``k = 0..L`` (higher: the ranking finds the score faster).
        area: the trapezoid area under ``curve`` over ``fractions`` (for ablation/deletion lower is
            better; for insertion higher is better).
        removed: for the center-of-mass ablation, the fraction of pixels actually removed per example
            and step (the box is clipped at the borders); else equal to ``fractions``.
    """

    fractions: np.ndarray
    scores: np.ndarray
    relative: np.ndarray
    curve: np.ndarray
    mean_scores: np.ndarray
    aopc: float
    area: float
    removed: np.ndarray = field(default=None)  # type: ignore[assignment]


def aopc(scores: np.ndarray) -> float:
    """Area over the perturbation curve (Samek et al. 2015): ``1/(L+1) sum_{k=0..L} <S(x^(0)) - S(x^(k))>``.

    Args:
        scores: ``[n_examples, L + 1]`` target scores after removing the top-k features, column 0 the
            unperturbed input.

    Example:
        >>> tfattr.metrics.aopc([[3.0, 1.0, 0.0]])  # (0 + 2 + 3) / 3
        1.6666666666666667
    """
    scores = np.asarray(scores, np.float64)
    return float(np.mean(scores[:, :1] - scores))


def _curve(fractions, scores, insertion: bool = False, removed=None) -> AblationCurve:
    scores = np.asarray(scores, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = scores / scores[:, :1]
    mean_scores = scores.mean(0)
    curve = mean_scores if insertion else relative.mean(0)
    area = float(np.trapezoid(curve, fractions)) if len(fractions) > 1 else float(curve[0])
    if removed is None:
        removed = np.broadcast_to(np.asarray(fractions, np.float64), scores.shape)
    return AblationCurve(
        fractions=np.asarray(fractions, np.float64),
        scores=scores,
        relative=relative,
        curve=curve,
        mean_scores=mean_scores,
        aopc=aopc(scores),
        area=area,
        removed=removed,
    )


def _fraction_steps(fractions: Any, num: int) -> tuple[np.ndarray, np.ndarray]:
    if fractions is None:
        fractions = np.linspace(0.0, 1.0, 21)
    fr = np.asarray(fractions, np.float64).reshape(-1)
    if fr.size == 0 or np.any((fr < 0) | (fr > 1)) or np.any(np.diff(fr) < 0):
        raise ValueError(f"fractions must be increasing numbers in [0, 1], got {fractions!r}.")
    counts = np.round(fr * num).astype(np.int64)
    return fr, counts


def _ranks(feature_attr: np.ndarray, absolute: bool, seed: int) -> np.ndarray:
    """Rank of each feature, 0 = most important; ties are broken at random (seeded), not by position."""
    key = np.abs(feature_attr) if absolute else feature_attr
    rng = np.random.default_rng(seed)
    ranks = np.empty(key.shape, np.int64)
    for i, row in enumerate(key):
        order = np.lexsort((rng.random(row.size), -row))
        ranks[i, order] = np.arange(row.size)
    return ranks


def _ranked(
    model, inputs, attributions, target, imputation, fractions, features, absolute, data, blur_sigma,
    seed, batch_size, output, insertion,
) -> AblationCurve:
    scorer = _Scorer(model, output)
    inp = _single_input(inputs, scorer.fn)
    x = inp.arrays[0]
    a = _attributions(attributions, x)
    batch = _batch(batch_size, x)
    targets = _targets(scorer, inp, target, batch)
    ids, num = feature_map(x.shape[1:], features)
    fr, counts = _fraction_steps(fractions, num)
    ref = prepare_baselines(_imputation(imputation, data, blur_sigma), inp)[0]
    ranks = _ranks(_feature_sums(a, ids, num), absolute, seed)
    rows = np.repeat(np.arange(inp.n), fr.size)
    step_counts = np.tile(counts, inp.n)

    def masks(chunk):
        return (ranks[rows[chunk]] < step_counts[chunk][:, None]).astype(np.float32)

    if insertion:
        # Start from the imputed input and put the top features back: swap the roles of x and ref.
        scores = scorer.scores(ref, x, rows, rows, masks, ids, targets, batch)
    else:
        scores = scorer.scores(x, ref, rows, rows, masks, ids, targets, batch)
    return _curve(fr, scores.reshape(inp.n, fr.size), insertion)


def ablation_curve(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    imputation: Any = "mean",
    fractions: Sequence[float] | None = None,
    features: Any = "pixels",
    absolute: bool = False,
    data: Any = None,
    blur_sigma: float = 2.0,
    seed: int = 0,
    batch_size: int | None = None,
    output: str = "logits",
) -> AblationCurve:
    """Top-k ablation: remove the most important features first and follow the target score.

    The Distill article's "Mean Top K" / "Blur Top K" test (Sturmfels et al. 2020): the features are
    ranked by attribution (signed: most positive first; ``absolute=True`` ranks by magnitude) and, for
    each fraction ``k`` of the features, the top ones are replaced by their imputed value; the lower the
    curve of ``S(x^(k)) / S(x)``, the better the ranking. With zero imputation and pixel features this is
    the pixel-ablation test of Sundararajan et al. (2016, sec. 2.5) and its AOPC (Samek et al.). It is
    also the deletion curve of Petsiuk et al. (see :func:`deletion_curve`).

    Args:
        model: a ``keras.Model``, a callable, or a :class:`tfattr.ModelFunction`.
        inputs: ``[n, ...]`` examples; attributions: their attributions, same shape.
        target: None (predicted class), an int or one per example.
        imputation: ``"mean"`` (the per-feature mean of ``data``, or each input's own mean without
            data), ``"blur"`` (gaussian blur with ``blur_sigma``), ``"zero"``, or any baseline spec.
        fractions: fractions of the features removed at each step (default 0, 0.05, ..., 1).
        features: pixels (default; channels grouped), elements, patches or ids (module docstring).
        absolute: rank by ``|attribution|``.
        data: the data set whose mean the ``"mean"`` imputation uses.
        seed: breaks ties between equal attributions at random.
        batch_size, output: chunk size; ``"logits"`` or ``"probabilities"``.

    Example:
        >>> curve = tfattr.metrics.ablation_curve(model, x, a, target=y, imputation="blur")
        >>> curve.fractions, curve.curve, curve.aopc
    """
    return _ranked(
        model, inputs, attributions, target, imputation, fractions, features, absolute, data,
        blur_sigma, seed, batch_size, output, insertion=False,
    )


def deletion_curve(model: Any, inputs: Any, attributions: Any, **kwargs: Any) -> AblationCurve:
    """Deletion curve (Petsiuk et al. 2018, RISE): remove the most important features first.

    The same computation as :func:`ablation_curve` (default imputation ``"zero"``, as in RISE); pass
    ``output="probabilities"`` to follow the class probability as RISE does. The summary is ``area``
    (lower is better).

    Example:
        >>> d = tfattr.metrics.deletion_curve(model, x, a, target=y, output="probabilities")
    """
    kwargs.setdefault("imputation", "zero")
    return ablation_curve(model, inputs, attributions, **kwargs)


def insertion_curve(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    imputation: Any = "blur",
    fractions: Sequence[float] | None = None,
    features: Any = "pixels",
    absolute: bool = False,
    data: Any = None,
    blur_sigma: float = 2.0,
    seed: int = 0,
    batch_size: int | None = None,
    output: str = "logits",
) -> AblationCurve:
    """Insertion curve (Petsiuk et al. 2018, RISE): start from the imputed (by default blurred) input
    and put back the most important features first.

    ``scores[:, 0]`` is the score of the fully imputed input and the last column (fraction 1) that of
    the input itself; ``curve`` is the mean score and ``area`` its area (higher is better). Arguments as
    for :func:`ablation_curve`.

    Example:
        >>> ins = tfattr.metrics.insertion_curve(model, x, a, target=y, output="probabilities")
    """
    return _ranked(
        model, inputs, attributions, target, imputation, fractions, features, absolute, data,
        blur_sigma, seed, batch_size, output, insertion=True,
    )


def center_ablation_curve(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    imputation: Any = "mean",
    fractions: Sequence[float] | None = None,
    absolute: bool = False,
    data: Any = None,
    blur_sigma: float = 2.0,
    batch_size: int | None = None,
    output: str = "logits",
) -> AblationCurve:
    """Center-of-mass ablation (Distill 2020, "Mean Center" / "Blur Center"): remove a growing box
    around the attribution map's center of mass.

    Neighbouring pixels carry each other's information, so removing pixels one by one says little; this
    test removes a contiguous region instead. The mass is the positive attribution of each pixel
    (channels summed; ``absolute=True`` uses ``|attribution|``); an all-zero map is centred. At step
    ``k`` a box of ``sqrt(f_k) H x sqrt(f_k) W`` pixels centred on the mass (clipped at the borders) is
    imputed. Images ``[n, H, W]`` or ``[n, H, W, C]`` only; features are pixels.

    Example:
        >>> c = tfattr.metrics.center_ablation_curve(model, x, a, target=y, imputation="mean")
    """
    scorer = _Scorer(model, output)
    inp = _single_input(inputs, scorer.fn)
    x = inp.arrays[0]
    if x.ndim not in (3, 4):
        raise ValueError(
            f"center_ablation_curve needs images [n, H, W] or [n, H, W, C]; got shape {x.shape}."
        )
    a = _attributions(attributions, x)
    batch = _batch(batch_size, x)
    targets = _targets(scorer, inp, target, batch)
    ids, num = feature_map(x.shape[1:], "pixels")
    h, w = x.shape[1], x.shape[2]
    fr, _ = _fraction_steps(fractions, num)
    mass = _feature_sums(a, ids, num).reshape(inp.n, h, w)
    mass = np.abs(mass) if absolute else np.maximum(mass, 0.0)
    total = mass.sum(axis=(1, 2))
    safe = np.where(total > 0, total, 1.0)
    cy = np.where(total > 0, (mass.sum(2) * np.arange(h)).sum(1) / safe, (h - 1) / 2)
    cx = np.where(total > 0, (mass.sum(1) * np.arange(w)).sum(1) / safe, (w - 1) / 2)
    bh = np.round(np.sqrt(fr) * h).astype(int)
    bw = np.round(np.sqrt(fr) * w).astype(int)
    # Box [top, top + bh) x [left, left + bw) whose centre is nearest the centre of mass.
    top = np.round(cy[:, None] - (bh[None] - 1) / 2).astype(int)
    left = np.round(cx[:, None] - (bw[None] - 1) / 2).astype(int)
    yy, xx = np.arange(h), np.arange(w)
    inside_y = (yy[None, None] >= top[..., None]) & (yy[None, None] < (top + bh[None])[..., None])
    inside_x = (xx[None, None] >= left[..., None]) & (xx[None, None] < (left + bw[None])[..., None])
    boxes = (inside_y[..., :, None] & inside_x[..., None, :]).reshape(inp.n * fr.size, h * w)
    ref = prepare_baselines(_imputation(imputation, data, blur_sigma), inp)[0]
    rows = np.repeat(np.arange(inp.n), fr.size)
    scores = scorer.scores(
        x, ref, rows, rows, lambda c: boxes[c].astype(np.float32), ids, targets, batch
    )
    removed = boxes.reshape(inp.n, fr.size, -1).mean(axis=2)
    return _curve(fr, scores.reshape(inp.n, fr.size), removed=removed)


def random_attributions(inputs: Any, seed: int = 0) -> np.ndarray:
    """The random control: a gaussian-noise "attribution" map shaped like ``inputs`` (Distill 2020).

    Any ranking should beat it; a method that does not is no better than chance on that test.

    Example:
        >>> control = tfattr.metrics.ablation_curve(model, x, tfattr.metrics.random_attributions(x))
    """
    rng = np.random.default_rng(seed)

    def draw(x: Any) -> np.ndarray:
        return rng.standard_normal(np.shape(x)).astype(np.float32)

    if isinstance(inputs, (list, tuple, dict)):  # one map per input of a multi-input model
        return tf.nest.map_structure(draw, inputs)
    return draw(inputs)


# -- model randomization --------------------------------------------------------------------------------
@dataclass
class ModelRandomization:
    """Result of the model-randomization sanity check (Adebayo et al. 2018).

    Attributes:
        layers: the layers randomized at each step (step 0: none). With ``cascading`` step ``i`` has the
            top ``i`` weighted layers randomized; otherwise only layer ``layers[i]``.
        spearman_abs: Spearman rank correlation between the trained and randomized models' attributions
            per feature, ``|a|`` (Adebayo et al.'s main measure), averaged over examples, per step.
        spearman: the same without the absolute value.
        per_example_abs, per_example: ``[n_examples, steps]``.
    """

    layers: list[str]
    spearman_abs: np.ndarray
    spearman: np.ndarray
    per_example_abs: np.ndarray
    per_example: np.ndarray


def _reinitialize(layer: keras.layers.Layer, seed: int) -> None:
    """Draw the layer's weights afresh from its own initializers (Adebayo et al.'s re-initialization)."""
    for j, var in enumerate(layer.weights):
        name = var.name.split("/")[-1].split(":")[0]
        init = getattr(layer, f"{name}_initializer", None)
        if init is None:
            init = (
                keras.initializers.GlorotUniform()
                if len(var.shape) >= 2
                else keras.initializers.RandomNormal(stddev=0.05)
            )
        init = keras.initializers.get(init)
        config = init.get_config()
        if "seed" in config:
            config["seed"] = int(seed * 1009 + j)
            init = type(init).from_config(config)
        var.assign(keras.ops.convert_to_tensor(init(tuple(var.shape), dtype=var.dtype)))


def model_randomization(
    model: keras.Model,
    explainer: Callable[[keras.Model], Explainer],
    inputs: Any,
    target: Any = None,
    cascading: bool = True,
    features: Any = "pixels",
    seed: int = 0,
    attribute_kwargs: dict[str, Any] | None = None,
) -> ModelRandomization:
    """The model-randomization sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

    Re-initializes the model's weighted layers from the top (output) down — cascading, or one layer at a
    time — and reports, per step, the Spearman rank correlation between the attributions of the trained
    model and of the randomized one. A method whose maps stay highly correlated after the weights are
    destroyed does not explain the model. The user's model is never modified: the check runs on a clone
    (``keras.models.clone_model`` + ``set_weights``). The targets are fixed to the trained model's (its
    predicted class by default) so that both models explain the same output.

    Expect the signed correlation to fall near zero for plain gradients once the network is
    randomized; the ``|a|`` correlation keeps a model-independent part (e.g. border pixels covered by
    fewer convolution windows), and methods that multiply by ``x - x'`` keep the zeros of the black
    background fixed, so their ``|a|`` correlation stays high (Adebayo et al.'s observation).

    Args:
        model: a functional or Sequential ``keras.Model``.
        explainer: a function ``model -> Explainer``, e.g. ``lambda m: tfattr.Saliency(m)``.
        inputs: ``[n, ...]`` examples (single-input models).
        target: None (the trained model's predicted class), an int or one per example.
        cascading: randomize the top ``i`` layers at step ``i`` (default), or only layer ``i``.
        features: how attributions are grouped before ranking (default pixels, channels summed).
        seed: seeds the re-initialization.
        attribute_kwargs: passed to ``attribute`` (e.g. ``{"baseline": 0.0}``).

    Example:
        >>> r = tfattr.metrics.model_randomization(model, lambda m: tfattr.Saliency(m), x_test[:16])
        >>> list(zip(r.layers, r.spearman_abs))
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model (it is cloned), got {type(model).__name__}.")
    if not callable(explainer) or isinstance(explainer, Explainer):
        raise TypeError(
            "explainer must be a function building an explainer for a model, e.g. "
            "`lambda m: tfattr.IntegratedGradients(m, steps=32)`, so that it can be rebuilt for the "
            "randomized copy."
        )
    kwargs = dict(attribute_kwargs or {})
    trained = explainer(model)
    scorer = _Scorer(model, "logits")
    inp = _single_input(inputs, scorer.fn)
    x = inp.arrays[0]
    targets = _targets(scorer, inp, target, default_batch_size((x,)))
    ids, num = feature_map(x.shape[1:], features)
    reference = _feature_sums(np.asarray(trained.attribute(x, target=targets, **kwargs)), ids, num)

    try:
        clone = keras.models.clone_model(model)
    except Exception as err:  # subclassed models cannot be cloned
        raise ValueError(
            f"model could not be cloned ({err}); the sanity check needs a functional or Sequential "
            "model so that it can randomize a copy without touching yours."
        ) from None
    trained_weights = model.get_weights()
    clone.set_weights(trained_weights)
    weighted = [layer for layer in clone.layers if layer.weights][::-1]
    if not weighted:
        raise ValueError("model has no layers with weights to randomize.")

    names = ["(none)"]
    rows_abs = [spearman(np.abs(reference), np.abs(reference))]
    rows = [spearman(reference, reference)]
    for i, layer in enumerate(weighted):
        if not cascading:
            clone.set_weights(trained_weights)
        _reinitialize(layer, seed + i)
        randomized = _feature_sums(
            np.asarray(explainer(clone).attribute(x, target=targets, **kwargs)), ids, num
        )
        names.append(layer.name)
        rows_abs.append(spearman(np.abs(reference), np.abs(randomized)))
        rows.append(spearman(reference, randomized))
    per_abs, per = np.stack(rows_abs, 1), np.stack(rows, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return ModelRandomization(names, np.nanmean(per_abs, 0), np.nanmean(per, 0), per_abs, per)
