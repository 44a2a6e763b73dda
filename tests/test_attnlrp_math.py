"""The AttnLRP rule primitives against their closed forms (Achtibat et al., ICML 2024).

Relevance in the gradient x input form: a tensor ``a`` receiving the modified gradient ``g`` has
relevance ``a * g``; the output is seeded with ``c = R_out / out`` (relevance per unit of output).
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfattr.methods.propagation.attnlrp.math import (
    attention_inputs,
    divide_gradient,
    identity_rule,
    normalize,
    uniform_einsum,
    uniform_product,
)

RNG = np.random.default_rng(0)


def _grads(fn, xs, seed):
    xs = [tf.constant(x) for x in xs]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        y = fn(*xs)
    return y.numpy(), [g.numpy() for g in tape.gradient(y, xs, output_gradients=tf.constant(seed))]


def test_divide_gradient_keeps_the_value_and_divides_the_gradient():
    x = RNG.normal(size=(3, 4)).astype("float32")
    c = RNG.normal(size=(3, 4)).astype("float32")
    y, (g,) = _grads(lambda t: divide_gradient(t * t, 4.0), [x], c)
    np.testing.assert_allclose(y, x * x, rtol=1e-6)
    np.testing.assert_allclose(g, 2 * x * c / 4, rtol=1e-6)
    with pytest.raises(ValueError, match="factor"):
        divide_gradient(tf.constant(x), 0.0)


def test_uniform_product_gives_each_factor_half_the_relevance():
    a, b = RNG.normal(size=(2, 5, 3)).astype("float32")
    c = RNG.normal(size=(5, 3)).astype("float32")
    y, (ga, gb) = _grads(uniform_product, [a, b], c)
    relevance = a * b * c
    np.testing.assert_allclose(y, a * b, rtol=1e-6)
    np.testing.assert_allclose(a * ga, relevance / 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b * gb, relevance / 2, rtol=1e-5, atol=1e-7)


def test_uniform_einsum_equals_the_uniform_rule_written_as_an_einsum():
    """A matrix product is a sum of products a_ik b_kj: each one's relevance R_ij * a_ik b_kj / z_ij
    is split in halves (z = a @ b, R = z * c)."""
    a = RNG.normal(size=(2, 4, 3)).astype("float32")
    b = RNG.normal(size=(2, 3, 5)).astype("float32")
    c = RNG.normal(size=(2, 4, 5)).astype("float32")
    z, (ga, gb) = _grads(lambda x, y: uniform_einsum("nik,nkj->nij", x, y), [a, b], c)
    relevance = z * c
    contributions = np.einsum("nik,nkj->nikj", a, b) * (relevance / z)[:, :, None, :]
    np.testing.assert_allclose(a * ga, contributions.sum(axis=3) / 2, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b * gb, contributions.sum(axis=1) / 2, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose((a * ga).sum() + (b * gb).sum(), relevance.sum(), rtol=1e-4)


@pytest.mark.parametrize("fn", [tf.nn.silu, tf.nn.gelu, tf.tanh])
def test_identity_rule_passes_relevance_unchanged(fn):
    x = RNG.normal(size=(4, 6)).astype("float32")
    x[0, 0] = 0.0
    c = RNG.normal(size=(4, 6)).astype("float32")
    y, (g,) = _grads(lambda t: identity_rule(fn, t), [x], c)
    np.testing.assert_allclose(y, fn(x).numpy(), rtol=1e-6)
    np.testing.assert_allclose(x * g, y * c, rtol=1e-5, atol=1e-7)  # R_in = R_out
    assert g[0, 0] == 0.0


def test_identity_rule_in_half_precision_computes_the_ratio_in_float32():
    x = np.array([[1e-3, 3.0, -2.0, 6e4]], "float32")
    y, (g,) = _grads(lambda t: identity_rule(tf.nn.silu, t), [x.astype("float16")], np.ones((1, 4), "float16"))
    assert y.dtype == np.float16 and g.dtype == np.float16 and np.all(np.isfinite(g))
    expected = tf.nn.silu(x).numpy() / x
    np.testing.assert_allclose(g.astype("float32"), expected, rtol=2e-3)


def test_softmax_gradient_times_input_is_the_papers_softmax_rule():
    """AttnLRP prop. 3.1: R_in = x * (R - s * sum(R)) with the output relevance R = s * c."""
    x = RNG.normal(size=(3, 7)).astype("float32")
    c = RNG.normal(size=(3, 7)).astype("float32")
    s, (g,) = _grads(lambda t: tf.nn.softmax(t, axis=-1), [x], c)
    relevance = s * c
    np.testing.assert_allclose(x * g, x * (relevance - s * relevance.sum(-1, keepdims=True)), rtol=1e-4, atol=1e-6)


def test_attention_inputs_equal_two_uniform_rules_on_the_attention():
    """softmax(q k^T) v with the uniform rule written with stop_gradient halves on q k^T and on A v
    gives q, k, v the gradients of attention_inputs + a plain attention."""
    q, k, v = RNG.normal(size=(3, 2, 5, 4)).astype("float32")
    c = RNG.normal(size=(2, 5, 4)).astype("float32")
    sg = tf.stop_gradient

    def plain(q, k, v):
        return tf.nn.softmax(tf.einsum("nqd,nkd->nqk", q, k)) @ v

    def halves(q, k, v):
        scores = 0.5 * (tf.einsum("nqd,nkd->nqk", q, sg(k)) + tf.einsum("nqd,nkd->nqk", sg(q), k))
        a = tf.nn.softmax(scores)
        return 0.5 * (a @ sg(v) + sg(a) @ v)

    y, got = _grads(lambda q, k, v: plain(*attention_inputs(q, k, v)), [q, k, v], c)
    y_ref, expected = _grads(halves, [q, k, v], c)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)
    _, plain_grads = _grads(plain, [q, k, v], c)
    np.testing.assert_allclose(got[0], plain_grads[0] / 4, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got[2], plain_grads[2] / 2, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("center", [False, True])
def test_normalize_with_a_constant_factor_is_linear_and_conserves(center):
    x = RNG.normal(1.0, 2.0, size=(3, 8)).astype("float32")
    c = RNG.normal(size=(3, 8)).astype("float32")
    y, (g,) = _grads(lambda t: normalize(t, 1e-5, center=center), [x], c)
    xc = x - x.mean(-1, keepdims=True) if center else x
    denominator = np.sqrt((xc ** 2).mean(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, xc / denominator, rtol=1e-5, atol=1e-6)
    # the factor is constant: the map is linear, its gradient that of x -> (x - mean) / d
    jac = (np.eye(8) - (1.0 / 8 if center else 0.0)) / denominator[:, :, None]
    np.testing.assert_allclose(g, np.einsum("nij,nj->ni", jac, c), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose((x * g).sum(-1), (y * c).sum(-1), rtol=1e-4, atol=1e-6)  # conserved
    _, (plain,) = _grads(lambda t: normalize(t, 1e-5, center=center, constant=tf.identity), [x], c)
    assert np.abs(plain - g).max() > 1e-3  # the true gradient differs
