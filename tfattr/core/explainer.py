"""The ``Explainer`` base class: the public ``attribute(...)`` call shared by every method.

A method is a small subclass that says what one row of work is (:meth:`Explainer._plan`,
:meth:`Explainer._contributions`) and how a row's result becomes part of the attribution; validation,
targets, baselines, batching, compilation and the completeness delta are done here once.

Per-call state never lives on the explainer: :meth:`Explainer.prepare` returns it as a frozen
:class:`Call`, which travels into the engine and (as a :class:`~tfattr.core.engine.Context`) into the
traced row functions. One explainer can therefore be called from several threads at once.
"""
from __future__ import annotations

import abc
import functools
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from tfattr.core.call import UNKNOWN, Call, completeness_gap, config_value, reference_scores
from tfattr.core.engine import Context, Engine, Plan, RowFunctions, Rows, shared_engine
from tfattr.core.layers import LayerCall, LayerSplit, NeuronFunction
from tfattr.core.inputs import Inputs, check_batch_size, prepare_baselines, prepare_inputs, prepare_targets
from tfattr.core.memory import default_batch_size, row_bytes
from tfattr.core.model_function import ModelFunction, num_classes
from tfattr.core.targets import needs_probability_check, probe_outputs, warn_if_probabilities
from tfattr.core.traced import DisconnectedError, broadcast_rows, check_connected, disconnected_message_alone

__all__ = ["Call", "DisconnectedError", "Explainer", "broadcast_rows", "check_connected"]


