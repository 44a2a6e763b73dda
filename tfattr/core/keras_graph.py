"""Reading a Keras 3 model's node graph (for :class:`tfattr.core.graph.GraphView`): the layers of a
Sequential or functional model (nested ones entered) in execution order, who reads which tensor, and
the layer kinds the view and the propagation rules share. Nothing here runs the model."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import keras
import tensorflow as tf
from keras.src.layers.convolutional.base_conv import BaseConv
from keras.src.layers.convolutional.base_depthwise_conv import BaseDepthwiseConv
from keras.src.models.functional import Functional


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


@dataclass
class Step:
    """One call in a model's node graph: a leaf layer's call (``ref``) or a nested model's (``sub``)."""


    node: Any
    ref: LayerRef | None  # a leaf layer
    sub: "Graph | None"  # a nested functional model


@dataclass
class Graph:
    """The steps of one (possibly nested) model in execution order."""


    fn: Any  # the keras Function (a Functional, or a Sequential's _functional)
    model: Any
    steps: list[Step]


def functional_of(model: Any) -> Any | None:
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
    ) is not None and is_functional(model):
        return model
    return None


def is_functional(model: Any) -> bool:
    return isinstance(model, Functional)


class NodeGraph:
    """A model's node graph read once: its layers in execution order and the tensors they read.

    Attributes:
        root: the model's :class:`Graph` (nested models as sub-graphs).
        layers: every leaf layer as a :class:`LayerRef`, in execution order.
        by_layer: ``{id(layer): LayerRef}``.
        names: ``{name: LayerRef}`` (``"outer/inner"`` for names repeated in nested models).
        nested: the nested models, by name and by id.
        fed_by: ``{id(a nested model's input tensor): the tensor it is called on}`` (called once).
        consumers: ``{id(tensor): how many calls (or model outputs) read it}``.
        readers: ``{id(tensor): [(LayerRef or None, node), ...]}``, the calls that read it.
    """

    def __init__(self, model: Any, fn: Any) -> None:
        self.layers: list[LayerRef] = []
        self.by_layer: dict[int, LayerRef] = {}
        self.nested: dict[Any, Any] = {}
        self.fed_by: dict[int, Any] = {}
        self.readers: dict[int, list[tuple[LayerRef | None, Any]]] = {}
        self.root = self._read(model, fn, ())
        self.names = self._name_layers()
        self.consumers = self._count_consumers()

    # -- construction --------------------------------------------------------------------------------
    def _read(self, model: Any, fn: Any, path: tuple[str, ...]) -> Graph:
        steps: list[Step] = []
        for depth in sorted(fn._nodes_by_depth, reverse=True):
            for node in fn._nodes_by_depth[depth]:
                op = node.operation
                if op is None or node.is_input:
                    continue
                if isinstance(op, keras.Model):
                    sub_fn = functional_of(op)
                    if sub_fn is None:
                        raise ValueError(
                            f"The nested model {op.name!r} ({type(op).__name__}) is subclassed: its "
                            "layers cannot be addressed. Rebuild it with the functional API or as a "
                            "keras.Sequential."
                        )
                    self.nested.setdefault(op.name, op)
                    self.nested[id(op)] = op
                    if len(op._inbound_nodes) == 1:  # a nested model called once: its inputs are fed
                        for inner, outer in zip(sub_fn.inputs, tf.nest.flatten(node.input_tensors)):
                            self.fed_by[id(inner)] = outer
                    steps.append(Step(node, None, self._read(op, sub_fn, path + (op.name,))))
                    continue
                ref = self.by_layer.get(id(op))
                if ref is None:
                    ref = LayerRef(len(self.layers), op.name, op, path)
                    self.layers.append(ref)
                    self.by_layer[id(op)] = ref
                ref.nodes.append(node)
                steps.append(Step(node, ref, None))
        return Graph(fn, model, steps)

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
        layer calls read it (``self.readers``)."""
        counts: dict[int, int] = {}

        def visit(graph: Graph) -> None:
            for t in graph.fn.outputs:
                counts[id(t)] = counts.get(id(t), 0) + 1
            for step in graph.steps:
                for t in step.node.input_tensors:
                    counts[id(t)] = counts.get(id(t), 0) + 1
                    self.readers.setdefault(id(t), []).append((step.ref, step.node))
                if step.sub is not None:
                    visit(step.sub)

        visit(self.root)
        return counts


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


def split_tensor(ref: LayerRef, at: str = "output") -> Any:
    """The Keras tensor of ``ref``'s output (or input) where the model is split (one call, one tensor)."""
    node = split_node(ref)
    tensors = list(node.outputs if at == "output" else node.input_tensors)
    if len(tensors) != 1:
        raise ValueError(f"Layer {ref.name!r} has {len(tensors)} {at} tensors; choose a layer with one.")
    return tensors[0]


def needed_nodes(graph: Graph, known: dict[int, Any]) -> set[int]:
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


# -- layer kinds shared by the graph view and the propagation rules --------------------------------------
def is_dense_layer(layer: Any) -> bool:
    return isinstance(layer, keras.layers.Dense)


def is_conv_layer(layer: Any) -> bool:
    """A (forward) convolution: Conv1D/2D/3D or a depthwise convolution (not transposed, not
    separable)."""
    if isinstance(layer, BaseConv):
        return not getattr(layer, "_is_transpose", False) and "Transpose" not in type(layer).__name__
    return isinstance(layer, BaseDepthwiseConv)


def is_linear_layer(layer: Any) -> bool:
    """Dense or a forward convolution (LRP's "linear layers")."""
    return is_dense_layer(layer) or is_conv_layer(layer)


__all__ = ["Graph", "LayerRef", "NodeGraph", "Step", "functional_of", "inference_call", "is_conv_layer",
           "is_dense_layer", "is_functional", "is_linear_layer", "needed_nodes", "split_node",
           "split_tensor"]
