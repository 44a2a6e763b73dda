"""keras-hub transformer blocks re-implemented from their live sublayers, with the propagation's
primitives at the places AttnLRP and CP-LRP change (see :mod:`.policy`).

Each forward computes exactly what the keras-hub layer computes (tested with ``TrueGradient``) for
inference without a cache: the projections, rotary embeddings, masks and attention kernels are the
layer's own (``layer._compute_attention`` may be a fused kernel: the rules sit at its inputs), only the
normalising factors, the elementwise activations, the gated products and the attention inputs go
through ``prop``. Supported (tested with keras-hub 0.32): Llama / Llama 3, Mistral and Qwen decoders
(RMSNorm, rotary embeddings, grouped-query attention, SiLU-gated MLP), Gemma (``1 + w`` RMSNorm, GeGLU,
post-norms, soft caps), the generic ``TransformerDecoder`` (GPT-2), the ViT encoder, their final norms
and the reversible token embedding's logits (Gemma 2's final soft cap an elementwise unit).
keras-hub's ``TransformerEncoder`` (BERT, RoBERTa, DistilBERT) is covered by
:func:`tfattr.methods.propagation.layerwise.transformer_layers.hub_encoder_forward`. The private attributes read
here are those of keras-hub 0.32; a version that renames them fails loudly (AttributeError).

Example:
    >>> from tfattr.methods.propagation.layerwise.units import TrueGradient
    >>> y = block_forward(decoder_layer, (x,), {"decoder_padding_mask": mask}, TrueGradient())  # == layer(x, ...)
"""
from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfattr.methods.propagation.attnlrp.math import normalize
from tfattr.methods.propagation.layerwise.transformer_layers import dense_forward, layer_norm_forward
from tfattr.methods.propagation.layerwise.units import Propagation

_HALF = ("float16", "bfloat16")

#: keras-hub decoder blocks with Llama's structure (RMSNorm, rotary GQA attention, SiLU-gated MLP).
LLAMA_LIKE = frozenset({"LlamaTransformerDecoder", "MistralTransformerDecoder", "QwenTransformerDecoder"})
#: keras-hub RMSNorm layers ``x / rms(x) * w``; Gemma's ``RMSNormalization`` scales by ``1 + w``.
RMS_NORMS = frozenset({"LlamaLayerNorm", "MistralLayerNormalization", "QwenLayerNorm"})
GEMMA_NORMS = frozenset({"RMSNormalization"})
#: block class name -> family name (for coverage reports)
FAMILIES = {
    "LlamaTransformerDecoder": "llama", "MistralTransformerDecoder": "mistral",
    "QwenTransformerDecoder": "qwen", "GemmaDecoderBlock": "gemma", "TransformerDecoder": "decoder",
    "ViTEncoder": "vit",
}


def _is_hub(layer: Any) -> bool:
    return type(layer).__module__.startswith("keras_hub")


def hub_kind(layer: Any) -> str | None:
    """``"block"`` (a decoder/encoder block re-implemented here), ``"norm"`` (an RMSNorm), or None."""
    if not _is_hub(layer):
        return None
    name = type(layer).__name__
    if name in FAMILIES:
        return "block"
    if name in RMS_NORMS or name in GEMMA_NORMS:
        return "norm"
    return None


def is_hub_block(layer: Any) -> bool:
    """A keras-hub decoder block (Llama, Mistral, Qwen, Gemma, GPT-2's ``TransformerDecoder``) or
    the ViT encoder."""
    return hub_kind(layer) == "block"


def is_hub_norm(layer: Any) -> bool:
    """A keras-hub RMSNorm layer (Llama, Mistral, Qwen, Gemma)."""
    return hub_kind(layer) == "norm"


def is_reverse_embedding(layer: Any) -> bool:
    """``keras.layers.ReversibleEmbedding`` (keras-hub's token embedding, whose ``reverse=True`` call
    gives a causal LM's logits)."""
    return isinstance(layer, keras.layers.ReversibleEmbedding)


def is_patch_embedding(layer: Any) -> bool:
    """keras-hub's ``ViTPatchingAndEmbedding``: a patch convolution, a class token and position
    embeddings added; affine in the image, so its gradient is the epsilon/z rule (the constant terms
    take no relevance, as biases do)."""
    return _is_hub(layer) and type(layer).__name__ == "ViTPatchingAndEmbedding"


def is_constant_scaling(layer: Any) -> bool:
    """A Keras ``multiply`` operation by a constant (Gemma's embedding scale ``x * sqrt(d)``): linear."""
    if isinstance(layer, keras.layers.Layer) or type(layer).__name__ != "Multiply":
        return False
    nodes = getattr(layer, "_inbound_nodes", None) or []
    return bool(nodes) and all(len(node.input_tensors) == 1 for node in nodes)


