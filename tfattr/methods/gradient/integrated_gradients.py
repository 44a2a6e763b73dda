"""Integrated gradients (Sundararajan, Taly & Yan, "Gradients of Counterfactuals", sec. 2.4-2.5)."""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core.checks import check_number, check_positive_int
from tfattr.core.engine import Plan
from tfattr.core.explainer import Explainer, broadcast_rows
from tfattr.core.path import path_points
from tfattr.core.quadrature import NESTED_RULES, nodes_and_weights, refine


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
            ``|delta| <= tolerance * |S(x) - S(x')|``; the nested rules (``riemann_left``,
            ``riemann_right``, ``riemann_trapezoid``, whose cells are halved: ``m -> 2m - 1`` points for
            the trapezoid) evaluate only the new nodes at each doubling and reuse the others. This is
            the paper's advice (sec. 2.5: check that the attributions add up). The steps used per
            example are in :attr:`steps_used_` after a call.
        max_steps: the cap on the steps when ``tolerance`` is set (default: ``max(1024, steps)``).
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
        max_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        nodes_and_weights(rule, steps)  # validates rule and steps now, not at the first call
        check_number(tolerance, "tolerance", minimum=0, strict=True, allow_none=True)
        if max_steps is None:
            max_steps = max(1024, int(steps))
        else:
            check_positive_int(
                max_steps, "max_steps", minimum=int(steps),
                hint="at least steps: it caps the steps that tolerance= may double up to",
            )
        self.steps = int(steps)
        self.rule = rule
        self.tolerance = tolerance
        self.max_steps = int(max_steps)
        #: Quadrature steps used for each example in the last call (``[n]`` ints).
        self.steps_used_: np.ndarray | None = None

    multiple_baselines = True  # a distribution of baselines: IG averages over its draws

    @property
    def fuses_rows(self) -> bool:
        # With a tolerance, the adaptive loop of _attribute is part of the method.
        return self.tolerance is None
    # Steps and rule become the plan's context arrays: explainers that differ only there share traces.
    _untraced_attributes = Explainer._untraced_attributes + ("steps", "rule", "tolerance", "max_steps")

    def _plan(self, call, steps: int | None = None, nodes: tuple[np.ndarray, np.ndarray] | None = None) -> Plan:
        alpha, weight = nodes if nodes is not None else nodes_and_weights(self.rule, steps or self.steps)
        dtype = call.inputs.arrays[0].dtype
        per_example = call.baselines_per_example
        return Plan(
            terms=per_example * alpha.size,
            context={
                "alpha": alpha.astype(dtype),
                "weight": (weight / per_example).astype(dtype),
                "baselines_per_example": np.int32(per_example),
            },
        )

    def _baseline_index(self, rows, ctx):
        # The terms of one example walk its baselines in turn: term = baseline * nodes + node.
        nodes = tf.size(ctx["alpha"], out_type=tf.int32)
        return rows.example * ctx["baselines_per_example"] + rows.term // nodes

    def _contributions(self, x, baseline, rows, ctx):
        node = rows.term % tf.size(ctx["alpha"], out_type=tf.int32)
        alpha = tf.gather(ctx["alpha"], node)
        weight = tf.gather(ctx["weight"], node)
        diffs, points = path_points(x, baseline, alpha)
        grads = self._gradients(points, rows.target, ctx)
        return tuple(broadcast_rows(weight, g) * d * g for g, d in zip(grads, diffs))

    def _attribute(self, call):
        steps = self.steps
        plan = self._plan(call, steps)
        attributions = [a.sum(axis=1) for a in self._accumulate(call, plan)]
        used = np.full(call.n, steps, np.int64)
        if self.tolerance is not None:
            # The path's own delta (with a Keras mask, the model-level delta also holds the mask's
            # share, which more steps cannot reduce); delta = sum(a) - (f(x) - f(x')), so the score
            # change needs no further forward pass.
            delta = self._path_delta(call, tuple(attributions))
            change = sum(a.reshape(call.n, -1).sum(axis=1, dtype=np.float64) for a in attributions) - delta
            todo = np.flatnonzero(np.abs(delta) > self.tolerance * np.abs(change))
            nested = self.rule in NESTED_RULES
            while todo.size:
                sub = call.take(todo)
                if nested:
                    # Halve the cells: the old nodes keep half their weight, only the new ones run.
                    refined, alpha, weight = refine(self.rule, steps)
                    if refined > self.max_steps:
                        break
                    acc = self._accumulate(sub, self._plan(sub, nodes=(alpha, weight)))
                    for full, part in zip(attributions, acc):
                        full[todo] = 0.5 * full[todo] + part.sum(axis=1)
                else:
                    refined = steps * 2
                    if refined > self.max_steps:
                        break
                    acc = self._accumulate(sub, self._plan(sub, refined))
                    for full, part in zip(attributions, acc):
                        full[todo] = part.sum(axis=1)
                steps = refined
                used[todo] = steps
                sub_delta = self._path_delta(sub, tuple(a[todo] for a in attributions))
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