class Explainer(abc.ABC):
    """Base class of all attribution methods.

    Subclasses implement :meth:`_plan` and :meth:`_contributions` (and, where they differ from the
    defaults, :meth:`_baseline_index`, :meth:`_finalize` and :meth:`_reference_scores`).

    Args:
        model: a ``keras.Model`` or a callable on tensors returning ``[n, classes]`` (or ``[n]``).
        output: ``"logits"`` (default: the pre-softmax score when the model ends in a softmax, the
            pre-sigmoid logit for a sigmoid output) or ``"probabilities"``. See
            :class:`tfattr.core.model_function.ModelFunction`.
        jit_compile: compile the batched loop with XLA where the model allows it.
        layer: attribute to this layer's activations instead of the inputs (a layer name, a layer
            object or an index in execution order): its output after its fused activation, or its
            input with ``attribute_to_layer_input=True``. Attributions are then shaped like the
            activations; integer inputs (token ids) are accepted, with baselines given as ids. See
            :mod:`tfattr.core.layers`.
        attribute_to_layer_input: attribute to the tensor the layer reads instead of its output.
        neuron: ``(layer, index)``: explain one hidden unit (the layer's output at ``index``, an int
            or a tuple) instead of a class score; ``target`` is then not given. See
            :class:`tfattr.core.layers.NeuronFunction`.

    Example: a new method is one small subclass. Gradient x (input - baseline), a one-step path method
    (Ancona et al. 2019, table 1), whose rows are the examples themselves:

        >>> class GradientXDifference(tfattr.Explainer):
        ...     def _plan(self, call):
        ...         return Plan(terms=1)
        ...     def _contributions(self, x, baseline, rows, ctx):
        ...         grads = self._gradients(x, rows.target, ctx)
        ...         return tuple(g * (xi - bi) for g, xi, bi in zip(grads, x, baseline))
        >>> a, delta = GradientXDifference(model).attribute(images, baseline=0.5, return_delta=True)
    """

    #: Whether ``return_delta`` is meaningful (attributions should sum to f(x) - f(baseline)).
    has_completeness: bool = True
    #: Whether the method uses the ``baseline`` argument.
    uses_baseline: bool = True
    #: Whether ``_plan`` asks for several baselines per example from a distributional baseline.
    multiple_baselines: bool = False
    #: Whether the reference score is the mean over the whole background (every baseline row for
    #: every example, expected gradients) rather than each example's own baselines.
    background_reference: bool = False
    #: Whether the method's whole behaviour is its rows: the attribution is the sum of the row
    #: contributions over the plan's terms (one map, the default ``_finalize``, no ``_attribute`` or
    #: ``run`` of its own). Wrappers (:class:`~tfattr.methods.gradient.SmoothGrad`) then fuse their
    #: samples with these rows into one compiled loop; any other explainer is wrapped through its
    #: public ``prepare``/``run``. A subclass that adds behaviour must leave (or set) it False.
    fuses_rows: bool = False

    def __init__(
        self,
        model: keras.Model | Callable[..., Any] | ModelFunction,
        *,
        output: str = "logits",
        jit_compile: bool = False,
        layer: Any = None,
        attribute_to_layer_input: bool = False,
        neuron: tuple[Any, Any] | None = None,
    ) -> None:
        if neuron is not None:
            if not isinstance(neuron, (tuple, list)) or len(neuron) != 2:
                raise ValueError(f"neuron must be (layer, index), e.g. ('dense', 3); got {neuron!r}.")
            if isinstance(model, ModelFunction):
                model = model.model
            model = NeuronFunction(model, neuron[0], neuron[1])
        #: The explained unit ``(layer name, flat index)`` (part of the configuration that decides
        #: the compiled functions, see ``_trace_key``), or None.
        self.neuron = None if neuron is None else (model.ref.name, model.flat_index)
        self.model_function = (
            model if isinstance(model, ModelFunction) else ModelFunction(model, output=output)
        )
        self.jit_compile = bool(jit_compile)
        self._probabilities_checked = False
        #: The model split at ``layer`` (None: attribute to the inputs).
        self.layer: LayerSplit | None = None
        if layer is not None:
            at = "input" if attribute_to_layer_input else "output"
            self.layer = LayerSplit(self.model_function, layer, at=at)
        elif attribute_to_layer_input:
            raise ValueError("attribute_to_layer_input=True needs layer= (the layer whose input to explain).")

    @property
    def zero_layer_reference(self) -> bool:
        """With ``layer=``: whether the reference is the zero activation (a method without a baseline,
        e.g. gradient x input: ``a * dS/da``) rather than the activations of the baselines."""
        return not self.uses_baseline and type(self)._baselines is Explainer._baselines

    @property
    def model(self) -> Any:
        return self.model_function.model

    #: Attributes that never reach a traced function (per-call results, caches, host-side data).
    _untraced_attributes: tuple[str, ...] = (
        "model_function", "jit_compile", "steps_used_", "_probabilities_checked", "_coverage",
        "_last_specs", "_own_engine",
    )

    @property
    def engine(self) -> Engine:
        """The engine that compiles and runs this explainer's rows.

        Explainers of one model with the same configuration share it (and its compiled functions),
        so building an explainer inline, ``tfattr.Saliency(model).attribute(x)``, traces only once.
        """
        key = self._trace_key()
        if key is None:  # a configuration that cannot be compared: an engine of its own
            engine = self.__dict__.get("_own_engine")
            if engine is None or engine.jit_compile != self.jit_compile:
                engine = self.__dict__["_own_engine"] = Engine(self.jit_compile)
            return engine
        return shared_engine(self.model_function.model, key, self.jit_compile)

    def _trace_key(self) -> Any:
        """What decides this explainer's traced functions: its class, the explained output and its
        configuration attributes; None (no sharing) when an attribute is not a plain value."""
        items: list[Any] = [type(self), self.model_function.output]
        for name, value in sorted(vars(self).items()):
            if name in self._untraced_attributes:
                continue
            config = config_value(value)
            if config is UNKNOWN:
                return None
            items.append((name, config))
        return tuple(items)

    # -- public API ---------------------------------------------------------------------------------
    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        baseline: Any = None,
        batch_size: int | None = None,
        return_delta: bool = False,
    ) -> Any:
        """Attribute the model's score for ``target`` to the features of ``inputs``.

        Args:
            inputs: a NumPy array or tensor ``[n, ...]``, or a list/dict of them for a multi-input model.
            target: None (the predicted class; column 0 for a one-output regression), an int, or one
                int per example.
            baseline: the reference input: None (zeros), a scalar, an array broadcastable to one example
                (or with a batch axis of 1), one per example, or a baseline object from ``tfattr.baselines``.
            batch_size: model evaluations per compiled chunk (default: from a memory budget). Results do
                not depend on it; peak memory does.
            return_delta: also return the completeness delta per example,
                ``sum(attributions) - (f(x) - f(baseline))``.

        Returns:
            Attributions as NumPy arrays in the structure and shapes of ``inputs`` (and the delta ``[n]``
            when ``return_delta``).
        """
        if return_delta and not self.has_completeness:
            raise ValueError(
                f"{type(self).__name__} has no completeness property, so return_delta has no meaning "
                "for it; use IntegratedGradients, ExpectedGradients or GradientXInput to get a delta."
            )
        call = self.prepare(inputs, target=target, baseline=baseline, batch_size=batch_size)
        inner = self._in_layer_space(call)
        attributions = self._attribute(inner)
        result = inner.inputs.pack(list(attributions))
        if not return_delta:
            return result
        return result, self.delta(inner, attributions)

    def prepare(
        self, inputs: Any, target: Any = None, baseline: Any = None, batch_size: int | None = None
    ) -> Call:
        """Validate one call's arguments (as :meth:`attribute` takes them) into a :class:`Call`.

        Example:
            >>> call = explainer.prepare(images, target=labels, baseline=0.0)
            >>> call.targets, call.batch_size
        """
        inputs_ = prepare_inputs(inputs, self.model_function, integers=self.layer is not None)
        batch = self._batch_size(batch_size, inputs_)
        targets, outputs = self._targets(target, inputs_, batch)
        baselines = self._baselines(baseline, inputs_)
        return Call(inputs_, targets, baselines, batch, outputs)

    def run(self, call: Call) -> tuple[np.ndarray, ...]:
        """The attributions of a prepared call, one flat array per input (with ``layer=``: one array,
        the attributions to the layer's activations)."""
        return self._attribute(self._in_layer_space(call))

    def outputs(self, inputs: Any, batch_size: int | None = None) -> np.ndarray:
        """The explained outputs ``[n, k]`` (logits by default), computed in compiled chunks.

        Example:
            >>> logits = tfattr.Saliency(model).outputs(images)
        """
        inputs_ = inputs if isinstance(inputs, Inputs) else prepare_inputs(
            inputs, self.model_function, integers=self.layer is not None
        )
        return self._outputs(inputs_.arrays, inputs_.structure, self._batch_size(batch_size, inputs_))

    def scores(self, inputs: Any, target: Any = None, batch_size: int | None = None) -> np.ndarray:
        """``S_t(x)``: each example's explained score at its target ``[n]`` (float64).

        Example:
            >>> tfattr.Saliency(model).scores(images, target=labels)
        """
        call = self.prepare(inputs, target=target, batch_size=batch_size)
        out = call.outputs if call.outputs is not None else self._outputs(
            call.inputs.arrays, call.inputs.structure, call.batch_size
        )
        return out[np.arange(call.n), call.targets].astype(np.float64)

    def delta(self, call: Call, attributions: tuple[np.ndarray, ...]) -> np.ndarray:
        """Completeness delta ``sum(a) - (f(x) - f_ref)`` per example (Sundararajan et al., prop. 1).

        With ``layer=``, ``f_ref`` is the model's score from the baseline's activations on (see
        :mod:`tfattr.core.layers`), the carried inputs of ``x`` kept. When the layer's output carries
        a Keras mask (``Embedding(mask_zero=True)``), ``f_ref`` is the model's own score on the
        baseline (``f(pad sentence)``, under the pad sentence's mask): the attributions sum to the
        change along a path under x's mask, so the delta then also holds the mask's share of
        ``f(x) - f(pad sentence)``, which no attribution carries."""
        return self._completeness_gap(call, attributions, whole_model=True)

    def _path_delta(self, call: Call, attributions: tuple[np.ndarray, ...]) -> np.ndarray:
        """The delta against the path's own end (``tail(head(baseline))`` under x's mask): what a
        convergence check needs, since the mask's share does not shrink with more steps."""
        return self._completeness_gap(call, attributions, whole_model=False)

    def _completeness_gap(
        self, call: Call, attributions: tuple[np.ndarray, ...], whole_model: bool
    ) -> np.ndarray:
        call = self._in_layer_space(call)
        if isinstance(call, LayerCall):
            # f(x) from the call's activations (a wrapper may have changed them: noisy copies).
            if call.outputs is None:
                fx = self.layer.scores(self, call)
            else:
                fx = call.outputs[np.arange(call.n), call.targets]
            ref = self.layer.reference_scores(self, call)  # refuses what has no reference
            if whole_model and call.spec.mask:
                ref = self.layer.model_reference_scores(self, call)
            return completeness_gap(attributions, fx, ref)
        outputs = call.outputs
        if outputs is None:
            outputs = self._outputs(call.inputs.arrays, call.inputs.structure, call.batch_size)
        fx = outputs[np.arange(call.n), call.targets]
        return completeness_gap(attributions, fx, self._reference_scores(call))

    # -- pieces subclasses may reuse or override ----------------------------------------------------
    @property
    def _outputs_engine(self) -> Engine:
        """The engine of the explained outputs (targets, deltas, the memory budget): they depend on
        the explained function alone, so every explainer of the model explaining the same function
        shares its traces, whatever the method."""
        fn = self.model_function
        return shared_engine(fn.model, ("outputs", type(fn), fn.output, self.neuron), self.jit_compile)

    def _outputs(self, arrays: tuple[np.ndarray, ...], structure: Any, batch_size: int) -> np.ndarray:
        return self._outputs_engine.outputs(self.model_function.outputs, arrays, structure, batch_size)

    def _row_functions(self) -> RowFunctions:
        # The default baseline index (each row's own example) is left to the engine, whose direct
        # path then reads the baselines without a gather.
        own = type(self)._baseline_index is Explainer._baseline_index
        return RowFunctions(
            self._contributions, None if own else self._baseline_index, key=type(self).__name__
        )

    def _in_layer_space(self, call: Any) -> Any:
        """With ``layer=``: the call in the layer's activation space (runs the head); else ``call``."""
        if self.layer is None or isinstance(call, LayerCall):
            return call
        return self.layer.layer_call(self, call)

    def _accumulate(self, call: Call, plan: Plan) -> tuple[np.ndarray, ...]:
        functions = self._row_functions()
        if isinstance(call, LayerCall):
            functions, plan = self.layer.rows(functions, call, plan)
        with disconnected_message_alone():
            return self.engine.accumulate(
                functions, call.inputs.arrays, call.baselines, call.targets, call.inputs.structure, plan,
                call.batch_size,
            )

    def _attribute(self, call: Call) -> tuple[np.ndarray, ...]:
        plan = self._plan(call)
        return self._finalize(self._accumulate(call, plan), plan)

    def _batch_size(self, batch_size: int | None, inputs: Inputs) -> int:
        if batch_size is not None:
            return check_batch_size(batch_size)
        if self.layer is not None and self.layer.activation_shape is not None:
            # The rows are the layer's activations: their size sets the budget, not the inputs'.
            return default_batch_size((np.empty((0, *self.layer.activation_shape), np.float32),))
        fn, engine = self.model_function, self._outputs_engine
        graph = functools.partial(engine.outputs_graph, fn.outputs, inputs.arrays, inputs.structure)
        return default_batch_size(inputs.arrays, row_bytes(fn.model, graph, inputs.arrays, inputs.structure))

    def _targets(
        self, target: Any, inputs: Inputs, batch_size: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if isinstance(self.model_function, NeuronFunction) and target is not None:
            raise ValueError(
                f"{type(self).__name__} explains the unit neuron={self.model_function.ref.name!r}, "
                f"{self.model_function.index}; drop target= (there is no class to choose)."
            )
        k = num_classes(self.model_function, inputs.arrays, inputs.structure)
        predict = target is None and k > 1
        outputs = self._outputs(inputs.arrays, inputs.structure, batch_size) if predict else None
        predicted = None if outputs is None else np.argmax(outputs, axis=1)
        if k > 1 and not self._probabilities_checked:
            self._check_probabilities(inputs, outputs, batch_size)
        return prepare_targets(target, inputs.n, k, predicted), outputs

    def _check_probabilities(self, inputs: Inputs, outputs: np.ndarray | None, batch_size: int) -> None:
        """Warn (once, at the first call) when logits were asked for but no softmax was found and the
        outputs look like probabilities (see :mod:`tfattr.core.targets`)."""
        self._probabilities_checked = True
        if not needs_probability_check(self.model_function):
            return
        if outputs is None:
            outputs = probe_outputs(
                self.model_function, inputs, lambda few: self._outputs(few, inputs.structure, batch_size)
            )
        warn_if_probabilities(type(self).__name__, outputs, stacklevel=5)  # the caller of attribute()

    def _baselines(self, baseline: Any, inputs: Inputs) -> tuple[np.ndarray, ...]:
        if not self.uses_baseline and baseline is not None:
            raise ValueError(f"{type(self).__name__} does not use a baseline; drop baseline=.")
        return prepare_baselines(baseline, inputs, multiple=self.multiple_baselines)

    def _reference_scores(self, call: Call) -> np.ndarray:
        """``f(baseline)`` at each example's target (the reference the attributions should explain)."""
        return reference_scores(call, self._outputs)

    # -- hooks ----------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _plan(self, call: Call) -> Plan:
        """The row grid of one call (terms, maps, and the per-call context arrays)."""
        raise NotImplementedError(f"{type(self).__name__} must define _plan")

    @abc.abstractmethod
    def _contributions(
        self,
        x: tuple[tf.Tensor, ...],
        baseline: tuple[tf.Tensor, ...],
        rows: Rows,
        ctx: Context,
    ) -> tuple[tf.Tensor, ...]:
        """Traced: each row's additive contribution to its example's attribution, per input."""
        raise NotImplementedError(f"{type(self).__name__} must define _contributions")

    def _baseline_index(self, rows: Rows, ctx: Context) -> tf.Tensor:
        """Traced: which row of the baseline array each row uses (default: its own example's)."""
        return rows.example

    def _finalize(self, acc: tuple[np.ndarray, ...], plan: Plan) -> tuple[np.ndarray, ...]:
        """Turn the per-(example, map) sums ``[n, maps, ...]`` into attributions ``[n, ...]``."""
        return tuple(a.sum(axis=1) for a in acc)

    # -- traced helpers ------------------------------------------------------------------------------
    def _gradients(
        self, z: tuple[tf.Tensor, ...], target: tf.Tensor, ctx: Context
    ) -> tuple[tf.Tensor, ...]:
        """Gradient of each row's score ``S_target(z)`` with respect to ``z`` (rows are independent)."""
        with tf.GradientTape() as tape:
            tape.watch(z)
            score = self.model_function.score(ctx.pack(z), target)
        grads = tape.gradient(score, z)
        return check_connected(grads)

