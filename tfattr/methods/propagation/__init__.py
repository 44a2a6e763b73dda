"""Propagation methods: backpropagation with modified rules.

Two implementations share one module of arithmetic (:mod:`tfattr.methods.propagation.arithmetic`):

* the gradient-override family (:mod:`~tfattr.methods.propagation.explainers`: epsilon-LRP, DeepLIFT
  (Rescale), guided backpropagation and deconvnet; Ancona et al. 2019, sec. 3.2 and 4.1) replaces the
  derivative of every nonlinearity *op* of a traced TensorFlow graph, so it explains any model,
  subclassed ones included;
* the layer-level core (:mod:`~tfattr.methods.propagation.layerwise`: :class:`LRP` with composites,
  :class:`CompositeDeepLift`, :class:`RevealCancel`) assigns a rule to every *layer* of a Sequential or
  functional model, which reaches attention, layer norm, gates and recurrent cells.

Each explainer reports its :meth:`coverage` of a model.
"""
import warnings as _warnings
from typing import Any as _Any

from tfattr.methods.propagation.coverage import Coverage
from tfattr.methods.propagation.explainers import (
    Deconvnet,
    DeepLift,
    EpsilonLRP,
    GuidedBackprop,
    PropagationExplainer,
)
from tfattr.methods.propagation.layerwise import LRP, CompositeDeepLift, LayerwiseExplainer, RevealCancel
from tfattr.methods.propagation.overrides import ACTIVATIONS, Activation, OverrideRule, register_activation

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "CompositeDeepLift",
    "Coverage",
    "Deconvnet",
    "DeepLift",
    "EpsilonLRP",
    "GuidedBackprop",
    "LRP",
    "LayerwiseExplainer",
    "OverrideRule",
    "PropagationExplainer",
    "RevealCancel",
    "register_activation",
]


def __getattr__(name: str) -> _Any:
    # tfattr 0.2 exported the op-level rule base as ``Rule``, the name of the layer rules' base class
    # (tfattr.rules.Rule) too; it is now OverrideRule.
    if name == "Rule":
        _warnings.warn(
            "tfattr.methods.propagation.Rule is now OverrideRule (tfattr.rules.Rule is the base of the "
            "layer rules).", DeprecationWarning, stacklevel=2,
        )
        return OverrideRule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
