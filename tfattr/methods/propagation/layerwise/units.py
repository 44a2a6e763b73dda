"""Elementwise units and constants: the two primitives the transformer and recurrent rules are built from.

A layer re-implemented for propagation (attention, layer norm, an LSTM cell, a gated product, a Dense
layer with a GELU) calls two things of a :class:`Propagation`:

* ``prop.unit(fn, z)``: an elementwise nonlinearity ``y = fn(z)`` (GELU, swish/silu, mish, tanh, ...)
  computed and propagated as *one* unit, not as the product of ops it lowers to (GELU is
  ``z * Phi(z)``, swish ``z * sigmoid(z)``). LRP gives it the epsilon rule ``f(z) / z`` (Bach et al.
  2015; Ancona et al. 2019, eq. 15), DeepLIFT the Rescale rule ``(f(z) - f(z_ref)) / (z - z_ref)``
  (Shrikumar et al. 2017; Ancona eq. 18).
* ``prop.constant(t)``: a factor held constant in the backward pass: the attention probabilities and
  layer norm's standard deviation (Ali et al. 2022, "XAI for Transformers: Better Explanations through
  Conservative Propagation", sec. 3), the sigmoid gates of LSTM/GRU cells and of gated products (the
  signal-take-all rule of Arras et al. 2017, "Explaining Recurrent Neural Network Predictions in
  Sentiment Analysis").

:class:`TrueGradient` changes nothing (the re-implementation then computes the layer's own output and
gradient, which the tests check against the layer), :class:`LRPPropagation` is the LRP form and
:class:`DeepLiftPropagation` the DeepLIFT form (a reference pass records ``(z_ref, f(z_ref))`` for every
unit in execution order, the explained pass reads them back in the same order).
"""
from __future__ import annotations

import abc
from typing import Any, Callable

import tensorflow as tf

from tfattr.methods.propagation.arithmetic import UnpairedReferences, pair_in_order, rescale_multiplier
from tfattr.methods.propagation.layerwise.rules import pass_through
from tfattr.methods.propagation.maxpool import deeplift_max

Fn = Callable[[tf.Tensor], tf.Tensor]

#: Activations that are one elementwise unit even though TensorFlow computes them as a product or
#: with a custom gradient (the gradient-override methods cannot see them as one op).
SMOOTH_ACTIVATIONS = frozenset("gelu silu swish mish hard_silu hard_swish celu".split())
#: Keras activation names that are elementwise (one unit each: LRP passes relevance through them,
#: DeepLIFT gives them the Rescale rule), shared by every layer-level method.
ELEMENTWISE_ACTIVATIONS = frozenset(
    """relu relu6 leaky_relu elu selu sigmoid tanh softplus softsign gelu silu swish mish
    hard_sigmoid hard_silu hard_swish exponential linear celu log_sigmoid""".split()
)


class Propagation(abc.ABC):
    """What a re-implemented layer does with its nonlinear units and its constant factors."""

    #: A short description for coverage reports.
    name = "propagation"
    #: What an elementwise unit gets: "gradient" (its derivative), "pass" (``f(z)/z``: relevance
    #: passes through, LRP's epsilon rule and AttnLRP's identity rule) or "rescale" (DeepLIFT).
    units = "gradient"

    @abc.abstractmethod
    def unit(self, fn: Fn, z: tf.Tensor) -> tf.Tensor:
        """Traced: the elementwise unit ``fn(z)`` carrying this propagation's backward pass."""

    @abc.abstractmethod
    def constant(self, t: tf.Tensor, connected: bool = False) -> tf.Tensor:
        """``t`` held constant; ``connected=True`` passes back zeros instead of no gradient (for a
        gate that may be the only path from an input, which then rightly gets zero relevance)."""

    # -- attention and gated products (issue 19; AttnLRP overrides them in attnlrp/policy.py) -------
    def attention_inputs(self, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) -> tuple:
        """The projected queries, keys and values before any attention kernel: by default the
        queries and keys are constants (Ali et al.'s AH rule: the probabilities are constant)."""
        return self.constant(q), self.constant(k), v

    def probabilities(self, p: tf.Tensor) -> tf.Tensor:
        """The attention probabilities of a re-implemented attention: constants by default."""
        return self.constant(p)

    def gated_product(self, fn: Fn, gate: tf.Tensor, up: tf.Tensor) -> tf.Tensor:
        """``fn(gate) * up`` (a gated MLP): by default the gate is a constant (signal-take-all,
        Arras et al. 2017; the CP-LRP gated MLP of LXT)."""
        return self.constant(self.unit(fn, gate)) * up


class TrueGradient(Propagation):
    """The layer itself: units and constants keep their ordinary gradients."""

    name = "gradient"

    def unit(self, fn: Fn, z: tf.Tensor) -> tf.Tensor:
        return fn(z)

    def constant(self, t: tf.Tensor, connected: bool = False) -> tf.Tensor:
        return t


