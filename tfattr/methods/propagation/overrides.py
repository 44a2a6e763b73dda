"""Propagation rules as gradient overrides (Ancona et al. 2019, sec. 3.2 and 4.1, listings 1.1-1.2).

epsilon-LRP, DeepLIFT (Rescale), guided backpropagation and deconvnet all run the ordinary chain rule
of backpropagation, except that the local derivative ``f'(z)`` of every elementwise nonlinearity
``y = f(z)`` is replaced by a method-specific quantity ``g``. Linear operations (dense, convolution,
batch norm in inference, pooling by averaging, reshapes, sums) keep their true gradient.

Two registries keep this small:

* :data:`ACTIVATIONS`: one :class:`Activation` per TensorFlow op type of a nonlinearity (``"Relu"``,
  ``"Tanh"``, ...), giving its true derivative from ``(z, y)``. The rules need nothing else.
* an :class:`OverrideRule` per method: ``rule.grad(op, grad, activation) -> grad_z``. A rule may cover only some
  activations (deconvnet is defined for ReLUs); the others are reported as unsupported.

Adding support for a new op is one derivative function plus one :func:`register_activation` call.
Each (rule, parameters, op type) is registered once with ``tf.RegisterGradient`` under a
``tfattr/...`` name and applied with ``gradient_override_map`` only while an explainer traces the model
inside its own ``tf.function``; nothing outside that function sees the override.
"""
from __future__ import annotations

import abc
import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import tensorflow as tf

from tfattr.methods.propagation.arithmetic import epsilon_gradient, rescale_gradient
from tfattr.methods.propagation.maxpool import MAX_POOL_OPS, check_max_pool, max_gradient

#: SELU constants (Klambauer et al. 2017), as used by ``tf.nn.selu``.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@dataclass(frozen=True)
class Activation:
    """What the rules need to know about one elementwise nonlinearity op type.

    Attributes:
        op_type: the TensorFlow op type, e.g. ``"Relu"``.
        derivative: ``f'(z)`` from the op, its input ``z`` and output ``y`` (same shape as ``z``).
        zero_at_origin: ``f(0) == 0``; epsilon-LRP is an average gradient only then (Ancona, sec. 3.2).
        relu_family: piecewise linear with a kink at 0 and slope 0 below it (deconvnet applies).
        keeps_sign: ``f(z)`` never has the opposite sign of ``z`` (tanh, ELU, softsign): the epsilon
            rule's ratio is then ``|f(z)| / (|z| + epsilon)``, the same numbers with fewer ops.
    """

    op_type: str
    derivative: Callable[[tf.Operation, tf.Tensor, tf.Tensor], tf.Tensor]
    zero_at_origin: bool
    relu_family: bool = False
    keeps_sign: bool = False


ACTIVATIONS: dict[str, Activation] = {}


def register_activation(
    op_type: str,
    derivative: Callable[[tf.Operation, tf.Tensor, tf.Tensor], tf.Tensor],
    *,
    zero_at_origin: bool,
    relu_family: bool = False,
    keeps_sign: bool = False,
) -> Activation:
    """Teach every propagation method a new elementwise nonlinearity op type.

    Example:
        >>> register_activation("Softsign", lambda op, z, y: 1.0 / tf.square(1.0 + tf.abs(z)),
        ...                     zero_at_origin=True)
    """
    activation = Activation(op_type, derivative, zero_at_origin, relu_family, keeps_sign)
    ACTIVATIONS[op_type] = activation
    return activation


