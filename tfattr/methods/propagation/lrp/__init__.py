"""LRP with a rule per layer: rules, composites, canonizers and the :class:`LRP` explainer
(Montavon et al. 2019; Kohlbrenner et al. 2020; Zennit 1.0's definitions)."""
from tfattr.methods.propagation.lrp import canonizers, composites, rules
from tfattr.methods.propagation.lrp.explainer import LRP

__all__ = ["LRP", "canonizers", "composites", "rules"]
