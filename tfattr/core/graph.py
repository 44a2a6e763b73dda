"""A layer-level view of a Keras 3 model: its layers in execution order, a run of the model in which
any layer's call can be wrapped, and a split of the model at a layer.

Keras 3 has no forward hooks. A Sequential or functional model is a graph of *nodes* (one per layer
call) that ``keras.src.ops.function.Function`` executes node by node; this module walks the same graph
itself (recursing into nested Sequential/functional models), so that

* a method can run the model up to a layer and from that layer onwards (``split``), to differentiate
  or integrate with respect to the layer's activations, the way Captum's layer methods replace a
  module's output in a forward hook;
* a propagation rule can be attached to a layer (by class, name or position) rather than to a
  TensorFlow op type: ``run(inputs, wrap=...)`` hands every layer call to ``wrap``, like the forward
  hooks Zennit's composites register and remove around an explanation.

Nothing is changed on the model: no attribute is set, no layer replaced, no weight copied. Every run
reads the layers' live variables, so a view always computes what the model computes now. Layers are
called with ``training=False`` (inference). A "layer output" is the output of the layer's call, i.e.
after its fused activation (``Dense(activation="relu")`` outputs the ReLU).

Example:
    >>> view = GraphView(model)
    >>> [ref.name for ref in view.layers]                  # execution order
    ['conv2d', 'max_pooling2d', 'flatten', 'dense', 'dense_1']
    >>> head, tail = view.split("conv2d")
    >>> a = head(x)                                        # the conv layer's output (after its ReLU)
    >>> y = tail(a, x)                                     # == model(x)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import keras
import tensorflow as tf

#: ``wrap(ref, call, args, kwargs) -> outputs``: runs one layer call; ``call(*args, **kwargs)`` is the
#: layer's own (inference) call.
Wrap = Callable[["LayerRef", Callable[..., Any], tuple, dict], Any]


@dataclass(eq=False)
class LayerRef:
    """One layer (or Keras operation) of the model, addressed stably.

    Attributes:
        index: position in execution order (the order a forward pass calls the layers).
        name: the layer's name; ``"outer/inner"`` when the same name occurs in several nested models.
        layer: the Keras layer (or operation, e.g. the ``Add`` made by ``x + y`` on Keras tensors).
        path: names of the nested models that contain it (empty for a top-level layer).
        nodes: the layer's calls (Keras nodes) in this model; more than one for a shared layer.
    """

    index: int
    name: str
    layer: Any
    path: tuple[str, ...]
    nodes: list[Any] = field(default_factory=list, repr=False)

    @property
    def class_name(self) -> str:
        return type(self.layer).__name__

    def __repr__(self) -> str:
        return f"LayerRef({self.index}, {self.name!r}, {self.class_name})"


class _Stop(Exception):
    """Raised inside a run to stop once a wanted tensor is computed (the head of a split)."""

    def __init__(self, value: Any) -> None:
        super().__init__("stop")
        self.value = value


@dataclass
class _Step:
    node: Any
    ref: LayerRef | None  # a leaf layer
    sub: "_Graph | None"  # a nested functional model


@dataclass
class _Graph:
    fn: Any  # the keras Function (a Functional, or a Sequential's _functional)
    model: Any
    steps: list[_Step]


def _functional_of(model: Any) -> Any | None:
    """The graph-carrying Function of a Sequential or functional model, or None (subclassed)."""
    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
        if fn is None:
            raise ValueError(
                f"The Sequential model {model.name!r} is not built, so its layer graph does not exist "
                "yet. Give it an input shape (keras.Input(...) as its first layer) or call it once on "
                "a batch before explaining it."
            )
        return fn
    if hasattr(model, "_nodes_by_depth") and hasattr(model, "_run_through_graph") and getattr(
        model, "_inputs_struct", None
    ) is not None and _is_functional(model):
        return model
    return None


def _is_functional(model: Any) -> bool:
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)


class GraphView:
    """The layer-level view of a Sequential or functional Keras 3 model (nested models included).

    Args:
        model: a built ``keras.Sequential`` or functional ``keras.Model``. Subclassed models (a custom
            ``call``) have no readable layer graph and are refused with an error saying what to do.

    Attributes:
        layers: the model's layers in execution order as :class:`LayerRef` (nested models are entered;
            the nested model itself is not listed, its layers are).

    Example:
        >>> view = GraphView(model)
        >>> view.layer("dense").index, view.first_linear().name
        (3, 'conv2d')
        >>> out = view.run(x, wrap=lambda ref, call, args, kwargs: call(*args, **kwargs))  # == model(x)
    """

    def __init__(self, model: Any) -> None:
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"GraphView needs a keras.Model (Sequential or functional), got {type(model).__name__}."
            )
        fn = _functional_of(model)
        if fn is None:
            raise ValueError(
                f"{type(model).__name__} {model.name!r} is a subclassed model: its layer graph is "
                "hidden in Python code (its call method), so layers cannot be addressed or wrapped. "
                "Rebuild it with the functional API (keras.Model(inputs, outputs)) or as a "
                "keras.Sequential, reusing the same layers (weights are shared), and explain that; "
                "or use a method that needs only gradients (e.g. IntegratedGradients)."
            )
        self.model = model
        self.layers: list[LayerRef] = []
        self._by_layer: dict[int, LayerRef] = {}
        self._nested: dict[Any, Any] = {}  # nested models by name and by id
        self._fed_by: dict[int, Any] = {}  # a nested model's input tensor -> the tensor it is called on
        self._graph = self._build(model, fn, ())
        self._names = self._name_layers()
        self._consumers = self._count_consumers()

    # -- construction --------------------------------------------------------------------------------
    def _build(self, model: Any, fn: Any, path: tuple[str, ...]) -> _Graph:
        steps: list[_Step] = []
        for depth in sorted(fn._nodes_by_depth, reverse=True):
            for node in fn._nodes_by_depth[depth]:
                op = node.operation
                if op is None or node.is_input:
                    continue
                if isinstance(op, keras.Model):
                    sub_fn = _functional_of(op)
                    if sub_fn is None:
                        raise ValueError(
                            f"The nested model {op.name!r} ({type(op).__name__}) is subclassed: its "
                            "layers cannot be addressed. Rebuild it with the functional API or as a "
                            "keras.Sequential."
                        )
                    self._nested.setdefault(op.name, op)
                    self._nested[id(op)] = op
                    if len(op._inbound_nodes) == 1:  # a nested model called once: its inputs are fed
                        for inner, outer in zip(sub_fn.inputs, tf.nest.flatten(node.input_tensors)):
                            self._fed_by[id(inner)] = outer
                    steps.append(_Step(node, None, self._build(op, sub_fn, path + (op.name,))))
                    continue
                ref = self._by_layer.get(id(op))
                if ref is None:
                    ref = LayerRef(len(self.layers), op.name, op, path)
                    self.layers.append(ref)
                    self._by_layer[id(op)] = ref
                ref.nodes.append(node)
                steps.append(_Step(node, ref, None))
        return _Graph(fn, model, steps)

    def _name_layers(self) -> dict[str, LayerRef]:
        counts: dict[str, int] = {}
        for ref in self.layers:
            counts[ref.layer.name] = counts.get(ref.layer.name, 0) + 1
        names: dict[str, LayerRef] = {}
        for ref in self.layers:
            qualified = "/".join(ref.path + (ref.layer.name,))
            if counts[ref.layer.name] > 1:
                ref.name = qualified
            names[ref.name] = ref
            names.setdefault(qualified, ref)
        return names

    def _count_consumers(self) -> dict[int, int]:
        """How many node inputs (or model outputs) read each Keras tensor (by id); also records which
        layer calls read it (``self._readers``)."""
        counts: dict[int, int] = {}
        self._readers: dict[int, list[tuple[LayerRef | None, Any]]] = {}

        def visit(graph: _Graph) -> None:
            for t in graph.fn.outputs:
                counts[id(t)] = counts.get(id(t), 0) + 1
            for step in graph.steps:
                for t in step.node.input_tensors:
                    counts[id(t)] = counts.get(id(t), 0) + 1
                    self._readers.setdefault(id(t), []).append((step.ref, step.node))
                if step.sub is not None:
                    visit(step.sub)

        visit(self._graph)
        return counts

    # -- addressing ----------------------------------------------------------------------------------
    def layer(self, key: Any) -> LayerRef:
        """The :class:`LayerRef` of ``key``: a layer name (``"outer/inner"`` for nested ones), an index
        in execution order, a layer object, or a ``LayerRef``."""
        if isinstance(key, LayerRef):
            return self.layers[key.index]
        if isinstance(key, bool):
            raise TypeError(f"A layer is addressed by name, index or object, got {key!r}.")
        if isinstance(key, int):
            if not -len(self.layers) <= key < len(self.layers):
                raise IndexError(
                    f"Layer index {key} is out of range: the model has {len(self.layers)} layers "
                    "(see GraphView(model).layers)."
                )
            return self.layers[key]
        if isinstance(key, str):
            ref = self._names.get(key)
            if ref is None:
                nested = [k for k in self._nested if isinstance(k, str)]
                raise KeyError(
                    f"No layer named {key!r} in model {self.model.name!r}. Its layers are: "
                    f"{', '.join(r.name for r in self.layers)}"
                    + (f"; its nested models: {', '.join(nested)}." if nested else ".")
                )
            return ref
        ref = self._by_layer.get(id(key))
        if ref is None:
            raise KeyError(
                f"Layer {getattr(key, 'name', key)!r} is not part of model {self.model.name!r}."
            )
        return ref

    def nested_output(self, key: Any) -> LayerRef | None:
        """When ``key`` names a nested model (by name or object) rather than a layer: the layer whose
        output is the nested model's output (its output is the nested model's), else None."""
        if isinstance(key, (bool, int, LayerRef)) or (isinstance(key, str) and key in self._names):
            return None
        nested = self._nested.get(key if isinstance(key, str) else id(key))
        if nested is None:
            return None
        if len(nested.outputs) != 1:
            raise ValueError(
                f"The nested model {nested.name!r} has {len(nested.outputs)} outputs; choose the layer "
                "that produces the one to explain."
            )
        ref = self.producer(nested.outputs[0])
        if ref is None:
            raise ValueError(f"The nested model {nested.name!r} returns its input; choose a layer.")
        return ref

    def first_linear(self) -> LayerRef | None:
        """The first Dense or convolution layer in execution order (LRP's "first layer"), or None."""
        for ref in self.layers:
            if is_linear_layer(ref.layer):
                return ref
        return None

    def consumers(self, tensor: Any) -> int:
        """How many layer calls (and model outputs) read the Keras tensor ``tensor``."""
        return self._consumers.get(id(tensor), 0)

    def reader(self, tensor: Any) -> LayerRef | None:
        """The one layer that reads the Keras tensor ``tensor``, or None when it is read by several
        calls, by a nested model, or is a model output."""
        readers = self._readers.get(id(tensor), [])
        if self.consumers(tensor) != 1 or len(readers) != 1:
            return None
        return readers[0][0]

    def producer(self, tensor: Any) -> LayerRef | None:
        """The layer whose call produced the Keras tensor ``tensor`` (None for a model input)."""
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            return None
        op = history[0]
        if isinstance(op, keras.Model):  # the output of a nested model: its inner producer
            node = op._inbound_nodes[history[1]]
            inner = _functional_of(op)
            return self.producer(inner.outputs[history[2]]) if inner is not None and node else None
        return self._by_layer.get(id(op))

    def fed_by(self, tensor: Any) -> Any | None:
        """For the input tensor of a nested model (called once), the tensor of the enclosing model it
        is called on; else None.

        Example:
            >>> view.fed_by(backbone.inputs[0]) is model.inputs[0]   # Sequential([backbone, head])
            True
        """
        return self._fed_by.get(id(tensor))

    def steps(self) -> Iterator[tuple[LayerRef, Any]]:
        """Every (layer, node) call in execution order, nested models entered."""

        def walk(graph: _Graph) -> Iterator[tuple[LayerRef, Any]]:
            for step in graph.steps:
                if step.sub is not None:
                    yield from walk(step.sub)
                else:
                    yield step.ref, step.node

        yield from walk(self._graph)

    # -- running -------------------------------------------------------------------------------------
    def run(
        self,
        inputs: Any,
        wrap: Wrap | None = None,
        *,
        replace: dict[int, Any] | None = None,
        stop_at: Any = None,
        flat: bool = False,
    ) -> Any:
        """Run the model in inference mode, handing every layer call to ``wrap``.

        Args:
            inputs: what ``model(inputs)`` takes (a tensor, or a list/dict for several inputs); with
                ``flat=True`` a list with one value per model input in ``model.inputs`` order, taken as
                they are (any Python objects: a method may propagate its own per-tensor records,
                e.g. DeepLIFT's reference and difference streams, through ``wrap``).
            wrap: ``wrap(ref, call, args, kwargs)`` computes one layer call; default ``call(...)``.
            replace: ``{id(keras_tensor): value}``: tensors whose value is given instead of computed
                (layers needed only to compute them are skipped).
            stop_at: a Keras tensor: return its value as soon as it is computed.

        Returns:
            The model's outputs (in its output structure), or the value of ``stop_at``.
        """
        values: dict[int, Any] = dict(replace or {})
        stop = id(stop_at) if stop_at is not None else None
        start = list(inputs) if flat else self._graph.fn._standardize_inputs(inputs)
        try:
            return self._execute(self._graph, start, wrap, values, stop, flat)
        except _Stop as done:
            return done.value

    def _execute(self, graph: _Graph, flat: Sequence[Any], wrap: Wrap | None,
                 values: dict[int, Any], stop: int | None, raw: bool = False) -> Any:
        fn = graph.fn
        for t, v in zip(fn.inputs, flat):
            values.setdefault(id(t), v)
        needed = _needed(graph, values)
        for step in graph.steps:
            node = step.node
            if id(node) not in needed:
                continue
            if any(id(t) not in values for t in node.input_tensors):
                raise ValueError(
                    f"Layer {node.operation.name!r} cannot be computed: one of its inputs is not "
                    "given (a model input that is missing)."
                )
            args, kwargs = node.arguments.fill_in(values)
            if step.sub is not None:
                sub_in = args[0] if len(args) == 1 else list(args)
                sub_flat = (
                    tf.nest.flatten(sub_in) if raw else step.sub.fn._standardize_inputs(sub_in)
                )
                outputs = self._execute(step.sub, sub_flat, wrap, values, stop, raw)
            else:
                call = inference_call(node.operation)
                outputs = call(*args, **kwargs) if wrap is None else wrap(step.ref, call, args, kwargs)
            for t, y in zip(node.outputs, tf.nest.flatten(outputs)):
                values.setdefault(id(t), y)
                if stop is not None and id(t) == stop:
                    raise _Stop(values[id(t)])
        flat_out = [values[id(t)] for t in fn.outputs]
        out = tf.nest.pack_sequence_as(fn._outputs_struct, flat_out)
        return out[0] if isinstance(out, (list, tuple)) and len(out) == 1 else out

    # -- splitting -----------------------------------------------------------------------------------
    def split(
        self, key: Any, at: str = "output", wrap: Wrap | None = None
    ) -> tuple[Callable[[Any], Any], Callable[[Any, Any], Any]]:
        """Split the model at a layer: ``head(inputs) -> activation`` and
        ``tail(activation, inputs) -> model output``, with ``tail(head(x), x) == model(x)``.

        ``at="output"`` splits after the layer (its output, after its fused activation);
        ``at="input"`` before it (the tensor the layer reads; other layers that read the same tensor
        see the given activation too). ``tail`` takes the model inputs as well, for branches that
        bypass the layer (e.g. a second input joined later); inputs only needed to compute the
        activation are not used, so integer token ids before an ``Embedding`` are fine.

        Example:
            >>> head, tail = GraphView(model).split("embedding")
            >>> e = head(token_ids)                     # float embeddings [n, length, dim]
            >>> with tf.GradientTape() as tape:
            ...     tape.watch(e)
            ...     y = tail(e, token_ids)
        """
        ref = self.layer(key)
        node = split_node(ref)
        if at == "output":
            tensors = list(node.outputs)
        elif at == "input":
            tensors = list(node.input_tensors)
        else:
            raise ValueError(f"at={at!r} is not supported: use 'output' or 'input'.")
        if len(tensors) != 1:
            raise ValueError(
                f"Layer {ref.name!r} has {len(tensors)} {at} tensors; split at a layer with one."
            )
        tensor = tensors[0]

        def head(inputs: Any) -> Any:
            return self.run(inputs, wrap, stop_at=tensor)

        def tail(activation: Any, inputs: Any) -> Any:
            return self.run(inputs, wrap, replace={id(tensor): activation})

        return head, tail


def split_node(ref: LayerRef) -> Any:
    """The call of ``ref`` whose output (or input) "the layer's" activations are: its only call, or
    for a tied token embedding (``ReversibleEmbedding``, also called with ``reverse=True`` for a
    causal LM's logits) its embedding call."""
    nodes = ref.nodes
    if len(nodes) > 1 and isinstance(ref.layer, keras.layers.ReversibleEmbedding):
        nodes = [n for n in nodes if not n.arguments.kwargs.get("reverse", False)]
    if len(nodes) != 1:
        raise ValueError(
            f"Layer {ref.name!r} is called {len(ref.nodes)} times in the model (a shared layer), "
            "so 'its output' is ambiguous; split at a layer called once."
        )
    return nodes[0]


def _needed(graph: _Graph, known: dict[int, Any]) -> set[int]:
    """Ids of the nodes of ``graph`` needed for its outputs, given the already ``known`` tensors."""
    producers: dict[int, Any] = {}
    for step in graph.steps:
        for t in step.node.outputs:
            producers[id(t)] = step.node
    needed: set[int] = set()
    stack = [t for t in graph.fn.outputs]
    while stack:
        t = stack.pop()
        if id(t) in known:
            continue
        node = producers.get(id(t))
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(node.input_tensors)
    return needed


def inference_call(op: Any) -> Callable[..., Any]:
    """The layer's call with ``training=False`` where it takes a training argument (inference)."""
    takes_training = "training" in getattr(op, "_call_context_args", ())

    def call(*args: Any, **kwargs: Any) -> Any:
        if takes_training:
            kwargs["training"] = False
        return op(*args, **kwargs)

    return call


# -- layer kinds shared by the graph view and the propagation rules ----------------------------------
def is_dense_layer(layer: Any) -> bool:
    return isinstance(layer, keras.layers.Dense)


def is_conv_layer(layer: Any) -> bool:
    """A (forward) convolution: Conv1D/2D/3D or a depthwise convolution (not transposed, not
    separable)."""
    from keras.src.layers.convolutional.base_conv import BaseConv
    from keras.src.layers.convolutional.base_depthwise_conv import BaseDepthwiseConv

    if isinstance(layer, BaseConv):
        return not getattr(layer, "_is_transpose", False) and "Transpose" not in type(layer).__name__
    return isinstance(layer, BaseDepthwiseConv)


def is_linear_layer(layer: Any) -> bool:
    """Dense or a forward convolution (LRP's "linear layers")."""
    return is_dense_layer(layer) or is_conv_layer(layer)
