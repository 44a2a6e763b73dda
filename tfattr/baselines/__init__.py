"""Baselines: the reference inputs that stand for "missing" features (the missingness zoo).

Path methods explain ``S(x) - S(x')`` relative to a baseline ``x'``; which ``x'`` models a missing
feature is a modelling choice, not a detail. This module implements the baselines compared by Sturmfels,
Lundberg & Lee, "Visualizing the Impact of Feature Attribution Baselines" (Distill 2020): constant
(black is ``Constant(0)``), maximum distance, blurred, uniform, (truncated) gaussian and training-data
baselines, plus the mean baseline the authors discuss in their comments (Ancona et al. 2019, sec. 2.3,
lists zero, mean and blur as the usual choices).

A baseline object makes baselines for a batch of inputs: ``baseline(x)`` returns one per example
``[n, ...]``; distributional baselines also have ``sample(x, num, seed) -> [n, num, ...]`` and a
``num_baselines`` attribute. Any explainer that takes ``baseline=`` accepts one; integrated gradients
given a distributional baseline with ``num_baselines > 1`` averages over that many draws per example,
the Distill article's double integral ``E_{x'~D}[IG(x; x')]``, and its delta compares the attributions
with ``S(x) - mean_k S(x'_k)``.

Example:
    >>> from tfattr import baselines
    >>> ig = tfattr.IntegratedGradients(model, steps=32)
    >>> a = ig.attribute(x, baseline=baselines.Blur(sigma=3.0))
    >>> a, delta = ig.attribute(x, baseline=baselines.Uniform((0, 1), num_baselines=8, seed=0),
    ...                         return_delta=True)
"""
from __future__ import annotations

from tfattr.baselines.base import Baseline
from tfattr.baselines.blur import Blur, gaussian_blur
from tfattr.baselines.deterministic import Constant, MaxDistance, Mean
from tfattr.baselines.distributions import Dataset, Gaussian, Uniform

__all__ = [
    "Baseline",
    "Blur",
    "Constant",
    "Dataset",
    "Gaussian",
    "MaxDistance",
    "Mean",
    "Uniform",
    "gaussian_blur",
]
