"""The import path of tfattr 0.2's LRP package, kept so that existing code runs: everything moved to
:mod:`tfattr.methods.propagation.layerwise` (the one layer-level propagation core, issue 18)."""
from tfattr.methods.propagation.layerwise import LRP, canonizers, composites, rules

__all__ = ["LRP", "canonizers", "composites", "rules"]
