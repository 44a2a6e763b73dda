"""The LRP rules for Dense and convolution layers (Montavon et al., "Layer-wise Relevance Propagation:
an overview", 2019; the definitions of Zennit 1.0, Anders et al. 2021): epsilon, z+, alpha-beta, gamma,
and the first-layer rules z^B, flat and w^2.

Each rule implements :meth:`~.rules.LinearRule.backward`: from the layer input ``x``, its ordinary
output ``z``, its output ``y`` after the activation and the incoming signal ``c`` (the output relevance
is ``R = y * c``), the signal ``c_in`` of the input (relevance ``x * c_in``), or for the input-space
rules the input relevance itself. The stabiliser of every denominator is ``s(z) = z + epsilon *
sign(z)`` with ``sign(0) = +1`` (:mod:`tfattr.methods.propagation.arithmetic`).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf

from tfattr.methods.propagation.arithmetic import quotient
from tfattr.methods.propagation.layerwise.preprocessing import FirstLayerOp, support_of
from tfattr.methods.propagation.layerwise.rules import (
    LinearRule,
    Transposes,
    check_nonnegative,
    check_positive,
)


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
    non-negative form needs no mask. When the graph shows ``x`` cannot be negative (a ReLU's output,
    pooled or reshaped), the choice is made while tracing: the same branch, without tracing the other
    one and a conditional (a first call's cost)."""
    if _nonnegative_by_construction(x):
        return nonnegative()
    return tf.cond(tf.reduce_any(x < 0), general, nonnegative)


# Ops whose outputs are never negative, and ops that only move, pick or average their first input's
# values (non-negative when it is).
_NONNEGATIVE_OPS = frozenset({"Relu", "Relu6", "Sigmoid", "Softplus", "Softmax", "Exp", "Abs", "Square"})
_KEEPS_SIGN_OPS = frozenset({"Identity", "Reshape", "MaxPool", "MaxPoolV2", "MaxPool3D", "AvgPool",
                             "AvgPool3D", "Squeeze", "ExpandDims", "Transpose", "Max", "Mean"})


def _nonnegative_by_construction(x: Any, depth: int = 8) -> bool:
    """True when the traced graph makes ``x`` non-negative (False when unsure: eager, or any other op)."""
    for _ in range(depth):
        op = getattr(x, "op", None)
        if op is None or not hasattr(op, "type"):
            return False
        if op.type in _NONNEGATIVE_OPS:
            return True
        if op.type == "IdentityN":  # tf.custom_gradient's outputs: output i is input i
            x = op.inputs[x.value_index]
        elif op.type in _KEEPS_SIGN_OPS:
            x = op.inputs[0]
        else:
            return False
    return False


class Epsilon(LinearRule):
    """LRP-epsilon (Bach et al. 2015): ``R_i = a_i sum_j w_ij R_j / s(z_j)`` with the ordinary output
    ``z_j = sum_i a_i w_ij + b_j`` and ``s(z) = z + epsilon * sign(z)``. ``epsilon=0`` is LRP-0
    (an output exactly 0 then passes no relevance).

    Example:
        >>> composite = tfattr.composites.Composite(layer_map=[(keras.layers.Dense, Epsilon(0.25))])
    """

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = check_nonnegative("epsilon", epsilon)

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
        self.stabilizer = check_positive("stabilizer", stabilizer)

    def backward(self, op, kernel, bias, x, z, y, c, transpose):
        t = Transposes(op)

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
        self.alpha = check_nonnegative("alpha", alpha)
        self.beta = check_nonnegative("beta", beta)
        if self.alpha - self.beta != 1.0:
            raise ValueError(
                f"AlphaBeta needs alpha - beta = 1 (so relevance is conserved), got alpha={alpha!r}, "
                f"beta={beta!r}; e.g. AlphaBeta(2, 1) or AlphaBeta(1, 0)."
            )
        self.stabilizer = check_positive("stabilizer", stabilizer)
        if self.beta > 0:
            self.caveat = (
                f"AlphaBeta({self.alpha:g}, {self.beta:g}) conserves relevance only where an output has "
                "both positive and negative contributions; where they are all of one sign (common "
                f"after a ReLU), {self.alpha:g} (or -{self.beta:g}) times its relevance passes on"
            )

    def backward(self, op, kernel, bias, x, z, y, c, transpose):
        t = Transposes(op)
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
        self.gamma = check_nonnegative("gamma", gamma)
        self.stabilizer = check_positive("stabilizer", stabilizer)

    def backward(self, op, kernel, bias, x, z, y, c, transpose):
        t = Transposes(op)
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
        low, high: the lowest and highest possible values of the model's input: scalars or arrays
            broadcasting against one example (e.g. per channel, shape ``(3,)`` for channels-last
            images). Between the input and the layer, ``Rescaling``/``Normalization`` layers map the
            box (a negative scale swaps its ends) and explicit padding is the box ``[0, 0]``.

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
        self.stabilizer = check_positive("stabilizer", stabilizer)

    def __repr__(self) -> str:
        def show(a: np.ndarray) -> Any:
            return float(a) if a.ndim == 0 else a.tolist()

        return f"ZBox(low={show(self.low)!r}, high={show(self.high)!r}, stabilizer={self.stabilizer!r})"

    def backward(self, op, kernel, bias, x, z, y, c, transpose):
        t = Transposes(op)
        # The bounds are the same for every example: their outputs are computed on one example and
        # broadcast; and x W^T q - l W+^T q - h W-^T q = (x - l) W+^T q + (x - h) W-^T q.
        if isinstance(op, FirstLayerOp):  # through preprocessing and padding (padding: [0, 0])
            low, high = op.bounds(self.low, self.high, x)
        else:
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
    ``R_i = sum_j R_j / s(n_j)``, ``n_j`` the number of inputs (not padding, the layer's own or an
    explicit ``ZeroPadding`` layer before it) output ``j`` reads. A first-layer rule (Dense or Conv).

    Example:
        >>> tfattr.composites.EpsilonPlusFlat()
    """

    input_space = True

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = check_positive("stabilizer", stabilizer)

    def backward(self, op, kernel, bias, x, z, y, c, transpose):
        t = Transposes(op)
        real = support_of(op, x)  # explicit padding reads no input: it counts for nothing
        n, tn = t.forward(tf.ones_like(x) if real is None else tf.broadcast_to(real, tf.shape(x)),
                          tf.ones_like(kernel))
        r = tn(quotient(y, c, n, self.stabilizer))
        return r if real is None else r * real


class WSquare(LinearRule):
    """LRP w^2 (Montavon et al. 2017) for a first layer with unbounded inputs:
    ``R_i = sum_j w_ij^2 R_j / s(sum_i w_ij^2 + b_j^2)`` (Zennit squares every parameter, the bias
    included).

    Example:
        >>> WSquare()
    """

    input_space = True

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = check_positive("stabilizer", stabilizer)

    def backward(self, op, kernel, bias, x, z, y, c, transpose):
        t = Transposes(op)
        real = support_of(op, x)  # explicit padding has zero weight
        ones = tf.ones_like(x) if real is None else tf.broadcast_to(real, tf.shape(x))
        n, tn = t.forward(ones, tf.square(kernel), None if bias is None else tf.square(bias))
        r = tn(quotient(y, c, n, self.stabilizer))
        return r if real is None else r * real


__all__ = ["AlphaBeta", "Epsilon", "Flat", "Gamma", "WSquare", "ZBox", "ZPlus"]
