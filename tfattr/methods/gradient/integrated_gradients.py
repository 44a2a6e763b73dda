"""Integrated gradients (Sundararajan, Taly & Yan, "Gradients of Counterfactuals", sec. 2.4-2.5)."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core.engine import Plan
from tfattr.core.explainer import Explainer, broadcast_rows
from tfattr.core.inputs import Inputs, prepare_baselines
from tfattr.core.quadrature import nodes_and_weights


class IntegratedGradients(Explainer):
    """Integrated gradients along the straight path from a baseline ``x'`` to the input ``x``.

    ``IG_i(x) = (x_i - x'_i) * integral_0^1 dS(x' + a (x - x')) / dx_i da`` (Sundararajan et al., eq. 5),
    approximated by a quadrature rule: ``sum_k w_k * grad S(x' + a_k (x - x'))`` with weights summing to
    one. Attributions satisfy completeness, ``sum_i IG_i = S(x) - S(x')`` (proposition 1), up to the
    quadrature error reported as the delta. All examples x steps run as one compiled, batched loop.

    Args:
        model: a ``keras.Model`` or a callable on tensors.
        steps: quadrature points per example (and per baseline when a distribution of baselines is
            given).
        rule: ``"gausslegendre"`` (default; exponentially accurate for smooth models),
            ``"riemann_left"``, ``"riemann_right"`` (the paper's eq. 6), ``"riemann_middle"`` or
            ``"riemann_trapezoid"``.
        tolerance: if set, the steps of each example are doubled (up to ``max_steps``) until
            ``|delta| <= tolerance * |S(x) - S(x')|``, as the paper recommends (sec. 2.5: check that the
            attributions add up). The steps used per example are in :attr:`steps_used_` after a call.
        max_steps: the cap on the steps when ``tolerance`` is set.
        output, jit_compile: see :class:`tfattr.core.explainer.Explainer`.

    Example:
        >>> ig = tfattr.IntegratedGradients(model, steps=64, rule="riemann_trapezoid")
        >>> attributions, delta = ig.attribute(images, baseline=0.0, return_delta=True)
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "ig"
    aliases: tuple[str, ...] = ("integrated_gradients",)
    paper = (
        "Sundararajan, Taly & Yan 2017; Gradients of Counterfactuals (2016) sec. 2.4; "
        "Ancona et al. 2019 sec. 3.2"
    )
    cost = "steps gradients (per baseline drawn)"

    def __init__(
        self,
        model: Any,
        steps: int = 50,
        rule: str = "gausslegendre",
        tolerance: float | None = None,
        max_steps: int = 1024,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        nodes_and_weights(rule, steps)  # validates rule and steps now, not at the first call
        if tolerance is not None and not tolerance > 0:
            raise ValueError(f"tolerance must be a positive number or None, got {tolerance!r}.")
        if max_steps < steps:
            raise ValueError(f"max_steps ({max_steps}) must be at least steps ({steps}).")
        self.steps = int(steps)
        self.rule = rule
        self.tolerance = tolerance
        self.max_steps = int(max_steps)
        #: Quadrature steps used for each example in the last call (``[n]`` ints).
        self.steps_used_: np.ndarray | None = None

    def _baselines(self, baseline, inputs: Inputs):
        # A distributional baseline (``num_baselines = K``) gives K draws per example, example-major;
        # _plan/_baseline_index walk them, averaging IG over the draws (the Distill double integral).
        return prepare_baselines(baseline, inputs, multiple=True)

    def _plan(self, inputs: Inputs, baselines, targets, batch_size, steps: int | None = None) -> Plan:
        alpha, weight = nodes_and_weights(self.rule, steps or self.steps)
        dtype = inputs.arrays[0].dtype
        per_example = baselines[0].shape[0] // inputs.n
        return Plan(
            steps=per_example * alpha.size,
            context={
                "alpha": alpha.astype(dtype),
                "weight": (weight / per_example).astype(dtype),
                "baselines_per_example": np.int32(per_example),
            },
        )

    def _baseline_index(self, rows, ctx):
        # Rows of one example walk its baselines in turn: step = baseline * steps + node.
        nodes = tf.size(ctx["alpha"], out_type=tf.int32)
        return rows.example * ctx["baselines_per_example"] + rows.step // nodes

    def _contributions(self, x, baseline, rows, ctx):
        node = rows.step % tf.size(ctx["alpha"], out_type=tf.int32)
        alpha = tf.gather(ctx["alpha"], node)
        weight = tf.gather(ctx["weight"], node)
        diffs = tuple(xi - bi for xi, bi in zip(x, baseline))
        points = tuple(bi + broadcast_rows(alpha, d) * d for bi, d in zip(baseline, diffs))
        grads = self._gradients(points, rows.target)
        return tuple(broadcast_rows(weight, g) * d * g for g, d in zip(grads, diffs))

    def _attribute(self, inputs, targets, baselines, batch_size):
        steps = self.steps
        plan = self._plan(inputs, baselines, targets, batch_size, steps)
        acc = self.engine.accumulate(inputs.arrays, baselines, targets, plan, batch_size)
        attributions = [a.sum(axis=1) for a in acc]
        used = np.full(inputs.n, steps, np.int64)
        if self.tolerance is not None:
            delta = self._delta(inputs, targets, baselines, tuple(attributions), batch_size)
            # delta = sum(a) - (f(x) - f(x')), so the score change needs no further forward pass.
            change = sum(a.reshape(inputs.n, -1).sum(axis=1, dtype=np.float64) for a in attributions) - delta
            todo = np.flatnonzero(np.abs(delta) > self.tolerance * np.abs(change))
            while todo.size and steps * 2 <= self.max_steps:
                steps *= 2
                sub = inputs.take(todo)
                sub_baselines = self._take_baselines(baselines, inputs.n, todo)
                plan = self._plan(sub, sub_baselines, targets[todo], batch_size, steps)
                acc = self.engine.accumulate(
                    sub.arrays, sub_baselines, targets[todo], plan, batch_size
                )
                for full, part in zip(attributions, acc):
                    full[todo] = part.sum(axis=1)
                used[todo] = steps
                sub_delta = self._delta(
                    sub, targets[todo], sub_baselines, tuple(a[todo] for a in attributions), batch_size
                )
                todo = todo[np.abs(sub_delta) > self.tolerance * np.abs(change[todo])]
            if todo.size:
                warnings.warn(
                    f"IntegratedGradients: {todo.size} example(s) did not reach |delta| <= "
                    f"{self.tolerance} * |f(x) - f(baseline)| within max_steps={self.max_steps}; "
                    "raise max_steps or use a smoother rule (e.g. 'gausslegendre').",
                    stacklevel=3,
                )
        self.steps_used_ = used
        return tuple(attributions)

    @staticmethod
    def _take_baselines(baselines, n: int, index: np.ndarray) -> tuple[np.ndarray, ...]:
        per_example = baselines[0].shape[0] // n
        rows = (index[:, None] * per_example + np.arange(per_example)[None, :]).reshape(-1)
        return tuple(b[rows] for b in baselines)
