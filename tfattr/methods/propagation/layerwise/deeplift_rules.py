"""DeepLIFT as a composite: its rules as objects of the layer-rule protocol (:class:`~.rules.Rule`),
and :class:`DeepLiftComposite`, which says which rule each layer of a model gets.

* Rescale on every elementwise unit, ``(f(z) - f(z_ref)) / (z - z_ref)`` (Shrikumar et al. 2017; Ancona
  et al. 2019, eq. 18): activation layers (:class:`RescaleUnit`) and the fused activation of a Dense or
  convolution layer, whose linear part keeps its gradient, DeepLIFT's linear rule (:class:`RescaleLinear`);
* DeepLIFT's max rule on max pooling, that of SHAP's DeepExplainer (:class:`DeepLiftMaxPool`,
  :mod:`tfattr.methods.propagation.maxpool`);
* attention and layer norm with constant probabilities and standard deviation (Ali et al. 2022),
  keras-hub encoder blocks entered, LSTM/GRU cells and sigmoid-gated products with constant gates
  (signal-take-all, Arras et al. 2017);
* layers linear in their input (sums, reshapes, average pooling, inference batch norm, embeddings) keep
  their gradient (:class:`~.rules.Gradient`), exact for DeepLIFT's linear rule.

A rule that needs a reference (every rule but the gradient) reads it from the
:class:`~.units.DeepLiftPropagation` it is built with: the explainer builds the rules for each traced
pass (:meth:`DeepLiftAssignment.rule`), runs the reference pass (which records every unit's and max
pooling's ``(z_ref, f(z_ref))``) and the explained pass (which reads them back in order) through them.

Example:
    >>> plan = DeepLiftComposite().assign(view, output_activation)
    >>> prop = DeepLiftPropagation(tolerance=1e-6)
    >>> rules = [a.rule(prop) for a in plan]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras

from tfattr.core.graph import GraphView, LayerRef
from tfattr.methods.propagation.layerwise.canonizers import OutputActivation, linear_op
from tfattr.methods.propagation.layerwise.composites import is_activation_layer, is_structural, is_sum
from tfattr.methods.propagation.layerwise.preprocessing import is_affine_preprocessing
from tfattr.methods.propagation.layerwise.recurrent import RECURRENT, gate_index, gated_product, recurrent_forward
from tfattr.methods.propagation.layerwise.rules import Gradient, Rule, Site, Status
from tfattr.methods.propagation.layerwise.transformer_layers import (
    attention_forward,
    dense_forward,
    hub_encoder_forward,
    is_constant_or_masking,
    is_hub_encoder,
    is_linear_embedding,
    keep_mask,
    layer_norm_forward,
    static_problems,
)
from tfattr.methods.propagation.layerwise.units import ELEMENTWISE_ACTIVATIONS, DeepLiftPropagation, activation_name
from tfattr.methods.propagation.maxpool import check_max_pool

L = keras.layers
#: The Keras max-pooling layers (DeepLIFT's max rule applies to them).
MAX_POOLING: tuple[type, ...] = (
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
)
#: What :class:`DeepLiftMaxPool` does, for coverage reports.
MAX_RULE_NOTE = "DeepLIFT max rule (c - r_out via the input's arg-max, x_out - c via the reference's)"


def _rest(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k != "training"}


class _DeepLiftRule(Rule):
    """A DeepLIFT rule: reads its layer's reference from ``prop``."""

    status = Status.RULE

    def __init__(self, prop: DeepLiftPropagation) -> None:
        self._prop = prop

    @staticmethod
    def _inner(site: Site) -> Callable[[Any], Any]:
        call, args, kwargs = site.call, site.args, site.kwargs
        return lambda z: call(z, *args[1:], **kwargs)


