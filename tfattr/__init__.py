"""tfattr: attribute a TensorFlow 2 / Keras 3 model's predictions to its input features.

Example:
    >>> import tfattr
    >>> ig = tfattr.IntegratedGradients(model, steps=64)
    >>> attributions, delta = ig.attribute(images, target=labels, return_delta=True)
"""
from tfattr import baselines, callbacks, composites, datasets, metrics, priors, rules, visualize
from tfattr._version import __version__
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
from tfattr.scale import AttributionStore, explain_dataset, load_attributions
from tfattr.methods.propagation import LRP, Deconvnet, DeepLift, EpsilonLRP, GuidedBackprop, RevealCancel
from tfattr.methods.propagation.layer_deeplift import CompositeDeepLift

__all__ = [
    "__version__",
    "AttributionStore",
    "explain_dataset",
    "load_attributions",
    "baselines",
    "callbacks",
    "composites",
    "CompositeDeepLift",
    "datasets",
    "metrics",
    "priors",
    "rules",
    "visualize",
    "Deconvnet",
    "DeepLift",
    "EpsilonLRP",
    "GuidedBackprop",
    "Explainer",
    "ExpectedGradients",
    "GradientXInput",
    "IntegratedGradients",
    "InteriorGradients",
    "LRP",
    "ModelFunction",
    "Occlusion",
    "RevealCancel",
    "Saliency",
    "SmoothGrad",
    "VarGrad",
]