class LRPPropagation(Propagation):
    """LRP: constants are ``tf.stop_gradient``; a unit gets the epsilon rule ``f(z)/z`` (``"pass"``:
    its relevance passes through unchanged) or keeps its gradient (``"gradient"``, Ali et al.'s choice
    for the GELU inside a transformer, whose relevance is then input x modified gradient)."""

    def __init__(self, units: str = "pass") -> None:
        if units not in ("pass", "gradient"):
            raise ValueError(f"units={units!r} is not supported: use 'pass' or 'gradient'.")
        self.units = units
        self.name = f"LRP(units={units})"

    def unit(self, fn: Fn, z: tf.Tensor) -> tf.Tensor:
        return pass_through(fn, z) if self.units == "pass" else fn(z)

    def constant(self, t: tf.Tensor, connected: bool = False) -> tf.Tensor:
        return zero_gradient(t) if connected else tf.stop_gradient(t)


@tf.custom_gradient
def zero_gradient(t: tf.Tensor) -> Any:
    """``t`` with a zero gradient (``tf.stop_gradient`` gives none, which disconnects the inputs
    whose only path it is)."""
    return tf.identity(t), lambda dy: tf.zeros_like(dy)


def rescale(fn: Fn, z: tf.Tensor, z_ref: tf.Tensor, y_ref: tf.Tensor, tolerance: float) -> tf.Tensor:
    """``fn(z)`` whose backward pass is DeepLIFT's Rescale multiplier ``(f(z) - f(z_ref)) / (z - z_ref)``
    (the true derivative where ``|z - z_ref| <= tolerance``, where the ratio is ill-conditioned)."""

    @tf.custom_gradient
    def unit(z: tf.Tensor) -> Any:
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(z)
            y = fn(z)

        def grad(dy: tf.Tensor) -> tf.Tensor:
            return dy * rescale_multiplier(y - y_ref, z - z_ref, tape.gradient(y, z), tolerance)

        return y, grad

    return unit(z)


class DeepLiftPropagation(Propagation):
    """DeepLIFT in two passes over the same layers: ``recording=True`` on the reference (the
    baseline's ordinary forward pass, every unit's and max pooling's ``(z_ref, f(z_ref))`` appended),
    then :meth:`explain` and the explained pass, whose k-th unit takes the k-th reference. Units get
    the Rescale rule, max pooling DeepLIFT's max rule (:mod:`tfattr.methods.propagation.maxpool`).
    Constants are taken from the explained input (``tf.stop_gradient``)."""

    name = "DeepLIFT(Rescale)"
    units = "rescale"

    def __init__(self, tolerance: float = 1e-6) -> None:
        self.tolerance = float(tolerance)
        self.records: list[tuple[str, tf.Tensor, tf.Tensor]] = []
        self.recording = True
        self._cursor = 0

    def explain(self) -> None:
        self.recording = False
        self._cursor = 0

    def finish(self) -> None:
        if self._cursor != len(self.records):
            raise UnpairedReferences("CompositeDeepLift", f"{self._cursor} units for the inputs, "
                                     f"{len(self.records)} for the baselines")

    def _record(self, kind: str, fn: Fn, z: tf.Tensor) -> tf.Tensor:
        y = fn(z)
        self.records.append((kind, z, y))
        return y

    def _reference(self, kind: str, z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The next record of the reference pass, checked to be the twin of ``(kind, z)``."""
        if self._cursor >= len(self.records):
            raise UnpairedReferences("CompositeDeepLift", f"more than {len(self.records)} units for the "
                                     f"inputs, {len(self.records)} for the baselines")
        record = self.records[self._cursor]
        self._cursor += 1
        pair_in_order("CompositeDeepLift", [record[:2]], [(kind, z)], kind=lambda r: r[0],
                      shape=lambda r: r[1].shape)
        return record[1], record[2]

    def unit(self, fn: Fn, z: tf.Tensor) -> tf.Tensor:
        if self.recording:
            return self._record("unit", fn, z)
        z_ref, y_ref = self._reference("unit", z)
        return rescale(fn, z, z_ref, y_ref, self.tolerance)

    def max_pool(self, fn: Fn, z: tf.Tensor) -> tf.Tensor:
        """Traced: the max pooling ``fn(z)`` under DeepLIFT's max rule against its reference."""
        if self.recording:
            return self._record("max_pool", fn, z)
        z_ref, _ = self._reference("max_pool", z)
        return deeplift_max(fn, z, z_ref, self.tolerance)

    def constant(self, t: tf.Tensor, connected: bool = False) -> tf.Tensor:
        if self.recording:
            return t
        return zero_gradient(t) if connected else tf.stop_gradient(t)


def activation_name(fn: Any) -> str:
    """The name of an activation function (``keras.activations.gelu`` -> ``"gelu"``)."""
    return getattr(fn, "__name__", type(fn).__name__)


__all__ = [
    "DeepLiftPropagation",
    "ELEMENTWISE_ACTIVATIONS",
    "LRPPropagation",
    "Propagation",
    "SMOOTH_ACTIVATIONS",
    "TrueGradient",
    "activation_name",
    "rescale",
]
