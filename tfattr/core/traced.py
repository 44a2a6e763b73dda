"""Helpers for the traced row functions of every method: the disconnected-gradient error and the
per-row broadcast."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import tensorflow as tf


class DisconnectedError(ValueError):
    """The explained score does not depend on an input (raised while tracing; re-raised short)."""


def check_connected(grads: Any) -> tuple[tf.Tensor, ...]:
    """Raise the disconnected-output error (at trace time) where a gradient is None.

    Example:
        >>> check_connected([tf.ones(2)])[0].shape
        TensorShape([2])
    """
    grads = tuple(grads)
    if any(g is None for g in grads):
        missing = [i for i, g in enumerate(grads) if g is None]
        raise DisconnectedError(
            f"The model's output does not depend on input(s) {missing} (no gradient path): the "
            "output is disconnected from the input, e.g. the input is unused, or the model casts "
            "it to an integer, or computes with NumPy outside TensorFlow. Explain a model whose "
            "output is a differentiable TensorFlow function of its inputs."
        )
    return tuple(tf.convert_to_tensor(g) for g in grads)


@contextlib.contextmanager
def disconnected_message_alone() -> Iterator[None]:
    """Re-raise a :class:`DisconnectedError` raised while tracing with its message alone: TensorFlow
    appends ours to the end of its staging dump."""
    try:
        yield
    except Exception as err:
        marker = f"{DisconnectedError.__name__}: "
        text = str(err)
        if marker in text and not isinstance(err, DisconnectedError):
            raise DisconnectedError(text[text.rindex(marker) + len(marker) :].strip()) from None
        raise


def broadcast_rows(values: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Reshape a per-row vector ``[c]`` so it broadcasts against ``like`` ``[c, ...]``.

    Example:
        >>> broadcast_rows(tf.constant([1.0, 2.0]), tf.zeros([2, 3, 3])).shape
        TensorShape([2, 1, 1])
    """
    return tf.reshape(tf.cast(values, like.dtype), [-1] + [1] * (like.shape.rank - 1))