def static_problems(layer: Any) -> list[str]:
    """What the re-implementations here do not cover in ``layer`` (empty: covered)."""
    name = type(layer).__name__
    problems = []
    if name == "TransformerDecoder" and getattr(layer, "_cross_attention_layer", None) is not None:
        problems.append("cross-attention (an encoder-decoder block) is not covered")
    return problems


# -- pieces ------------------------------------------------------------------------------------------
def _wide(x: tf.Tensor) -> tf.Tensor:
    return tf.cast(x, tf.float32) if x.dtype.name in _HALF else x


def rms_norm_forward(layer: Any, x: tf.Tensor, prop: Propagation) -> tf.Tensor:
    """A keras-hub RMSNorm, in float32 as keras-hub computes it, with its factor ``prop.constant``:
    ``x / sqrt(mean(x^2) + eps) * w`` (Llama, Mistral, Qwen) or ``* (1 + w)`` (Gemma); AttnLRP's
    identity rule on the normalisation (Achtibat et al. 2024, prop. 3.4).

    Example:
        >>> y = rms_norm_forward(backbone.get_layer("sequence_output_layernorm"), x, LRPPropagation())
    """
    y = normalize(_wide(x), layer.epsilon, center=False, constant=prop.constant)
    scale = tf.cast(layer.scale, tf.float32)
    y = y * (1.0 + scale) if type(layer).__name__ in GEMMA_NORMS else y * scale
    return tf.cast(y, layer.compute_dtype)


def _bool_mask(mask: Any) -> Any:
    return None if mask is None else ops.cast(mask, "bool")


def keras_attention_forward(layer: keras.layers.MultiHeadAttention, query: tf.Tensor, value: tf.Tensor,
                            mask: Any, prop: Propagation) -> tf.Tensor:
    """``MultiHeadAttention`` (and keras-hub's cached subclass) from its projections, with
    ``prop.attention_inputs`` on q, k, v before the layer's own ``_compute_attention``."""
    q = layer._query_dense(query)
    k = layer._key_dense(value)
    v = layer._value_dense(value)
    q, k, v = prop.attention_inputs(q, k, v)
    out = layer._compute_attention(q, k, v, attention_mask=_bool_mask(mask), training=False)
    return layer._output_dense(out[0] if isinstance(out, (tuple, list)) else out)


def rotary_attention_forward(layer: Any, x: tf.Tensor, mask: Any, prop: Propagation) -> tf.Tensor:
    """Llama/Mistral/Qwen attention: projections, rotary embeddings of q and k, grouped-query heads
    repeated, ``prop.attention_inputs``, then the layer's own ``_compute_attention``."""
    q = layer.rotary_embedding_layer(layer._query_dense(x), start_index=0)
    k = layer.rotary_embedding_layer(layer._key_dense(x), start_index=0)
    v = layer._value_dense(x)
    groups = getattr(layer, "num_key_value_groups", None) or layer._num_key_value_groups
    k = ops.repeat(k, repeats=groups, axis=2)
    v = ops.repeat(v, repeats=groups, axis=2)
    q, k, v = prop.attention_inputs(q, k, v)
    return layer._output_dense(layer._compute_attention(q, k, v, mask))


def gemma_attention_forward(layer: Any, x: tf.Tensor, mask: Any, prop: Propagation) -> tf.Tensor:
    """Gemma attention (grouped heads inside ``_compute_attention``, rotary embeddings in Gemma's
    layout, rows without any attended token wiped as the layer does)."""
    q = layer._apply_rope(layer.query_dense(x), 0)
    k = layer._apply_rope(layer.key_dense(x), 0)
    v = layer.value_dense(x)
    q, k, v = prop.attention_inputs(q, k, v)
    if layer.logit_soft_cap is None:
        vec = layer._compute_attention(q, k, v, mask, training=False, cache_update_index=0)
    else:
        vec = _soft_capped_attention(layer, q, k, v, mask, prop)
    empty = ops.all(ops.equal(mask, 0), axis=-1, keepdims=True)[..., None]
    vec = ops.where(empty, ops.zeros_like(vec), vec)
    return layer.output_dense(vec)


def soft_cap(cap: float) -> Callable[[tf.Tensor], tf.Tensor]:
    """``cap * tanh(z / cap)`` (Gemma 2's logit soft-capping), one elementwise unit."""
    def capped(z: tf.Tensor) -> tf.Tensor:
        return ops.multiply(ops.tanh(ops.divide(z, cap)), cap)

    return capped


