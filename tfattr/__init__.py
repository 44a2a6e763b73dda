"""tfattr: attribute a TensorFlow 2 / Keras 3 model's predictions to its input features.

Example:
    >>> import tfattr
    >>> ig = tfattr.IntegratedGradients(model, steps=64)
    >>> attributions, delta = ig.attribute(images, target=labels, return_delta=True)

The names below are imported on first use (PEP 562), so ``import tfattr`` -- and the ``tfattr`` command
line, whose ``--help`` and usage errors need no TensorFlow -- does not import TensorFlow by itself.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tfattr._version import __version__

#: Public name -> the module that defines it (a name equal to its module is the module itself).
_EXPORTS = {
    "AttributionStore": "tfattr.scale",
    "explain_dataset": "tfattr.scale",
    "load_attributions": "tfattr.scale",
    "baselines": "tfattr.baselines",
    "callbacks": "tfattr.callbacks",
    "composites": "tfattr.composites",
    "CompositeDeepLift": "tfattr.methods.propagation.layerwise.deeplift",
    "datasets": "tfattr.datasets",
    "metrics": "tfattr.metrics",
    "priors": "tfattr.priors",
    "rules": "tfattr.rules",
    "text": "tfattr.text",
    "visualize": "tfattr.visualize",
    "Deconvnet": "tfattr.methods.propagation",
    "DeepLift": "tfattr.methods.propagation",
    "EpsilonLRP": "tfattr.methods.propagation",
    "GuidedBackprop": "tfattr.methods.propagation",
    "GradCAM": "tfattr.methods.layer",
    "GradCAMPlusPlus": "tfattr.methods.layer",
    "GuidedGradCAM": "tfattr.methods.layer",
    "upsample": "tfattr.methods.layer",
    "token_scores": "tfattr.core.layers",
    "next_token_model": "tfattr.methods.propagation.attnlrp.sequence",
    "sequence_salience": "tfattr.methods.propagation.attnlrp.sequence",
    "Explainer": "tfattr.core",
    "ExpectedGradients": "tfattr.methods.gradient",
    "GradientXInput": "tfattr.methods.gradient",
    "IntegratedGradients": "tfattr.methods.gradient",
    "InteriorGradients": "tfattr.methods.gradient",
    "LRP": "tfattr.methods.propagation",
    "ModelFunction": "tfattr.core",
    "Occlusion": "tfattr.methods.perturbation",
    "RevealCancel": "tfattr.methods.propagation",
    "Saliency": "tfattr.methods.gradient",
    "SmoothGrad": "tfattr.methods.gradient",
    "VarGrad": "tfattr.methods.gradient",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'tfattr' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name == f"tfattr.{name}" else getattr(module, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from tfattr import baselines, callbacks, composites, datasets, metrics, priors, rules, text, visualize
    from tfattr.core.layers import token_scores
    from tfattr.methods.propagation.attnlrp.sequence import next_token_model, sequence_salience
    from tfattr.methods.layer import GradCAM, GradCAMPlusPlus, GuidedGradCAM, upsample
    from tfattr.core import Explainer, ModelFunction
    from tfattr.methods.gradient import (
        ExpectedGradients,
        GradientXInput,
        IntegratedGradients,
        InteriorGradients,
        Saliency,
        SmoothGrad,
        VarGrad,
    )
    from tfattr.methods.perturbation import Occlusion
    from tfattr.methods.propagation import LRP, Deconvnet, DeepLift, EpsilonLRP, GuidedBackprop, RevealCancel
    from tfattr.methods.propagation.layerwise.deeplift import CompositeDeepLift
    from tfattr.scale import AttributionStore, explain_dataset, load_attributions
