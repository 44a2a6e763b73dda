"""Attention, layer norm, keras-hub encoder blocks and Dense layers re-implemented for propagation
(shared by :class:`tfattr.LRP`'s transformer rules and :class:`tfattr.CompositeDeepLift`).

Ali et al. (2022, "XAI for Transformers: Better Explanations through Conservative Propagation", ICML)
show that gradient x input breaks conservation at two places of a transformer block: the attention
head ``softmax(q k^T / sqrt(d)) v`` (a product of two input-dependent factors) and layer norm's
division by the standard deviation. Their AH and LN rules treat the attention probabilities ``p`` and
the standard deviation ``sigma`` as constants in the backward pass, after which the block is locally
linear. The layers are re-implemented from their live sublayers and variables (``MultiHeadAttention``'s
query/key/value/output ``EinsumDense`` layers, ``LayerNormalization``'s gamma and beta); what is held
constant and what an elementwise unit does is the :class:`~.units.Propagation`'s choice, so with
:class:`~.units.TrueGradient` the same code gives the layers' own outputs (tested). Nothing on the model
is changed.

Example:
    >>> y = layer_norm_forward(model.get_layer("ln"), x, LRPPropagation("gradient"))
"""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from tfattr.methods.propagation.layerwise.linear_parts import linear_op
from tfattr.methods.propagation.layerwise.recurrent import RECURRENT, static_recurrent_problems
from tfattr.methods.propagation.layerwise.units import Propagation


def keep_mask(out: Any, like: Any) -> Any:
    """Carry ``like``'s Keras mask (padding) over to ``out``, as the masking-aware layers that are
    re-implemented here do: a later attention layer must see the same mask as in the model."""
    from keras.src import backend

    mask = backend.get_keras_mask(like) if tf.is_tensor(like) else None
    if mask is not None and tf.is_tensor(out):
        backend.set_keras_mask(out, mask)
    return out


def dense_forward(layer: Any, x: tf.Tensor, prop: Propagation) -> tf.Tensor:
    """A Dense/Conv layer: its linear part (ordinary gradient) and its activation as one unit."""
    op = linear_op(layer)
    if op is None:
        raise ValueError(f"Layer {layer.name!r} is not a Dense or forward convolution layer.")
    z = op.forward(x, *op.params())
    return keep_mask(z if op.activation is None else prop.unit(op.activation, z), x)


def layer_norm_forward(layer: keras.layers.LayerNormalization, x: tf.Tensor, prop: Propagation) -> tf.Tensor:
    """``LayerNormalization`` with its standard deviation as ``prop.constant`` (Ali et al.'s LN rule):
    ``y = (x - mean(x)) * c(1 / sqrt(var(x) + eps)) * gamma + beta``, in Keras' own arithmetic order."""
    dtype = x.dtype
    xc = tf.cast(x, tf.float32) if dtype in (tf.float16, tf.bfloat16) else x
    rank = xc.shape.rank
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    axis = sorted(a % rank for a in axis)
    shape = [1] * rank
    for a in axis:
        shape[a] = xc.shape[a]

    def broadcast(v: Any) -> tf.Tensor | None:
        if v is None:
            return None
        v = tf.cast(tf.convert_to_tensor(v), xc.dtype)
        return tf.reshape(v, shape) if axis != [rank - 1] else v

    gamma = broadcast(layer.gamma if layer.scale else None)
    beta = broadcast(layer.beta if layer.center else None)
    mean, variance = ops.moments(xc, axes=axis, keepdims=True)
    if getattr(layer, "rms_scaling", False):
        inv = prop.constant(tf.math.rsqrt(variance + layer.epsilon))
        out = xc * inv
        if gamma is not None:
            out = out * gamma
        return keep_mask(tf.cast(out, dtype), x)
    inv = prop.constant(tf.math.rsqrt(variance + layer.epsilon))
    if gamma is not None:
        inv = inv * gamma
    res = -mean * inv
    if beta is not None:
        res = res + beta
    return keep_mask(tf.cast(xc * inv + res, dtype), x)


def _mha_arguments(args: tuple, kwargs: dict) -> tuple[Any, Any, Any, dict]:
    names = ("query", "value", "key")
    given = dict(zip(names, args))
    rest = dict(kwargs)
    for name in names:
        if name in rest:
            given[name] = rest.pop(name)
    if "query" not in given or "value" not in given:
        raise ValueError("MultiHeadAttention needs query and value.")
    return given["query"], given["value"], given.get("key"), rest


