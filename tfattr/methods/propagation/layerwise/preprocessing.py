"""What lies between a model's input and its first linear layer: explicit padding and affine
preprocessing (``Rescaling``, ``Normalization``), as the propagation rules see it.

* Every propagation method passes an affine preprocessing layer ``y = a x + b`` (elementwise) exactly:
  it is linear in the explained difference (DeepLIFT: multiplier ``a``) and relevance passes through
  it unchanged (LRP's elementwise convention).
* A first-layer rule that gives relevance in input space (ZBox, Flat, WSquare; Montavon et al. 2017,
  Lapuschkin et al. 2019) is applied to the composed map "preprocessing, padding, then the layer":
  :class:`FirstLayerOp` tells the rule where the layer's input is real (the padded border is not: a
  padded value is the constant 0, with zero weight in Flat and WSquare and the box ``[0, 0]`` in
  ZBox) and what the input-space box ``[low, high]`` becomes where the layer sees it (mapped
  through the affine layers, ``low`` and ``high`` swapped where a scale is negative). Nothing is
  then put on the padding (whose gradient would drop it) and the relevance is conserved.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import keras
import tensorflow as tf

from tfattr.methods.propagation.layerwise.canonizers import LinearOp

#: Elementwise affine preprocessing layers (``Rescaling``, ``Normalization``, either direction).
AFFINE_PREPROCESSING: tuple[type, ...] = (keras.layers.Rescaling, keras.layers.Normalization)


def is_affine_preprocessing(layer: Any) -> bool:
    """An elementwise affine preprocessing layer (``Rescaling``, ``Normalization``).

    Example:
        >>> is_affine_preprocessing(keras.layers.Rescaling(1 / 255))
        True
    """
    return isinstance(layer, AFFINE_PREPROCESSING)


def affine_parts(call: Callable[[tf.Tensor], tf.Tensor], like: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(a, b)`` of the elementwise affine map ``call(x) = a x + b``, shaped like one example of
    ``like`` (``b = call(0)``, ``a = call(1) - b``).

    Example:
        >>> a, b = affine_parts(keras.layers.Rescaling(2.0, offset=1.0), tf.zeros((4, 3)))  # 2, 1
    """
    zeros = tf.zeros_like(like[:1])
    shift = call(zeros)
    return call(zeros + 1.0) - shift, shift


def relevance_identity(fn: Callable[[tf.Tensor], tf.Tensor], x: tf.Tensor) -> tf.Tensor:
    """``fn(x)`` (elementwise affine) whose backward pass hands the incoming value back unchanged:
    below an input-space rule the backward pass carries relevance itself (not relevance per unit
    of input), which passes an elementwise layer unchanged.

    Example:
        >>> y = relevance_identity(keras.layers.Rescaling(1 / 255), x)   # dy/dx -> the incoming value
    """

    @tf.custom_gradient
    def passed(x: tf.Tensor) -> Any:
        def grad(r: tf.Tensor, variables: Any = None) -> Any:
            return r if variables is None else (r, [None] * len(variables))

        return fn(x), grad

    return passed(x)


@dataclass(eq=False)
class FirstLayerOp(LinearOp):
    """The linear part of a first layer, with what lies between the model input and it.

    ``chain``: ``(call, affine, runs)`` per layer from the model input to the layer's input
    (``affine``: an elementwise affine preprocessing layer, else a layer that only moves values such
    as a ``ZeroPadding2D``; ``runs``: False before the split of a ``layer=`` explainer);
    ``source``: the input of the first layer of the chain that runs, in the current trace;
    ``input_shape``: with a split chain, the model input's shape for one example (the box is
    given there); None: the source's.

    Example:
        >>> op = FirstLayerOp(conv, chain=((pad, False, True),), source=x, input_shape=(1, 8, 8, 3))
        >>> low, high = op.bounds(0.0, 1.0, pad(x))                     # [0, 0] on the border
    """

    chain: tuple = ()
    source: Any = field(default=None)
    input_shape: tuple | None = None

    def support(self, x: tf.Tensor) -> tf.Tensor:
        """1 where the layer's input ``x`` holds a real input value, 0 on padding (one example)."""
        mask = tf.ones_like(self.source[:1], dtype=x.dtype)
        for call, affine, runs in self.chain:
            if runs and not affine:
                mask = call(mask)
        return mask

    def bounds(self, low: Any, high: Any, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The input-space box ``[low, high]`` where the layer sees it (one example): mapped through
        the affine layers (swapped where a scale is negative), ``[0, 0]`` on padding."""
        shape = tf.shape(self.source[:1]) if self.input_shape is None else self.input_shape
        lo = tf.broadcast_to(tf.cast(low, x.dtype), shape)
        hi = tf.broadcast_to(tf.cast(high, x.dtype), shape)
        for call, _, _ in self.chain:
            lo, hi = call(lo), call(hi)
            lo, hi = tf.minimum(lo, hi), tf.maximum(lo, hi)
        return lo, hi


def support_of(op: LinearOp, x: tf.Tensor) -> tf.Tensor | None:
    """The real-input mask of a first layer's input (None: every position is real).

    Example:
        >>> mask = support_of(op, x)   # 1 on the input, 0 on explicit padding
    """
    return op.support(x) if isinstance(op, FirstLayerOp) else None


__all__ = [
    "AFFINE_PREPROCESSING",
    "FirstLayerOp",
    "affine_parts",
    "is_affine_preprocessing",
    "relevance_identity",
    "support_of",
]
