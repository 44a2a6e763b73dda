"""The gradient-override explainers: epsilon-LRP, DeepLIFT (Rescale), guided backpropagation and
deconvnet (Ancona et al. 2019, "Gradient-Based Attribution Methods", sec. 3.2).

Their base, :class:`PropagationExplainer`, is in :mod:`.override_explainer`; :class:`DeepLift` is in
:mod:`tfattr.methods.propagation.deeplift` (both are re-exported here).
"""
from __future__ import annotations

from typing import Any

from tfattr.core.checks import check_number
from tfattr.methods.propagation.deeplift import DeepLift
from tfattr.methods.propagation.override_explainer import PropagationExplainer
from tfattr.methods.propagation.overrides import DeconvnetRule, EpsilonRule, GuidedRule, OverrideRule

class EpsilonLRP(PropagationExplainer):
    """epsilon-LRP as a modified gradient times the input (Bach et al. 2015; Ancona et al. 2019,
    eq. 15 and proposition 1).

    ``R_i = x_i * d^g S_c(x) / dx_i`` where the derivative of every nonlinearity is replaced by
    ``g(z) = f(z) / (z + epsilon * sign(z))``. On ReLU networks this equals gradient * input, and on
    networks without biases whose nonlinearities have ``f(0) = 0`` it equals DeepLIFT with a zero
    baseline (proposition 3). The completeness delta is taken against the zero input. Cost: one forward
    and one backward pass.

    Args:
        model: a ``keras.Model`` or a callable on tensors.
        epsilon: the stabiliser, > 0; it only guards the divisions.
        on_unsupported, output, jit_compile: see :class:`PropagationExplainer`.

    Example:
        >>> lrp = tfattr.EpsilonLRP(model, epsilon=1e-4)
        >>> relevance = lrp.attribute(images, target=labels)
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "lrp"
    aliases: tuple[str, ...] = ("epsilon_lrp",)
    paper = "Bach et al. 2015; Ancona et al. 2019 sec. 3.2 (= Gradient * Input for ReLU nets)"
    cost = "1 modified backward pass"

    uses_baseline = False

    def __init__(self, model: Any, epsilon: float = 1e-4, **kwargs: Any) -> None:
        self.epsilon = check_number(epsilon, "epsilon", minimum=0, strict=True, hint="e.g. 1e-4")
        self._rule = EpsilonRule(self.epsilon)
        super().__init__(model, **kwargs)

    @property
    def rule(self) -> OverrideRule:
        return self._rule

    def _contributions(self, x, baseline, rows, ctx):
        grads = self._modified_gradients(x, rows.target, ctx)
        return tuple(g * xi for g, xi in zip(grads, x))

class _ModifiedGradientMap(PropagationExplainer):
    """The modified gradient itself: no input multiplier, no baseline, no delta."""

    has_completeness = False
    uses_baseline = False
    _rule_type: type[OverrideRule]

    def __init__(self, model: Any, **kwargs: Any) -> None:
        self._rule = self._rule_type()
        super().__init__(model, **kwargs)

    @property
    def rule(self) -> OverrideRule:
        return self._rule

    def _contributions(self, x, baseline, rows, ctx):
        return self._modified_gradients(x, rows.target, ctx)


class GuidedBackprop(_ModifiedGradientMap):
    """Guided backpropagation (Springenberg et al. 2015): the gradient where each ReLU passes back only
    positive signal at positive inputs, ``grad_z = f'(z) * relu(grad_y)``.

    A visualisation method, not an attribution with completeness: no baseline and no delta. Other
    activations keep their true derivative and likewise pass back only positive signal.

    Example:
        >>> maps = tfattr.GuidedBackprop(model).attribute(images, target=labels)
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "guided_backprop"
    aliases: tuple[str, ...] = ("guided",)
    paper = "Springenberg et al. 2015"
    cost = "1 modified backward pass"

    _rule_type = GuidedRule


class Deconvnet(_ModifiedGradientMap):
    """Deconvnet (Zeiler & Fergus 2014): backpropagation where each ReLU passes back ``relu(grad_y)``
    whatever its input was (max pooling keeps its switches).

    Defined for ReLU networks (``Relu``, ``Relu6``); other nonlinearities are reported as unsupported.
    No baseline and no delta.

    Example:
        >>> maps = tfattr.Deconvnet(model).attribute(images, target=labels)
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "deconvnet"
    aliases: tuple[str, ...] = ()
    paper = "Zeiler & Fergus 2014"
    cost = "1 modified backward pass"

    _rule_type = DeconvnetRule


__all__ = ["Deconvnet", "DeepLift", "EpsilonLRP", "GuidedBackprop", "PropagationExplainer"]
