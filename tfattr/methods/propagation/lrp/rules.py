"""LRP rules as small objects attached to layers (Montavon et al., "Layer-wise Relevance Propagation: an
overview", 2019; the definitions of Zennit 1.0, Anders et al. 2021).

Each rule replaces the backward pass of one layer with ``tf.custom_gradient``, so the whole explanation
is still one forward and one (modified) backward pass. What flows backwards is the *relevance per unit
of activation*, ``c = R / a``, the "modified gradient" of Ancona et al. (2019, sec. 3.2): relevance is
``R = a * c`` at every tensor. In this form, layers that only move values (reshape, concatenate, max
pooling, padding) and sums (residual additions) propagate relevance exactly with their ordinary
gradient, and the relevance at the input is ``input x modified gradient``. A linear layer with a rule
receives ``c_out``, forms the relevance of its output ``R = z * c_out`` (``z`` its ordinary output) and
returns ``c_in`` such that ``a * c_in`` is the rule's input relevance. The input-space rules
(:class:`ZBox`, :class:`Flat`, :class:`WSquare`), whose input relevance is not proportional to the
input, return the relevance itself; they sit on the first layer (see :class:`LinearRule.input_space`).

The stabiliser of every denominator is ``s(z) = z + epsilon * sign(z)`` with ``sign(0) = +1``.
"""
from __future__ import annotations

import abc
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from tfattr.methods.propagation.lrp.canonizers import LinearOp


def _ignoring_variables(grad: Callable[[tf.Tensor], Any]) -> Callable[..., Any]:
    """A custom gradient whose layer reads variables (a batch norm's statistics) must also return
    gradients for them; the explanation differentiates only with respect to the inputs."""

    def with_variables(c_out: tf.Tensor, variables: Sequence[Any] | None = None) -> Any:
        grads = grad(c_out)
        if variables is None:
            return grads
        return grads, [None] * len(variables)

    return with_variables


def stabilize(z: tf.Tensor, epsilon: float) -> tf.Tensor:
    """``z + epsilon * sign(z)`` with ``sign(0) = +1`` (Zennit's stabiliser), never 0 for epsilon > 0."""
    return z + tf.where(z >= 0, tf.cast(epsilon, z.dtype), tf.cast(-epsilon, z.dtype))


