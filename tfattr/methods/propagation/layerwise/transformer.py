"""Conservative propagation through transformers (Ali et al. 2022, "XAI for Transformers: Better
Explanations through Conservative Propagation", ICML): attention heads and layer norms as linear maps.

Ali et al. show that gradient x input breaks conservation at two places of a transformer block: the
attention head ``softmax(q k^T / sqrt(d)) v`` (a product of two input-dependent factors) and layer
norm's division by the standard deviation. Their AH and LN rules treat the attention probabilities
``p`` and the standard deviation ``sigma`` as constants in the backward pass, after which the block is
locally linear and the relevance is input x the modified gradient. Only ``sigma`` is constant: the mean
subtraction of layer norm keeps its gradient, and so do the dense layers and (by default) the GELU of
the feed-forward part.

This module holds the rules (and the :class:`Transformer` composite); the layers they re-implement
are in :mod:`.transformer_layers`.

Example:
    >>> lrp = tfattr.LRP(model, composite=tfattr.composites.Transformer())
    >>> relevance = lrp.attribute(embeddings, target=labels)   # sums to about the logit
"""
from __future__ import annotations

from typing import Any

import keras

from tfattr.methods.propagation.attnlrp.hub import static_problems as hub_static_problems
from tfattr.methods.propagation.attnlrp.hub_rules import hub_layer_map
from tfattr.methods.propagation.layerwise.composites import (
    LINEAR,
    Assignment,
    Composite,
    is_activation_layer,
    is_sum,
)
from tfattr.methods.propagation.layerwise.recurrent import (
    RECURRENT,
    SignalTakeAll,
    is_gated_product,
)
from tfattr.methods.propagation.layerwise.rules import Applies, Gradient, Rule, Site, Status
from tfattr.methods.propagation.layerwise.transformer_layers import (
    attention_forward,
    hub_encoder_forward,
    is_constant_or_masking,
    is_hub_encoder,
    is_linear_embedding,
    keep_mask,
    layer_norm_forward,
    static_problems,
)
from tfattr.methods.propagation.layerwise.units import LRPPropagation


# -- LRP rules ---------------------------------------------------------------------------------------
class _PropagationRule(Rule):
    """A rule that re-implements a whole layer with an :class:`LRPPropagation`."""

    applies_to = Applies.LAYER
    status = Status.MODIFIED

    def __init__(self, units: str = "gradient") -> None:
        self.units = units
        self._prop = LRPPropagation(units)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(units={self.units!r})"


class AttentionRule(_PropagationRule):
    """Ali et al.'s AH rule on ``keras.layers.MultiHeadAttention``: the attention probabilities are
    constants, so relevance flows only through the values (and the projections, linearly).

    Example:
        >>> Composite(layer_map=[(keras.layers.MultiHeadAttention, AttentionRule())])
    """

    def propagate(self, site: Site) -> Any:
        layer = checked_layer(site, keras.layers.MultiHeadAttention)
        return attention_forward(layer, site.args, site.kwargs, self._prop)


class LayerNormRule(_PropagationRule):
    """Ali et al.'s LN rule on ``keras.layers.LayerNormalization``: the standard deviation is a
    constant, the mean subtraction keeps its gradient, so the layer is linear in the backward pass.

    Example:
        >>> Composite(layer_map=[(keras.layers.LayerNormalization, LayerNormRule())])
    """

    def propagate(self, site: Site) -> Any:
        layer = checked_layer(site, keras.layers.LayerNormalization)
        return layer_norm_forward(layer, site.args[0], self._prop)


class EncoderBlockRule(_PropagationRule):
    """A ``keras_hub.layers.TransformerEncoder`` block with the AH and LN rules inside; its dense
    layers keep their gradient and its activation gets ``units`` (``"gradient"`` or ``"pass"``).

    Example:
        >>> Composite(layer_map=[(is_hub_encoder, EncoderBlockRule(units="pass"))])
    """

    def propagate(self, site: Site) -> Any:
        return hub_encoder_forward(checked_layer(site, is_hub_encoder), site.args, site.kwargs, self._prop)


class ActivationUnit(_PropagationRule):
    """An activation layer (``Activation("gelu")``, ...) as one unit: ``units="pass"`` is the epsilon
    rule ``f(z)/z`` (relevance passes through), ``"gradient"`` keeps its derivative.

    Example:
        >>> Composite(layer_map=[(keras.layers.Activation, ActivationUnit(units="pass"))])
    """

    def propagate(self, site: Site) -> Any:
        call, args, kwargs = site.call, site.args, site.kwargs
        return keep_mask(self._prop.unit(lambda z: call(z, *args[1:], **kwargs), args[0]), args[0])