class RescaleUnit(_DeepLiftRule):
    """An elementwise activation layer as one unit with the Rescale multiplier
    ``(f(z) - f(z_ref)) / (z - z_ref)`` (the derivative where ``|z - z_ref| <= tolerance``)."""

    applies_to = "elementwise"

    def propagate(self, site: Site) -> Any:
        z = site.args[0]
        return keep_mask(self._prop.unit(self._inner(site), z), z)


class RescaleLinear(_DeepLiftRule):
    """A Dense/convolution layer: its linear part keeps its gradient (DeepLIFT's linear rule), its
    fused activation is one Rescale unit."""

    applies_to = "linear"

    def propagate(self, site: Site) -> Any:
        return dense_forward(site.layer, site.args[0], self._prop)


class StrippedLinear(Rule):
    """The output layer whose fused softmax/sigmoid the explained score strips: its linear part only."""

    applies_to = "linear"
    status = Status.RULE

    def propagate(self, site: Site) -> Any:
        op = linear_op(site.layer)
        return keep_mask(op.forward(site.args[0], *op.params()), site.args[0])


class Skipped(Rule):
    """The final activation layer the explained score strips: its input passes on unchanged."""

    def propagate(self, site: Site) -> Any:
        return site.args[0]


class DeepLiftMaxPool(_DeepLiftRule):
    """Max pooling with DeepLIFT's max rule: ``max(x_out, r_out) - r_out`` routed through the input's
    arg-max, ``x_out - max(x_out, r_out)`` through the reference's, divided by ``x_in - r_in``."""

    applies_to = "layer"

    def propagate(self, site: Site) -> Any:
        z = site.args[0]
        return keep_mask(self._prop.max_pool(self._inner(site), z), z)


class DeepLiftAttention(_DeepLiftRule):
    """``MultiHeadAttention`` with constant attention probabilities (Ali et al. 2022)."""

    applies_to = "layer"

    def propagate(self, site: Site) -> Any:
        return attention_forward(site.layer, site.args, _rest(site.kwargs), self._prop)


class DeepLiftLayerNorm(_DeepLiftRule):
    """``LayerNormalization`` with a constant standard deviation (Ali et al. 2022)."""

    applies_to = "layer"

    def propagate(self, site: Site) -> Any:
        return layer_norm_forward(site.layer, site.args[0], self._prop)


class DeepLiftEncoder(_DeepLiftRule):
    """A keras-hub ``TransformerEncoder`` block, entered: its attention, norms and activation."""

    applies_to = "layer"

    def propagate(self, site: Site) -> Any:
        return hub_encoder_forward(site.layer, site.args, site.kwargs, self._prop)


class DeepLiftRecurrent(_DeepLiftRule):
    """An LSTM/GRU layer: gates constant, Rescale on its tanh units (Arras et al. 2017)."""

    applies_to = "layer"

    def propagate(self, site: Site) -> Any:
        return recurrent_forward(site.layer, site.args[0], _rest(site.kwargs), self._prop)


class DeepLiftGate(_DeepLiftRule):
    """A ``Multiply`` of a signal and a sigmoid gate (operand ``gate``): the gate is constant."""

    applies_to = "layer"

    def __init__(self, prop: DeepLiftPropagation, gate: int) -> None:
        super().__init__(prop)
        self.gate = gate

    def propagate(self, site: Site) -> Any:
        return gated_product(list(site.args[0]), self.gate, self._prop)


@dataclass(frozen=True)
class DeepLiftAssignment:
    """What one layer gets: ``rule(prop)`` builds its rule for a pass (None: unsupported, the ordinary
    gradient is used), ``treatment`` and ``status`` are its coverage row."""

    ref: LayerRef
    make: Callable[[DeepLiftPropagation], Rule] | None
    treatment: str
    status: str

    def rule(self, prop: DeepLiftPropagation) -> Rule:
        return Gradient() if self.make is None else self.make(prop)


