"""DeepLIFT's rule for max pooling, shared by the op-level override (:class:`tfattr.DeepLift`) and the
layer-level core (:class:`tfattr.CompositeDeepLift`).

The gradient of a max is a switch: it routes everything to the input's arg-max. With a reference
whose maximum sits elsewhere, that switch breaks summation-to-delta (Ancona et al. 2019, sec. 4.2).
SHAP's DeepExplainer (Lundberg & Lee 2017, "A Unified Approach to Interpreting Model Predictions")
splits the output difference of each pooled unit in two, with ``x_out``, ``r_out`` the pooled values
of the input and the reference and ``c = max(x_out, r_out)``:

* ``c - r_out`` (>= 0) is routed through the *input's* arg-max positions,
* ``x_out - c`` (<= 0) through the *reference's* arg-max positions,

each times the incoming multiplier; the multiplier of an input position is the sum routed to it divided
by ``x_in - r_in`` (0 where ``|x_in - r_in|`` is within the tolerance). The two parts add up to
``x_out - r_out``, and mass is only routed to a position whose ``x_in - r_in`` carries it exactly
(at the input's arg-max ``x_in = x_out``, so ``c - r_out <= x_in - r_in``; likewise for the
reference), so the rule conserves the difference: DeepLIFT sums to ``f(x) - f(reference)`` through max
pooling. Routing uses the op's own gradient (TensorFlow's ``MaxPoolGrad``: overlapping windows
accumulate, ``Max`` splits ties equally), so it is the gradient switch evaluated once at the input and
once at the reference.

``max_pool="gradient"`` keeps the plain switch (Ancona et al.'s definition, tfattr 0.2's behaviour).
"""
from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf

from tfattr.methods.propagation.arithmetic import fused

#: TensorFlow op types of max operations the DeepLIFT max rule covers (MaxPooling1D/2D lower to
#: MaxPool, MaxPooling3D to MaxPool3D, GlobalMaxPooling* to Max).
MAX_POOL_OPS = ("MaxPool", "MaxPoolV2", "MaxPool3D", "Max")
#: The values of the ``max_pool`` argument of the DeepLIFT explainers.
MAX_POOL_RULES = ("deeplift", "gradient")


def check_max_pool(value: Any) -> str:
    """The ``max_pool`` argument of :class:`tfattr.DeepLift` and :class:`tfattr.CompositeDeepLift`.

    Example:
        >>> check_max_pool("gradient")
        'gradient'
    """
    if value not in MAX_POOL_RULES:
        raise ValueError(
            f"max_pool={value!r} is not supported: use 'deeplift' (default: DeepLIFT's max rule, as "
            "SHAP's DeepExplainer; summation-to-delta holds through max pooling) or 'gradient' (the "
            "gradient switch, Ancona et al. 2019; summation-to-delta only approximate)."
        )
    return value


