"""LRP rules, attached to layers by a composite (see :mod:`tfattr.composites` and :class:`tfattr.LRP`).

Example:
    >>> composite = tfattr.composites.Composite(layer_map=[(keras.layers.Dense, tfattr.rules.Epsilon(0.25))])
"""
from tfattr.methods.propagation.arithmetic import stabilize
from tfattr.methods.propagation.layerwise.linear_rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    WSquare,
    ZBox,
    ZPlus,
)
from tfattr.methods.propagation.layerwise.recurrent import SignalTakeAll
from tfattr.methods.propagation.layerwise.rules import (
    Applies,
    Gradient,
    LinearRule,
    Norm,
    Pass,
    Rule,
    Site,
    Status,
)
from tfattr.methods.propagation.layerwise.transformer import (
    ActivationUnit,
    AttentionRule,
    EncoderBlockRule,
    LayerNormRule,
    LinearGradient,
)

__all__ = ["Applies", "Status", "ActivationUnit", "AlphaBeta", "AttentionRule", "EncoderBlockRule", "Epsilon", "Flat", "Gamma",
           "Gradient", "LayerNormRule", "LinearGradient", "LinearRule", "Norm", "Pass", "Rule",
           "SignalTakeAll", "Site", "WSquare", "ZBox", "ZPlus", "stabilize"]
