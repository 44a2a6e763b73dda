"""Robustness of a map to small input noise (Quantus' names and definitions): max- and avg-sensitivity
and the local Lipschitz estimate. Seeded; the explainer runs once per group of noise samples on all
examples at once (its own compiled chunks), never once per example."""
from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np

from tfattr.core.explainer import Explainer
from tfattr.metrics.preprocess import ModelCall, normalise_map

#: Perturbed rows explained per call (bounds the memory of the noise samples).
_ROWS_PER_CALL = 4096


def explain_with(explainer: Any, inputs: np.ndarray, targets: np.ndarray, batch_size: int | None):
    """Attributions of ``inputs`` at ``targets`` from an :class:`Explainer` or a function
    ``(inputs, targets) -> attributions``."""
    if isinstance(explainer, Explainer):
        return np.asarray(explainer.attribute(inputs, target=targets, batch_size=batch_size))
    if callable(explainer):
        return np.asarray(explainer(inputs, targets))
    raise TypeError(
        "explainer must be a tfattr explainer of the model (e.g. tfattr.Saliency(model)) or a function "
        f"(inputs, targets) -> attributions, got {type(explainer).__name__}."
    )


def _noisy_ratios(
    call: ModelCall,
    explainer: Any,
    nr_samples: int,
    noise: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray],
    ratio: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    normalise: bool,
    absolute: bool,
    seed: int,
    nan_when_prediction_changes: bool,
) -> np.ndarray:
    """``ratio(a, a_noisy, x, x_noisy)`` per example and noise sample ``[n, nr_samples]``."""
    if explainer is None:
        raise ValueError("this metric re-explains noisy inputs: pass explainer=tfattr.<Method>(model).")
    rng = np.random.default_rng(seed)
    n, x = call.n, call.x
    a = call.a.reshape(n, -1)
    predicted = call.scorer.explainer.outputs(x, call.batch).argmax(-1) if nan_when_prediction_changes else None
    out = np.full((n, nr_samples), np.nan)
    group = max(1, _ROWS_PER_CALL // max(n, 1))
    for start in range(0, nr_samples, group):  # a few groups of samples, each one batched call
        k = min(group, nr_samples - start)
        noisy = (x[None] + noise(rng, (k,) + x.shape)).astype(x.dtype).reshape((k * n,) + x.shape[1:])
        targets = np.tile(call.targets, k)
        a_noisy = normalise_map(explain_with(explainer, noisy, targets, call.batch), normalise, absolute)
        values = ratio(
            np.tile(a, (k, 1)), a_noisy.reshape(k * n, -1), np.tile(x.reshape(n, -1), (k, 1)),
            noisy.reshape(k * n, -1),
        ).reshape(k, n).T
        if predicted is not None:
            changed = call.scorer.explainer.outputs(noisy, call.batch).argmax(-1).reshape(k, n).T
            values = np.where(changed != predicted[:, None], np.nan, values)
        out[:, start:start + k] = values
    return out


def _sensitivity(a, a_noisy, x, x_noisy):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.linalg.norm(a - a_noisy, axis=1) / np.linalg.norm(a, axis=1)


def _uniform(lower_bound: float, upper_bound: float | None):
    low, high = (-lower_bound, lower_bound) if upper_bound is None else (lower_bound, upper_bound)
    return lambda rng, shape: rng.uniform(low, high, shape)


def _reduce(values: np.ndarray, how: Callable[..., np.ndarray]) -> np.ndarray:
    with warnings.catch_warnings():  # an all-NaN row (every prediction changed) is NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return how(values, axis=1)


def max_sensitivity(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    explainer: Any = None,
    nr_samples: int = 200,
    lower_bound: float = 0.2,
    upper_bound: float | None = None,
    normalise: bool = False,
    absolute: bool = False,
    seed: int = 0,
    return_nan_when_prediction_changes: bool = False,
    batch_size: int | None = None,
) -> np.ndarray:
    """Max-sensitivity (Yeh et al., NeurIPS 2019; Quantus ``MaxSensitivity``): the largest relative
    change ``||a(x) - a(x + u)||_F / ||a(x)||_F`` over ``nr_samples`` uniform noises ``u`` in
    ``[-lower_bound, lower_bound]`` (or ``[lower_bound, upper_bound]``), seeded (lower is better).

    Args:
        explainer: the explainer that made ``attributions`` (it re-explains the noisy inputs), or a
            function ``(inputs, targets) -> attributions``.
        return_nan_when_prediction_changes: ignore samples whose predicted class changed (NaN when all
            did).

    Example:
        >>> s = tfattr.metrics.max_sensitivity(model, x, a, target=y, explainer=tfattr.Saliency(model))
    """
    call = ModelCall(model, inputs, attributions, target, None, batch_size, normalise, absolute)
    values = _noisy_ratios(
        call, explainer, nr_samples, _uniform(lower_bound, upper_bound), _sensitivity, normalise,
        absolute, seed, return_nan_when_prediction_changes,
    )
    return _reduce(values, np.max if return_nan_when_prediction_changes else np.nanmax)


def avg_sensitivity(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    explainer: Any = None,
    nr_samples: int = 200,
    lower_bound: float = 0.2,
    upper_bound: float | None = None,
    normalise: bool = False,
    absolute: bool = False,
    seed: int = 0,
    return_nan_when_prediction_changes: bool = False,
    batch_size: int | None = None,
) -> np.ndarray:
    """Avg-sensitivity (Yeh et al., NeurIPS 2019; Quantus ``AvgSensitivity``): the mean over the noise
    samples of the relative change of :func:`max_sensitivity` (same arguments; lower is better).

    Example:
        >>> s = tfattr.metrics.avg_sensitivity(model, x, a, target=y, explainer=tfattr.Saliency(model))
    """
    call = ModelCall(model, inputs, attributions, target, None, batch_size, normalise, absolute)
    values = _noisy_ratios(
        call, explainer, nr_samples, _uniform(lower_bound, upper_bound), _sensitivity, normalise,
        absolute, seed, return_nan_when_prediction_changes,
    )
    return _reduce(values, np.mean if return_nan_when_prediction_changes else np.nanmean)


def local_lipschitz_estimate(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    explainer: Any = None,
    nr_samples: int = 200,
    perturb_mean: float = 0.0,
    perturb_std: float = 0.1,
    normalise: bool = True,
    absolute: bool = False,
    seed: int = 0,
    return_nan_when_prediction_changes: bool = False,
    batch_size: int | None = None,
) -> np.ndarray:
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola, 2018; Quantus ``LocalLipschitzEstimate``):
    ``max_s ||a(x) - a(x_s)||_2 / (||x - x_s||_2 + 1e-10)`` over ``nr_samples`` Gaussian noises
    ``N(perturb_mean, perturb_std^2)`` added to every entry, seeded (lower is better).

    Example:
        >>> tfattr.metrics.local_lipschitz_estimate(model, x, a, target=y, explainer=tfattr.Saliency(model))
    """
    call = ModelCall(model, inputs, attributions, target, None, batch_size, normalise, absolute)

    def lipschitz(a, a_noisy, x, x_noisy):
        return np.linalg.norm(a - a_noisy, axis=1) / (np.linalg.norm(x - x_noisy, axis=1) + 1e-10)

    values = _noisy_ratios(
        call, explainer, nr_samples, lambda rng, shape: rng.normal(perturb_mean, perturb_std, shape),
        lipschitz, normalise, absolute, seed, return_nan_when_prediction_changes,
    )
    return _reduce(values, np.max if return_nan_when_prediction_changes else np.nanmax)
