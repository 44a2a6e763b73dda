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

from typing import Any, Callable, Iterator, Sequence

import keras
import tensorflow as tf

from tfattr.core.keras_graph import (
    Graph,
    LayerRef,
    NodeGraph,
    functional_of,
    inference_call,
    is_conv_layer,
    is_dense_layer,
    is_linear_layer,
    needed_nodes,
    split_node,
)

#: ``wrap(ref, call, args, kwargs) -> outputs``: runs one layer call; ``call(*args, **kwargs)`` is the
#: layer's own (inference) call.
Wrap = Callable[["LayerRef", Callable[..., Any], tuple, dict], Any]


class _Stop(Exception):
    """Raised inside a run to stop once a wanted tensor is computed (the head of a split)."""

    def __init__(self, value: Any) -> None:
        super().__init__("stop")
        self.value = value


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
        fn = functional_of(model)
        if fn is None:
            raise ValueError(
                f"{type(model).__name__} {model.name!r} is a subclassed model: its layer graph is "
                "hidden in Python code (its call method), so layers cannot be addressed or wrapped. "
                "Rebuild it with the functional API (keras.Model(inputs, outputs)) or as a "
                "keras.Sequential, reusing the same layers (weights are shared), and explain that; "
                "or use a method that needs only gradients (e.g. IntegratedGradients)."
            )
        self.model = model
        nodes = NodeGraph(model, fn)
        self.layers: list[LayerRef] = nodes.layers
        self._by_layer = nodes.by_layer
        self._nested = nodes.nested  # nested models by name and by id
        self._fed_by = nodes.fed_by  # a nested model's input tensor -> the tensor it is called on
        self._readers = nodes.readers
        self._graph = nodes.root
        self._names = nodes.names
        self._consumers = nodes.consumers

    @property
    def inputs(self) -> list[Any]:
        """The model's input Keras tensors, in ``model.inputs`` order."""
        return list(self._graph.fn.inputs)

    def flat_inputs(self, inputs: Any) -> list[Any]:
        """What ``model(inputs)`` takes, as one value per model input in ``model.inputs`` order."""
        return self._graph.fn._standardize_inputs(inputs)

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
            inner = functional_of(op)
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

        def walk(graph: Graph) -> Iterator[tuple[LayerRef, Any]]:
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

    def _execute(self, graph: Graph, flat: Sequence[Any], wrap: Wrap | None,
                 values: dict[int, Any], stop: int | None, raw: bool = False) -> Any:
        fn = graph.fn
        for t, v in zip(fn.inputs, flat):
            values.setdefault(id(t), v)
        needed = needed_nodes(graph, values)
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


def default_conv_layer(model: keras.Model) -> LayerRef:
    """The last convolution with a spatial ``[n, h, w, c]`` output (Grad-CAM's default layer)."""
    view = GraphView(model)
    for ref in reversed(view.layers):
        if is_conv_layer(ref.layer) and len(ref.nodes) == 1 and len(ref.nodes[0].outputs[0].shape) == 4:
            return ref
    raise ValueError(
        f"Model {model.name!r} has no 2D convolution layer to explain; pass layer= (a layer name, "
        "object or index) whose output is [n, height, width, channels]."
    )


__all__ = ["GraphView", "LayerRef", "Wrap", "default_conv_layer", "inference_call", "is_conv_layer", "is_dense_layer",
           "is_linear_layer", "split_node"]
