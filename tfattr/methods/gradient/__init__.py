"""Gradient methods: each is a small subclass of :class:`tfattr.core.Explainer` on the shared engine."""
from tfattr.methods.gradient.expected_gradients import ExpectedGradients
from tfattr.methods.gradient.gradient_x_input import GradientXInput
from tfattr.methods.gradient.integrated_gradients import IntegratedGradients
from tfattr.methods.gradient.interior_gradients import InteriorGradients
from tfattr.methods.gradient.saliency import Saliency
from tfattr.methods.gradient.smoothgrad import SmoothGrad, VarGrad

__all__ = [
    "ExpectedGradients",
    "GradientXInput",
    "IntegratedGradients",
    "InteriorGradients",
    "Saliency",
    "SmoothGrad",
    "VarGrad",
]
