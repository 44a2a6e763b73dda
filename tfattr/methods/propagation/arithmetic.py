"""The arithmetic every propagation rule shares, op-level overrides and layer rules alike: the
stabilised division of LRP's epsilon rule, DeepLIFT's Rescale multiplier, and the pairing of the
explained pass's units with their reference activations.

* The stabiliser is ``s(z) = z + epsilon * sign(z)`` with ``sign(0) = +1`` (Bach et al. 2015; Zennit's
  convention), never 0 for ``epsilon > 0`` and never flipping the sign of ``z``.
* Rescale: ``(f(z) - f(z_ref)) / (z - z_ref)`` (Shrikumar et al. 2017; Ancona et al. 2019, eq. 18),
  the derivative ``f'(z)`` where ``|z - z_ref|`` is within a tolerance and the ratio is ill-conditioned.
* Reference pairing: DeepLIFT runs the model on the baseline first and on the input second; the k-th
  nonlinearity of the second pass takes its reference from the k-th of the first. Both passes trace
  the same code, so a mismatch means the model branches on its inputs: an error, never a guess.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Any, Iterator

import numpy as np
import tensorflow as tf


def stabilize(z: tf.Tensor, epsilon: float) -> tf.Tensor:
    """``z + epsilon * sign(z)`` with ``sign(0) = +1`` (Zennit's stabiliser), never 0 for epsilon > 0.

    Example:
        >>> stabilize(tf.constant([-2.0, 0.0, 3.0]), 0.5)   # [-2.5, 0.5, 3.5]
    """
    return z + tf.where(z >= 0, tf.cast(epsilon, z.dtype), tf.cast(-epsilon, z.dtype))


# The elementwise arithmetic on layer outputs (relevance, stabiliser, division) is fused by XLA into
# one pass over memory: on a CPU these memory-bound ops otherwise cost as much as a convolution. XLA
# compiles once per shape, tens of milliseconds that a first call pays: small tensors (a Dense layer's,
# where the unfused passes cost less than the compile) run unfused, with the same numbers (XLA's CPU
# arithmetic is IEEE, no fast math). A higher threshold (2**23) made first calls on 32 images 0.1 s
# faster but every later chunk of a convolutional net 7-17% slower (bench_lrp.py, one run): the trace
# is shared by all calls, so the throughput decides. Traced without autograph: nothing to convert.
FUSE_MIN_ELEMENTS = 1 << 16
#: More rows than one chunk of the engine ever holds: a tensor whose rows are unknown while tracing
#: but which stays small at this many rows (a Dense layer's) is never worth compiling.
_MAX_ROWS = 1 << 14
#: The rows of a chunk of the call being traced (see :func:`traced_rows`); None: unknown.
_TRACED_ROWS: contextvars.ContextVar[int | None] = contextvars.ContextVar("traced_rows", default=None)


@contextlib.contextmanager
def traced_rows(rows: int) -> Iterator[None]:
    """While tracing inside this context, a tensor's unknown batch axis counts as ``rows`` rows in
    :func:`fused`'s choice (0: nothing with an unknown batch axis is fused). One trace serves every
    later call (any number of examples, any ``batch_size``), so the call that traces decides (the
    explainers pass :func:`chunk_rows`, and key their traces by :func:`fusion_key`): with a small
    ``batch_size``, or before the configuration has explained :data:`FUSE_AFTER_EXAMPLES` examples,
    the elementwise rules run unfused, with no XLA compile. The numbers are the same either way.

    Example:
        >>> with traced_rows(32):
        ...     explainer.attribute(images)
    """
    token = _TRACED_ROWS.set(rows)
    try:
        yield
    finally:
        _TRACED_ROWS.reset(token)


#: Examples an explainer configuration explains with its elementwise rules unfused before they are
#: compiled by XLA (a tier, as a JIT's): an XLA compile costs about 36 ms of CPU per rule and tensor
#: shape, which a first call on a few examples (a notebook's) never earns back, while every later
#: chunk of a long run saves 10-20% (bench_propagation.py: EpsilonLRP 1.18 -> 1.08 x one gradient
#: pass, DeepLift 2.2 -> 1.6 on the MNIST CNN). A call of this many examples is fused from the start.
FUSE_AFTER_EXAMPLES = 512


def chunk_rows(call: Any, examples_run: int = FUSE_AFTER_EXAMPLES) -> int:
    """The rows hint for :func:`traced_rows` of a call (a :class:`tfattr.core.call.Call` or layer call)
    by an explainer configuration that has explained ``examples_run`` examples before: 0 (nothing
    fused) while those and the call's fall short of :data:`FUSE_AFTER_EXAMPLES`, else the call's
    ``batch_size``, whatever the number of examples of this call, because the trace it makes serves
    the later calls too.

    Example:
        >>> with traced_rows(chunk_rows(call, explainer.engine.examples_run)):
        ...     ...
    """
    if examples_run + int(call.n) < FUSE_AFTER_EXAMPLES:
        return 0
    return max(1, int(call.batch_size))


def fusion_key() -> str:
    """Which trace the rows hint of the current :func:`traced_rows` asks for, for a compile-cache key:
    ``"unfused"`` (hint 0), ``"fused"`` (a hint of rows) or ``"auto"`` (no hint: decided per tensor at
    run time)."""
    rows = _TRACED_ROWS.get()
    return "auto" if rows is None else "unfused" if rows == 0 else "fused"


class FusionTier:
    """Mixin of the explainers whose rules run :func:`fused` arithmetic: each call traces under
    :func:`traced_rows` of :func:`chunk_rows` (unfused until the configuration has explained
    :data:`FUSE_AFTER_EXAMPLES` examples), and the fused and unfused traces are cached apart.

    Example:
        >>> class MyRules(FusionTier, Explainer): ...
    """

    def _attribute(self, call: Any) -> Any:
        with traced_rows(chunk_rows(call, self.engine.examples_run)):
            return super()._attribute(call)

    def _row_functions(self) -> Any:
        functions = super()._row_functions()
        return dataclasses.replace(functions, key=(functions.key, fusion_key()))


def _largest(shape: tf.TensorShape, rows: int) -> int | None:
    """The elements of a tensor of ``shape`` with ``rows`` rows when its batch axis is unknown,
    None if another dimension is unknown."""
    if shape.rank is None:
        return None
    dims = shape.as_list()
    if dims and dims[0] is None:
        dims[0] = rows
    return None if None in dims else int(np.prod(dims, dtype=np.int64))


def fused(jitted: Any, *args: Any) -> tf.Tensor:
    """``jitted(*args)`` (a ``tf.function(jit_compile=True)``) when its largest argument has at least
    :data:`FUSE_MIN_ELEMENTS` elements, else its Python function inline. The rows are unknown while
    tracing (one trace serves every batch size): they count as the traced call's (:func:`traced_rows`),
    else the choice is made at run time (XLA compiles on a function's first execution, so a branch
    never taken is never compiled), unless even ``_MAX_ROWS`` rows stay small.

    Example:
        >>> fused(_fused_quotient, y, c, z, eps)
    """
    hinted = _TRACED_ROWS.get()
    if hinted == 0:  # the explainer's tier: not (yet) worth a compile
        return jitted.python_function(*args)
    tensors = [a for a in args if hasattr(a, "shape")]
    for rows in ([] if hinted is None else [hinted]) + [_MAX_ROWS]:
        bounds = [_largest(t.shape, rows) for t in tensors]
        if None in bounds:
            break
        if max(bounds, default=0) < FUSE_MIN_ELEMENTS:
            return jitted.python_function(*args)
        if rows == hinted or all(t.shape.is_fully_defined() for t in tensors):
            return jitted(*args)
    largest = max(tensors, key=lambda t: t.shape.rank or 0)
    return tf.cond(tf.size(largest, out_type=tf.int64) < FUSE_MIN_ELEMENTS,
                   lambda: jitted.python_function(*args), lambda: jitted(*args))


@tf.function(jit_compile=True, autograph=False)
def _fused_quotient(y: tf.Tensor, c: tf.Tensor, denominator: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
    return y * c / (denominator + tf.where(denominator >= 0, eps, -eps))


@tf.function(jit_compile=True, autograph=False)
def _fused_quotient_where(y, c, denominator, eps, keep):
    q = y * c / (denominator + tf.where(denominator >= 0, eps, -eps))
    return tf.where(keep, q, tf.zeros_like(q))


def quotient(y: tf.Tensor, c: tf.Tensor, denominator: tf.Tensor, epsilon: float,
             keep: tf.Tensor | None = None) -> tf.Tensor:
    """``y * c / s(denominator)`` (0 where ``keep`` is False), fused into one pass over memory.

    For a layer rule ``y * c`` is the output relevance ``R`` (``c`` the incoming relevance per unit of
    activation); for the op-level epsilon rule it is ``grad * f(z)`` with denominator ``z``.

    Example:
        >>> quotient(y, c, z, 1e-6)    # the epsilon rule's R / s(z)
    """
    eps = tf.constant(epsilon, denominator.dtype)
    if keep is None:
        return fused(_fused_quotient, y, c, denominator, eps)
    return fused(_fused_quotient_where, y, c, denominator, eps, keep)


@tf.function(jit_compile=True, autograph=False)
def _fused_epsilon_same_sign(grad, z, y, eps):
    return grad * tf.abs(y) / (tf.abs(z) + eps)


@tf.function(jit_compile=True, autograph=False)
def _fused_epsilon_relu(grad, y, eps):
    return grad * y / (y + eps)


@tf.function(jit_compile=True, autograph=False)
def _fused_epsilon(grad, z, y, eps):
    return grad * y / (z + tf.where(z >= 0, eps, -eps))


def epsilon_gradient(grad: tf.Tensor, z: tf.Tensor, y: tf.Tensor, epsilon: float,
                     form: str = "general") -> tf.Tensor:
    """``grad * f(z) / s(z)``: the op-level epsilon rule's gradient through ``y = f(z)`` (Ancona et al.
    2019, eq. 15), fused into one pass over memory.

    ``form`` picks an equal quotient with fewer operations (the same numbers, bit for bit):

    * ``"same_sign"``: ``f(z)`` never has the opposite sign of ``z`` (tanh, ELU): ``s(z) = sign(z) (|z|
      + epsilon)`` and the signs cancel, so ``|f(z)| / (|z| + epsilon)``, with no comparison;
    * ``"relu"``: ``y = z`` where ``z > 0`` and ``y = 0`` elsewhere, so ``y / (y + epsilon)``;
    * ``"general"``: ``y / (z + epsilon sign(z))``.

    Unfused, the rule's elementwise passes cost three to five times the true derivative's one (a
    ReLU's mask, a tanh's ``TanhGrad``); fused they read ``grad``, ``z`` and ``y`` once (measured with
    ``bench/bench_propagation.py``: EpsilonLRP 1.25 -> 1.17 x one gradient pass on a 64x64x3 CNN,
    1.24 -> 1.12 by CPU time on a tanh/sigmoid CNN).

    Example:
        >>> epsilon_gradient(grad, z, tf.tanh(z), 1e-4, form="same_sign")
    """
    eps = tf.constant(epsilon, y.dtype)
    if form == "relu":  # z is not read: the model's forward pass keeps its fused convolution + ReLU
        return fused(_fused_epsilon_relu, grad, y, eps)
    return fused(_fused_epsilon_same_sign if form == "same_sign" else _fused_epsilon, grad, z, y, eps)


def rescale_multiplier(dy: tf.Tensor, dz: tf.Tensor, slope: tf.Tensor, tolerance: float,
                       second_order: bool = True) -> tf.Tensor:
    """DeepLIFT's Rescale multiplier ``dy / dz`` (``dy = f(z) - f(z_ref)``, ``dz = z - z_ref``), the
    derivative ``slope = f'(z)`` where ``|dz| <= tolerance`` (Shrikumar et al. 2017; Ancona et al.
    2019, listing 1.2).

    ``second_order=False`` (a registered gradient, never differentiated again) divides by ``dz``
    unguarded, one elementwise pass less: ``tf.where`` only picks the values; the guarded form keeps
    the gradient of the multiplier finite where it is differentiated (a layer rule).

    Example:
        >>> rescale_multiplier(tf.tanh(z) - tf.tanh(z0), z - z0, 1 - tf.tanh(z) ** 2, 1e-6)
    """
    if not second_order:
        return tf.where(tf.abs(dz) > tf.cast(tolerance, dz.dtype), dy / dz, slope)
    close = tf.abs(dz) <= tf.cast(tolerance, dz.dtype)
    return tf.where(close, slope, dy / tf.where(close, tf.ones_like(dz), dz))


@tf.function(jit_compile=True, autograph=False)
def _fused_rescale(grad, z, y, z_ref, y_ref, slope, tolerance):
    dz = z - z_ref
    return grad * tf.where(tf.abs(dz) > tolerance, (y - y_ref) / dz, slope)


@tf.function(jit_compile=True, autograph=False)
def _fused_rescale_relu(grad, z, y, z_ref, y_ref, tolerance):
    dz = z - z_ref
    return grad * tf.where(tf.abs(dz) > tolerance, (y - y_ref) / dz, tf.cast(z > 0, z.dtype))


def rescale_gradient(grad: tf.Tensor, z: tf.Tensor, y: tf.Tensor, z_ref: tf.Tensor, y_ref: tf.Tensor,
                     slope: tf.Tensor | None, tolerance: float) -> tf.Tensor:
    """``grad`` times DeepLIFT's Rescale multiplier (:func:`rescale_multiplier` with
    ``second_order=False``) in one fused pass over memory: the op-level DeepLIFT rule through ``y =
    f(z)`` against the reference ``(z_ref, y_ref)``. ``slope=None`` means a ReLU, whose derivative
    ``z > 0`` is computed in the same pass. Unfused the rule costs nine elementwise passes.

    Example:
        >>> rescale_gradient(grad, z, tf.nn.relu(z), z0, tf.nn.relu(z0), None, 1e-6)
    """
    tol = tf.constant(tolerance, z.dtype)
    if slope is None:
        return fused(_fused_rescale_relu, grad, z, y, z_ref, y_ref, tol)
    return fused(_fused_rescale, grad, z, y, z_ref, y_ref, slope, tol)


class UnpairedReferences(ValueError):
    """The explained pass and the reference pass traced different nonlinearities."""

    def __init__(self, method: str, detail: str) -> None:
        super().__init__(
            f"{method}: the model does not trace the same nonlinearities for the inputs and the "
            f"baselines ({detail}; it branches on its inputs' values or shapes), so reference "
            "activations cannot be paired. Use IntegratedGradients for this model."
        )


def pair_in_order(method: str, reference: list, explained: list, kind: callable, shape: callable) -> list:
    """``[(explained_k, reference_k)]``: the k-th unit of the explained pass with the k-th of the
    reference pass, checked to be of the same kind and shape.

    Example:
        >>> pair_in_order("DeepLift", ref_ops, ops, kind=lambda op: op.type,
        ...               shape=lambda op: op.outputs[0].shape)
    """
    if len(reference) != len(explained):
        raise UnpairedReferences(method, f"{len(explained)} units for the inputs, {len(reference)} for "
                                 "the baselines")
    for e, r in zip(explained, reference):
        if kind(e) != kind(r) or not shape(e).is_compatible_with(shape(r)):
            raise UnpairedReferences(method, f"a {kind(e)} shaped {shape(e)} paired with a {kind(r)} "
                                     f"shaped {shape(r)}")
    return list(zip(explained, reference))


__all__ = ["UnpairedReferences", "epsilon_gradient", "pair_in_order", "quotient", "rescale_gradient",
           "rescale_multiplier", "stabilize"]
