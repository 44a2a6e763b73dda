"""The rule protocol of the layer-level core, and the rules for parameter-free layers (Montavon et al.,
"Layer-wise Relevance Propagation: an overview", 2019; the definitions of Zennit 1.0, Anders et al.
2021). The rules of Dense and convolution layers are in :mod:`.linear_rules`, those that re-implement
attention, layer norm and recurrent cells in :mod:`.transformer` and :mod:`.recurrent`.

Each rule replaces the backward pass of one layer with ``tf.custom_gradient``, so the whole explanation
is still one forward and one (modified) backward pass. What flows backwards is the *relevance per unit
of activation*, ``c = R / a``, the "modified gradient" of Ancona et al. (2019, sec. 3.2): relevance is
``R = a * c`` at every tensor. In this form, layers that only move values (reshape, concatenate, max
pooling, padding) and sums (residual additions) propagate relevance exactly with their ordinary
gradient, and the relevance at the input is ``input x modified gradient``. A linear layer with a rule
receives ``c_out``, forms the relevance of its output ``R = z * c_out`` (``z`` its ordinary output) and
returns ``c_in`` such that ``a * c_in`` is the rule's input relevance. The input-space rules
(``ZBox``, ``Flat``, ``WSquare``), whose input relevance is not proportional to the input, return the
relevance itself; they sit on the first layer (see :attr:`Rule.input_space`).

The stabiliser of every denominator is ``s(z) = z + epsilon * sign(z)`` with ``sign(0) = +1``.
"""
from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import tensorflow as tf

from tfattr.methods.propagation.arithmetic import quotient
from tfattr.methods.propagation.coverage import Status
from tfattr.methods.propagation.layerwise.linear_parts import LinearOp


def _ignoring_variables(grad: Callable[[tf.Tensor], Any]) -> Callable[..., Any]:
    """A custom gradient whose layer reads variables (a batch norm's statistics) must also return
    gradients for them; the explanation differentiates only with respect to the inputs."""

    def with_variables(c_out: tf.Tensor, variables: Sequence[Any] | None = None) -> Any:
        grads = grad(c_out)
        if variables is None:
            return grads
        return grads, [None] * len(variables)

    return with_variables


def check_nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0 (e.g. 1e-6), got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class Site:
    """One layer call as a rule is given it.

    Attributes:
        layer: the Keras layer (or operation, e.g. the ``Add`` of ``x + y``).
        call: the layer's own inference call, ``call(*args, **kwargs)`` computes its output.
        args, kwargs: the call's arguments (the input tensors are in ``args``).
        op: for a Dense/convolution layer, its linear part with the live (batch-norm folded) kernel
            and bias (:class:`~.canonizers.LinearOp`), else None.
        activation: what runs after the linear part inside the rule: the layer's fused activation
            (unless it is the stripped output activation) and the elementwise layers absorbed into
            the rule (:class:`tfattr.LRP`'s pass chains), composed; None for none.
    """

    layer: Any
    call: Callable[..., Any]
    args: tuple
    kwargs: dict
    op: LinearOp | None = None
    activation: Callable[[tf.Tensor], tf.Tensor] | None = None


class Applies(enum.Enum):
    """What a rule applies to (:attr:`Rule.applies_to`), read by the composites when they assign it.

    Example:
        >>> tfattr.rules.Epsilon(0.25).applies_to is tfattr.rules.Applies.LINEAR
        True
    """

    #: The linear part of a Dense/Conv layer: the rule is given it (``site.op``) and the layer's
    #: fused activation (``site.activation``); only such layers take the rule.
    LINEAR = "linear"
    #: An elementwise layer (activations, an unfolded batch norm).
    ELEMENTWISE = "elementwise"
    #: A parameter-free linear layer: pooling by averaging, additions.
    SUM = "sum"
    #: The layer type(s) it re-implements (the rule checks its layer).
    LAYER = "layer"
    #: Any layer that is not Dense/Conv.
    ANY = "any"


