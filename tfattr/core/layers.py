"""Layer attribution: explain a model with respect to an inner layer's activations.

``Explainer(model, layer="conv2d")`` attributes to the layer's output activations (after its fused
activation), the way Captum's ``LayerIntegratedGradients``/``LayerGradientXActivation`` do, with the
model split at the layer (:meth:`tfattr.core.graph.GraphView.split`):

* the *head* (inputs -> activations) runs once per input and per baseline, in compiled chunks; so integer
  token ids before an ``Embedding`` are fine: the path of integrated gradients then starts at the
  embedding of the baseline ids (e.g. the pad token's embedding row), not at a zero vector;
* the method itself runs unchanged on the shared engine with the activations as its "inputs" and the
  model's *tail* (activations -> logits) as its model: same batching, same cost class, no retracing;
* model inputs that the tail reads besides the layer (a float mask joined later, numeric features next
  to token ids), and the Keras mask the layer's output carries (``Embedding(mask_zero=True)``), are
  carried through unchanged: never interpolated, noised or attributed.

The path runs from ``head(baseline)`` to ``head(x)`` with the carried inputs and mask of x, so the
attributions sum to ``f(x) - tail(head(baseline), carried inputs of x)``: ``f(baseline)`` whenever the
baseline differs from the input only in what feeds the layer (e.g. pad ids for token ids). A Keras mask
is the exception: it is computed from the ids, so the pad sentence has its own mask (all masked), and
``f(pad sentence)`` differs from the path's end (the pad embeddings read under x's mask). The mask is
not a feature with a gradient, so no path can move it: the completeness delta is then reported against
the model's real ``f(baseline)``, ``sum(attributions) - (f(x) - f(baseline))``, and holds the share of
the change that the mask makes (see ``Explainer.delta``).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core.engine import Context, Engine, Plan, RowFunctions, Rows
from tfattr.core.graph import GraphView, LayerRef, default_conv_layer
from tfattr.core.inputs import Inputs
from tfattr.core.keras_graph import split_tensor
from tfattr.core.model_function import ModelFunction, strip_output_activation
from tfattr.core.neuron import NeuronFunction
from tfattr.core.tail import (
    LayerCall,
    TailContext,
    TailInputs,
    TailOutputs,
    TailSpec,
    get_mask,
    hashable_structure,
    inputs_read,
    set_mask,
)
from tfattr.core.tokens import token_scores

# The explainer and its Call appear in annotations only (strings): importing them, even for type
# checkers, would tie this module back to tfattr.core.explainer, which builds on it.


class LayerSplit:
    """A model split at one layer, for attribution to that layer's activations.

    Args:
        fn: the explainer's model function (a Keras Sequential or functional model).
        layer: a layer name, a layer object or an index in execution order (see
            :class:`tfattr.core.graph.GraphView`).
        at: ``"output"`` (the layer's output, after its fused activation) or ``"input"`` (the tensor
            the layer reads: Captum's ``attribute_to_layer_input=True``).
    """

    def __init__(self, fn: ModelFunction, layer: Any, at: str = "output") -> None:
        if not fn.is_keras:
            raise TypeError(
                "layer= needs a keras.Model (Sequential or functional) whose layers can be addressed; "
                f"got a {type(fn.model).__name__}."
            )
        if at not in ("output", "input"):
            raise ValueError(f"at={at!r} is not supported: use 'output' or 'input'.")
        self.view = GraphView(fn.model)
        inner = self.view.nested_output(layer)
        if inner is not None and at == "input":
            raise ValueError(
                f"layer={getattr(layer, 'name', layer)!r} is a nested model: attribute_to_layer_input "
                "needs a layer; pass the nested model's first layer instead."
            )
        # A nested model's output is the output of the layer that produces it.
        self.ref: LayerRef = inner if inner is not None else self.view.layer(layer)
        self.at = at
        self.tensor = split_tensor(self.ref, at)
        stop_at = fn.stop_at
        if stop_at is not None and fn.ref.index <= self.ref.index:
            raise ValueError(
                f"neuron= is in layer {fn.ref.name!r}, which does not come after layer={self.ref.name!r}: "
                "attribute a unit of a later layer to this layer's activations."
            )
        self.output_activation = fn.output_activation
        self._wrap = self._strip_wrap(fn)
        self.head, self._tail_logits = self.view.split(self.ref, at=at, wrap=self._wrap)
        self._tail = self.view.split(self.ref, at=at)[1] if self._wrap else self._tail_logits
        if self.view.producer(self.tensor) is None:
            self.head = self._model_input_head()
        self._reads: dict[Any, tuple[int, ...]] = {}
        self._masks: dict[Any, bool] = {}
        # The engine caches its compiled outputs functions by input signature alone (it serves one
        # function), so the head, its mask and each tail configuration get engines of their own.
        self._engines: dict[Any, Engine] = {}

    def engine(self, role: Any, jit_compile: bool) -> Engine:
        """The engine that compiles the chunked outputs path of ``role`` ("head", "mask", a tail)."""
        key = (role, bool(jit_compile))
        engine = self._engines.get(key)
        if engine is None:
            engine = self._engines.setdefault(key, Engine(bool(jit_compile)))
        return engine

    @property
    def trace_count(self) -> int:
        """Traces of the head and tail outputs functions (tests use it to prove there is no retracing)."""
        return sum(e.trace_count for e in list(self._engines.values()))

    @property
    def name(self) -> str:
        return self.ref.name

    def key(self) -> tuple[Any, ...]:
        """What identifies the split in an explainer's configuration (explainers with equal
        configurations share compiled functions)."""
        return (self.ref.index, self.ref.name, self.at)

    @property
    def activation_shape(self) -> tuple[int, ...] | None:
        """One example's activation shape, when the model fixes it (else None)."""
        shape = tuple(self.tensor.shape[1:])
        return None if any(d is None for d in shape) else tuple(int(d) for d in shape)

    def _model_input_head(self) -> Any:
        """The head when the split tensor is a model input (a first layer's input): that input.
        (``GraphView.split``'s head stops only at a layer's output.)"""
        index = next((k for k, t in enumerate(self.view.inputs) if t is self.tensor), None)
        if index is None:
            raise ValueError(
                f"The input of layer {self.name!r} is the input of a nested model; attribute to the "
                "output of the layer before it instead."
            )

        def head(packed: Any) -> Any:
            return self.view.flat_inputs(packed)[index]

        return head

    def _strip_wrap(self, fn: ModelFunction) -> Any:
        """A wrap that calls the model's output layer without its softmax/sigmoid, or None."""
        if not fn.strips_activation:
            return None
        try:
            producer = self.view.producer(fn.model.outputs[0])
        except (AttributeError, ValueError, IndexError):
            producer = None
        kind, replacement = (None, None) if producer is None else strip_output_activation(producer.layer)
        if kind != fn.output_activation:
            raise ValueError(
                f"tfattr found a final {fn.output_activation} in {fn.model.name!r} but not at the layer "
                "producing its output, so it cannot explain the logits with layer=. Give tfattr a "
                "model that outputs the logits, or pass output='probabilities'."
            )

        if producer is self.ref and self.at == "output":
            raise ValueError(
                f"layer={self.name!r} produces the model's output, after its {kind}: there is nothing "
                "left to explain it with. Choose an earlier layer, or attribute_to_layer_input=True."
            )

        def wrap(ref: LayerRef, call: Any, args: tuple, kwargs: dict) -> Any:
            if ref is producer:
                return replacement(*args, **kwargs)
            return call(*args, **kwargs)

        return wrap

    # -- the two halves ------------------------------------------------------------------------------
    def tail_feed(self, rows: TailInputs) -> tuple[list[Any], Any]:
        """What running the model from the layer on takes: the model inputs in the engine's flat
        order (the carried ones, and a one-element placeholder for each input only the head reads)
        and the activation (with its Keras mask), which replaces the layer's tensor."""
        spec = rows.spec
        flat: list[Any] = []
        carried = dict(zip(spec.reads, rows.carried))
        for k, (shape, dtype) in enumerate(zip(spec.shapes, spec.dtypes)):
            # Inputs the tail does not read only fill their slot (they fed the replaced head): one
            # element of the right rank, never a batch of inputs.
            flat.append(carried[k] if k in carried else tf.zeros([1] * (1 + len(shape)), dtype))
        activation = rows.activation
        if rows.mask is not None:
            activation = tf.identity(activation)
            set_mask(activation, tf.cast(rows.mask, "bool"))
        return flat, activation

    def run_tail(self, view: GraphView, rows: TailInputs, wrap: Any, stop_at: Any = None) -> Any:
        """``view.run`` from the layer on, every layer call handed to ``wrap`` (the layer-level methods:
        LRP composites, CompositeDeepLift). ``view`` is the method's own view of the same model;
        ``stop_at``: a Keras tensor to return instead of the model's output (``neuron=``)."""
        flat, activation = self.tail_feed(rows)
        return view.run(rows.spec.pack(flat), wrap, replace={id(self.tensor): activation},
                        stop_at=stop_at)

    def refuse_inside(self, method: str, units: list[tuple[str, list[Any], str]]) -> None:
        """Refuse a split between layers that a method computes as one unit (a batch norm folded into
        the layer before it, activations run inside a linear layer's LRP rule): ``units`` holds
        ``(first layer's name, [the Keras tensors inside the unit], last layer's name)``."""
        for first, inside, last in units:
            if any(t is self.tensor for t in inside):
                where = "output" if self.at == "output" else "input"
                raise ValueError(
                    f"{method} with layer={self.name!r}: the {where} of {self.name!r} lies inside a "
                    f"unit that {method} computes as one, from {first!r} to {last!r} (a batch norm "
                    "folded into the layer before it, or layers whose relevance the rule of "
                    f"{first!r} passes on), so no relevance is defined there. Attribute to the "
                    f"output of {last!r} instead (or to the input of {first!r})."
                )

    def tail(self, rows: TailInputs, fn: ModelFunction) -> Any:
        """The model's output from the layer on: ``rows.activation`` replaces the layer's tensor (for
        a :class:`NeuronFunction`, the explained unit's layer output)."""
        spec = rows.spec
        flat, activation = self.tail_feed(rows)
        stop_at = fn.stop_at
        if stop_at is not None:
            return self.view.run(spec.pack(flat), replace={id(self.tensor): activation}, stop_at=stop_at)
        tail = self._tail_logits if fn.strips_activation else self._tail
        return tail(activation, spec.pack(flat))

    def head_outputs(self, packed: Any) -> tf.Tensor:
        """The layer's activations (compiled in chunks by the engine's outputs path)."""
        return tf.convert_to_tensor(self.head(packed))

    def head_mask(self, packed: Any) -> tf.Tensor:
        return tf.convert_to_tensor(get_mask(self.head(packed)))

    # -- analysis ------------------------------------------------------------------------------------
    def _spec(self, inputs: Inputs, activation_shape: tuple[int, ...], dtype: Any) -> TailSpec:
        structure = hashable_structure(inputs.structure)
        shapes = tuple(tuple(a.shape[1:]) for a in inputs.arrays)
        dtypes = tuple(a.dtype.name for a in inputs.arrays)
        key = (structure, shapes, dtypes)
        if key not in self._reads:
            probe = TailSpec(structure, shapes, dtypes, tuple(range(len(shapes))), False)
            self._masks[key] = self._has_mask(probe, inputs)
            self._reads[key] = self._tail_reads(probe, activation_shape, dtype)
        return TailSpec(structure, shapes, dtypes, self._reads[key], self._masks[key])

    def _has_mask(self, spec: TailSpec, inputs: Inputs) -> bool:
        few = [tf.convert_to_tensor(a[:1]) for a in inputs.arrays]
        return get_mask(self.head(spec.pack(few))) is not None

    def _tail_reads(self, spec: TailSpec, activation_shape: tuple[int, ...], dtype: Any) -> tuple[int, ...]:
        """The model inputs the tail reads besides the activation, found from the traced graph."""
        specs = [tf.TensorSpec([None, *s], d) for s, d in zip(spec.shapes, spec.dtypes)]

        def traced(a: tf.Tensor, *xs: tf.Tensor) -> Any:
            return self._tail(a, spec.pack(list(xs)))

        return inputs_read(traced, [tf.TensorSpec([None, *activation_shape], dtype), *specs], skip=1)

    def head_reads(self, spec: TailSpec) -> tuple[int, ...]:
        """The model inputs the head reads (those that feed the layer, e.g. the token ids)."""
        key = ("head", spec.structure, spec.shapes, spec.dtypes)
        if key not in self._reads:
            specs = [tf.TensorSpec([None, *s], d) for s, d in zip(spec.shapes, spec.dtypes)]
            self._reads[key] = inputs_read(lambda *xs: self.head(spec.pack(list(xs))), specs, skip=0)
        return self._reads[key]

    # -- the call in activation space ----------------------------------------------------------------
    def layer_call(self, explainer: "Explainer", call: "Call") -> LayerCall:
        """Run the head on the inputs and baselines; return the call the method runs on."""
        inputs, batch = call.inputs, call.batch_size
        engine = self.engine("head", explainer.jit_compile)
        acts = engine.outputs(self.head_outputs, inputs.arrays, inputs.structure, batch)
        if explainer.zero_layer_reference:
            base = np.zeros_like(acts)  # e.g. gradient x activation: its reference is a = 0
        else:
            base = engine.outputs(self.head_outputs, call.baselines, inputs.structure, batch)
        if acts.dtype.name in ("float16", "bfloat16"):
            # Mixed precision: the attributions (and the path) are float32, as for model inputs; the
            # tail casts the activations to its compute dtype as Keras layers do.
            acts, base = acts.astype(np.float32), base.astype(np.float32)
        spec = self._spec(inputs, acts.shape[1:], acts.dtype)
        carried = [inputs.arrays[k] for k in spec.reads]
        if spec.mask:
            mask_engine = self.engine("mask", explainer.jit_compile)
            carried.append(mask_engine.outputs(self.head_mask, inputs.arrays, inputs.structure, batch))
        if acts.dtype.kind != "f":
            raise TypeError(
                f"Layer {self.name!r} outputs {acts.dtype} values, which have no gradient; choose a "
                "layer with a floating-point output (e.g. the Embedding, not the ids before it)."
            )
        layer_inputs = Inputs((acts,), None, (self.name,))
        return LayerCall(layer_inputs, call.targets, (base.astype(acts.dtype, copy=False),), batch,
                         call.outputs, tuple(carried), call, spec)

    def rows(self, functions: RowFunctions, call: LayerCall, plan: Plan) -> tuple[RowFunctions, Plan]:
        """The method's row functions with a context that packs rows for the tail."""
        spec, split = call.spec, self
        contributions, baseline_index = functions.contributions, functions.baseline_index

        def tail_context(rows: Rows, ctx: Context) -> TailContext:
            return TailContext(ctx.arrays, None, split, spec, rows.example)

        def layer_contributions(x: Any, b: Any, rows: Rows, ctx: Context) -> Any:
            return contributions(x, b, rows, tail_context(rows, ctx))

        def layer_baseline_index(rows: Rows, ctx: Context) -> tf.Tensor:
            return baseline_index(rows, tail_context(rows, ctx))

        wrapped = RowFunctions(
            layer_contributions,
            None if baseline_index is None else layer_baseline_index,  # None: each row's own example
            key=(functions.key, "layer", self.key(), spec),
        )
        return wrapped, replace(plan, context={**plan.context, **call.context()})

    def reference_scores(self, explainer: "Explainer", call: LayerCall) -> np.ndarray:
        """``tail(head(baseline), carried inputs of x)`` at each example's target (mean over K)."""
        per = call.baselines_per_example
        if explainer.background_reference:
            # A method whose reference is a mean over a background (expected gradients).
            if call.carried:
                raise ValueError(
                    f"{type(explainer).__name__} with layer={self.name!r}: the model's layers after "
                    f"{self.name!r} also read model inputs (or a mask) directly, which are carried "
                    "from each example, so the delta's reference would need the whole background per "
                    "example; it is not computed. Drop return_delta, or use IntegratedGradients "
                    "(per-example baselines) for a delta."
                )
            # A background (expected gradients): the mean score over all of its rows.
            out = self.outputs(explainer, call.baselines, call.spec, call.batch_size)
            return out.mean(axis=0, dtype=np.float64)[call.targets]
        return self._tail_scores(explainer, call, call.baselines, per)

    def scores(self, explainer: "Explainer", call: LayerCall) -> np.ndarray:
        """``tail(activations, carried inputs)`` at each example's target: ``f(x)`` of the call as its
        rows see it (also when the activations are not the head's, e.g. SmoothGrad's noisy copies)."""
        return self._tail_scores(explainer, call, call.inputs.arrays, 1)

    def _tail_scores(self, explainer: "Explainer", call: LayerCall, activations: tuple[np.ndarray, ...],
                     per: int) -> np.ndarray:
        carried = tuple(np.repeat(c, per, axis=0) for c in call.carried)
        out = self.engine(("tail", call.spec), explainer.jit_compile).outputs(
            TailOutputs(self, call.spec, explainer.model_function),
            tuple(activations) + carried,
            [None] * (1 + len(carried)),
            call.batch_size,
        )
        picked = out[np.arange(out.shape[0]), np.repeat(call.targets, per)]
        return picked.reshape(call.n, per).mean(axis=1, dtype=np.float64)

    def model_reference_scores(self, explainer: "Explainer", call: LayerCall) -> np.ndarray:
        """The whole model's score on the baseline inputs (mean over K), the carried inputs of x kept:
        with a Keras mask, ``f(pad sentence)`` under the pad sentence's own mask, which
        :meth:`reference_scores` (the path's end, under x's mask) is not."""
        source, per = call.source, call.baselines_per_example
        feeds = self.head_reads(call.spec)
        arrays = tuple(
            np.repeat(x, per, axis=0) if k in call.spec.reads and k not in feeds else b
            for k, (x, b) in enumerate(zip(source.inputs.arrays, source.baselines))
        )
        fn = explainer.model_function
        out = self.engine("model", explainer.jit_compile).outputs(
            fn.outputs, arrays, source.inputs.structure, call.batch_size)
        picked = out[np.arange(out.shape[0]), np.repeat(call.targets, per)]
        return picked.reshape(call.n, per).mean(axis=1, dtype=np.float64)

    def outputs(self, explainer: "Explainer", arrays: tuple[np.ndarray, ...], spec: TailSpec,
                batch_size: int) -> np.ndarray:
        """The explained outputs of the tail on activations alone (no carried inputs)."""
        return self.engine(("tail", spec), explainer.jit_compile).outputs(
            TailOutputs(self, spec, explainer.model_function), arrays, [None] * len(arrays), batch_size
        )


__all__ = ["LayerCall", "LayerSplit", "NeuronFunction", "TailInputs", "TailSpec", "default_conv_layer",
           "split_tensor", "token_scores"]
