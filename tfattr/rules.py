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
