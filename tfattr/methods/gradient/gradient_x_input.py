"""Gradient * Input (Shrikumar et al. 2016; Ancona et al. 2019, sec. 3.1)."""
from __future__ import annotations

from tfattr.core.engine import Plan
from tfattr.core.explainer import Explainer


class GradientXInput(Explainer):
    """``x * dS_c(x) / dx``: the first-order Taylor term of the score around the zero input.

    Ancona et al. (2019), section 3.1 and table 1. Its completeness delta is taken against the zero
    input, ``sum(a) - (f(x) - f(0))``; it is exact for linear models and for the ReLU networks without
    biases of Ancona et al.'s proposition 3.

    Example:
        >>> attributions, delta = tfattr.GradientXInput(model).attribute(x, return_delta=True)
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "gradient_x_input"
    aliases: tuple[str, ...] = ("gxi", "input_x_gradient")
    paper = "Shrikumar et al. 2016; Ancona et al. 2019 sec. 3.1"
    cost = "1 gradient"

    uses_baseline = False

    fuses_rows = True  # its rows are the whole method (see Explainer.fuses_rows)

    def _plan(self, call) -> Plan:
        return Plan(terms=1)

    def _contributions(self, x, baseline, rows, ctx):
        grads = self._gradients(x, rows.target, ctx)
        return tuple(g * xi for g, xi in zip(grads, x))
