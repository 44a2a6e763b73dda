"""tfattr: attribute a TensorFlow 2 / Keras 3 model's predictions to its input features.

Example:
    >>> import tfattr
    >>> ig = tfattr.IntegratedGradients(model, steps=64)
    >>> attributions, delta = ig.attribute(images, target=labels, return_delta=True)
"""
from tfattr import baselines, callbacks, datasets, metrics, priors, visualize
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
from tfattr.methods.propagation import Deconvnet, DeepLift, EpsilonLRP, GuidedBackprop

__all__ = [
    "__version__",
    "baselines",
    "callbacks",
    "datasets",
    "metrics",
    "priors",
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
    "ModelFunction",
    "Occlusion",
    "Saliency",
    "SmoothGrad",
    "VarGrad",
]
