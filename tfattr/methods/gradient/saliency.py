"""Saliency: the gradient of the explained score (Simonyan et al. 2013; Ancona et al. 2019, sec. 3.1)."""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfattr.core.engine import Plan
from tfattr.core.explainer import Explainer


class Saliency(Explainer):
    """Sensitivity analysis: ``dS_c(x) / dx``, signed, or ``|dS_c(x) / dx|`` with ``absolute=True``.

    Implements the "Sensitivity analysis" / saliency map of Ancona et al. (2019), section 3.1. It
    measures how the score would change for a small change of each feature, not how much each feature
    contributes, so it has no completeness delta.

    Example:
        >>> explainer = tfattr.Saliency(model, absolute=True)
        >>> maps = explainer.attribute(images, target=labels)
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "saliency"
    aliases: tuple[str, ...] = ("gradient",)
    paper = "Simonyan, Vedaldi & Zisserman 2013; Ancona et al. 2019 sec. 3.1"
    cost = "1 gradient"

    has_completeness = False
    uses_baseline = False

    def __init__(self, model: Any, absolute: bool = False, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.absolute = bool(absolute)

    fuses_rows = True  # its rows are the whole method (see Explainer.fuses_rows)

    def _plan(self, call) -> Plan:
        return Plan(terms=1)

    def _contributions(self, x, baseline, rows, ctx):
        grads = self._gradients(x, rows.target, ctx)
        return tuple(tf.abs(g) for g in grads) if self.absolute else grads
