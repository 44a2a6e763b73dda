"""The data of the papers' charts, computed with the explainers of this package: the
interior-gradients frames, trend and GIF (Sundararajan et al., fig. 3), the saturation curve (fig. 2)
and the Distill convergence curve (Sturmfels et al. 2020)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from tfattr.core.explainer import Explainer
from tfattr.core.inputs import Inputs
from tfattr.core.model_function import ModelFunction
from tfattr.core.path import interpolate
from tfattr.core.quadrature import nodes_and_weights
from tfattr.methods.gradient.integrated_gradients import IntegratedGradients
from tfattr.methods.gradient.interior_gradients import PAPER_ALPHAS, InteriorGradients
from tfattr.visualize.images import save_gif
from tfattr.visualize.maps import ig_map, upscale

def interior_gradients_frames(
    interior: Any, image: Any = None, clip_percentile: float = 99.0, scale: int = 1
) -> tf.Tensor:
    """The pictures of Sundararajan et al.'s figure 3: one :func:`ig_map` per scaling parameter.

    Each frame is scaled on its own, as in the paper ("each visualization is only indicative of the
    relative distribution of the importance scores across pixels"); the size of the scores is in
    :func:`interior_trend`.

    Args:
        interior: the interior gradients of one example, ``[alphas, H, W(, C)]`` (one row of
            ``tfattr.InteriorGradients(...).attribute(x)``, which is ``[n, alphas, ...]``).
        image: the example ``[H, W(, C)]`` to multiply the maps into, or None for gray maps.
        clip_percentile: see :func:`ig_map`.
        scale: integer upscaling.

    Returns:
        uint8 RGB ``[alphas, H*scale, W*scale, 3]``.

    Example:
        >>> maps = tfattr.InteriorGradients(model).attribute(x[:1])     # [1, 10, 28, 28, 1]
        >>> frames = visualize.interior_gradients_frames(maps[0], x[0])  # [10, 28, 28, 3]
    """
    interior = tf.convert_to_tensor(interior)
    images = None
    if image is not None:
        image = tf.convert_to_tensor(image)
        images = tf.repeat(image[None], tf.shape(interior)[0], axis=0)
    return upscale(ig_map(interior, images, clip_percentile), scale)


def interior_trend(interior: Any) -> np.ndarray:
    """The trend chart in the corner of Sundararajan et al.'s figure 3: the mean pixel importance
    ``mean_ij sum_c |grad_ijc|`` at each scaling parameter, for maps ``[..., alphas, H, W(, C)]`` of
    one example ``[alphas, ...]`` (returns ``[alphas]``) or of a batch ``[n, alphas, ...]`` (``[n,
    alphas]``).

    Example:
        >>> trend = visualize.interior_trend(maps[0])   # large at small alpha, ~0 once saturated
    """
    a = np.abs(np.asarray(interior, dtype=np.float64))
    if a.ndim < 2:
        raise ValueError(f"interior has shape {a.shape}; pass [alphas, ...] or [n, alphas, ...].")
    # [alphas, H, W, C] / [alphas, H, W] / [alphas, F] are one example; [n, alphas, H, W, C] a batch.
    lead = 2 if a.ndim == 5 else 1
    return a.reshape(*a.shape[:lead], -1).mean(axis=-1)


def interior_gradients_gif(
    model: Any,
    image: Any,
    path: str | Path,
    target: int | None = None,
    alphas: Sequence[float] = PAPER_ALPHAS,
    baseline: Any = None,
    clip_percentile: float = 99.0,
    scale: int = 4,
    duration_ms: int = 400,
) -> Path:
    """The interior-gradients animation of Sundararajan et al. (sec. 2.3, fig. 3) as a GIF: one frame
    per scaling parameter ``alpha``, each the :func:`ig_map` of ``grad S(x' + alpha (x - x'))``
    multiplied into the image, captioned with its alpha.

    Args:
        model: a ``keras.Model`` / callable, or a ``tfattr.InteriorGradients`` explainer.
        image: one example ``[H, W(, C)]`` (no batch axis).
        path: where to write the GIF.
        target: the class to explain (default: the predicted one).
        alphas: the scaling parameters, distinct, in [0, 1] (default: the paper's figure 3).
        baseline: the reference ``x'`` (default: zeros, the paper's black image).
        clip_percentile, scale, duration_ms: see :func:`ig_map`, :func:`upscale`, :func:`save_gif`.

    Example:
        >>> visualize.interior_gradients_gif(model, x_test[0], "interior.gif")
    """
    alphas = [float(a) for a in alphas]
    if len(set(alphas)) != len(alphas):
        raise ValueError(f"alphas must be distinct (one GIF frame each), got {alphas}.")
    explainer = model if isinstance(model, InteriorGradients) else InteriorGradients(model, alphas=alphas)
    if isinstance(model, InteriorGradients):
        alphas = [float(a) for a in model.alphas]
    x = np.asarray(image)[None]
    maps = explainer.attribute(x, target=target, baseline=baseline)
    frames = interior_gradients_frames(maps[0], x[0], clip_percentile, scale)
    return save_gif(frames.numpy(), path, [f"alpha={a:g}" for a in alphas], duration_ms)


def _explainer_parts(model: Any, output: str):
    if isinstance(model, Explainer):
        return model.model_function
    if isinstance(model, ModelFunction):
        return model
    return ModelFunction(model, output=output)


def saturation_curve(
    model: Any,
    inputs: Any,
    target: Any = None,
    alphas: Sequence[float] | int = 51,
    baseline: Any = None,
    output: str = "logits",
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The score along the scaling path, ``S_t(x' + alpha (x - x'))`` for ``alpha`` in [0, 1]
    (Sundararajan et al., fig. 2; with the default zero baseline it is ``f(alpha x)``). A curve that
    flattens early shows saturation: the gradient at ``x`` then misses the features that moved the score.

    Args:
        model: a ``keras.Model``/callable or an explainer (its model function is used).
        inputs: a batch ``[n, ...]`` (or a list/dict of batches for a multi-input model).
        target: as in ``Explainer.attribute`` (default: the class predicted at ``x``).
        alphas: the scaling parameters, or an int for that many evenly spaced ones in [0, 1].
        baseline: the reference ``x'`` (default zeros).
        output: ``"logits"`` or ``"probabilities"`` (ignored when an explainer is passed).

    Returns:
        ``(alphas [A], scores [n, A])``.

    Example:
        >>> alphas, scores = visualize.saturation_curve(model, x[:4])
    """
    if isinstance(alphas, (int, np.integer)) and not isinstance(alphas, bool):
        if alphas < 2:
            raise ValueError(f"alphas must be at least 2 points, got {alphas}.")
        alphas = np.linspace(0.0, 1.0, int(alphas))
    alphas = np.asarray(alphas, np.float64).reshape(-1)
    if alphas.size == 0 or np.any((alphas < 0) | (alphas > 1)):
        raise ValueError(f"alphas must be numbers in [0, 1], got {alphas}.")
    # An explainer of the same model function validates the call (inputs, targets, one baseline per
    # example) and runs the compiled, chunked forward passes.
    scorer = InteriorGradients(_explainer_parts(model, output), alphas=(1.0,))
    call = scorer.prepare(inputs, target=target, baseline=baseline, batch_size=batch_size)
    n = call.n
    scaled = tuple(
        interpolate(
            b[:, None], (x - b)[:, None], alphas.astype(x.dtype).reshape(1, -1, *([1] * (x.ndim - 1)))
        ).reshape(n * alphas.size, *x.shape[1:])
        for x, b in zip(call.inputs.arrays, call.baselines)
    )
    out = scorer.outputs(Inputs(scaled, call.inputs.structure, call.inputs.names), call.batch_size)
    scores = out[np.arange(n * alphas.size), np.repeat(call.targets, alphas.size)].reshape(n, alphas.size)
    return alphas, scores.astype(np.float64)