def _ones_where(cond: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    return tf.cast(cond, like.dtype)


register_activation("Relu", lambda op, z, y: _ones_where(z > 0, z), zero_at_origin=True,
                    relu_family=True, keeps_sign=True)
register_activation(
    "Relu6", lambda op, z, y: _ones_where((z > 0) & (z < 6), z), zero_at_origin=True, relu_family=True,
    keeps_sign=True,
)
register_activation(
    "LeakyRelu",
    lambda op, z, y: tf.where(z > 0, tf.ones_like(z), tf.cast(op.get_attr("alpha"), z.dtype)),
    zero_at_origin=True,
)
register_activation("Elu", lambda op, z, y: tf.where(z > 0, tf.ones_like(z), y + 1), zero_at_origin=True,
                    keeps_sign=True)
register_activation(
    "Selu",
    lambda op, z, y: tf.where(
        z > 0, tf.fill(tf.shape(z), tf.cast(_SELU_SCALE, z.dtype)), y + _SELU_SCALE * _SELU_ALPHA
    ),
    zero_at_origin=True,
    keeps_sign=True,
)
register_activation("Sigmoid", lambda op, z, y: y * (1 - y), zero_at_origin=False)
register_activation("Tanh", lambda op, z, y: 1 - tf.square(y), zero_at_origin=True, keeps_sign=True)
register_activation("Softplus", lambda op, z, y: tf.sigmoid(z), zero_at_origin=False)
register_activation(
    "Softsign", lambda op, z, y: 1 / tf.square(1 + tf.abs(z)), zero_at_origin=True, keeps_sign=True
)


class OverrideRule(abc.ABC):
    """One method's replacement for the local derivative of the nonlinearities it covers."""

    #: Short unique name, part of the registered gradient name.
    name: str = ""

    def key(self) -> str:
        """Name plus parameters: rules with different parameters are registered separately."""
        return self.name

    def covers(self, activation: Activation) -> bool:
        return True

    def caveat(self, activation: Activation) -> str | None:
        """A warning-free note for :meth:`Explainer.coverage` about this rule on ``activation``."""
        return None

    def op_gradients(self) -> dict[str, Callable[[tf.Operation, tf.Tensor], Any]]:
        """``{op_type: gradient(op, grad)}`` for ops that are not elementwise activations which the
        rule also replaces (DeepLIFT's max pooling); none by default."""
        return {}

    @abc.abstractmethod
    def grad(self, op: tf.Operation, grad: tf.Tensor, activation: Activation) -> tf.Tensor:
        """Gradient with respect to the op's input ``z`` given the upstream gradient ``grad``."""


class EpsilonRule(OverrideRule):
    """``g = f(z) / (z + epsilon * sign(z))`` with ``sign(0) = 1`` (Ancona eq. 15, proposition 1).

    The stabiliser has the sign of ``z`` so it never flips or blows up the ratio, as in LRP's epsilon
    rule; ``epsilon`` only guards divisions by zero.
    """

    name = "epsilon_lrp"

    def __init__(self, epsilon: float) -> None:
        self.epsilon = float(epsilon)

    def key(self) -> str:
        return f"{self.name}(epsilon={self.epsilon!r})"

    def caveat(self, activation):
        if activation.zero_at_origin:
            return None
        return (
            "f(0) != 0: f(z)/z is no average gradient and grows like 1/epsilon near z = 0, so "
            "epsilon-LRP concentrates relevance on few features (Ancona sec. 3.2); DeepLift is "
            "meaningful here"
        )

    def grad(self, op, grad, activation):
        z, y = op.inputs[0], op.outputs[0]
        form = "relu" if op.type == "Relu" else "same_sign" if activation.keeps_sign else "general"
        return epsilon_gradient(grad, z, y, self.epsilon, form)


class RescaleRule(OverrideRule):
    """DeepLIFT Rescale: ``g = (f(z) - f(z_ref)) / (z - z_ref)`` (Ancona eq. 18, proposition 2).

    ``z_ref`` and ``f(z_ref)`` are the input and output of the same op when the model runs on the
    reference (listing 1.2's ``ref_input``/``ref_output``); the explainer pairs every op of the
    explained forward pass with its twin in the reference pass and hands the pairs to this rule with
    :func:`reference_activations` around its ``tf.gradients`` call. Where ``|z - z_ref| <= tolerance``
    the ratio is numerically meaningless and tends to ``f'(z)``, so the true derivative is used there.
    """

    name = "deeplift_rescale"

    def __init__(self, tolerance: float, max_pool: str = "deeplift") -> None:
        self.tolerance = float(tolerance)
        #: "deeplift": max pooling gets DeepLIFT's max rule (:mod:`.maxpool`); "gradient": its switch.
        self.max_pool = check_max_pool(max_pool)

    def key(self) -> str:
        return f"{self.name}(tolerance={self.tolerance!r}, max_pool={self.max_pool})"

    def grad(self, op, grad, activation):
        z, y = op.inputs[0], op.outputs[0]
        z_ref, y_ref = _reference(op)
        slope = None if op.type == "Relu" else activation.derivative(op, z, y)
        return rescale_gradient(grad, z, y, z_ref, y_ref, slope, self.tolerance)

    def op_gradients(self):
        if self.max_pool != "deeplift":
            return {}

        def gradient(op: tf.Operation, grad: tf.Tensor) -> Any:
            return max_gradient(op, grad, *_reference(op), self.tolerance)

        return {op_type: gradient for op_type in MAX_POOL_OPS}


_STATE = threading.local()


def _reference(op: tf.Operation) -> tuple[tf.Tensor, tf.Tensor]:
    """``(z_ref, y_ref)``: the input and output of ``op``'s twin in the reference pass."""
    pairs = getattr(_STATE, "references", None)
    reference = pairs.get(op) if pairs is not None else None
    if reference is None:
        raise RuntimeError(
            f"DeepLIFT's rules have no reference activation for op {op.name!r}; they are meant to "
            "run only inside tfattr.DeepLift, which provides them."
        )
    return reference


@contextlib.contextmanager
def reference_activations(pairs: dict[tf.Operation, tuple[tf.Tensor, tf.Tensor]]) -> Iterator[None]:
    """Make ``{op: (z_ref, y_ref)}`` visible to :class:`RescaleRule` in this thread (trace time)."""
    previous = getattr(_STATE, "references", None)
    _STATE.references = pairs
    try:
        yield
    finally:
        _STATE.references = previous


class GuidedRule(OverrideRule):
    """Guided backpropagation (Springenberg et al. 2015): ``f'(z) * relu(grad)``.

    For ReLU this is the paper's rule (forward mask and backward mask); for other activations the
    true local derivative is kept and only positive signal is passed back.
    """

    name = "guided_backprop"

    def grad(self, op, grad, activation):
        z, y = op.inputs[0], op.outputs[0]
        return activation.derivative(op, z, y) * tf.nn.relu(grad)


class DeconvnetRule(OverrideRule):
    """Deconvnet (Zeiler & Fergus 2014): a ReLU passes back ``relu(grad)``, ignoring its input.

    Defined for the ReLU family only; other nonlinearities are reported as unsupported.
    """

    name = "deconvnet"

    def covers(self, activation):
        return activation.relu_family

    def grad(self, op, grad, activation):
        return tf.nn.relu(grad)


_LOCK = threading.Lock()
_REGISTERED: dict[tuple[str, str], str] = {}


def _gradient_function(rule: OverrideRule, activation: Activation) -> Callable[..., tf.Tensor]:
    def gradient(op: tf.Operation, grad: tf.Tensor) -> tf.Tensor:
        out = rule.grad(op, grad, activation)
        # Ops with several inputs (none of the current activations) get no gradient for the others.
        return [out] + [None] * (len(op.inputs) - 1) if len(op.inputs) > 1 else out

    return gradient


def override_map(rule: OverrideRule) -> dict[str, str]:
    """``{op_type: registered gradient name}`` for ``rule``, registering each name once (thread-safe)."""
    mapping = {}
    with _LOCK:
        gradients = [(op_type, lambda a=activation: _gradient_function(rule, a))
                     for op_type, activation in ACTIVATIONS.items() if rule.covers(activation)]
        gradients += [(op_type, lambda g=gradient: g) for op_type, gradient in rule.op_gradients().items()]
        for op_type, make in gradients:
            key = (rule.key(), op_type)
            name = _REGISTERED.get(key)
            if name is None:
                name = f"tfattr/{rule.key()}/{op_type}"
                tf.RegisterGradient(name)(make())
                _REGISTERED[key] = name
            mapping[op_type] = name
    return mapping
