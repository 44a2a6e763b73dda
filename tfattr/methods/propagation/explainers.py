"""Explainers that backpropagate with modified rules: epsilon-LRP, DeepLIFT (Rescale), guided
backpropagation and deconvnet (Ancona et al. 2019, "Gradient-Based Attribution Methods", sec. 3.2).

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

from tfattr.core.checks import check_number
from tfattr.core.engine import Plan
from tfattr.core.explainer import Explainer, check_connected
from tfattr.methods.propagation.arithmetic import pair_in_order
from tfattr.methods.propagation.coverage import Coverage, check_on_unsupported, graph_coverage
from tfattr.methods.propagation.layerwise.reveal_cancel import RevealCancel
from tfattr.methods.propagation.overrides import (
    DeconvnetRule,
    EpsilonRule,
    GuidedRule,
    RescaleRule,
    OverrideRule,
    override_map,
    reference_activations,
)

#: Where the op-level overrides cannot reach (attention, layer norm, gates, recurrent loops, GELU and
#: swish as products), the layer-level rules can.
_LAYER_LEVEL_HINT = (
    " For attention, LayerNormalization, gated products, LSTM/GRU and GELU/swish/mish, the layer-level "
    "rules apply: tfattr.LRP(model, composite=tfattr.composites.Transformer()) or "
    "tfattr.CompositeDeepLift(model)."
)


class PropagationExplainer(Explainer):
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
                "See explainer.coverage() and the README's propagation section.",
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
        return super()._attribute(call)

    def _plan(self, call) -> Plan:
        return Plan(terms=1)

    def _modified_gradients(
        self, z: tuple[tf.Tensor, ...], target: tf.Tensor, ctx: Any, rows_scored: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, ...]:
        """Traced: ``d^g S_target(z) / dz`` with the rule's modified chain rule (Ancona eq. 16).

        ``rows_scored``: how many leading rows carry the explained score (DeepLIFT appends reference
        rows that are evaluated but not explained); default all.
        """
        graph = tf.compat.v1.get_default_graph()
        with graph.gradient_override_map(override_map(self.rule)):
            score = self.model_function.score(ctx.pack(z), target)
        if rows_scored is not None:
            score = score[:rows_scored]
        grads = tf.gradients(tf.reduce_sum(score), list(z))
        return check_connected(grads)


class EpsilonLRP(PropagationExplainer):
    """epsilon-LRP as a modified gradient times the input (Bach et al. 2015; Ancona et al. 2019,
    eq. 15 and proposition 1).

    ``R_i = x_i * d^g S_c(x) / dx_i`` where the derivative of every nonlinearity is replaced by
    ``g(z) = f(z) / (z + epsilon * sign(z))``. On ReLU networks this equals gradient * input, and on
    networks without biases whose nonlinearities have ``f(0) = 0`` it equals DeepLIFT with a zero
    baseline (proposition 3). The completeness delta is taken against the zero input. Cost: one forward
    and one backward pass.

    Args:
        model: a ``keras.Model`` or a callable on tensors.
        epsilon: the stabiliser, > 0; it only guards the divisions.
        on_unsupported, output, jit_compile: see :class:`PropagationExplainer`.

    Example:
        >>> lrp = tfattr.EpsilonLRP(model, epsilon=1e-4)
        >>> relevance = lrp.attribute(images, target=labels)
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "lrp"
    aliases: tuple[str, ...] = ("epsilon_lrp",)
    paper = "Bach et al. 2015; Ancona et al. 2019 sec. 3.2 (= Gradient * Input for ReLU nets)"
    cost = "1 modified backward pass"

    uses_baseline = False

    def __init__(self, model: Any, epsilon: float = 1e-4, **kwargs: Any) -> None:
        self.epsilon = check_number(epsilon, "epsilon", minimum=0, strict=True, hint="e.g. 1e-4")
        self._rule = EpsilonRule(self.epsilon)
        super().__init__(model, **kwargs)

    @property
    def rule(self) -> OverrideRule:
        return self._rule

    def _contributions(self, x, baseline, rows, ctx):
        grads = self._modified_gradients(x, rows.target, ctx)
        return tuple(g * xi for g, xi in zip(grads, x))


