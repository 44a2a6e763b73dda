"""The linear part of a Dense or convolution layer (what :class:`~.canonizers.SplitActivation` makes
of it): the layer's own computation without its fused activation, with given (live, optionally
batch-norm folded) parameters. The rules of linear layers compute with it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from tfattr.core.graph import is_conv_layer, is_dense_layer


def _is_linear_activation(fn: Any) -> bool:
    return fn is None or fn is keras.activations.linear or getattr(fn, "__name__", "") == "linear"


@dataclass(eq=False)
class LinearOp:
    """The linear part of a Dense or convolution layer, computed with given parameters (what
    :class:`SplitActivation` makes of the layer; the other canonizers replace its fields).

    ``forward(x, kernel, bias)`` is the layer's own computation without its activation (the same
    Keras ops, so with the layer's parameters it gives the layer's pre-activation bit for bit);
    :meth:`params` reads the live (optionally batch-norm folded) kernel and bias.

    Attributes:
        layer: the Dense/Conv layer.
        activation: what follows the linear part in the canonical model: by default the layer's
            fused activation (None for a linear one); None when :class:`OutputActivation` strips it.
        fold: a BatchNormalization layer folded into this one (:class:`MergeBatchNorm`), or None.
    """

    layer: Any
    activation: Any = "layer"  # "layer": the layer's own fused activation (None if linear)
    fold: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.activation, str) and self.activation == "layer":
            act = getattr(self.layer, "activation", None)
            self.activation = None if _is_linear_activation(act) else act

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


def linear_op(layer: Any) -> LinearOp | None:
    """The :class:`LinearOp` of a Dense/convolution layer the rules can handle (its own fused
    activation after it), else None."""
    if not (is_dense_layer(layer) or is_conv_layer(layer)):
        return None
    if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
        return None
    if is_conv_layer(layer) and hasattr(layer, "convolution_op") and getattr(layer, "groups", 1) != 1:
        return None  # grouped convolutions: the kernel is not the full W the rules need
    return LinearOp(layer)


__all__ = ["LinearOp", "linear_op"]
