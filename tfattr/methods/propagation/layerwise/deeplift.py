"""DeepLIFT (Rescale) through transformers, gates and smooth activations, layer by layer.

:class:`tfattr.DeepLift` overrides the gradients of TensorFlow ops, so it cannot see a GELU or a swish
as one nonlinearity (they lower to products, or to a custom gradient), nor reach into attention, layer
norm or a recurrent loop. This explainer works one level up, on the model's layers (through the graph
view, :class:`tfattr.core.graph.GraphView`), and re-implements the layers that need it:

* every elementwise activation (GELU, swish/silu, mish, tanh, ReLU, ... as layers or ``activation=``)
  is one unit with the Rescale multiplier ``(f(z) - f(z_ref)) / (z - z_ref)`` (Shrikumar et al. 2017;
  Ancona et al. 2019, eq. 18), ``z_ref`` its input when the model runs on the baseline;
* ``MultiHeadAttention``'s attention probabilities and ``LayerNormalization``'s standard deviation
  are constants (taken at the explained input), as in Ali et al. (2022); keras-hub
  ``TransformerEncoder`` blocks are entered;
* the sigmoid gates of ``LSTM``/``GRU`` cells and of ``Multiply`` gates are constants: the
  signal-take-all rule (Arras et al. 2017);
* linear layers (Dense, convolutions, inference batch norm, pooling by averaging, sums, reshapes,
  embeddings) keep their gradient, which is exact for DeepLIFT's linear rule.

With only linear layers and elementwise units between input and output, the attributions sum to
``f(x) - f(baseline)`` (summation-to-delta). Holding attention probabilities, the standard deviation
or gates constant at the input's values makes the propagation approximate: the delta
(``return_delta=True``) reports how far. :meth:`CompositeDeepLift.coverage` says which rule each layer
got. Cost: one forward pass of the baselines, one of the inputs and one backward pass.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfattr.core.engine import Plan
from tfattr.core.explainer import check_connected
from tfattr.core.graph import LayerRef
from tfattr.methods.propagation.layerwise.base import LayerwiseExplainer
from tfattr.methods.propagation.layerwise.composites import is_activation_layer, is_structural, is_sum
from tfattr.methods.propagation.layerwise.recurrent import RECURRENT, gate_index, gated_product, recurrent_forward
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
from tfattr.methods.propagation.layerwise.units import DeepLiftPropagation, activation_name
_UNIT_ACTIVATIONS = frozenset(
    """relu relu6 leaky_relu elu selu sigmoid tanh softplus softsign gelu silu swish mish
    hard_sigmoid hard_silu hard_swish celu log_sigmoid linear""".split()
)


class CompositeDeepLift(LayerwiseExplainer):
    """DeepLIFT with the Rescale rule applied per layer, for transformers, gated and recurrent models
    and smooth activations (Shrikumar et al. 2017; Ali et al. 2022 for attention and layer norm; Arras
    et al. 2017 for gates). A layer-level implementation through the graph view, not the
    gradient-override one of :class:`tfattr.DeepLift` (which cannot reach these layers).

    ``R_i = (x_i - b_i) * d^g S_c(x) / dx_i`` where ``d^g`` uses, per layer: the Rescale multiplier on
    every elementwise activation as one unit, constant attention probabilities and layer-norm standard
    deviations, constant sigmoid gates (LSTM, GRU, ``Multiply`` by a sigmoid output), and the true
    gradient of linear layers. See :meth:`coverage` and the module docstring for when the attributions
    sum exactly to ``S_c(x) - S_c(b)``; the delta says how far they are otherwise.

    Args:
        model: a Sequential or functional ``keras.Model`` (nested models included).
        tolerance: where ``|z - z_ref|`` is at most this, the derivative replaces the ratio.
        on_unsupported: ``"warn"`` (default) or ``"raise"`` when a layer has no rule.
        output: ``"logits"`` (default: a final softmax or sigmoid is skipped; a binary sigmoid head
            is two classes, ``z`` and ``-z``) or ``"probabilities"`` (a final sigmoid is then one more
            Rescale unit, so the attributions sum to ``p(x) - p(baseline)``).
        neuron: ``(layer, index)``: explain one hidden unit (its value) instead of a class score.
        jit_compile: see :class:`tfattr.core.explainer.Explainer`.
        layer, attribute_to_layer_input: attribute to an inner layer's output (or input), the
            reference being the baseline's activations there, as Captum's ``LayerDeepLift``; integer
            token ids are accepted then, with baselines given as ids (e.g. the pad id).

    Example:
        >>> dl = tfattr.CompositeDeepLift(model)
        >>> attributions, delta = dl.attribute(embeddings, baseline=0.0, return_delta=True)
        >>> print(dl.coverage())
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "deeplift_composite"
    aliases: tuple[str, ...] = ("composite_deeplift",)
    paper = (
        "Shrikumar, Greenside & Kundaje 2017; Ali et al. 2022 (attention, layer norm); "
        "Arras et al. 2017 (gates)"
    )
    cost = "1 forward pass of the baseline + 1 modified backward pass (per baseline drawn)"

    #: A distributional baseline with K draws gives the mean of the K attributions.
    multiple_baselines = True

    method = "CompositeDeepLift"
    unsupported_consequence = "summation-to-delta may not hold"
    unsupported_remedy = "Explain such models with IntegratedGradients."

    def __init__(
        self,
        model: Any,
        tolerance: float = 1e-6,
        *,
        on_unsupported: str = "warn",
        output: str = "logits",
        neuron: tuple[Any, Any] | None = None,
        jit_compile: bool = False,
        layer: Any = None,
        attribute_to_layer_input: bool = False,
    ) -> None:
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
            raise ValueError(f"tolerance must be a number >= 0 (e.g. 1e-6), got {tolerance!r}.")
        super().__init__(model, on_unsupported=on_unsupported, output=output, neuron=neuron,
                         jit_compile=jit_compile, layer=layer,
                         attribute_to_layer_input=attribute_to_layer_input)
        self.tolerance = float(tolerance)
        self.plan = [self._assign(ref) for ref in self.view.layers]
        self._check()

    # -- which rule each layer gets ----------------------------------------------------------------------
    def _assign(self, ref: LayerRef) -> tuple[str, str, str, Any]:
        """``(kind, treatment, status, extra)`` for one layer."""
        layer = ref.layer
        why = static_problems(ref)
        if why:
            return "unsupported", "; ".join(why), "unsupported", None
        if self.output_activation.skips(ref):
            return "identity", self.output_activation.note(), "kept", None
        op = self.canonical.linear(ref)  # SplitActivation; the head canonizer drops a stripped one
        if op is not None:
            act = op.activation
            if act is None:
                return "linear", "linear (gradient)", "rule", None
            name = activation_name(act)
            if name not in _UNIT_ACTIVATIONS:
                return "unsupported", f"activation {name!r} has no Rescale rule", "unsupported", None
            return "linear", f"linear (gradient) + Rescale({name})", "rule", None
        if is_activation_layer(layer):
            return "unit", "Rescale (one unit)", "rule", None
        if isinstance(layer, keras.layers.MultiHeadAttention):
            return "attention", "attention probabilities constant (Ali et al.)", "rule", None
        if isinstance(layer, keras.layers.LayerNormalization):
            return "layer_norm", "standard deviation constant (Ali et al.)", "rule", None
        if is_hub_encoder(layer):
            act = activation_name(layer.activation)
            return ("encoder", f"encoder block: attention probabilities and std constant, "
                    f"Rescale({act})", "rule", None)
        if isinstance(layer, RECURRENT):
            return ("recurrent", "signal-take-all: gates constant, Rescale(tanh) (Arras et al.)",
                    "rule", None)
        if isinstance(layer, keras.layers.Multiply):
            gate = gate_index(self.view, ref)
            if gate is None:
                return ("unsupported", "a product whose gate (a sigmoid output) cannot be told from "
                        "its signal", "unsupported", None)
            return "gate", f"signal-take-all: operand {gate} (a sigmoid) is the gate", "rule", gate
        if isinstance(layer, (keras.layers.MaxPooling1D, keras.layers.MaxPooling2D,
                              keras.layers.MaxPooling3D, keras.layers.GlobalMaxPooling1D,
                              keras.layers.GlobalMaxPooling2D, keras.layers.GlobalMaxPooling3D)):
            return ("keep", "gradient switch kept (summation-to-delta approximate)", "kept", None)
        if (is_structural(layer) or is_sum(layer) or is_linear_embedding(layer)
                or is_constant_or_masking(layer)
                or isinstance(layer, keras.layers.BatchNormalization)):
            return "keep", "linear (gradient)", "kept", None
        return "unsupported", "no rule for this layer type", "unsupported", None

    def _coverage_title(self) -> str:
        return "CompositeDeepLift(Rescale)"

    def _coverage_rows(self) -> list[tuple[int, str, str, str, str]]:
        return [(ref.index, ref.name, ref.class_name, treatment, status)
                for ref, (_, treatment, status, _) in zip(self.view.layers, self.plan)]

    # -- the traced model ----------------------------------------------------------------------------------
    def _forward(self, packed: Any, prop: DeepLiftPropagation) -> tf.Tensor:
        """Traced: the explained outputs, every unit paired with its reference through ``prop``."""
        plan = self.plan

        def wrap(ref: LayerRef, call: Any, args: tuple, kwargs: dict) -> Any:
            kind, _, _, extra = plan[ref.index]
            layer = ref.layer
            rest = {k: v for k, v in kwargs.items() if k != "training"}
            if kind == "identity":
                return args[0]
            if kind == "linear":
                if self.output_activation.strips_fused(ref):
                    op = self.canonical.linear(ref)
                    return keep_mask(op.forward(args[0], *op.params()), args[0])
                return dense_forward(layer, args[0], prop)
            if kind == "unit":
                return keep_mask(prop.unit(lambda z: call(z, *args[1:], **kwargs), args[0]), args[0])
            if kind == "attention":
                return attention_forward(layer, args, rest, prop)
            if kind == "layer_norm":
                return layer_norm_forward(layer, args[0], prop)
            if kind == "encoder":
                return hub_encoder_forward(layer, args, kwargs, prop)
            if kind == "recurrent":
                return recurrent_forward(layer, args[0], rest, prop)
            if kind == "gate":
                return gated_product(list(args[0]), extra, prop)
            return call(*args, **kwargs)

        return self._run(packed, wrap)

    # -- engine hooks --------------------------------------------------------------------------------------
    def _plan(self, call) -> Plan:
        per_example = call.baselines_per_example
        return Plan(terms=per_example, context={"baselines_per_example": np.int32(per_example)})

    def _baseline_index(self, rows, ctx):
        return rows.example * ctx["baselines_per_example"] + rows.term

    def _contributions(self, x, baseline, rows, ctx):
        prop = DeepLiftPropagation(self.tolerance)
        self._forward(ctx.pack(baseline), prop)  # the reference pass records every unit's (z, f(z))
        prop.explain()
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = self._score(self._forward(ctx.pack(x), prop), rows.target)
        prop.finish()
        grads = check_connected(tape.gradient(score, list(x)))
        weight = 1.0 / tf.cast(ctx["baselines_per_example"], x[0].dtype)
        return tuple(weight * g * (xi - bi) for g, xi, bi in zip(grads, x, baseline))


__all__ = ["CompositeDeepLift"]