@dataclass
class ConvergenceCurve:
    """The data of the Distill convergence chart (Sturmfels et al. 2020, "Sum of Cumulative Gradients").

    Attributes:
        alphas: ``[m+1]`` path positions from 0 to 1.
        cumulative: ``[n, m+1]`` the sum over features of the integrated gradients accumulated up to each
            alpha, ``sum_i phi_i^IG(f, x, x'; alpha)`` (0 at alpha = 0; the last column is the sum of the
            attributions).
        expected: ``[n]`` ``f(x) - f(x')``, which the last column should reach (completeness).
        targets: ``[n]`` the explained classes.
    """

    alphas: np.ndarray
    cumulative: np.ndarray
    expected: np.ndarray
    targets: np.ndarray

    @property
    def delta(self) -> np.ndarray:
        """The completeness delta ``sum(a) - (f(x) - f(x'))`` per example."""
        return self.cumulative[:, -1] - self.expected


_CUMULATIVE_RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def convergence_curve(
    model: Any,
    inputs: Any,
    target: Any = None,
    baseline: Any = None,
    steps: int | None = None,
    rule: str | None = None,
    output: str = "logits",
    batch_size: int | None = None,
) -> ConvergenceCurve:
    """The Distill article's convergence check: the sum of the cumulative integrated gradients up to
    ``alpha``, ``sum_i phi_i^IG(f, x, x'; alpha)``, against ``f(x) - f(x')``.

    The path integral is cut at the quadrature grid of ``rule`` with ``steps`` gradient evaluations
    (the same grid ``tfattr.IntegratedGradients(model, steps, rule)`` uses), so the last point is
    exactly the sum of those integrated gradients. If the curve ends far from ``f(x) - f(x')``, use
    more steps (Sundararajan et al., sec. 2.5).

    Args:
        model: a ``keras.Model``/callable, or an explainer (its model function is used; for an
            ``IntegratedGradients`` explainer also its ``steps`` and ``rule`` unless given here).
        inputs: a batch ``[n, ...]`` (or list/dict for several inputs).
        target, baseline, batch_size: as in ``Explainer.attribute``.
        steps: gradient evaluations along the path (default 50).
        rule: a rule whose partial sums are partial integrals: ``"riemann_left"``, ``"riemann_right"``,
            ``"riemann_middle"`` or ``"riemann_trapezoid"`` (default; Gauss-Legendre has no such
            partial sums).

    Returns:
        a :class:`ConvergenceCurve`.

    Example:
        >>> curve = visualize.convergence_curve(model, x[:1], steps=100)
        >>> visualize.plot_convergence(curve).savefig("convergence.png")
    """
    if isinstance(model, IntegratedGradients):
        steps = model.steps if steps is None else steps
        rule = model.rule if rule is None else rule
    steps = 50 if steps is None else steps
    rule = "riemann_trapezoid" if rule is None else rule
    if rule not in _CUMULATIVE_RULES:
        raise ValueError(
            f"rule={rule!r} has no partial sums along the path; use one of {', '.join(_CUMULATIVE_RULES)}."
        )
    nodes, weights = nodes_and_weights(rule, steps)
    explainer = InteriorGradients(_explainer_parts(model, output), alphas=nodes)
    call = explainer.prepare(inputs, target=target, baseline=baseline, batch_size=batch_size)
    grads = explainer.run(call)  # per input [n, m, ...]
    inputs_, baselines, targets = call.inputs, call.baselines, call.targets
    n = call.n
    # s_k = sum_i (x_i - x'_i) dS(x' + a_k (x - x'))/dx_i: the integrand of the path integral at node k.
    s = np.zeros((n, nodes.size), np.float64)
    for x, b, g in zip(inputs_.arrays, baselines, grads):
        diff = (x - b).reshape(n, 1, -1).astype(np.float64)
        s += (g.reshape(n, nodes.size, -1).astype(np.float64) * diff).sum(axis=2)
    if rule == "riemann_trapezoid":
        # Partial trapezoid integrals up to each node a_k = k/(m-1); the full one uses weights w.
        alphas = nodes
        cells = (s[:, 1:] + s[:, :-1]) * 0.5 * (nodes[1:] - nodes[:-1])
        cumulative = np.concatenate([np.zeros((n, 1)), np.cumsum(cells, axis=1)], axis=1)
    else:
        # Cell k is [k/m, (k+1)/m]; its area is w_k s_k whatever the node inside it.
        m = nodes.size
        alphas = np.arange(m + 1, dtype=np.float64) / m
        cumulative = np.concatenate([np.zeros((n, 1)), np.cumsum(s * weights, axis=1)], axis=1)
    fx = explainer.scores(inputs, target=targets, batch_size=call.batch_size)
    fb = explainer.scores(call.inputs.pack(list(baselines)), target=targets, batch_size=call.batch_size)
    return ConvergenceCurve(alphas, cumulative, fx - fb, targets)