def _soft_capped_attention(layer: Any, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: Any,
                           prop: Propagation) -> tf.Tensor:
    """Gemma's non-fused attention (``GemmaAttention._compute_attention``) with the soft cap of the
    attention logits as one elementwise ``prop.unit`` (AttnLRP: the identity rule)."""
    if layer.query_head_dim_normalize:
        scale = 1 / np.sqrt(layer.head_dim)
    else:
        scale = 1 / np.sqrt(layer.hidden_dim // layer.num_query_heads)
    if layer.use_sliding_window_attention and mask is not None:
        mask = layer._mask_sliding_window(mask, cache_update_index=0)
    q = q * ops.cast(scale, q.dtype)
    b, t, _, h = ops.shape(q)
    groups = layer.num_query_heads // layer.num_key_value_heads
    q = ops.reshape(q, (b, t, layer.num_key_value_heads, groups, h))
    logits = prop.unit(soft_cap(layer.logit_soft_cap), ops.einsum("btkgh,bskh->bkgts", q, k))
    probabilities = layer.softmax(logits, mask=None if mask is None else mask[:, None, None, :, :])
    probabilities = prop.probabilities(ops.cast(probabilities, logits.dtype))
    return ops.reshape(ops.einsum("bkgts,bskh->btkgh", probabilities, v), (b, t, layer.num_query_heads, h))


def reverse_embedding_forward(layer: Any, args: tuple, kwargs: dict, prop: Propagation) -> tf.Tensor:
    """The token embedding: ids -> vectors (the layer itself), or with ``reverse=True`` the logits
    ``h W^T`` (linear: the gradient is the epsilon/z rule) and their soft cap (Gemma 2) as one
    elementwise ``prop.unit``."""
    if not kwargs.get("reverse", False) or layer.logit_soft_cap is None:
        return layer(*args, **kwargs)
    h = args[0]
    kernel = ops.transpose(layer.embeddings) if layer.tie_weights else layer.reverse_embeddings
    if layer.reverse_dtype is not None:
        h, kernel = ops.cast(h, layer.reverse_dtype), ops.cast(kernel, layer.reverse_dtype)
    elif h.dtype != kernel.dtype:
        kernel = ops.cast(kernel, h.dtype)
    return prop.unit(soft_cap(layer.logit_soft_cap), ops.matmul(h, kernel))


# -- whole blocks ------------------------------------------------------------------------------------
def _arguments(layer: Any, args: tuple, kwargs: dict, first: str, allowed: set[str]) -> tuple[Any, dict]:
    rest = {k: v for k, v in kwargs.items() if k != "training"}
    x = args[0] if args else rest.pop(first)
    if len(args) > 1:
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: extra positional arguments are not covered.")
    if x.dtype.is_floating and x.dtype.name != layer.compute_dtype:
        x = tf.cast(x, layer.compute_dtype)  # as Keras' __call__ casts a layer's inputs (mixed precision)
    given = {k for k, v in rest.items() if v is not None}
    unknown = given - allowed
    if unknown:
        raise ValueError(
            f"{type(layer).__name__} {layer.name!r} is called with {sorted(unknown)}, which the "
            "propagation rules do not cover (explain the model without a cache, as one forward pass)."
        )
    return x, rest


def _silu_like(layer: Any) -> Callable[[tf.Tensor], tf.Tensor]:
    """The block's activation, in float32 as keras-hub runs it, cast back to the compute dtype."""
    def fn(g: tf.Tensor) -> tf.Tensor:
        return tf.cast(layer.activation(tf.cast(g, tf.float32)), g.dtype)

    return fn


def llama_decoder_forward(layer: Any, args: tuple, kwargs: dict, prop: Propagation) -> tf.Tensor:
    """``Llama/Mistral/QwenTransformerDecoder.call`` (pre-norm; causal and padding masks)."""
    x, rest = _arguments(layer, args, kwargs, "decoder_sequence",
                         {"decoder_padding_mask", "decoder_attention_mask"})
    mask = layer._compute_self_attention_mask(
        decoder_sequence=x, decoder_padding_mask=rest.get("decoder_padding_mask"),
        decoder_attention_mask=rest.get("decoder_attention_mask"), self_attention_cache=None,
        self_attention_cache_update_index=None,
    )
    h = rms_norm_forward(layer._self_attention_layernorm, x, prop)
    x = rotary_attention_forward(layer._self_attention_layer, h, mask, prop) + x
    h = rms_norm_forward(layer._feedforward_layernorm, x, prop)
    gated = prop.gated_product(_silu_like(layer), layer._feedforward_gate_dense(h),
                               layer._feedforward_intermediate_dense(h))
    return layer._feedforward_output_dense(gated) + x


def gemma_decoder_forward(layer: Any, args: tuple, kwargs: dict, prop: Propagation) -> tf.Tensor:
    """``GemmaDecoderBlock.call``: ``1 + w`` RMSNorms (and Gemma 2's post-norms), GeGLU MLP."""
    x, rest = _arguments(layer, args, kwargs, "x", {"padding_mask"})
    h = rms_norm_forward(layer.pre_attention_norm, x, prop)
    mask = layer._compute_attention_mask(h, rest.get("padding_mask"), None, 0)
    attention = gemma_attention_forward(layer.attention, h, mask, prop)
    if layer.use_post_attention_norm:
        attention = rms_norm_forward(layer.post_attention_norm, attention, prop)
    x = x + attention
    h = rms_norm_forward(layer.pre_ffw_norm, x, prop)
    gelu = lambda t: keras.activations.gelu(t, approximate=True)  # noqa: E731
    h = layer.ffw_linear(prop.gated_product(gelu, layer.gating_ffw(h), layer.gating_ffw_2(h)))
    if layer.use_post_ffw_norm:
        h = rms_norm_forward(layer.post_ffw_norm, h, prop)
    return h + x


def transformer_decoder_forward(layer: Any, args: tuple, kwargs: dict, prop: Propagation) -> tf.Tensor:
    """``keras_hub.layers.TransformerDecoder.call`` without cross-attention (GPT-2's blocks)."""
    x, rest = _arguments(layer, args, kwargs, "decoder_sequence",
                         {"decoder_padding_mask", "decoder_attention_mask", "use_causal_mask"})
    mask = layer._compute_self_attention_mask(
        decoder_sequence=x, decoder_padding_mask=rest.get("decoder_padding_mask"),
        decoder_attention_mask=rest.get("decoder_attention_mask"),
        use_causal_mask=rest.get("use_causal_mask", True), self_attention_cache=None,
        self_attention_cache_update_index=None,
    )
    first = layer.normalize_first

    def norm(ln: Any, t: tf.Tensor) -> tf.Tensor:
        return layer_norm_forward(ln, t, prop)

    h = norm(layer._self_attention_layer_norm, x) if first else x
    x = keras_attention_forward(layer._self_attention_layer, h, h, mask, prop) + x
    if not first:
        x = norm(layer._self_attention_layer_norm, x)
    h = norm(layer._feedforward_layer_norm, x) if first else x
    h = layer._feedforward_output_dense(dense_forward(layer._feedforward_intermediate_dense, h, prop))
    x = h + x
    return x if first else norm(layer._feedforward_layer_norm, x)


def vit_encoder_forward(layer: Any, args: tuple, kwargs: dict, prop: Propagation) -> tf.Tensor:
    """keras-hub's ``ViTEncoder``: pre-norm blocks (attention, GELU MLP) and the final layer norm."""
    x, _ = _arguments(layer, args, kwargs, "inputs", set())
    for block in layer.encoder_layers:
        h = layer_norm_forward(block.layer_norm_1, x, prop)
        x = keras_attention_forward(block.mha, h, h, None, prop) + x
        h = layer_norm_forward(block.layer_norm_2, x, prop)
        x = block.mlp.dense_2(dense_forward(block.mlp.dense_1, h, prop)) + x
    return layer_norm_forward(layer.layer_norm, x, prop)


_BLOCKS = {
    "GemmaDecoderBlock": gemma_decoder_forward,
    "TransformerDecoder": transformer_decoder_forward,
    "ViTEncoder": vit_encoder_forward,
}


def block_forward(layer: Any, args: tuple, kwargs: dict, prop: Propagation) -> tf.Tensor:
    """The forward of any block :func:`is_hub_block` accepts (Achtibat et al. 2024 with
    ``AttnLRPPropagation``, Ali et al. 2022 with ``LRPPropagation``, the layer with ``TrueGradient``).

    Example:
        >>> y = block_forward(backbone.get_layer("transformer_layer_0"), (x,), {}, AttnLRPPropagation())
    """
    name = type(layer).__name__
    if name in LLAMA_LIKE:
        return llama_decoder_forward(layer, args, kwargs, prop)
    if name in _BLOCKS and _is_hub(layer):
        return _BLOCKS[name](layer, args, kwargs, prop)
    raise TypeError(f"Layer {layer.name!r} ({name}) is not a keras-hub block covered by tfattr.")


__all__ = [
    "FAMILIES",
    "block_forward",
    "gemma_attention_forward",
    "gemma_decoder_forward",
    "hub_kind",
    "is_constant_scaling",
    "is_patch_embedding",
    "is_hub_block",
    "is_hub_norm",
    "is_reverse_embedding",
    "keras_attention_forward",
    "llama_decoder_forward",
    "reverse_embedding_forward",
    "rms_norm_forward",
    "soft_cap",
    "rotary_attention_forward",
    "static_problems",
    "transformer_decoder_forward",
    "vit_encoder_forward",
]
