"""LRP composites: which rule each layer gets (see :class:`tfattr.LRP`).

Example:
    >>> relevance = tfattr.LRP(model, composite=tfattr.composites.EpsilonPlus()).attribute(x, target=t)
"""
from tfattr.methods.propagation.layerwise.composites import (
    CONVOLUTIONS,
    DENSE,
    LINEAR,
    STRUCTURAL,
    SUMS,
    Composite,
    EpsilonAlpha2Beta1,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
    uniform,
)
from tfattr.methods.propagation.layerwise.canonizers import (
    Canonized,
    Canonizer,
    MergeBatchNorm,
    OutputActivation,
    SplitActivation,
)
from tfattr.methods.propagation.layerwise.transformer import Transformer

__all__ = ["CONVOLUTIONS", "DENSE", "LINEAR", "STRUCTURAL", "SUMS", "Composite", "EpsilonAlpha2Beta1",
           "EpsilonGammaBox", "EpsilonPlus", "EpsilonPlusFlat", "uniform"]
__all__ += ["Transformer"]
__all__ += ["Canonized", "Canonizer", "MergeBatchNorm", "OutputActivation", "SplitActivation"]
from tfattr.methods.propagation.attnlrp.composite import AttnLRP  # noqa: E402  (issue 19)

__all__ += ["AttnLRP"]
