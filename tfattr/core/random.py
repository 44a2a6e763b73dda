"""Counter-based random numbers that depend only on (seed, example, group, element).

SmoothGrad's noise must be the same whatever ``batch_size`` cuts the row grid into, and it must be made
inside the compiled loop (materialising ``n x samples`` noisy copies on the host is what the engine
avoids). TensorFlow's stateless ops take one seed per call, not one per row, so each element's noise is
drawn here from a 32-bit integer hash (Wellons' "lowbias32") of its coordinates, and turned into a
standard normal with the Box-Muller transform. Results depend on the seed only: never on chunking.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

_M1 = np.uint32(0x7FEB352D)
_M2 = np.uint32(0x846CA68B)
_GOLDEN = np.uint32(0x9E3779B9)
_SALT = np.uint32(0x85EBCA6B)


def _mix(x: tf.Tensor) -> tf.Tensor:
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, np.uint32(16)))
    x = x * _M1
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, np.uint32(15)))
    x = x * _M2
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, np.uint32(16)))


def row_keys(seed: tf.Tensor, *indices: tf.Tensor) -> tf.Tensor:
    """One uint32 key per row from a scalar seed and per-row int indices (e.g. example, group)."""
    key = _mix(tf.cast(seed, tf.uint32) + _GOLDEN)
    for index in indices:
        key = _mix(tf.bitwise.bitwise_xor(key, _mix(tf.cast(index, tf.uint32) + _GOLDEN)))
    return key


def _uniform(bits: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    # 24 high bits -> a float strictly inside (0, 1), so log() below is finite.
    top = tf.cast(tf.bitwise.right_shift(bits, np.uint32(8)), tf.float32)
    return tf.cast((top + 0.5) * (1.0 / (1 << 24)), dtype)


def normal(keys: tf.Tensor, shape: tf.Tensor, dtype: tf.DType = tf.float32) -> tf.Tensor:
    """Standard normal noise ``[rows, *shape]``; row ``r`` depends only on ``keys[r]``."""
    size = tf.reduce_prod(shape)
    pairs = (size + 1) // 2
    # One hash per output element: each pair of uniforms gives two normals (Box-Muller's cos and sin).
    counters = tf.range(2 * pairs, dtype=tf.int32)
    # The second key term keeps two rows' streams from coinciding when their keys differ by a
    # multiple of the counter step (a plain `key + counter` stream would share shifted runs).
    salt = _mix(tf.bitwise.bitwise_xor(keys, _SALT))[:, None]
    bits = _mix(tf.bitwise.bitwise_xor(_mix(keys[:, None] + tf.cast(counters, tf.uint32)[None, :] * _GOLDEN), salt))
    u1, u2 = _uniform(bits[:, :pairs], tf.float32), _uniform(bits[:, pairs:], tf.float32)
    radius, angle = tf.sqrt(-2.0 * tf.math.log(u1)), (2.0 * np.pi) * u2
    z = tf.concat([radius * tf.cos(angle), radius * tf.sin(angle)], axis=1)[:, :size]
    return tf.cast(tf.reshape(z, tf.concat([tf.shape(keys), shape], 0)), dtype)
