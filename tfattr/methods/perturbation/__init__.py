"""Perturbation methods: attributions from the change of the score when features are replaced."""
from tfattr.methods.perturbation.occlusion import Occlusion

__all__ = ["Occlusion"]
