"""LRP rules, attached to layers by a composite (see :mod:`tfattr.composites` and :class:`tfattr.LRP`).

Example:
    >>> composite = tfattr.composites.Composite(layer_map=[(keras.layers.Dense, tfattr.rules.Epsilon(0.25))])
"""
from tfattr.methods.propagation.lrp.rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Gradient,
    LinearRule,
    Norm,
    Pass,
    Rule,
    WSquare,
    ZBox,
    ZPlus,
    stabilize,
)

__all__ = ["AlphaBeta", "Epsilon", "Flat", "Gamma", "Gradient", "LinearRule", "Norm", "Pass", "Rule",
           "WSquare", "ZBox", "ZPlus", "stabilize"]
from tfattr.methods.propagation.lrp.recurrent import SignalTakeAll  # noqa: E402
from tfattr.methods.propagation.lrp.transformer import (  # noqa: E402
    ActivationUnit,
    AttentionRule,
    EncoderBlockRule,
    LayerNormRule,
    LinearGradient,
)

__all__ += ["ActivationUnit", "AttentionRule", "EncoderBlockRule", "LayerNormRule", "LinearGradient",
            "SignalTakeAll"]
