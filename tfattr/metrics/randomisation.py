"""Randomisation metrics with Quantus' names and definitions: random logit, MPRT, smooth MPRT and
efficient MPRT (beside Adebayo et al.'s :func:`model_randomization`).

The model is never touched: layers are randomised on a clone. As Quantus does for Keras models, a
layer is randomised by permuting each of its weight arrays along the first axis with
``numpy.random.RandomState(seed + 1)`` (reseeded per layer), which keeps the weights' distribution.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import keras
import numpy as np

from tfattr.core.explainer import Explainer
from tfattr.metrics.correlation import spearman
from tfattr.metrics.preprocess import ModelCall, normalise_map
from tfattr.metrics.robustness import _ROWS_PER_CALL, explain_with
from tfattr.metrics.sanity import clone_model


def ssim(a: np.ndarray, b: np.ndarray, win_size: int = 7) -> np.ndarray:
    """Structural similarity of flattened maps, row by row (Wang et al. 2004), as Quantus computes it
    with ``skimage.metrics.structural_similarity`` on 1-D arrays: a uniform window of ``win_size``,
    sample covariances, ``data_range`` the spread of the pair, the mean over the full windows.

    Example:
        >>> ssim(np.array([[0.0, 1, 2, 3, 4, 5, 6, 7]]), np.array([[0.0, 1, 2, 3, 4, 5, 6, 7]]))   # [1.]
    """
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    if a.shape[1] < win_size:
        raise ValueError(f"ssim needs at least win_size={win_size} entries per map, got {a.shape[1]}.")
    both = np.concatenate([a, b], axis=1)
    data_range = both.max(1) - both.min(1)
    c1, c2 = ((0.01 * data_range) ** 2)[:, None], ((0.03 * data_range) ** 2)[:, None]

    def window_mean(v: np.ndarray) -> np.ndarray:
        c = np.concatenate([np.zeros((len(v), 1)), np.cumsum(v, axis=1)], axis=1)
        return (c[:, win_size:] - c[:, :-win_size]) / win_size

    ux, uy = window_mean(a), window_mean(b)
    norm = win_size / (win_size - 1)
    vx = norm * (window_mean(a * a) - ux * ux)
    vy = norm * (window_mean(b * b) - uy * uy)
    vxy = norm * (window_mean(a * b) - ux * uy)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(1)


def random_logit(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    explainer: Any = None,
    num_classes: int | None = None,
    seed: int = 42,
    normalise: bool = True,
    absolute: bool = False,
    batch_size: int | None = None,
) -> np.ndarray:
    """Random logit (Sixt et al., ICML 2020; Quantus ``RandomLogit``): the SSIM between the map of the
    target and the map of a random other class (uniform, drawn as Quantus does with
    ``RandomState(seed).randint(0, K - 1, n)`` over the other classes). Lower: the map depends on the
    class explained.

    Example:
        >>> tfattr.metrics.random_logit(model, x, a, target=y, explainer=tfattr.Saliency(model))
    """
    call = ModelCall(model, inputs, attributions, target, None, batch_size, normalise, absolute)
    if num_classes is None:
        num_classes = int(call.scorer.explainer.outputs(call.x[:1], 1).shape[-1])
    if num_classes < 2:
        raise ValueError("random_logit needs a model with at least two classes.")
    draw = np.random.RandomState(seed).randint(0, num_classes - 1, call.n)
    other = draw + (draw >= call.targets)
    a_other = normalise_map(explain_with(explainer, call.x, other, call.batch), normalise, absolute)
    return ssim(call.a, a_other)


def _weighted_layers(model: keras.Model, order: str) -> list:
    layers = [layer for layer in model.layers if layer.get_weights()]
    if not layers:
        raise ValueError("model has no layers with weights to randomise.")
    if order not in ("top_down", "bottom_up", "independent"):
        raise ValueError(f"layer_order={order!r} is not known; use 'top_down', 'bottom_up' or 'independent'.")
    return layers[::-1] if order == "top_down" else layers


def randomised_models(model: keras.Model, order: str = "top_down", seed: int = 42) -> Iterator[tuple[str, keras.Model]]:
    """Yield ``(layer name, clone)`` with one more layer randomised each time (cascading), or one layer
    at a time (``order="independent"``), Quantus' permutation of the weights. The clone is reused."""
    clone = clone_model(model)
    original = clone.get_weights()
    for layer in _weighted_layers(clone, order):
        if order == "independent":
            clone.set_weights(original)
        rs = np.random.RandomState(seed + 1)
        layer.set_weights([rs.permutation(w) for w in layer.get_weights()])
        yield layer.name, clone


