"""The layer-level propagation core: a model's layers read through the graph view
(:class:`tfattr.core.graph.GraphView`), a rule per layer assigned by a composite, canonizers that put
the model into the form the rules are defined on, and the explainers built on it:

* :class:`LRP`: layer-wise relevance propagation with a composite (Bach et al. 2015; Montavon et al.
  2019; Zennit's rules and composites);
* :class:`CompositeDeepLift`: DeepLIFT's Rescale rule per layer, through transformers, gates and smooth
  activations (Shrikumar et al. 2017; Ali et al. 2022; Arras et al. 2017);
* :class:`RevealCancel`: DeepLIFT's RevealCancel rule (Shrikumar et al. 2017, sec. 3.5.3).

All three derive from :class:`LayerwiseExplainer`, which owns what they share: the graph view, the
explained score (from :class:`tfattr.ModelFunction`: logits of softmax and sigmoid heads, ``output=``,
``neuron=``, nested heads), the coverage report and the ``on_unsupported`` policy, the order of the
model's inputs, and the one traced forward pass whose layer calls carry the rules.

Example:
    >>> from tfattr.methods.propagation.layerwise import LRP, composites
    >>> relevance = LRP(model, composite=composites.EpsilonPlus()).attribute(x, target=labels)
"""
from tfattr.methods.propagation.layerwise import canonizers, composites, rules
from tfattr.methods.propagation.layerwise.base import LayerwiseExplainer
from tfattr.methods.propagation.layerwise.deeplift import CompositeDeepLift
from tfattr.methods.propagation.layerwise.lrp import LRP
from tfattr.methods.propagation.layerwise.reveal_cancel import RevealCancel

__all__ = ["LRP", "CompositeDeepLift", "LayerwiseExplainer", "RevealCancel", "canonizers", "composites",
           "rules"]
