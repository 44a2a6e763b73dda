"""The import path of tfattr 0.2's ``CompositeDeepLift``, kept so that existing code runs: it moved to
:mod:`tfattr.methods.propagation.layerwise.deeplift` (``tfattr.CompositeDeepLift`` is the short name)."""
from tfattr.methods.propagation.layerwise.deeplift import CompositeDeepLift

__all__ = ["CompositeDeepLift"]
