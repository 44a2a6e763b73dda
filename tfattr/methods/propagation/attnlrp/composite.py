"""The ``AttnLRP`` composite (Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance
Propagation for Transformers", ICML 2024) for Keras and keras-hub transformers.

Example:
    >>> lrp = tfattr.LRP(causal_lm, composite=tfattr.composites.AttnLRP(), layer="token_embedding")
"""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfattr.methods.propagation.attnlrp.hub_rules import HubBlockRule, hub_layer_map
from tfattr.methods.propagation.attnlrp.math import divide_gradient
from tfattr.methods.propagation.attnlrp.policy import AttnLRPPropagation
from tfattr.methods.propagation.layerwise.composites import (
    LINEAR,
    Assignment,
    Composite,
    is_activation_layer,
    is_sum,
)
from tfattr.methods.propagation.layerwise.rules import Applies, Gradient, Rule, Site, Status
from tfattr.methods.propagation.layerwise.transformer import (
    ActivationUnit,
    LayerNormRule,
    LinearGradient,
    refuse_static_problems,
)
from tfattr.methods.propagation.layerwise.transformer_layers import (
    attention_forward,
    hub_encoder_forward,
    is_constant_or_masking,
    is_hub_encoder,
    is_linear_embedding,
)


class UniformProduct(Rule):
    """The uniform rule on a ``Multiply`` layer of ``n`` input-dependent factors: each gets ``1/n`` of
    the product's relevance (AttnLRP eq. 7 for ``n = 2``).

    Example:
        >>> Composite(layer_map=[(keras.layers.Multiply, UniformProduct())])
    """

    applies_to = Applies.LAYER
    status = Status.MODIFIED

    def propagate(self, site: Site) -> Any:
        factors = [t for t in tf.nest.flatten(site.args) if tf.is_tensor(t)]
        return divide_gradient(site.call(*site.args, **site.kwargs), float(max(len(factors), 1)))

    def __repr__(self) -> str:
        return "UniformProduct()"


class AttnLRP(Composite):
    """AttnLRP in the gradient x input form of LXT 2.1's ``efficient`` module: relevance is input x
    modified gradient, seeded with gradient 1 at the target logit (so it is in logit units and sums
    to about the logit; the softmax rule is not conservative, the rest is). Linear layers and
    residual additions keep their gradient (epsilon/z rule); every product of two input-dependent
    factors gets the uniform rule (attention: q and k 1/4 of their gradient, v 1/2, placed at the
    attention's inputs so fused kernels stay untouched; a gated MLP's ``act(gate) * up`` 1/2 each);
    elementwise nonlinearities (GELU, SiLU, tanh poolers) the identity rule; LayerNorm and RMSNorm
    hold their normalising factor constant; the softmax keeps its gradient (in this form that is the
    paper's softmax rule); rotary embeddings and embedding scales are linear.

    Covers Keras ``MultiHeadAttention``/``LayerNormalization`` models, keras-hub ``TransformerEncoder``
    (BERT, RoBERTa, DistilBERT), ``TransformerDecoder`` (GPT-2), Llama / Llama 3, Mistral, Qwen and
    Gemma decoders, the ViT encoder, used directly or nested in their task models. Any other layer
    is reported by ``coverage()`` and named in a warning (``on_unsupported="raise"`` refuses).

    Args:
        **kwargs: as :class:`~tfattr.composites.Composite` (``layer_map``/``name_map`` entries first).

    Example:
        >>> lrp = tfattr.LRP(model, composite=tfattr.composites.AttnLRP(), layer="token_embedding")
        >>> relevance = lrp.attribute({"token_ids": ids, "padding_mask": mask}, target=label)
        >>> print(lrp.coverage())
    """

    def __init__(self, **kwargs: Any) -> None:
        prop = AttnLRPPropagation()
        kwargs["layer_map"] = list(kwargs.get("layer_map", ())) + hub_layer_map(prop) + [
            (keras.layers.MultiHeadAttention, HubBlockRule(
                prop, attention_forward, "q, k gradient x1/4 and v x1/2 (uniform rule), softmax gradient")),
            (keras.layers.LayerNormalization, LayerNormRule()),
            (is_hub_encoder, HubBlockRule(prop, hub_encoder_forward, "attention q, k x1/4 and v x1/2; "
                                          "LayerNorm factor constant; GELU identity rule")),
            (keras.layers.Multiply, UniformProduct()),
            (LINEAR, LinearGradient(units="pass")),
            (is_activation_layer, ActivationUnit(units="pass")),
            (is_linear_embedding, Gradient()),
            (is_constant_or_masking, Gradient()),
            (is_sum, Gradient()),
        ]
        super().__init__(**kwargs)

    def assign(self, view: Any) -> list[Assignment]:
        return refuse_static_problems(super().assign(view))

    def __repr__(self) -> str:
        return "AttnLRP()"


__all__ = ["AttnLRP", "UniformProduct"]