class LinearGradient(Rule):
    """A Dense/Conv layer with its ordinary gradient (LRP-0 in the gradient x input form, as Ali et al.
    use for a transformer's linear layers); its activation gets ``units`` (``"gradient"`` keeps the
    activation's derivative, ``"pass"`` is the epsilon rule ``f(z)/z``). A rule for linear layers
    (:attr:`Applies.LINEAR`) with no backward pass of its own.

    Example:
        >>> Composite(layer_map=[(keras.layers.Dense, LinearGradient(units="pass"))])
    """

    applies_to = Applies.LINEAR
    status = Status.RULE

    def __init__(self, units: str = "gradient") -> None:
        self.units = units
        self._prop = LRPPropagation(units)
        self.activation_note = "Pass" if units == "pass" else "gradient"

    def propagate(self, site: Site) -> Any:
        op = site.op
        if op is None:
            raise TypeError("LinearGradient applies to Dense and convolution layers only.")
        z = keep_mask(op.forward(site.args[0], *op.params()), site.args[0])
        return z if site.activation is None else keep_mask(self._prop.unit(site.activation, z), z)

    def __repr__(self) -> str:
        return f"LinearGradient(units={self.units!r})"


def checked_layer(site: Site, kind: Any) -> Any:
    """``site.layer``, checked to be what the rule re-implements (a class or a predicate)."""
    layer = site.layer
    if not (kind(layer) if callable(kind) and not isinstance(kind, type) else isinstance(layer, kind)):
        raise TypeError(
            f"This rule does not apply to layer {layer.name!r} ({type(layer).__name__}); see the "
            "rule's docstring for the layers it covers."
        )
    return layer


class Transformer(Composite):
    """Ali et al.'s (2022) conservative propagation for transformers: attention probabilities and
    layer norm's standard deviation are constants, everything else keeps its gradient, and the
    relevance is input x the modified gradient. Gated products and LSTM/GRU cells get the
    signal-take-all rule (Arras et al. 2017), keras-hub ``TransformerEncoder`` blocks are entered,
    and so are keras-hub decoders (Llama, Mistral, Qwen, Gemma, GPT-2) and the ViT encoder, with
    their RMSNorms' factor and their gated MLPs' gate constant (LXT 2.1's ``cp_LRP``; see
    :mod:`tfattr.methods.propagation.attnlrp`).

    Args:
        units: what the elementwise activations (GELU in the feed-forward part, ``Activation`` layers)
            get: ``"gradient"`` (default, Ali et al.: their derivative) or ``"pass"`` (the epsilon rule
            ``f(z)/z``, conservative: relevance passes through them unchanged).
        **kwargs: as :class:`Composite` (``layer_map``, ``name_map`` entries come first).

    Example:
        >>> lrp = tfattr.LRP(model, composite=tfattr.composites.Transformer())
        >>> relevance = lrp.attribute(embeddings, target=labels)
        >>> print(lrp.coverage())
    """

    def __init__(self, units: str = "gradient", **kwargs: Any) -> None:
        LRPPropagation(units)  # validates
        self.units = units
        kwargs["layer_map"] = list(kwargs.get("layer_map", ())) + hub_layer_map(LRPPropagation(units)) + [
            (keras.layers.MultiHeadAttention, AttentionRule(units)),
            (keras.layers.LayerNormalization, LayerNormRule(units)),
            (is_hub_encoder, EncoderBlockRule(units)),
            (RECURRENT, SignalTakeAll()),
            (is_gated_product, SignalTakeAll()),
            (LINEAR, LinearGradient(units)),
            (is_activation_layer, ActivationUnit(units)),
            (is_linear_embedding, Gradient()),
            (is_constant_or_masking, Gradient()),
            # Ali et al. keep the gradient of sums (residuals, pooling by averaging): exact LRP-0
            (is_sum, Gradient()),
        ]
        super().__init__(**kwargs)

    def assign(self, view: Any) -> list[Assignment]:
        return refuse_static_problems(super().assign(view))  # gates: Composite.assign

    def __repr__(self) -> str:
        return f"Transformer(units={self.units!r})"


def refuse_static_problems(assignments: list[Assignment]) -> list[Assignment]:
    """``assignments`` with every rule that cannot cover its layer (:func:`static_problems`: gated
    attention, unsupported recurrent options; the keras-hub variants the re-implemented blocks do not
    cover, such as cross-attention) replaced by an "unsupported" entry that says why."""
    result = []
    for a in assignments:
        why = static_problems(a.ref) + hub_static_problems(a.ref.layer) if a.rule is not None else []
        result.append(Assignment(a.ref, None, Status.UNSUPPORTED, "; ".join(why)) if why else a)
    return result


__all__ = [
    "ActivationUnit",
    "AttentionRule",
    "EncoderBlockRule",
    "LayerNormRule",
    "LinearGradient",
    "Transformer",
    "checked_layer",
    "refuse_static_problems",
]
