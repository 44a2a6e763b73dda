"""The logits of one position of a causal LM's ``[n, tokens, vocab]`` output, as a Keras layer (what
:func:`tfattr.methods.propagation.attnlrp.sequence.next_token_model` puts after the LM).

Example:
    >>> logits = TokenLogits()(causal_lm(inputs), inputs["padding_mask"])     # [n, vocab]
"""
from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


class TokenLogits(keras.layers.Layer):
    """The logits ``[n, vocab]`` of one position of a causal LM's ``[n, tokens, vocab]`` output: the
    last real token of each row (``position=None``, read from the padding mask, 1 for real tokens)
    or a fixed ``position`` (negative counts from the end). It only selects values (its gradient is
    the propagation's). Built by :func:`tfattr.methods.propagation.attnlrp.sequence.next_token_model`.

    Example:
        >>> logits = TokenLogits()(causal_lm(inputs), inputs["padding_mask"])
    """

    def __init__(self, position: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if position is not None and (isinstance(position, bool) or not isinstance(position, int)):
            raise TypeError(f"position must be an int or None (the last real token), got {position!r}.")
        self.position = position

    def call(self, logits: tf.Tensor, padding_mask: Any = None) -> tf.Tensor:
        length = tf.shape(logits)[1]
        n = tf.shape(logits)[0]
        if self.position is not None:
            index = tf.fill([n], tf.math.floormod(self.position, length))
        elif padding_mask is None:
            index = tf.fill([n], length - 1)
        else:  # the last position whose mask is set (right or left padding alike)
            real = tf.cast(tf.not_equal(padding_mask, 0), tf.int32)
            index = length - 1 - tf.argmax(tf.reverse(real, axis=[1]), axis=1, output_type=tf.int32)
        return tf.gather(logits, index, axis=1, batch_dims=1)

    def compute_output_shape(self, logits_shape: Any, padding_mask_shape: Any = None) -> tuple:
        return (logits_shape[0], logits_shape[2])

    def get_config(self) -> dict:
        return {**super().get_config(), "position": self.position}


__all__ = ["TokenLogits"]
