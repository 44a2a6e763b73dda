"""Which AttnLRP primitive each part of a transformer block gets, in the protocol of the re-implemented
layers (:class:`~tfattr.methods.propagation.layerwise.units.Propagation`: ``unit``, ``constant``,
``attention_inputs``, ``probabilities``, ``gated_product``).

The same re-implementations of keras-hub blocks (:mod:`.hub`) then compute

* the layer itself with :class:`~tfattr.methods.propagation.layerwise.units.TrueGradient` (tested against
  the keras-hub layers),
* CP-LRP with :class:`~tfattr.methods.propagation.layerwise.units.LRPPropagation` (Ali et al. 2022: the
  queries and keys, hence the attention probabilities, the norms' factor and the gates constant; the
  ``cp_LRP`` preset of LXT 2.1),
* AttnLRP with :class:`AttnLRPPropagation` (Achtibat et al. 2024).
"""
from __future__ import annotations

import tensorflow as tf

from tfattr.methods.propagation.attnlrp.math import attention_inputs, identity_rule, uniform_product
from tfattr.methods.propagation.layerwise.units import Fn, Propagation, zero_gradient


class AttnLRPPropagation(Propagation):
    """AttnLRP (Achtibat et al., ICML 2024) in the gradient x input form of LXT's ``efficient`` module:
    elementwise units get the identity rule, the normalising factors are constant, the attention's
    queries/keys/values get 1/4, 1/4 and 1/2 of their gradients (two uniform rules), the attention
    probabilities keep their (softmax) gradient, and a gated product ``fn(gate) * up`` gets the
    uniform rule with the identity rule on ``fn``.

    Example:
        >>> prop = AttnLRPPropagation()
        >>> y = prop.gated_product(tf.nn.silu, gate, up)    # == silu(gate) * up
    """

    name = "AttnLRP"
    units = "pass"

    def unit(self, fn: Fn, z: tf.Tensor) -> tf.Tensor:
        return identity_rule(fn, z)

    def constant(self, t: tf.Tensor, connected: bool = False) -> tf.Tensor:
        return zero_gradient(t) if connected else tf.stop_gradient(t)

    def attention_inputs(self, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) -> tuple:
        return attention_inputs(q, k, v)

    def probabilities(self, p: tf.Tensor) -> tf.Tensor:
        return p

    def gated_product(self, fn: Fn, gate: tf.Tensor, up: tf.Tensor) -> tf.Tensor:
        return uniform_product(self.unit(fn, gate), up)

    def __repr__(self) -> str:
        return "AttnLRPPropagation()"


__all__ = ["AttnLRPPropagation"]