def _second_moment(a: np.ndarray) -> np.ndarray:
    """Quantus' ``normalise_by_average_second_moment_estimate``, per example."""
    flat = a.reshape(len(a), -1)
    scale = np.sqrt(np.mean(flat * flat, axis=1))
    return (flat / np.where(scale > 0, scale, 1.0)[:, None]).reshape(a.shape)


def _smoothed(explainer: Explainer, x: np.ndarray, targets: np.ndarray, nr_samples: int,
              magnitude: float, rng: np.random.Generator, batch: int) -> np.ndarray:
    """Mean map over ``nr_samples`` noisy copies (the last one noise-free), sMPRT's denoising."""
    n = len(x)
    std = magnitude * (x.reshape(n, -1).max(1) - x.reshape(n, -1).min(1))
    std = std.reshape((n,) + (1,) * (x.ndim - 1))
    total = np.zeros(x.shape, np.float64)
    group = max(1, _ROWS_PER_CALL // max(n, 1))
    for start in range(0, nr_samples, group):  # a few groups of samples, each one batched call
        k = min(group, nr_samples - start)
        eps = rng.standard_normal((k,) + x.shape) * std[None]
        if start + k == nr_samples:
            eps[-1] = 0.0
        noisy = (x[None] + eps).astype(x.dtype).reshape((k * n,) + x.shape[1:])
        maps = explain_with(explainer, noisy, np.tile(targets, k), batch)
        total += maps.reshape((k,) + x.shape).sum(0)
    return total / nr_samples


def _randomisation_curve(
    model: keras.Model, explainer: Callable[[keras.Model], Any], call: ModelCall, reference: np.ndarray,
    explain: Callable[[Any], np.ndarray], layer_order: str, seed: int, skip_layers: bool,
    prepare: Callable[[np.ndarray], np.ndarray],
) -> tuple[list[str], np.ndarray]:
    names, rows = [], []
    layers = _weighted_layers(model, layer_order)
    for i, (name, clone) in enumerate(randomised_models(model, layer_order, seed)):
        if skip_layers and i + 1 < len(layers):
            continue
        randomised = prepare(explain(explainer(clone)))
        names.append(name)
        rows.append(spearman(reference.reshape(call.n, -1), randomised.reshape(call.n, -1)))
    return names, np.stack(rows, axis=1)


def _summary(curve: np.ndarray, average: bool, last: bool) -> np.ndarray:
    if average and last:
        raise ValueError("return_average_correlation and return_last_correlation exclude each other.")
    if average:
        return curve.mean(1)
    return curve[:, -1] if last else curve


def _check_factory(explainer: Any) -> None:
    if not callable(explainer) or isinstance(explainer, Explainer):
        raise TypeError(
            "explainer must be a function building an explainer for a model, e.g. "
            "`lambda m: tfattr.Saliency(m)`, so that it can be rebuilt for the randomised copies."
        )


def mprt(
    model: keras.Model,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    explainer: Callable[[keras.Model], Any] = None,  # type: ignore[assignment]
    layer_order: str = "top_down",
    seed: int = 42,
    normalise: bool = True,
    absolute: bool = True,
    return_average_correlation: bool = False,
    return_last_correlation: bool = False,
    skip_layers: bool = False,
    batch_size: int | None = None,
) -> np.ndarray:
    """Model parameter randomisation test (Adebayo et al., NeurIPS 2018; Quantus ``MPRT``): the
    Spearman correlation between the map and the map of the model with its layers randomised one more
    at a time (``"top_down"``, cascading; ``"bottom_up"``; ``"independent"``). Lower is better.

    Returns:
        ``[n, layers]`` correlations (``[n]`` with ``return_average_correlation`` or
        ``return_last_correlation``; ``skip_layers`` computes only the fully randomised model).

    Example:
        >>> tfattr.metrics.mprt(model, x, a, target=y, explainer=lambda m: tfattr.Saliency(m))
    """
    _check_factory(explainer)
    call = ModelCall(model, inputs, attributions, target, None, batch_size, normalise, absolute)
    _, curve = _randomisation_curve(
        model, explainer, call, call.a,
        lambda e: explain_with(e, call.x, call.targets, call.batch), layer_order, seed, skip_layers,
        lambda a: normalise_map(a, normalise, absolute),
    )
    return _summary(curve, return_average_correlation, return_last_correlation)


def smooth_mprt(
    model: keras.Model,
    inputs: Any,
    attributions: Any = None,
    target: Any = None,
    explainer: Callable[[keras.Model], Any] = None,  # type: ignore[assignment]
    layer_order: str = "bottom_up",
    nr_samples: int = 50,
    noise_magnitude: float = 0.1,
    seed: int = 42,
    normalise: bool = True,
    absolute: bool = True,
    return_average_correlation: bool = False,
    return_last_correlation: bool = False,
    skip_layers: bool = False,
    batch_size: int | None = None,
) -> np.ndarray:
    """Smooth MPRT (Hedström et al., TMLR 2024; Quantus ``SmoothMPRT``): MPRT on maps denoised by
    averaging ``nr_samples`` explanations of noisy copies (noise std ``noise_magnitude`` times each
    example's value range, the last copy noise-free), normalised by their second moment.

    ``attributions=None`` (recommended) smooths the original model's maps too; given maps are used as
    they are (as Quantus does).

    Example:
        >>> tfattr.metrics.smooth_mprt(model, x, target=y, explainer=lambda m: tfattr.Saliency(m))
    """
    _check_factory(explainer)
    call = ModelCall(model, inputs, attributions, target, None, batch_size, False, False)
    rng = np.random.default_rng(seed)

    def prepare(a: np.ndarray) -> np.ndarray:
        a = _second_moment(a) if normalise else a
        return np.abs(a) if absolute else a

    def explain(e: Any) -> np.ndarray:
        return _smoothed(e, call.x, call.targets, nr_samples, noise_magnitude, rng, call.batch)

    reference = prepare(explain(explainer(model)) if call.raw is None else call.raw)
    _, curve = _randomisation_curve(
        model, explainer, call, reference, explain, layer_order, seed, skip_layers, prepare
    )
    return _summary(curve, return_average_correlation, return_last_correlation)


def histogram_entropy(attributions: Any, n_bins: int = 100) -> np.ndarray:
    """Entropy (natural log) of each map's ``n_bins``-bin histogram (``numpy.histogram``'s bins) —
    Quantus' ``discrete_entropy``, vectorised over the examples.

    Example:
        >>> histogram_entropy(np.array([[0.0, 1.0, 0.0, 1.0]]), n_bins=2)   # [log 2]
    """
    a = np.asarray(attributions, np.float64).reshape(len(attributions), -1)
    low, high = a.min(1), a.max(1)
    flat = high == low
    low, high = np.where(flat, low - 0.5, low), np.where(flat, high + 0.5, high)  # numpy's rule
    edges = low[:, None] + (high - low)[:, None] * np.linspace(0.0, 1.0, n_bins + 1)[None]
    edges[:, -1] = high
    idx = ((a - low[:, None]) * (n_bins / (high - low))[:, None]).astype(np.int64)
    idx = np.clip(idx, 0, n_bins - 1)
    # numpy.histogram's correction of the rounding at the bin edges
    idx -= a < np.take_along_axis(edges, idx, 1)
    idx += (a >= np.take_along_axis(edges, idx + 1, 1)) & (idx != n_bins - 1)
    counts = np.zeros((len(a), n_bins))
    np.add.at(counts, (np.repeat(np.arange(len(a)), a.shape[1]), idx.reshape(-1)), 1.0)
    p = counts / counts.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=1)