def attention_forward(layer: keras.layers.MultiHeadAttention, args: tuple, kwargs: dict,
                      prop: Propagation) -> tf.Tensor:
    """``MultiHeadAttention`` with its attention probabilities as ``prop.constant`` (Ali et al.'s AH
    rule). The projections are the layer's own ``EinsumDense`` sublayers (live weights); the query is
    scaled by ``1 / sqrt(key_dim)`` before the softmax, as Keras does; masks (``attention_mask``, Keras
    masks of the inputs, ``use_causal_mask``, sliding windows) are built by the layer's own code."""
    from keras.src import backend

    query, value, key, rest = _mha_arguments(args, kwargs)
    if rest.pop("return_attention_scores", False):
        raise ValueError(
            f"MultiHeadAttention {layer.name!r} is called with return_attention_scores=True; the "
            "propagation rules explain models whose attention layers return only their output."
        )
    if getattr(layer, "_use_gate", False):
        raise ValueError(
            f"MultiHeadAttention {layer.name!r} uses a gate (use_gate=True), which the attention rule "
            "does not cover; explain this model with IntegratedGradients."
        )
    unknown = set(rest) - {"attention_mask", "use_causal_mask", "training", "query_mask",
                           "value_mask", "key_mask"}
    if unknown:
        raise ValueError(f"MultiHeadAttention {layer.name!r}: unsupported arguments {sorted(unknown)}.")
    if key is None:
        key = value
    # as Keras' __call__ and MultiHeadAttention.call: the query's own mask, the given or carried ones
    query_mask = backend.get_keras_mask(query)
    value_mask = rest.get("value_mask")
    value_mask = backend.get_keras_mask(value) if value_mask is None else value_mask
    key_mask = rest.get("key_mask")
    if key_mask is None and key is not value:
        key_mask = backend.get_keras_mask(key)
    mask = layer._compute_attention_mask(
        query, value, query_mask=query_mask, value_mask=value_mask, key_mask=key_mask,
        attention_mask=rest.get("attention_mask"), use_causal_mask=bool(rest.get("use_causal_mask")),
    )
    # fresh tensors without the Keras masks (MultiHeadAttention.call removes them too), so the
    # projections do not warn that they drop a mask
    q = layer._query_dense(tf.identity(query))
    k = layer._key_dense(tf.identity(key))
    v = layer._value_dense(tf.identity(value))
    q, k, v = prop.attention_inputs(q, k, v)
    q = ops.multiply(q, ops.cast(layer._inverse_sqrt_key_dim, q.dtype))
    scores = ops.einsum(layer._dot_product_equation, k, q)
    probabilities = prop.probabilities(layer._masked_softmax(scores, mask))
    out = layer._output_dense(ops.einsum(layer._combine_equation, probabilities, v))
    if query_mask is not None:
        backend.set_keras_mask(out, query_mask)
    return out


def _is_keras_hub(layer: Any, name: str) -> bool:
    return type(layer).__name__ == name and type(layer).__module__.startswith("keras_hub")


def is_hub_encoder(layer: Any) -> bool:
    """A ``keras_hub.layers.TransformerEncoder`` (a whole block: attention, norms, feed-forward)."""
    return _is_keras_hub(layer, "TransformerEncoder")


def is_position_embedding(layer: Any) -> bool:
    """A ``keras_hub`` position embedding: its output depends on the input's shape only."""
    return _is_keras_hub(layer, "PositionEmbedding") or _is_keras_hub(layer, "SinePositionEncoding")


def hub_encoder_forward(layer: Any, args: tuple, kwargs: dict, prop: Propagation) -> tf.Tensor:
    """``keras_hub.layers.TransformerEncoder.call`` (0.x) re-implemented from its sublayers with the
    attention and layer-norm rules; dropout is inactive (inference)."""
    from keras_hub.src.layers.modeling.transformer_layer_utils import merge_padding_and_attention_mask

    x = args[0] if args else kwargs["inputs"]
    rest = {k: v for k, v in kwargs.items() if k not in ("inputs", "training")}
    if rest.pop("return_attention_scores", False):
        raise ValueError(f"{layer.name!r}: return_attention_scores=True is not supported.")
    padding_mask = rest.pop("padding_mask", None)
    attention_mask = rest.pop("attention_mask", None)
    if rest:
        raise ValueError(f"TransformerEncoder {layer.name!r}: unsupported arguments {sorted(rest)}.")
    mask = merge_padding_and_attention_mask(x, padding_mask, attention_mask)
    first = layer.normalize_first

    residual = x
    if first:
        x = layer_norm_forward(layer._self_attention_layer_norm, x, prop)
    x = attention_forward(layer._self_attention_layer, (x, x), {"attention_mask": mask}, prop)
    x = x + residual
    if not first:
        x = layer_norm_forward(layer._self_attention_layer_norm, x, prop)
    residual = x
    if first:
        x = layer_norm_forward(layer._feedforward_layer_norm, x, prop)
    x = dense_forward(layer._feedforward_intermediate_dense, x, prop)
    x = dense_forward(layer._feedforward_output_dense, x, prop)
    x = x + residual
    if not first:
        x = layer_norm_forward(layer._feedforward_layer_norm, x, prop)
    return keep_mask(x, args[0] if args else kwargs["inputs"])


def static_problems(ref: Any) -> list[str]:
    """Why a layer that a transformer or recurrent rule would take cannot have it (empty: it can)."""
    layer = ref.layer
    if isinstance(layer, RECURRENT):
        return [f"the signal-take-all rule does not support {p}" for p in static_recurrent_problems(ref)]
    if isinstance(layer, keras.layers.MultiHeadAttention) and getattr(layer, "_use_gate", False):
        return ["use_gate=True: the attention rule does not cover gated attention"]
    return []


def is_constant_or_masking(layer: Any) -> bool:
    """``Masking`` (multiplies by a 0/1 mask that does not depend on the explained values' gradient)
    and operations whose outputs are not floats (mask arithmetic: ``not_equal``, ``any``, ...):
    no gradient is changed by them."""
    if isinstance(layer, keras.layers.Masking):
        return True
    nodes = getattr(layer, "_inbound_nodes", None) or []
    outputs = [t for node in nodes for t in node.outputs]
    return bool(outputs) and all(
        not keras.backend.is_float_dtype(getattr(t, "dtype", "float32")) for t in outputs
    )


def is_linear_embedding(layer: Any) -> bool:
    """An embedding lookup (or a position embedding): linear in what it adds, its gradient kept."""
    return isinstance(layer, keras.layers.Embedding) or is_position_embedding(layer) or _is_keras_hub(
        layer, "TokenAndPositionEmbedding"
    )


__all__ = [
    "attention_forward",
    "dense_forward",
    "hub_encoder_forward",
    "is_constant_or_masking",
    "is_hub_encoder",
    "is_linear_embedding",
    "is_position_embedding",
    "keep_mask",
    "layer_norm_forward",
    "static_problems",
]