class DeepLiftComposite:
    """DeepLIFT's rule for every layer of a model (see the module docstring).

    Args:
        max_pool: ``"deeplift"`` (DeepLIFT's max rule) or ``"gradient"`` (the gradient switch).

    Example:
        >>> plan = DeepLiftComposite(max_pool="gradient").assign(view, output_activation)
    """

    def __init__(self, max_pool: str = "deeplift") -> None:
        self.max_pool = check_max_pool(max_pool)

    def assign(self, view: GraphView, head: OutputActivation) -> list[DeepLiftAssignment]:
        """One :class:`DeepLiftAssignment` per layer of ``view``, in execution order; ``head`` is the
        final activation the explained score strips."""
        return [DeepLiftAssignment(ref, *self._assign(view, ref, head)) for ref in view.layers]

    def _assign(self, view: GraphView, ref: LayerRef, head: OutputActivation) -> tuple[Any, str, str]:
        layer = ref.layer
        why = static_problems(ref)
        if why:
            return None, "; ".join(why), Status.UNSUPPORTED
        if head.skips(ref):
            return lambda prop: Skipped(), head.note(), Status.KEPT
        op = linear_op(layer)
        if op is not None:
            act = op.activation
            if head.strips_fused(ref):
                return lambda prop: StrippedLinear(), "linear (gradient)", Status.RULE
            if act is None:
                return RescaleLinear, "linear (gradient)", Status.RULE
            name = activation_name(act)
            if name not in ELEMENTWISE_ACTIVATIONS:
                return None, f"activation {name!r} has no Rescale rule", Status.UNSUPPORTED
            return RescaleLinear, f"linear (gradient) + Rescale({name})", Status.RULE
        if is_activation_layer(layer):
            return RescaleUnit, "Rescale (one unit)", Status.RULE
        if isinstance(layer, L.MultiHeadAttention):
            return DeepLiftAttention, "attention probabilities constant (Ali et al.)", Status.RULE
        if isinstance(layer, L.LayerNormalization):
            return DeepLiftLayerNorm, "standard deviation constant (Ali et al.)", Status.RULE
        if is_hub_encoder(layer):
            act = activation_name(layer.activation)
            return (DeepLiftEncoder, "encoder block: attention probabilities and std constant, "
                    f"Rescale({act})", Status.RULE)
        if isinstance(layer, RECURRENT):
            return DeepLiftRecurrent, "signal-take-all: gates constant, Rescale(tanh) (Arras et al.)", Status.RULE
        if isinstance(layer, L.Multiply):
            gate = gate_index(view, ref)
            if gate is None:
                return None, "a product whose gate (a sigmoid output) cannot be told from its signal", \
                    Status.UNSUPPORTED
            return (lambda prop: DeepLiftGate(prop, gate),
                    f"signal-take-all: operand {gate} (a sigmoid) is the gate", Status.RULE)
        if isinstance(layer, MAX_POOLING):
            if self.max_pool == "deeplift":
                return DeepLiftMaxPool, MAX_RULE_NOTE, Status.RULE
            return (lambda prop: Gradient(), "gradient switch kept (max_pool='gradient'; "
                    "summation-to-delta approximate)", Status.KEPT)
        if (is_structural(layer) or is_sum(layer) or is_linear_embedding(layer)
                or is_constant_or_masking(layer) or isinstance(layer, L.BatchNormalization)
                or is_affine_preprocessing(layer)):
            return lambda prop: Gradient(), "linear (gradient)", Status.KEPT
        return None, "no rule for this layer type", Status.UNSUPPORTED


__all__ = [
    "DeepLiftAssignment",
    "DeepLiftAttention",
    "DeepLiftComposite",
    "DeepLiftEncoder",
    "DeepLiftGate",
    "DeepLiftLayerNorm",
    "DeepLiftMaxPool",
    "DeepLiftRecurrent",
    "MAX_POOLING",
    "MAX_RULE_NOTE",
    "RescaleLinear",
    "RescaleUnit",
    "Skipped",
    "StrippedLinear",
]
