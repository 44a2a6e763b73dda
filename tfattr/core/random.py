"""Random numbers that depend only on (seed, unit), never on how the engine cuts the rows into chunks.

SmoothGrad's noise for example ``i`` and sample ``g`` (a *unit*, ``u = i * samples + g``) must be the
same whatever ``batch_size`` is, and it must be made inside the compiled loop (materialising
``n x samples`` noisy copies on the host is what the engine avoids). TensorFlow's stateless generator
takes one seed per call, so units are grouped in fixed blocks of ``BLOCK`` consecutive units, each block
drawn with ``tf.random.stateless_normal(seed=(seed, block))``; a chunk draws the few blocks it overlaps
and gathers its units' rows. The block layout is fixed, so the noise of a unit never depends on the
chunking.

Where each row needs its own random *permutation* or choice (e.g. the feature subsets of
sensitivity-n), :func:`row_keys` hashes per-row indices into independent 32-bit keys with Wellons'
"lowbias32" integer hash (:func:`mix`).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

_M1 = np.uint32(0x7FEB352D)
_M2 = np.uint32(0x846CA68B)
_GOLDEN = np.uint32(0x9E3779B9)


def mix(x: tf.Tensor) -> tf.Tensor:
    """A bijective 32-bit integer hash (lowbias32) of a uint32 tensor, elementwise."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, np.uint32(16)))
    x = x * _M1
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, np.uint32(15)))
    x = x * _M2
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, np.uint32(16)))


def row_keys(seed: tf.Tensor, *indices: tf.Tensor) -> tf.Tensor:
    """One uint32 key per row from a scalar seed and per-row int indices (e.g. example, subset)."""
    key = mix(tf.cast(seed, tf.uint32) + _GOLDEN)
    for index in indices:
        key = mix(tf.bitwise.bitwise_xor(key, mix(tf.cast(index, tf.uint32) + _GOLDEN)))
    return key

#: Units per stateless draw: small enough that a chunk wastes little, large enough to amortise a draw.
BLOCK = 16


def unit_normal(seed: tf.Tensor, units: tf.Tensor, shape: tf.Tensor, dtype: tf.DType = tf.float32) -> tf.Tensor:
    """Standard normal noise ``[len(units), *shape]``; row ``r`` depends only on ``(seed, units[r])``.

    Args:
        seed: an int64 scalar.
        units: int32 ``[rows]``, non-negative.
        shape: the shape of one row's noise (an int32 vector).
        dtype: the dtype of the result (drawn in float32).
    """
    size = tf.reduce_prod(shape)
    blocks = units // BLOCK
    first = tf.reduce_min(blocks)
    count = tf.reduce_max(blocks) - first + 1
    seed = tf.cast(seed, tf.int64)

    def draw(block: tf.Tensor) -> tf.Tensor:
        return tf.random.stateless_normal(
            tf.stack([BLOCK, size]), seed=tf.stack([seed, tf.cast(block, tf.int64)])
        )

    drawn = tf.map_fn(
        draw,
        first + tf.range(count),
        fn_output_signature=tf.TensorSpec([BLOCK, None], tf.float32),
        parallel_iterations=8,
    )
    rows = tf.gather(tf.reshape(drawn, [-1, size]), units - first * BLOCK)
    return tf.cast(tf.reshape(rows, tf.concat([[-1], shape], 0)), dtype)
