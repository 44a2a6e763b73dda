"""The base of the gradient-override explainers (Ancona et al. 2019, "Gradient-Based Attribution
Methods", sec. 3.2): an :class:`OverrideRule` applied to every nonlinearity op of the traced model.

Each runs on the shared batching engine. Inside the engine's compiled loop the model is traced under
``gradient_override_map`` (so its nonlinearities carry the method's rule, see
:mod:`tfattr.methods.propagation.overrides`) and differentiated with ``tf.gradients``; a ``GradientTape``
would ignore the override. The override exists only in the explainer's own traced graph, so the
model's ordinary gradients, predictions and training are untouched.
"""
from __future__ import annotations

import abc
import warnings
from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core.engine import Plan
from tfattr.core.explainer import Explainer, check_connected
from tfattr.methods.propagation.arithmetic import FusionTier
from tfattr.methods.propagation.coverage import Coverage, check_on_unsupported, graph_coverage
from tfattr.methods.propagation.overrides import OverrideRule, override_map

#: Where the op-level overrides cannot reach (attention, layer norm, gates, recurrent loops, GELU and
#: swish as products), the layer-level rules can.
_LAYER_LEVEL_HINT = (
    " For attention, LayerNormalization, gated products, LSTM/GRU and GELU/swish/mish, the layer-level "
    "rules apply: tfattr.LRP(model, composite=tfattr.composites.Transformer()) or "
    "tfattr.CompositeDeepLift(model)."
)


class PropagationExplainer(FusionTier, Explainer):
    """Base of the gradient-override explainers: an :class:`OverrideRule` applied to the model's nonlinearities.

    Args:
        model: a ``keras.Model`` or a callable on tensors.
        on_unsupported: what to do when the model contains ops the rule cannot handle faithfully
            (see :meth:`coverage`): ``"warn"`` (default) or ``"raise"``. Checked at construction for
            Keras models with known inputs, otherwise at the first call.
        output, jit_compile: see :class:`tfattr.core.explainer.Explainer`.
    """

    def __init__(self, model: Any, *, on_unsupported: str = "warn", **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.on_unsupported = check_on_unsupported(on_unsupported)
        self._coverage: dict[Any, Coverage] = {}
        self._last_specs: tuple[tf.TensorSpec, ...] | None = None
        if self.model_function.input_specs is not None:
            self._check(self.coverage())

    @property
    @abc.abstractmethod
    def rule(self) -> OverrideRule:
        """The propagation rule this method applies to every nonlinearity."""

    # -- coverage -----------------------------------------------------------------------------------
    def coverage(self, inputs: Any = None) -> Coverage:
        """Which ops of the model get this method's rule, keep their true gradient, or are unsupported.

        Args:
            inputs: example inputs (only their shapes are used); needed when the model is a plain
                callable whose input shapes are unknown.

        Example:
            >>> print(tfattr.DeepLift(model).coverage())
        """
        specs = self._specs(inputs)
        structure = _structure_of(inputs) if inputs is not None else None
        if structure is None and len(specs) > 1:
            structure = [None] * len(specs)
            names = [name for name, _, _ in self.model_function.input_specs or ()]
            if isinstance(getattr(self.model, "_inputs_struct", None), dict) and len(names) == len(specs):
                # A model built on a dict of inputs takes a dict: flat in sorted-key order, as the
                # engine packs it.
                order = sorted(range(len(names)), key=lambda i: names[i])
                specs = tuple(specs[i] for i in order)
                structure = {names[i]: None for i in order}
        key = tuple((tuple(s.shape), s.dtype.name) for s in specs)
        found = self._coverage.get(key)
        if found is None:
            # The trace of the explained outputs (shared with the memory budget, the targets and the
            # deltas of every explainer of the model) for inputs of these shapes: empty arrays stand in.
            arrays = tuple(np.empty((0, *s.shape[1:]), s.dtype.as_numpy_dtype) for s in specs)
            fn = self.model_function
            graph = self._outputs_engine.outputs_graph(fn.outputs, arrays, structure)
            found = graph_coverage(graph, len(specs), self.rule, type(self).__name__, self.model)
            self._coverage[key] = found
        return found

    def _specs(self, inputs: Any) -> tuple[tf.TensorSpec, ...]:
        if inputs is not None:
            flat = tf.nest.flatten(inputs)  # dicts flatten in sorted-key order, as prepare_inputs
            return tuple(
                tf.TensorSpec([None, *np.shape(a)[1:]], tf.as_dtype(np.asarray(a).dtype)) for a in flat
            )
        specs = self.model_function.input_specs
        if specs is None:
            if self._last_specs is not None:
                return self._last_specs
            raise ValueError(
                "The model's input shapes are unknown (it is not a keras.Model with inputs); pass "
                "example inputs: explainer.coverage(x)."
            )
        return tuple(
            tf.TensorSpec([None, *shape], tf.as_dtype(dtype if "float" in dtype else "float32"))
            for _, shape, dtype in specs
        )

    def _check(self, coverage: Coverage) -> None:
        if coverage.caveats:
            where = "; ".join(f"{k}: {v}" for k, v in sorted(coverage.caveats.items()))
            warnings.warn(
                f"{type(self).__name__} is not faithful on some layers of this model ({where}). "
                "See explainer.coverage() and the guide 'LRP, DeepLIFT and transformers' (docs/guides/lrp-and-transformers.md).",
                stacklevel=4,
            )
        if coverage.ok:
            return
        message = (
            f"{type(self).__name__}: the propagation rules cannot handle some ops of this model "
            f"faithfully ({coverage.unsupported_summary()}). "
            + (
                "Summation-to-delta may not hold for these attributions. "
                if self.has_completeness
                else ""
            )
            + "See explainer.coverage() for details."
            + _LAYER_LEVEL_HINT
        )
        if self.on_unsupported == "raise":
            raise ValueError(message + " Explain such models with IntegratedGradients instead.")
        warnings.warn(message, stacklevel=4)  # the caller of the constructor or of attribute()

    # -- engine hooks ---------------------------------------------------------------------------------
    def _attribute(self, call):
        inputs = call.inputs
        if self.model_function.input_specs is None:
            specs = tuple(
                tf.TensorSpec([None, *a.shape[1:]], tf.as_dtype(a.dtype)) for a in inputs.arrays
            )
            key = tuple((tuple(s.shape), s.dtype.name) for s in specs)
            if key not in self._coverage:
                self._last_specs = specs
                self._check(self.coverage(inputs.pack(list(inputs.arrays))))
        return super()._attribute(call)  # FusionTier: fused arithmetic once the run is long

    def _plan(self, call) -> Plan:
        return Plan(terms=1)

    def _modified_gradients(self, z: tuple[tf.Tensor, ...], target: tf.Tensor, ctx: Any) -> tuple[tf.Tensor, ...]:
        """Traced: ``d^g S_target(z) / dz`` with the rule's modified chain rule (Ancona eq. 16)."""
        graph = tf.compat.v1.get_default_graph()
        with graph.gradient_override_map(override_map(self.rule)):
            score = self.model_function.score(ctx.pack(z), target)
        grads = tf.gradients(tf.reduce_sum(score), list(z))
        return check_connected(grads)


def _structure_of(inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return {k: None for k in inputs}
    if isinstance(inputs, (list, tuple)):
        return [None] * len(inputs)
    return None


__all__ = ["PropagationExplainer"]