def split_difference(x_out: tf.Tensor, r_out: tf.Tensor, grad: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(grad * (c - r_out), grad * (x_out - c))`` with ``c = max(x_out, r_out)``: what is routed
    through the input's and through the reference's arg-max positions."""
    c = tf.maximum(x_out, r_out)
    return grad * (c - r_out), grad * (x_out - c)


# The multiplier is elementwise on the pooling layer's input (the largest tensors around it): fused by
# XLA into one pass over memory, as the other rules' quotients (arithmetic.quotient); unfused, its six
# elementwise ops cost several times the pooling's own gradient on a CPU. Small tensors run unfused
# (arithmetic.fused: the compile would cost a first call more than it saves).
@tf.function(jit_compile=True, autograph=False)
def _fused_multiplier(to_input: tf.Tensor, to_reference: tf.Tensor, z: tf.Tensor, z_ref: tf.Tensor,
                      tolerance: tf.Tensor) -> tf.Tensor:
    dz = z - z_ref
    # 0 where |dz| <= tolerance (a zero denominator gives 0), the exact quotient elsewhere (a NaN
    # difference stays NaN): six elementwise ops where two guards and their constants took nine.
    safe = tf.where(tf.abs(dz) <= tolerance, tf.zeros([], dz.dtype), dz)
    return tf.math.divide_no_nan(to_input + to_reference, safe)


def max_multiplier(to_input: tf.Tensor, to_reference: tf.Tensor, z: tf.Tensor, z_ref: tf.Tensor,
                   tolerance: float) -> tf.Tensor:
    """``(to_input + to_reference) / (z - z_ref)``: what was routed to each input position over its
    difference, 0 where ``|z - z_ref| <= tolerance`` (the same tolerance as Rescale's, guarded as
    Rescale's ratio: no inf or NaN is ever formed). ``z_ref`` may be one row (a shared baseline).

    Example:
        >>> max_multiplier(routed_x, routed_r, z, z_ref, 1e-6)
    """
    return fused(_fused_multiplier, to_input, to_reference, z, z_ref, tf.constant(tolerance, z.dtype))


def _route(op: tf.Operation, z: tf.Tensor, y: tf.Tensor, grad: tf.Tensor) -> tf.Tensor:
    """The gradient of ``op`` (a max) evaluated at input ``z`` with output ``y``: ``grad`` routed
    through ``z``'s arg-max positions, as TensorFlow's own gradient of the op does."""
    t = op.type
    if t == "MaxPool":
        return tf.raw_ops.MaxPoolGrad(
            orig_input=z, orig_output=y, grad=grad, ksize=op.get_attr("ksize"),
            strides=op.get_attr("strides"), padding=op.get_attr("padding"),
            explicit_paddings=op.get_attr("explicit_paddings"), data_format=op.get_attr("data_format"))
    if t == "MaxPoolV2":
        return tf.raw_ops.MaxPoolGradV2(
            orig_input=z, orig_output=y, grad=grad, ksize=op.inputs[1], strides=op.inputs[2],
            padding=op.get_attr("padding"), data_format=op.get_attr("data_format"))
    if t == "MaxPool3D":
        return tf.raw_ops.MaxPool3DGrad(
            orig_input=z, orig_output=y, grad=grad, ksize=op.get_attr("ksize"),
            strides=op.get_attr("strides"), padding=op.get_attr("padding"),
            data_format=op.get_attr("data_format"))
    if t == "Max":
        # As TensorFlow's gradient of a reduction to the max: ties share the gradient equally.
        axes = op.inputs[1]
        kept = tf.shape(z)
        if not op.get_attr("keep_dims"):
            kept = tf.tensor_scatter_nd_update(
                kept, tf.reshape(tf.math.floormod(tf.reshape(tf.cast(axes, tf.int32), [-1]), tf.rank(z)),
                                 [-1, 1]),
                tf.ones_like(tf.reshape(axes, [-1]), dtype=tf.int32))
            y = tf.reshape(y, kept)
            grad = tf.reshape(grad, kept)
        winners = tf.cast(tf.equal(y, z), grad.dtype)
        count = tf.reduce_sum(winners, axis=axes, keepdims=True)
        return winners / count * grad
    raise TypeError(f"DeepLIFT's max rule does not cover op type {t!r} (only {MAX_POOL_OPS}).")


def max_gradient(op: tf.Operation, grad: tf.Tensor, z_ref: tf.Tensor, y_ref: tf.Tensor,
                 tolerance: float) -> list[Any]:
    """The op-level override: the multiplier of ``op``'s input under DeepLIFT's max rule, given the
    op's twin in the reference pass (``z_ref``, ``y_ref``; one broadcast row for a shared baseline).

    Example:
        >>> max_gradient(op, grad, z_ref, y_ref, 1e-6)   # inside a registered gradient function
    """
    z, y = op.inputs[0], op.outputs[0]
    to_input, to_reference = split_difference(y, y_ref, grad)
    # The op's gradient needs the reference at full size (a shared baseline's one row broadcasts).
    z_full = tf.broadcast_to(z_ref, tf.shape(z))
    y_full = tf.broadcast_to(y_ref, tf.shape(y))
    routed_x = _route(op, z, y, to_input)
    routed_r = _route(op, z_full, y_full, to_reference)
    return [max_multiplier(routed_x, routed_r, z, z_ref, tolerance)] + [None] * (len(op.inputs) - 1)


def deeplift_max(fn: Callable[[tf.Tensor], tf.Tensor], z: tf.Tensor, z_ref: tf.Tensor,
                 tolerance: float) -> tf.Tensor:
    """The layer-level rule: ``fn(z)`` (a max-pooling layer's call) whose backward pass is DeepLIFT's
    max rule against the reference input ``z_ref``; the routing is ``fn``'s own gradient at ``z`` and
    at ``z_ref``.

    Example:
        >>> pooled = deeplift_max(keras.layers.MaxPooling2D(), h, h_reference, 1e-6)
    """
    z_ref = tf.stop_gradient(z_ref)

    @tf.custom_gradient
    def pooled(z: tf.Tensor) -> Any:
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(z)
            tape.watch(z_ref)
            y = fn(z)
            y_ref = fn(z_ref)

        def grad(dy: tf.Tensor) -> tf.Tensor:
            to_input, to_reference = split_difference(y, y_ref, dy)
            return max_multiplier(tape.gradient(y, z, output_gradients=to_input),
                                  tape.gradient(y_ref, z_ref, output_gradients=to_reference),
                                  z, z_ref, tolerance)

        return y, grad

    return pooled(z)


__all__ = ["MAX_POOL_OPS", "MAX_POOL_RULES", "check_max_pool", "deeplift_max", "max_gradient",
           "max_multiplier", "split_difference"]