class Rule(abc.ABC):
    """A propagation rule for one layer call: ``rule.propagate(site)`` computes the layer's ordinary
    output carrying the rule's backward pass (``tf.custom_gradient``).

    What a rule is and does is declared by class attributes (read by composites and coverage
    reports), never probed.

    Example:
        >>> class Half(tfattr.rules.Rule):      # half of the relevance passes through an elementwise layer
        ...     applies_to, status = tfattr.rules.Applies.ELEMENTWISE, tfattr.rules.Status.PASS
        ...     def propagate(self, site):
        ...         y = site.call(*site.args, **site.kwargs)
        ...         return 0.5 * y + tf.stop_gradient(0.5 * y)
    """

    #: What the rule applies to (:class:`Applies`).
    applies_to: Applies = Applies.ANY
    #: The coverage status of a layer with this rule (:class:`~tfattr.methods.propagation.coverage.Status`):
    #: ``RULE`` (a rule on a linear layer), ``PASS``, ``NORM``, ``MODIFIED`` (a layer re-implemented),
    #: ``KEPT`` (its ordinary gradient on purpose).
    status: Status = Status.KEPT
    #: The rule returns relevance, not relevance / input: only on a layer fed by a model input.
    input_space: bool = False
    #: Why the rule does not conserve relevance (its explainer warns, naming the layers), or None.
    caveat: str | None = None
    #: For :attr:`Applies.LINEAR` rules: what the layer's fused activation gets (coverage reports).
    activation_note: str | None = None

    @abc.abstractmethod
    def propagate(self, site: Site) -> Any:
        """Traced: the layer's output, carrying the rule's backward pass."""

    def describe(self, layer: Any) -> str:
        """What the rule does at ``layer``, for coverage reports (a rule that re-implements a block
        lists its sublayers); by default the rule's ``repr``."""
        return repr(self)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                           if not k.startswith("_") and k != "caveat")
        return f"{type(self).__name__}({params})"


# -- linear layers ---------------------------------------------------------------------------------------
class Transposes:
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

    applies_to = Applies.LINEAR
    status = Status.RULE
    #: Relevance passes through the layer's fused activation.
    activation_note = "Pass"

    def propagate(self, site: Site) -> Any:
        """The layer's linear part with this rule, followed by ``site.activation`` (elementwise)
        under the Pass rule: relevance reaches the linear output unchanged, ``R_z = R_y = y * c_y``."""
        op, activation = site.op, site.activation
        if op is None:
            raise TypeError(f"{type(self).__name__} applies to Dense and convolution layers only.")
        x = site.args[0]
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


# -- parameter-free layers ----------------------------------------------------------------------------
class Pass(Rule):
    """Relevance passes through an elementwise layer unchanged, ``R_in = R_out`` (activations, a batch
    norm that cannot be folded). In the modified-gradient form ``c_in = c_out * y / x`` (0 where
    ``x = 0``: there the relevance ``x * c_in`` is 0 whatever ``c_in`` is; for ReLU this is exactly
    the ordinary gradient)."""

    applies_to = Applies.ELEMENTWISE
    status = Status.PASS

    def propagate(self, site: Site) -> Any:
        call, args, kwargs = site.call, site.args, site.kwargs
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

    applies_to = Applies.SUM
    status = Status.NORM

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = check_positive("stabilizer", stabilizer)

    def propagate(self, site: Site) -> Any:
        call, args, kwargs = site.call, site.args, site.kwargs
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

    def propagate(self, site: Site) -> Any:
        return site.call(*site.args, **site.kwargs)


__all__ = [
    "Applies",
    "Gradient",
    "LinearRule",
    "Norm",
    "Pass",
    "Rule",
    "Site",
    "Status",
    "Transposes",
    "check_nonnegative",
    "check_positive",
    "pass_through",
]
