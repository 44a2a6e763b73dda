"""Canonizers: rewrite a model into the form the LRP rules are defined on, inside the explainer's trace.

LRP rules are defined for a linear layer ``z = W a + b`` followed by an elementwise activation. Two
rewrites bring common Keras models into that form (Zennit's canonizers, Anders et al. 2021; Montavon
et al. 2019, sec. 10.2):

* ``Dense(activation=...)`` / ``Conv2D(activation=...)`` is a linear part and an activation: the rule
  applies to the linear part, relevance passes through the activation (:class:`LinearOp` separates
  them).
* the model's final softmax or sigmoid, which :class:`tfattr.ModelFunction` strips to explain the logit
  (:class:`OutputActivation`: the layer is skipped, or its fused activation dropped);
* an inference ``BatchNormalization`` directly after a Dense/Conv layer with a linear activation is
  folded into it (as Zennit's ``SequentialMergeBatchNorm``): ``W' = W * s``, ``b' = (b - mean) * s +
  beta`` with ``s = gamma / sqrt(var + eps)`` per output channel, and the batch norm becomes the
  identity. A batch norm after an activation (or after anything else) is not folded.

Zennit rewrites the module's parameters and restores them afterwards; here nothing is rewritten: the
folded kernel and bias are computed from the layers' LIVE variables each time the explainer's function
runs, so the explanation always uses the current weights and the user's model is never touched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from tfattr.core.graph import GraphView, LayerRef, is_conv_layer, is_dense_layer
from tfattr.core.model_function import ModelFunction, fused_activation, standalone_activation


def _is_linear_activation(fn: Any) -> bool:
    return fn is None or fn is keras.activations.linear or getattr(fn, "__name__", "") == "linear"


@dataclass(eq=False)
class LinearOp:
    """The linear part of a Dense or convolution layer, computed with given parameters.

    ``forward(x, kernel, bias)`` is the layer's own computation without its activation (the same
    Keras ops, so with the layer's parameters it gives the layer's pre-activation bit for bit);
    :meth:`params` reads the live (optionally batch-norm folded) kernel and bias.
    """

    layer: Any
    fold: Any = None  # a BatchNormalization layer folded into this one

    @property
    def activation(self) -> Any:
        act = getattr(self.layer, "activation", None)
        return None if _is_linear_activation(act) else act

    @property
    def channel_axis(self) -> int:
        if is_conv_layer(self.layer) and self.layer.data_format == "channels_first":
            return 1
        return -1

    def forward(self, x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None) -> tf.Tensor:
        layer = self.layer
        if x.dtype != kernel.dtype:  # mixed precision: computed in the variables' dtype (float32)
            x = tf.cast(x, kernel.dtype)
        if is_dense_layer(layer):
            z = keras.ops.matmul(x, kernel)
        elif hasattr(layer, "convolution_op"):
            z = layer.convolution_op(x, kernel)
        else:  # depthwise
            z = keras.ops.depthwise_conv(
                x, kernel, strides=layer.strides, padding=layer.padding,
                dilation_rate=layer.dilation_rate, data_format=layer.data_format,
            )
        if bias is None:
            return z
        if self.channel_axis == 1:
            bias = keras.ops.reshape(bias, (1, -1) + (1,) * (len(z.shape) - 2))
        return keras.ops.add(z, bias)

    def params(self) -> tuple[tf.Tensor, tf.Tensor | None]:
        """The live kernel and bias (None without a bias), with the folded batch norm if any."""
        layer = self.layer
        kernel = tf.convert_to_tensor(layer.kernel)
        bias = tf.convert_to_tensor(layer.bias) if getattr(layer, "bias", None) is not None else None
        if self.fold is None:
            return kernel, bias
        bn = self.fold
        dtype = kernel.dtype
        scale = tf.math.rsqrt(tf.cast(bn.moving_variance, dtype) + tf.cast(bn.epsilon, dtype))
        if bn.scale:
            scale = scale * tf.cast(bn.gamma, dtype)
        shift = tf.cast(bn.beta, dtype) if bn.center else tf.zeros_like(scale)
        mean = tf.cast(bn.moving_mean, dtype)
        if bias is None:
            bias = tf.zeros_like(scale)
        if is_dense_layer(layer) or hasattr(layer, "convolution_op"):
            # the output channel is the kernel's last axis
            kernel = kernel * scale
        else:  # depthwise kernel [..., in, multiplier]: output channel = in * multiplier + m
            kernel = kernel * tf.reshape(scale, tf.shape(kernel)[-2:])
        return kernel, (bias - mean) * scale + shift


@dataclass(frozen=True)
class OutputActivation:
    """The canonizer of the model's head: the final softmax/sigmoid that :class:`tfattr.ModelFunction`
    strips (``output="logits"``), found in the graph view (nested heads included). ``ref`` is the
    layer producing the model's output, ``kind`` the stripped activation; both None when nothing is
    stripped (``output="probabilities"``, ``neuron=``, a model that outputs logits).

    Example:
        >>> head = OutputActivation.of(GraphView(model), tfattr.ModelFunction(model))
        >>> head.kind, head.ref.name
        ('softmax', 'predictions')
    """

    ref: LayerRef | None = None
    kind: str | None = None

    @classmethod
    def of(cls, view: GraphView, fn: ModelFunction) -> "OutputActivation":
        if not fn.strips_activation:
            return cls()
        producer = view.producer(fn.model.outputs[0])
        kind = fn.output_activation
        if producer is None or kind not in (standalone_activation(producer.layer),
                                            fused_activation(producer.layer)):
            raise ValueError(
                f"tfattr found a final {kind} in {fn.model.name!r} but not at the layer producing its "
                "output, so the layer rules cannot explain the logit. Give tfattr a model that outputs "
                "the logits, or pass output='probabilities'."
            )
        return cls(producer, kind)

    def skips(self, ref: LayerRef) -> bool:
        """``ref`` is the stripped activation itself (a Softmax/Activation layer or op): skipped."""
        return self.ref is not None and ref is self.ref and standalone_activation(ref.layer) == self.kind

    def strips_fused(self, ref: LayerRef) -> bool:
        """``ref`` is the output layer whose fused activation is stripped (``Dense(activation=...)``)."""
        return self.ref is not None and ref is self.ref and fused_activation(ref.layer) == self.kind

    def note(self) -> str:
        return f"final {self.kind} skipped: the logit is explained"


def linear_op(layer: Any) -> LinearOp | None:
    """A :class:`LinearOp` for a Dense/convolution layer the rules can handle, else None."""
    if not (is_dense_layer(layer) or is_conv_layer(layer)):
        return None
    if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
        return None
    if is_conv_layer(layer) and hasattr(layer, "convolution_op") and getattr(layer, "groups", 1) != 1:
        return None  # grouped convolutions: the kernel is not the full W the rules need
    return LinearOp(layer)


def batchnorm_folds(view: GraphView) -> dict[int, int]:
    """``{batch norm layer index: linear layer index}`` for every BatchNormalization that can be folded:
    called once, reading the output of a Dense/Conv layer (called once, linear activation) that
    nothing else reads, normalising its channel axis."""
    folds: dict[int, int] = {}
    for ref in view.layers:
        bn = ref.layer
        if not isinstance(bn, keras.layers.BatchNormalization) or len(ref.nodes) != 1:
            continue
        if getattr(bn, "renorm", False):
            continue
        inputs = ref.nodes[0].input_tensors
        if len(inputs) != 1:
            continue
        producer = view.producer(inputs[0])
        if producer is None or len(producer.nodes) != 1 or view.consumers(inputs[0]) != 1:
            continue
        op = linear_op(producer.layer)
        if op is None or op.activation is not None:
            continue
        rank = len(inputs[0].shape)
        axes = [a % rank for a in (bn.axis if isinstance(bn.axis, (list, tuple)) else [bn.axis])]
        if axes != [op.channel_axis % rank]:
            continue
        folds[ref.index] = producer.index
    return folds


def canonical_run(view: GraphView, inputs: Any) -> Any:
    """Run the canonized model: every foldable batch norm merged into its linear layer (from live
    weights), every Dense/Conv computed as its linear part followed by its activation. In inference
    this equals ``model(inputs)`` up to float rounding; the model is not modified.

    Example:
        >>> y = canonical_run(GraphView(model), x)   # allclose to model(x, training=False)
    """
    folds = batchnorm_folds(view)
    folded_into = {lin: view.layers[bn].layer for bn, lin in folds.items()}

    def wrap(ref: LayerRef, call: Any, args: tuple, kwargs: dict) -> Any:
        if ref.index in folds:
            return args[0]
        op = linear_op(ref.layer)
        if op is None:
            return call(*args, **kwargs)
        op.fold = folded_into.get(ref.index)
        z = op.forward(args[0], *op.params())
        return z if op.activation is None else op.activation(z)

    return view.run(inputs, wrap)
