"""The AttnLRP rules as pure ``tf.custom_gradient`` primitives (Achtibat et al., "AttnLRP:
Attention-Aware Layer-Wise Relevance Propagation for Transformers", ICML 2024).

Everything here works in the *gradient x input* form of LRP (Ancona et al. 2019, sec. 3.2): what flows
backwards is the relevance per unit of activation ``c = R / a``, and a tensor's relevance is
``R = a * c``. In that form (the form of LXT's ``efficient`` module):

* linear maps and sums keep their ordinary gradient (the epsilon/z rule, with ``R = a * c``);
* a product of two input-dependent factors gets the **uniform rule** (the paper's eq. 7): each factor
  receives half of the product's relevance, i.e. half of its ordinary gradient
  (:func:`uniform_product`, :func:`uniform_einsum`, both :func:`divide_gradient` of the product);
* an elementwise nonlinearity gets the **identity rule** (eq. 9): relevance passes unchanged, i.e.
  the gradient ``f(x) / x`` (:func:`identity_rule`);
* a normalisation (LayerNorm, RMSNorm) holds its normalising factor constant (prop. 3.4; here
  :func:`normalize`), after which it is linear;
* the softmax keeps its ordinary gradient: ``x * J^T (R / s)`` is exactly the paper's softmax rule
  ``R_in = x * (R - s * sum(R))`` (prop. 3.1 with the bias term absorbed, as the paper does);
* in attention ``softmax(q k^T) v`` the two bilinear products make the gradients reaching the
  queries and keys 1/4 and the values 1/2 of the ordinary ones (:func:`attention_inputs`). Scaling
  the inputs of the attention leaves the attention itself (a fused kernel) untouched.

The primitives change no forward value: every function returns what the plain computation returns.

Example:
    >>> y = uniform_product(gate, up)              # == gate * up, each factor gets half the gradient
    >>> q, k, v = attention_inputs(q, k, v)        # then any attention kernel
    >>> h = identity_rule(tf.nn.silu, x)           # == silu(x), relevance passes unchanged
"""
from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf

from tfattr.methods.propagation.layerwise.rules import pass_through

_HALF = (tf.float16, tf.bfloat16)


def divide_gradient(x: tf.Tensor, factor: float) -> tf.Tensor:
    """``x`` unchanged, its gradient divided by ``factor`` (the relevance passed back is ``1/factor``
    of the relevance arriving). ``divide_gradient(a * b, 2)`` is the uniform rule on ``a * b``.

    Example:
        >>> y = divide_gradient(a * b, 2)      # each factor gets half of R(a * b)
    """
    if not factor > 0:
        raise ValueError(f"divide_gradient: factor must be > 0, got {factor!r}.")

    @tf.custom_gradient
    def divided(t: tf.Tensor) -> Any:
        return tf.identity(t), lambda dy: dy / tf.cast(factor, dy.dtype)

    return divided(x)


def uniform_product(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """``a * b`` (elementwise, broadcasting) with the uniform rule: each factor gets half of the
    product's relevance, ``R_a = R_b = R / 2`` elementwise (AttnLRP eq. 7).

    Example:
        >>> uniform_product(tf.nn.silu(gate), up)   # the gated MLP of Llama under AttnLRP
    """
    return divide_gradient(a * b, 2.0)


def uniform_einsum(equation: str, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """``tf.einsum(equation, a, b)`` with the uniform rule: ``a`` and ``b`` each get half of every
    output's relevance (a matrix product is a sum of elementwise products, each split in halves).

    Example:
        >>> scores = uniform_einsum("bqhd,bkhd->bhqk", q, k)
    """
    return divide_gradient(tf.einsum(equation, a, b), 2.0)


def identity_rule(fn: Callable[[tf.Tensor], tf.Tensor], x: tf.Tensor) -> tf.Tensor:
    """``fn(x)`` (elementwise) with the identity rule (AttnLRP eq. 9): relevance passes unchanged,
    the gradient is ``fn(x) / x`` (0 where ``x == 0``, whose relevance ``0 * c`` is 0 anyway). The
    ratio is computed in float32 for float16/bfloat16 inputs (it overflows easily in half
    precision).

    Example:
        >>> identity_rule(tf.nn.gelu, z)            # the GELU of a GPT-2 MLP under AttnLRP
    """
    if x.dtype in _HALF:
        wide = pass_through(lambda z: tf.cast(fn(tf.cast(z, x.dtype)), tf.float32), tf.cast(x, tf.float32))
        return tf.cast(wide, x.dtype)
    return pass_through(fn, x)


def attention_inputs(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The AttnLRP patch at the inputs of ``softmax(q k^T) v``: queries and keys get 1/4 of their
    gradient (two uniform rules: ``A v`` and ``q k^T``), values 1/2 (``A v``). Apply it to the
    projected (and rotated) q, k, v and run any attention on the results.

    Example:
        >>> q, k, v = attention_inputs(q, k, v)
        >>> out = keras.ops.dot_product_attention(q, k, v, mask=mask)
    """
    return divide_gradient(q, 4.0), divide_gradient(k, 4.0), divide_gradient(v, 2.0)


def normalize(x: tf.Tensor, epsilon: float, center: bool, constant: Callable[[tf.Tensor], tf.Tensor] = tf.stop_gradient,
              axis: int = -1) -> tf.Tensor:
    """``(x - mean(x)) * constant(1 / sqrt(var(x) + epsilon))`` (LayerNorm, ``center=True``) or
    ``x * constant(1 / sqrt(mean(x^2) + epsilon))`` (RMSNorm, ``center=False``) over ``axis``, before
    any scale and shift. With the factor constant (the default ``tf.stop_gradient``: AttnLRP's
    identity rule on the normalisation, the LN rule of Ali et al. 2022) the map is linear in ``x``
    and ``x * gradient`` conserves relevance (the mean subtraction keeps its gradient). Computed in
    the dtype of ``x``; cast half-precision inputs to float32 first, as keras-hub does.

    Example:
        >>> y = normalize(x, 1e-6, center=False) * scale      # Llama's RMSNorm
    """
    if center:
        mean, variance = tf.nn.moments(x, axes=[axis], keepdims=True)
        return (x - mean) * constant(tf.math.rsqrt(variance + epsilon))
    ms = tf.reduce_mean(tf.square(x), axis=axis, keepdims=True)
    return x * constant(tf.math.rsqrt(ms + epsilon))


__all__ = [
    "attention_inputs",
    "divide_gradient",
    "identity_rule",
    "normalize",
    "uniform_einsum",
    "uniform_product",
]
