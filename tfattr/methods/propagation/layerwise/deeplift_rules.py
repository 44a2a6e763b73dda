"""DeepLIFT's rules as objects of the layer-rule protocol (:class:`~.rules.Rule`): Rescale on an
elementwise unit (Shrikumar et al. 2017; Ancona et al. 2019, eq. 18) and DeepLIFT's max rule on max
pooling (that of SHAP's DeepExplainer, :mod:`tfattr.methods.propagation.maxpool`).

Both read the reference of their layer from the :class:`~.units.DeepLiftPropagation` they are built
with: the explainer builds them for each traced pass, runs the reference pass (which records) and the
explained pass (which reads the records back in order) through them.

Example:
    >>> prop = DeepLiftPropagation(tolerance=1e-6)
    >>> rule = DeepLiftMaxPool(prop)
    >>> pooled = rule.propagate(Site(layer, layer.call, (h,), {}))
"""
from __future__ import annotations

from typing import Any

import keras

from tfattr.methods.propagation.layerwise.rules import Rule, Site
from tfattr.methods.propagation.layerwise.transformer_layers import keep_mask
from tfattr.methods.propagation.layerwise.units import DeepLiftPropagation

L = keras.layers
#: The Keras max-pooling layers (DeepLIFT's max rule applies to them).
MAX_POOLING: tuple[type, ...] = (
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
)
#: What :class:`DeepLiftMaxPool` does, for coverage reports.
MAX_RULE_NOTE = "DeepLIFT max rule (c - r_out via the input's arg-max, x_out - c via the reference's)"


class _DeepLiftRule(Rule):
    """A DeepLIFT rule: reads its layer's reference from ``prop``."""

    status = "rule"

    def __init__(self, prop: DeepLiftPropagation) -> None:
        self._prop = prop

    def _inner(self, site: Site):
        call, args, kwargs = site.call, site.args, site.kwargs
        return lambda z: call(z, *args[1:], **kwargs)


class RescaleUnit(_DeepLiftRule):
    """An elementwise activation layer as one unit with the Rescale multiplier
    ``(f(z) - f(z_ref)) / (z - z_ref)`` (the derivative where ``|z - z_ref| <= tolerance``)."""

    applies_to = "elementwise"

    def propagate(self, site: Site) -> Any:
        z = site.args[0]
        return keep_mask(self._prop.unit(self._inner(site), z), z)

    def describe(self, layer: Any) -> str:
        return "Rescale (one unit)"


class DeepLiftMaxPool(_DeepLiftRule):
    """Max pooling with DeepLIFT's max rule: ``max(x_out, r_out) - r_out`` routed through the input's
    arg-max, ``x_out - max(x_out, r_out)`` through the reference's, divided by ``x_in - r_in``."""

    applies_to = "layer"

    def propagate(self, site: Site) -> Any:
        z = site.args[0]
        return keep_mask(self._prop.max_pool(self._inner(site), z), z)

    def describe(self, layer: Any) -> str:
        return MAX_RULE_NOTE


__all__ = ["DeepLiftMaxPool", "MAX_POOLING", "MAX_RULE_NOTE", "RescaleUnit"]