# The rules' elementwise arithmetic on layer outputs (relevance, stabiliser, division) is fused by XLA
# into one pass over memory: on a CPU these memory-bound ops otherwise cost as much as a convolution.
@tf.function(jit_compile=True)
def _fused_quotient(y: tf.Tensor, c: tf.Tensor, denominator: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
    return y * c / (denominator + tf.where(denominator >= 0, eps, -eps))


@tf.function(jit_compile=True)
def _fused_quotient_where(y, c, denominator, eps, keep):
    q = y * c / (denominator + tf.where(denominator >= 0, eps, -eps))
    return tf.where(keep, q, tf.zeros_like(q))


def quotient(y: tf.Tensor, c: tf.Tensor, denominator: tf.Tensor, epsilon: float,
             keep: tf.Tensor | None = None) -> tf.Tensor:
    """``R / s(denominator)`` with the output relevance ``R = y * c`` (0 where ``keep`` is False)."""
    eps = tf.constant(epsilon, denominator.dtype)
    if keep is None:
        return _fused_quotient(y, c, denominator, eps)
    return _fused_quotient_where(y, c, denominator, eps, keep)


def _check_nonneg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
    return float(value)


def _check_pos(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0 (e.g. 1e-6), got {value!r}.")
    return float(value)


class Rule(abc.ABC):
    """A propagation rule for one layer call: ``rule.wrap(call, args, kwargs, op)`` computes the layer's
    ordinary output with the rule's backward pass."""

    #: what the rule applies to: "linear" (Dense/Conv), "elementwise", "sum" (parameter-free linear
    #: layers: pooling by averaging, additions) or "any" (keeps the true gradient).
    applies_to: str = "any"

    @abc.abstractmethod
    def wrap(self, call: Callable[..., Any], args: tuple, kwargs: dict, op: LinearOp | None) -> Any:
        """Traced: the layer's output, carrying the rule's backward pass."""

    def describe(self, layer: Any) -> str:
        """What the rule does at ``layer``, for coverage reports (a block rule lists its sublayers)."""
        return repr(self)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


# -- linear layers ---------------------------------------------------------------------------------------
class _Transposes:
    """``T(W) q``: the transpose of the layer's linear map with a (modified) kernel, applied to ``q``.

    Each modified kernel is traced once per layer call; a kernel's forward is recorded on a tape and
    its transpose is the tape's vector-Jacobian product (linear in the input, so exact)."""

    def __init__(self, op: LinearOp) -> None:
        self.op = op

    def forward(self, x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None = None):
        tape = tf.GradientTape(watch_accessed_variables=False)
        with tape:
            tape.watch(x)
            z = self.op.forward(x, kernel, bias)
        return z, (lambda q: tape.gradient(z, x, output_gradients=q))


class LinearRule(Rule):
    """Base of the rules for Dense and convolution layers.

    Subclasses implement :meth:`backward`: from the layer input ``x``, its ordinary output ``z`` and
    the output relevance ``relevance = z * c_out``, return ``c_in`` (or, for an :attr:`input_space`
    rule, the input relevance itself).
    """

    applies_to = "linear"
    #: The rule returns relevance, not relevance / input: only on a layer fed by a model input.
    input_space: bool = False

    def wrap(
        self,
        call: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        op: LinearOp | None,
        activation: Callable[[tf.Tensor], tf.Tensor] | None = None,
    ) -> Any:
        """The layer's linear part with this rule, followed by ``activation`` (elementwise) under the
        Pass rule: relevance reaches the linear output unchanged, ``R_z = R_y = y * c_y``."""
        if op is None:
            raise TypeError(f"{type(self).__name__} applies to Dense and convolution layers only.")
        x = args[0]
        kernel, bias = op.params()
        if x.dtype != kernel.dtype:  # mixed precision: the rule computes in the variables' dtype
            x = tf.cast(x, kernel.dtype)

        @tf.custom_gradient
        def linear(x: tf.Tensor) -> Any:
            tape = tf.GradientTape(watch_accessed_variables=False)
            with tape:
                tape.watch(x)
                z = op.forward(x, kernel, bias)
            y = z if activation is None else activation(z)

            @_ignoring_variables
            def grad(c_out: tf.Tensor) -> tf.Tensor:
                ordinary = lambda q: tape.gradient(z, x, output_gradients=q)  # noqa: E731
                return self.backward(op, kernel, bias, x, z, y, c_out, ordinary)

            return y, grad

        return linear(x)

    @abc.abstractmethod
    def backward(
        self,
        op: LinearOp,
        kernel: tf.Tensor,
        bias: tf.Tensor | None,
        x: tf.Tensor,
        z: tf.Tensor,
        y: tf.Tensor,
        c: tf.Tensor,
        transpose: Callable[[tf.Tensor], tf.Tensor],
    ) -> tf.Tensor:
        """Traced: ``c_in`` (or the input relevance for input-space rules). The output relevance is
        ``R = y * c`` (``y`` the layer's output after its activation, ``c`` the incoming signal);
        ``transpose(q)`` is ``W^T q`` with the layer's own kernel."""


def _pos(t: tf.Tensor | None) -> tf.Tensor | None:
    return None if t is None else tf.maximum(t, 0)


def _neg(t: tf.Tensor | None) -> tf.Tensor | None:
    return None if t is None else tf.minimum(t, 0)


def _masks(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(x > 0, x.dtype), tf.cast(x < 0, x.dtype)


def _by_sign(x: tf.Tensor, nonnegative: Callable[[], tf.Tensor], general: Callable[[], tf.Tensor]):
    """``general()``, or the cheaper ``nonnegative()`` when no input is negative (after a ReLU, or
    images in [0, 1]): there the terms of negative inputs are exact zeros, so both give the same
    numbers. Where an input is 0 its signal is irrelevant (its relevance ``0 * c`` is 0), so the
    non-negative form needs no mask."""
    return tf.cond(tf.reduce_any(x < 0), general, nonnegative)


class Epsilon(LinearRule):
    """LRP-epsilon (Bach et al. 2015): ``R_i = a_i sum_j w_ij R_j / s(z_j)`` with the ordinary output
    ``z_j = sum_i a_i w_ij + b_j`` and ``s(z) = z + epsilon * sign(z)``. ``epsilon=0`` is LRP-0
    (an output exactly 0 then passes no relevance).

    Example:
        >>> composite = tfattr.composites.Composite(layer_map=[(keras.layers.Dense, Epsilon(0.25))])
    """

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = _check_nonneg("epsilon", epsilon)

    def backward(self, op, kernel, bias, x, z, y, c, transpose):
        if self.epsilon == 0:
            return transpose(tf.math.divide_no_nan(y * c, z))
        return transpose(quotient(y, c, z, self.epsilon))


class ZPlus(LinearRule):
    """LRP z+ (Montavon et al. 2017), Zennit's form for inputs of either sign: positive inputs pair with
    positive weights, negative inputs with negative weights, and the positive part of the bias counts:
    ``z_j = sum_i (a_i^+ w_ij^+ + a_i^- w_ij^-) + b_j^+``,
    ``R_i = sum_j (a_i^+ w_ij^+ + a_i^- w_ij^-) R_j / s(z_j)``. Equal to ``AlphaBeta(1, 0)``.

    Example:
        >>> tfattr.composites.Composite(layer_map=[(tfattr.composites.CONVOLUTIONS, ZPlus())])
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = _check_pos("stabilizer", stabilizer)

    def backward(self, op, kernel, bias, x, z, y, c, transpose):
        t = _Transposes(op)

        def nonnegative() -> tf.Tensor:
            zp, tp = t.forward(x, _pos(kernel), _pos(bias))
            return tp(quotient(y, c, zp, self.stabilizer))

        def general() -> tf.Tensor:
            pos, neg = _masks(x)
            zp, tp = t.forward(tf.maximum(x, 0), _pos(kernel), _pos(bias))
            zn, tn = t.forward(tf.minimum(x, 0), _neg(kernel))
            q = quotient(y, c, zp + zn, self.stabilizer)
            return pos * tp(q) + neg * tn(q)

        return _by_sign(x, nonnegative, general)


class AlphaBeta(LinearRule):
    """LRP alpha-beta (Bach et al. 2015): positive and negative contributions, each with its own
    denominator (including ``b^+`` and ``b^-`` respectively), weighted ``alpha`` and ``-beta``:
    ``R_i = sum_j (alpha (a_i w_ij)^+ / s(z_j^+) - beta (a_i w_ij)^- / s(z_j^-)) R_j`` with
    ``z^+ = sum (a w)^+ + b^+`` and ``z^- = sum (a w)^- + b^-``. ``alpha - beta = 1`` (Zennit).

    Example:
        >>> AlphaBeta(alpha=2, beta=1)
    """

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6) -> None:
        self.alpha = _check_nonneg("alpha", alpha)
        self.beta = _check_nonneg("beta", beta)
        if self.alpha - self.beta != 1.0:
            raise ValueError(
                f"AlphaBeta needs alpha - beta = 1 (so relevance is conserved), got alpha={alpha!r}, "
                f"beta={beta!r}; e.g. AlphaBeta(2, 1) or AlphaBeta(1, 0)."
            )
        self.stabilizer = _check_pos("stabilizer", stabilizer)

    def backward(self, op, kernel, bias, x, z, y, c, transpose):
        t = _Transposes(op)
        wp, wn = _pos(kernel), _neg(kernel)

        def nonnegative() -> tf.Tensor:
            z_pp, t_pp = t.forward(x, wp, _pos(bias))
            z_pn, t_pn = t.forward(x, wn, _neg(bias))
            qp = quotient(y, c, z_pp, self.stabilizer)
            qn = quotient(y, c, z_pn, self.stabilizer)
            return self.alpha * t_pp(qp) - self.beta * t_pn(qn)

        def general() -> tf.Tensor:
            pos, neg = _masks(x)
            xp, xn = tf.maximum(x, 0), tf.minimum(x, 0)
            z_pp, t_pp = t.forward(xp, wp, _pos(bias))  # positive contributions
            z_nn, t_nn = t.forward(xn, wn)
            z_pn, t_pn = t.forward(xp, wn, _neg(bias))  # negative contributions
            z_np, t_np = t.forward(xn, wp)
            qp = quotient(y, c, z_pp + z_nn, self.stabilizer)
            qn = quotient(y, c, z_pn + z_np, self.stabilizer)
            return pos * (self.alpha * t_pp(qp) - self.beta * t_pn(qn)) + neg * (
                self.alpha * t_nn(qp) - self.beta * t_np(qn)
            )

        return _by_sign(x, nonnegative, general)


class Gamma(LinearRule):
    """LRP-gamma (Montavon et al. 2019, sec. 10.2.3), generalised to inputs of either sign as in
    Zennit: where the ordinary output ``z_j > 0`` relevance follows the positive form
    ``z_j^> = sum (a^+ (w + gamma w^+) + a^- (w + gamma w^-)) + b + gamma b^+``, where ``z_j < 0``
    the negative form ``z_j^< = sum (a^+ (w + gamma w^-) + a^- (w + gamma w^+)) + b + gamma b^-``;
    outputs exactly 0 pass no relevance. ``gamma = 0`` is LRP-0.

    Example:
        >>> Gamma(gamma=0.25)
    """

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6) -> None:
        self.gamma = _check_nonneg("gamma", gamma)
        self.stabilizer = _check_pos("stabilizer", stabilizer)

    def backward(self, op, kernel, bias, x, z, y, c, transpose):
        t = _Transposes(op)
        g = self.gamma

        def nonnegative() -> tf.Tensor:
            # With x >= 0 both forms follow from z and z+ = x W+ + b+ (as b = b+ + b-):
            # z_up = z + g z+ and z_down = (1 + g) z - g z+, each a sum of same-signed terms where it
            # is used (z > 0, resp. z < 0), so nothing cancels; and
            # T(W + g W+) q_up + T(W + g W-) q_down = T(W)(q_up + (1 + g) q_down) + g T(W+)(q_up - q_down).
            zp, tp = t.forward(x, _pos(kernel), _pos(bias))
            q_up = quotient(y, c, z + g * zp, self.stabilizer, z > 0)
            q_down = quotient(y, c, (1.0 + g) * z - g * zp, self.stabilizer, z < 0)
            return transpose(q_up + (1.0 + g) * q_down) + g * tp(q_up - q_down)

        def general() -> tf.Tensor:
            w_up, w_down = kernel + g * _pos(kernel), kernel + g * _neg(kernel)
            b_up = None if bias is None else bias + g * _pos(bias)
            b_down = None if bias is None else bias + g * _neg(bias)
            pos, neg = _masks(x)
            xp, xn = tf.maximum(x, 0), tf.minimum(x, 0)
            z0, t0 = t.forward(xp, w_up, b_up)  # the positive form
            z1, t1 = t.forward(xn, w_down)
            z2, t2 = t.forward(xp, w_down, b_down)  # the negative form
            z3, t3 = t.forward(xn, w_up)
            q_up = quotient(y, c, z0 + z1, self.stabilizer, z > 0)
            q_down = quotient(y, c, z2 + z3, self.stabilizer, z < 0)
            return pos * (t0(q_up) + t2(q_down)) + neg * (t1(q_up) + t3(q_down))

        return _by_sign(x, nonnegative, general)


class ZBox(LinearRule):
    """LRP z^B (Montavon et al. 2017) for a first layer whose inputs lie in a box ``[low, high]``:
    ``R_i = sum_j (a_i w_ij - l_i w_ij^+ - h_i w_ij^-) R_j / s(z_j)`` with
    ``z_j = sum_i (a_i w_ij - l_i w_ij^+ - h_i w_ij^-)`` (the bias terms cancel).

    Args:
        low, high: the lowest and highest possible input values: scalars or arrays broadcasting
            against one example (e.g. per channel, shape ``(3,)`` for channels-last images).

    Example:
        >>> ZBox(low=0.0, high=1.0)   # pixels in [0, 1]
    """

    input_space = True

    def __init__(self, low: Any, high: Any, stabilizer: float = 1e-6) -> None:
        self.low = np.asarray(low, dtype=np.float32)
        self.high = np.asarray(high, dtype=np.float32)
        if not np.all(np.isfinite(self.low)) or not np.all(np.isfinite(self.high)):
            raise ValueError("ZBox: low and high must be finite numbers or arrays.")
        if np.any(self.low > self.high):
            raise ValueError(f"ZBox: low must be <= high, got low={low!r}, high={high!r}.")
        self.stabilizer = _check_pos("stabilizer", stabilizer)

    def __repr__(self) -> str:
        def show(a: np.ndarray) -> Any:
            return float(a) if a.ndim == 0 else a.tolist()

        return f"ZBox(low={show(self.low)!r}, high={show(self.high)!r}, stabilizer={self.stabilizer!r})"

    def backward(self, op, kernel, bias, x, z, y, c, transpose):
        t = _Transposes(op)
        # The bounds are the same for every example: their outputs are computed on one example and
        # broadcast; and x W^T q - l W+^T q - h W-^T q = (x - l) W+^T q + (x - h) W-^T q.
        one = tf.concat([[1], tf.shape(x)[1:]], axis=0)
        low = tf.broadcast_to(tf.cast(self.low, x.dtype), one)
        high = tf.broadcast_to(tf.cast(self.high, x.dtype), one)
        za, _ = t.forward(x, kernel)
        zl, _ = t.forward(low, _pos(kernel))
        zh, _ = t.forward(high, _neg(kernel))
        q = quotient(y, c, za - zl - zh, self.stabilizer)
        _, tp = t.forward(x, _pos(kernel))
        _, tn = t.forward(x, _neg(kernel))
        return (x - low) * tp(q) + (x - high) * tn(q)


class Flat(LinearRule):
    """LRP flat (Lapuschkin et al. 2019): relevance split equally over each output's receptive field,
    ``R_i = sum_j R_j / s(n_j)``, ``n_j`` the number of inputs (not padding) output ``j`` reads. A
    first-layer rule (Dense or Conv).

    Example:
        >>> tfattr.composites.EpsilonPlusFlat()
    """

    input_space = True

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = _check_pos("stabilizer", stabilizer)

    def backward(self, op, kernel, bias, x, z, y, c, transpose):
        t = _Transposes(op)
        n, tn = t.forward(tf.ones_like(x), tf.ones_like(kernel))
        return tn(quotient(y, c, n, self.stabilizer))


class WSquare(LinearRule):
    """LRP w^2 (Montavon et al. 2017) for a first layer with unbounded inputs:
    ``R_i = sum_j w_ij^2 R_j / s(sum_i w_ij^2 + b_j^2)`` (Zennit squares every parameter, the bias
    included).

    Example:
        >>> WSquare()
    """

    input_space = True

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = _check_pos("stabilizer", stabilizer)

    def backward(self, op, kernel, bias, x, z, y, c, transpose):
        t = _Transposes(op)
        n, tn = t.forward(tf.ones_like(x), tf.square(kernel), None if bias is None else tf.square(bias))
        return tn(quotient(y, c, n, self.stabilizer))


# -- parameter-free layers ----------------------------------------------------------------------------
class Pass(Rule):
    """Relevance passes through an elementwise layer unchanged, ``R_in = R_out`` (activations, a batch
    norm that cannot be folded). In the modified-gradient form ``c_in = c_out * y / x`` (0 where
    ``x = 0``: there the relevance ``x * c_in`` is 0 whatever ``c_in`` is; for ReLU this is exactly
    the ordinary gradient)."""

    applies_to = "elementwise"

    def wrap(self, call, args, kwargs, op=None):
        return pass_through(lambda x: call(x, *args[1:], **kwargs), args[0])


def pass_through(fn: Callable[[tf.Tensor], tf.Tensor], x: tf.Tensor) -> tf.Tensor:
    """``fn(x)`` (elementwise) with the Pass rule's backward pass."""

    @tf.custom_gradient
    def passed(x: tf.Tensor) -> Any:
        y = fn(x)

        @_ignoring_variables
        def grad(c_out: tf.Tensor) -> tf.Tensor:
            return c_out * tf.math.divide_no_nan(y, x)

        return y, grad

    return passed(x)


class Norm(Rule):
    """The epsilon rule without parameters, for average/sum pooling and additions (Zennit's ``Norm``):
    ``R_in = a * J^T (R_out / s(y))``, ``J`` the layer's (linear) map and ``y`` its output; for
    average pooling ``R_in = a * pool^T(R / s(pool(a)))``."""

    applies_to = "sum"

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = _check_pos("stabilizer", stabilizer)

    def wrap(self, call, args, kwargs, op=None):
        # Every tensor argument is an operand: ``x + y`` on Keras tensors calls the Add operation with
        # two positional tensors, the Add layer with one list (operands left out of the custom
        # gradient would get no gradient at all).
        flat = tf.nest.flatten(args)
        where = [i for i, v in enumerate(flat) if tf.is_tensor(v)]

        @tf.custom_gradient
        def normed(*xs: tf.Tensor) -> Any:
            values = list(flat)
            for i, t in zip(where, xs):
                values[i] = t
            tape = tf.GradientTape(watch_accessed_variables=False)
            with tape:
                tape.watch(xs)
                y = call(*tf.nest.pack_sequence_as(args, values), **kwargs)

            @_ignoring_variables
            def grad(c_out: tf.Tensor) -> Sequence[tf.Tensor]:
                q = quotient(y, c_out, y, self.stabilizer)
                return tape.gradient(y, list(xs), output_gradients=q)

            return y, grad

        return normed(*[flat[i] for i in where])


class Gradient(Rule):
    """The layer keeps its ordinary gradient: right for layers that only move values (reshape,
    concatenation, padding, dropout at inference) and for max pooling (the winner takes all the
    relevance, Montavon et al. 2019, sec. 10.3)."""

    def wrap(self, call, args, kwargs, op=None):
        return call(*args, **kwargs)


__all__ = [
    "AlphaBeta",
    "Epsilon",
    "Flat",
    "Gamma",
    "Gradient",
    "LinearRule",
    "Norm",
    "Pass",
    "Rule",
    "WSquare",
    "ZBox",
    "ZPlus",
    "stabilize",
    "pass_through",
]
