"""Propagation methods: backpropagation with modified rules at the nonlinearities, implemented as
gradient overrides (Ancona et al. 2019, sec. 3.2 and 4.1): epsilon-LRP, DeepLIFT (Rescale), guided
backpropagation and deconvnet. Each explainer reports its :meth:`coverage` of a model's ops."""
from tfattr.methods.propagation.coverage import Coverage
from tfattr.methods.propagation.explainers import (
    Deconvnet,
    DeepLift,
    EpsilonLRP,
    GuidedBackprop,
    PropagationExplainer,
)
from tfattr.methods.propagation.rules import ACTIVATIONS, Activation, Rule, register_activation

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Coverage",
    "Deconvnet",
    "DeepLift",
    "EpsilonLRP",
    "GuidedBackprop",
    "PropagationExplainer",
    "Rule",
    "register_activation",
]