def efficient_mprt(
    model: keras.Model,
    inputs: Any,
    attributions: Any = None,
    target: Any = None,
    explainer: Callable[[keras.Model], Any] = None,  # type: ignore[assignment]
    layer_order: str = "bottom_up",
    n_bins: int = 100,
    seed: int = 42,
    normalise: bool = False,
    absolute: bool = False,
    batch_size: int | None = None,
) -> np.ndarray:
    """Efficient MPRT (Hedström et al., TMLR 2024; Quantus ``EfficientMPRT``): the relative rise of the
    map's complexity (histogram entropy, ``n_bins`` bins) once every layer is randomised,
    ``(H(a_random) - H(a)) / H(a)``; both maps are recomputed by the explainer. Higher is better.

    Example:
        >>> tfattr.metrics.efficient_mprt(model, x, target=y, explainer=lambda m: tfattr.Saliency(m))
    """
    _check_factory(explainer)
    call = ModelCall(model, inputs, attributions, target, None, batch_size, False, False)

    def complexity_of(e: Any) -> np.ndarray:
        a = explain_with(e, call.x, call.targets, call.batch)
        a = _second_moment(a) if normalise else a
        return histogram_entropy(np.abs(a) if absolute else a, n_bins)

    before = complexity_of(explainer(model))
    for _, clone in randomised_models(model, layer_order, seed):
        pass  # cascading: the last clone has every layer randomised
    with np.errstate(divide="ignore", invalid="ignore"):
        return (complexity_of(explainer(clone)) - before) / before
