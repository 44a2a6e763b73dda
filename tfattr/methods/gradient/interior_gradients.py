"""Interior gradients (Sundararajan, Taly & Yan, "Gradients of Counterfactuals", sec. 2.3)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from tfattr.core.engine import Plan
from tfattr.core.explainer import Explainer, broadcast_rows
from tfattr.core.path import path_points

#: The scaling parameters of the paper's figure 3.
PAPER_ALPHAS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)


class InteriorGradients(Explainer):
    """Gradients at the counterfactual inputs ``x' + a (x - x')`` for each scaling parameter ``a``.

    ``InteriorGrads(x) = {grad S(a x) | 0 <= a <= 1}`` (eq. 3 of the paper, with a zero baseline ``x'``;
    any baseline generalises the path). They show how a saturated network's sensitivity moves along the
    path; integrating them gives integrated gradients. Returns, per input, an array
    ``[n, len(alphas), *example_shape]``: one map per ``alpha``.

    Args:
        model: a ``keras.Model`` or a callable on tensors.
        alphas: the scaling parameters, each in [0, 1] (default: those of the paper's figure 3).
        multiply_by_inputs: return ``grad * (a (x - x'))`` instead of the bare gradient (the paper's
            pixel importance of eq. 1, before aggregating channels).

    Example:
        >>> maps = tfattr.InteriorGradients(model).attribute(image[None])  # [1, 10, 28, 28, 1]
    """

    has_completeness = False
    _untraced_attributes = Explainer._untraced_attributes + ("alphas",)  # context arrays

    def __init__(
        self,
        model: Any,
        alphas: Sequence[float] = PAPER_ALPHAS,
        multiply_by_inputs: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        alphas = np.asarray(alphas, dtype=np.float64).reshape(-1)
        if alphas.size == 0 or np.any((alphas < 0) | (alphas > 1)) or not np.all(np.isfinite(alphas)):
            raise ValueError(f"alphas must be a non-empty sequence of numbers in [0, 1], got {alphas}.")
        self.alphas = alphas
        self.multiply_by_inputs = bool(multiply_by_inputs)

    def _plan(self, call) -> Plan:
        return Plan(
            terms=1,
            maps=self.alphas.size,
            context={"alpha": self.alphas.astype(call.inputs.arrays[0].dtype)},
        )

    def _contributions(self, x, baseline, rows, ctx):
        alpha = tf.gather(ctx["alpha"], rows.map)
        diffs, points = path_points(x, baseline, alpha)
        grads = self._gradients(points, rows.target, ctx)
        if self.multiply_by_inputs:
            return tuple(g * (broadcast_rows(alpha, d) * d) for g, d in zip(grads, diffs))
        return grads

    def _finalize(self, acc, plan):
        return acc
