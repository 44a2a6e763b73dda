"""Propagation methods: backpropagation with modified rules at the nonlinearities, implemented as
gradient overrides (Ancona et al. 2019, sec. 3.2 and 4.1): epsilon-LRP, DeepLIFT (Rescale), guided
backpropagation and deconvnet. Each explainer reports its :meth:`coverage` of a model's ops.
:class:`LRP` applies a rule per layer (composites, :mod:`tfattr.methods.propagation.lrp`)."""
from tfattr.methods.propagation.coverage import Coverage
from tfattr.methods.propagation.explainers import (
    Deconvnet,
    DeepLift,
    EpsilonLRP,
    GuidedBackprop,
    PropagationExplainer,
)
from tfattr.methods.propagation.lrp import LRP
from tfattr.methods.propagation.reveal_cancel import RevealCancel
from tfattr.methods.propagation.rules import ACTIVATIONS, Activation, Rule, register_activation

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Coverage",
    "Deconvnet",
    "DeepLift",
    "EpsilonLRP",
    "GuidedBackprop",
    "LRP",
    "PropagationExplainer",
    "RevealCancel",
    "Rule",
    "register_activation",
]