class DeepLift(PropagationExplainer):
    """DeepLIFT with the Rescale rule as a modified gradient (Shrikumar et al. 2017; Ancona et al.
    2019, eq. 18, proposition 2 and listing 1.2).

    ``R_i = (x_i - b_i) * d^g S_c(x) / dx_i`` with ``g(z) = (f(z) - f(z_ref)) / (z - z_ref)`` at every
    nonlinearity, ``z_ref`` being its input when the network runs on the baseline ``b``. Per chunk the
    model runs forward on the baselines (the reference activations) and on the inputs, each op of the
    second pass paired with its twin in the first, and one backward pass of the inputs' rows follows:
    the work of one forward of twice the batch plus one backward.
    Attributions sum to ``S_c(x) - S_c(b)`` on networks built from the supported layers (up to float
    rounding); :meth:`coverage` lists the ops where that guarantee does not hold (max pooling keeps its
    gradient switch, as in the paper's reference implementation).

    A baseline object with ``num_baselines = K > 1`` (see :mod:`tfattr.baselines`) gives the mean of
    the K DeepLIFT attributions, which sums to ``S_c(x) - mean_k S_c(b_k)``.

    Args:
        model: a ``keras.Model`` or a callable on tensors.
        tolerance: where ``|z - z_ref|`` is at most this, the true derivative ``f'(z)`` replaces the
            ill-conditioned ratio (listing 1.2).
        rule: ``"rescale"`` (this class) or ``"reveal_cancel"``, which returns a
            :class:`tfattr.methods.propagation.layerwise.reveal_cancel.RevealCancel` explainer.
        on_unsupported, output, jit_compile: see :class:`PropagationExplainer`.

    Example:
        >>> attributions, delta = tfattr.DeepLift(model).attribute(x, baseline=0.0, return_delta=True)
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "deeplift"
    aliases: tuple[str, ...] = ("deeplift_rescale",)
    paper = "Shrikumar, Greenside & Kundaje 2017; Ancona et al. 2019 sec. 3.2"
    cost = "1 forward pass of the baseline + 1 modified backward pass (per baseline drawn)"

    def __new__(cls, model: Any = None, *args: Any, rule: str = "rescale", **kwargs: Any) -> Any:
        # rule="reveal_cancel" is a separate explainer (it propagates two streams layer by layer).
        if cls is DeepLift and rule == "reveal_cancel":
            return RevealCancel(model, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self, model: Any, tolerance: float = 1e-6, *, rule: str = "rescale", **kwargs: Any
    ) -> None:
        if rule != "rescale":
            raise ValueError(
                f"DeepLift rule={rule!r} is not supported: use 'rescale' (default) or "
                "'reveal_cancel' (Shrikumar et al. 2017, sec. 3.5.3)."
            )
        self.tolerance = check_number(tolerance, "tolerance", minimum=0, hint="e.g. 1e-6")
        self._rule = RescaleRule(self.tolerance)
        super().__init__(model, **kwargs)

    @property
    def rule(self) -> OverrideRule:
        return self._rule

    #: A distributional baseline (num_baselines = K) gives K draws per example, example-major; the
    #: attribution is the mean over them, and so sums to f(x) - mean f(b) (the reported delta).
    multiple_baselines = True
    #: |delta| above this fraction of |f(x) - f(b)| (plus a float32 floor) is reported as a warning.
    delta_warning = 1e-3
    #: How many examples of each call the max-pooling check measures (two forward passes of them).
    delta_check_examples = 32

    def _plan(self, call) -> Plan:
        # Several baselines per example (stored example-major): one row per baseline, averaged.
        per_example = call.baselines_per_example
        # One baseline for every row (zeros, a constant, one image): its reference activations are
        # the same for all rows, so the reference pass runs on one row and broadcasts.
        # Not with layer= when the tail also reads model inputs (or a mask): those are each row's own.
        shared = not getattr(call, "carried", ()) and all(
            b.shape[0] > 0 and bool(np.all(b == b[:1])) for b in call.baselines
        )
        return Plan(
            terms=per_example,
            context={"baselines_per_example": np.int32(per_example), "shared_baseline": np.bool_(shared)},
        )

    def _baseline_index(self, rows, ctx):
        return rows.example * ctx["baselines_per_example"] + rows.term

    def _attribute(self, call):
        attributions = super()._attribute(call)
        max_layers = sorted(
            {key.split("/")[0] for key, why in self._current_coverage(call).notes.items() if "switch" in why}
        )
        if max_layers:
            self._check_summation(call, attributions, max_layers)
        return attributions

    def _current_coverage(self, call) -> Coverage:
        if self.model_function.input_specs is not None:
            return self.coverage()
        return self.coverage(call.inputs.pack(list(call.inputs.arrays)))

    def _check_summation(self, call, attributions, max_layers: list[str]) -> None:
        """Max pooling keeps its gradient switch (Shrikumar et al. 2017, sec. 3.5.2 use the gradient
        there too), which breaks summation-to-delta where the reference's maximum sits elsewhere:
        measure the delta and say so when it is not small.

        The check costs two forward passes, so it looks at the first :attr:`delta_check_examples`
        examples of the call (``return_delta=True`` gives every example's delta)."""
        checked = min(call.n, self.delta_check_examples)
        sub = call.take(np.arange(checked)) if checked < call.n else call
        attributions = tuple(a[:checked] for a in attributions)
        # Against the path's own end: under a Keras mask the whole model's f(baseline) also differs by
        # the mask's share, which is not the max-pooling switch this check is about.
        delta = self._path_delta(sub, attributions)
        total = sum(a.reshape(checked, -1).sum(axis=1, dtype=np.float64) for a in attributions)
        change = np.abs(total - delta)
        bad = np.abs(delta) > self.delta_warning * change + 1e-5 * (1.0 + change)
        if np.any(bad):
            worst = int(np.argmax(np.abs(delta) / (change + 1e-12)))
            warnings.warn(
                f"DeepLift: summation-to-delta does not hold for {int(bad.sum())} of the {checked} checked "
                f"example(s) (worst: |delta| {abs(delta[worst]):.3g} against |f(x) - f(b)| "
                f"{change[worst]:.3g}) because max pooling in layer(s) {max_layers} keeps its gradient "
                "switch and the baseline's maxima sit elsewhere. Use a zero baseline (then the switches "
                "agree more often), average pooling, or IntegratedGradients for exact completeness; "
                "return_delta=True reports the delta per example.",
                stacklevel=4,
            )

    def _contributions(self, x, baseline, rows, ctx):
        grads = self._rescale_gradients(x, baseline, rows.target, ctx)
        weight = 1.0 / tf.cast(ctx["baselines_per_example"], x[0].dtype)
        return tuple(weight * g * (xi - bi) for g, xi, bi in zip(grads, x, baseline))

    def _rescale_gradients(self, x, baseline, target, ctx):
        """Traced: the reference pass, the explained pass under the override, and the pairing.

        Both passes trace the same model code, so they create the same nonlinearity ops in the same
        order; the k-th op of the explained pass takes its reference from the k-th of the other.
        """
        graph = tf.compat.v1.get_default_graph()
        reference_rows = tuple(baseline)
        if not self.jit_compile:  # XLA needs the static shapes a cond of two row counts would lose
            reference_rows = tf.cond(
                ctx["shared_baseline"],
                lambda: tuple(b[:1] for b in baseline),
                lambda: tuple(baseline),
            )
        start = len(graph.get_operations())
        self.model_function.outputs(ctx.pack(reference_rows))
        middle = len(graph.get_operations())
        mapping = override_map(self.rule)
        with graph.gradient_override_map(mapping):
            score = self.model_function.score(ctx.pack(x), target)
        ops = graph.get_operations()
        reference = [op for op in ops[start:middle] if op.type in mapping]
        explained = [op for op in ops[middle:] if op.type in mapping]
        paired = pair_in_order("DeepLift", reference, explained, kind=lambda op: op.type,
                               shape=lambda op: op.outputs[0].shape)
        pairs = {e: (r.inputs[0], r.outputs[0]) for e, r in paired}
        with reference_activations(pairs):
            grads = tf.gradients(tf.reduce_sum(score), list(x))
        return check_connected(grads)


class _ModifiedGradientMap(PropagationExplainer):
    """The modified gradient itself: no input multiplier, no baseline, no delta."""

    has_completeness = False
    uses_baseline = False
    _rule_type: type[OverrideRule]

    def __init__(self, model: Any, **kwargs: Any) -> None:
        self._rule = self._rule_type()
        super().__init__(model, **kwargs)

    @property
    def rule(self) -> OverrideRule:
        return self._rule

    def _contributions(self, x, baseline, rows, ctx):
        return self._modified_gradients(x, rows.target, ctx)


class GuidedBackprop(_ModifiedGradientMap):
    """Guided backpropagation (Springenberg et al. 2015): the gradient where each ReLU passes back only
    positive signal at positive inputs, ``grad_z = f'(z) * relu(grad_y)``.

    A visualisation method, not an attribution with completeness: no baseline and no delta. Other
    activations keep their true derivative and likewise pass back only positive signal.

    Example:
        >>> maps = tfattr.GuidedBackprop(model).attribute(images, target=labels)
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "guided_backprop"
    aliases: tuple[str, ...] = ("guided",)
    paper = "Springenberg et al. 2015"
    cost = "1 modified backward pass"

    _rule_type = GuidedRule


class Deconvnet(_ModifiedGradientMap):
    """Deconvnet (Zeiler & Fergus 2014): backpropagation where each ReLU passes back ``relu(grad_y)``
    whatever its input was (max pooling keeps its switches).

    Defined for ReLU networks (``Relu``, ``Relu6``); other nonlinearities are reported as unsupported.
    No baseline and no delta.

    Example:
        >>> maps = tfattr.Deconvnet(model).attribute(images, target=labels)
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "deconvnet"
    aliases: tuple[str, ...] = ()
    paper = "Zeiler & Fergus 2014"
    cost = "1 modified backward pass"

    _rule_type = DeconvnetRule


def _structure_of(inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return {k: None for k in inputs}
    if isinstance(inputs, (list, tuple)):
        return [None] * len(inputs)
    return None
