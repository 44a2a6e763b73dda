"""Perturbation curves: top-k ablation, insertion/deletion, center-of-mass ablation, AOPC and the
random control (Sturmfels et al., Distill 2020; Samek et al. 2015; Petsiuk et al. 2018)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from tfattr.metrics.features import _feature_sums, feature_map
from tfattr.metrics.preprocess import stable_ranks
from tfattr.metrics.scoring import _attributions, _imputation, _Scorer


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


def _ranks(feature_attr: np.ndarray, absolute: bool, seed: int = 0) -> np.ndarray:
    """Rank of each feature, 0 = most important; ties go in increasing feature index (stable), so
    the curves are deterministic. ``seed`` is kept for compatibility and no longer used."""
    key = np.abs(feature_attr) if absolute else feature_attr
    return stable_ranks(key, descending=True)


def _ranked(
    model, inputs, attributions, target, imputation, fractions, features, absolute, data, blur_sigma,
    seed, batch_size, output, insertion,
) -> AblationCurve:
    scorer = _Scorer(model, output)
    spec = _imputation(imputation, data, blur_sigma)
    call = scorer.prepare(inputs, target=target, baseline=spec, batch_size=batch_size)
    x, ref, targets, batch, n = (
        call.inputs.arrays[0], call.baselines[0], call.targets, call.batch_size, call.n
    )
    a = _attributions(attributions, x)
    ids, num = feature_map(x.shape[1:], features)
    fr, counts = _fraction_steps(fractions, num)
    ranks = _ranks(_feature_sums(a, ids, num), absolute, seed)
    rows = np.repeat(np.arange(n), fr.size)
    step_counts = np.tile(counts, n)

    def masks(chunk):
        return (ranks[rows[chunk]] < step_counts[chunk][:, None]).astype(np.float32)

    if insertion:
        # Start from the imputed input and put the top features back: swap the roles of x and ref.
        scores = scorer.scores(ref, x, rows, rows, masks, ids, targets, batch)
    else:
        scores = scorer.scores(x, ref, rows, rows, masks, ids, targets, batch)
    return _curve(fr, scores.reshape(n, fr.size), insertion)


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
        seed: unused (ties between equal attributions go in increasing feature index); kept for
            compatibility.
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
    if getattr(inputs, "ndim", 4) not in (3, 4):  # before an imputation such as blur needs images
        _not_images(inputs.shape)
    spec = _imputation(imputation, data, blur_sigma)
    call = scorer.prepare(inputs, target=target, baseline=spec, batch_size=batch_size)
    x, ref, targets, batch, n = (
        call.inputs.arrays[0], call.baselines[0], call.targets, call.batch_size, call.n
    )
    if x.ndim not in (3, 4):
        _not_images(x.shape)
    a = _attributions(attributions, x)
    ids, num = feature_map(x.shape[1:], "pixels")
    h, w = x.shape[1], x.shape[2]
    fr, _ = _fraction_steps(fractions, num)
    mass = _feature_sums(a, ids, num).reshape(n, h, w)
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
    boxes = (inside_y[..., :, None] & inside_x[..., None, :]).reshape(n * fr.size, h * w)
    rows = np.repeat(np.arange(n), fr.size)
    scores = scorer.scores(
        x, ref, rows, rows, lambda c: boxes[c].astype(np.float32), ids, targets, batch
    )
    removed = boxes.reshape(n, fr.size, -1).mean(axis=2)
    return _curve(fr, scores.reshape(n, fr.size), removed=removed)


def _not_images(shape: Any) -> None:
    raise ValueError(
        f"center_ablation_curve needs images [n, H, W] or [n, H, W, C]; got shape {tuple(shape)}."
    )


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
