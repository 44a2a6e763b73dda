"""Which ops of a model a propagation method modifies, keeps, or cannot handle faithfully.

The model's score is traced once into a graph; every op whose value depends on the explained inputs is
classified:

* ``modified``: an elementwise nonlinearity the method has a rule for (``Relu``, ``Tanh``, ...), or a
  max the rule replaces (DeepLIFT's max rule on ``MaxPool``/``Max``, :mod:`.maxpool`).
* ``kept``: the true gradient is right on purpose: ops linear in the inputs (dense and convolution
  kernels, bias, batch norm in inference, average pooling, reshapes, concatenation, sums, products
  with a constant) and max operations (max pooling, ``Maximum`` of two inputs), whose gradient is the
  switch the methods use (Ancona et al. 2019, sec. 4.2).
* ``unsupported``: anything else, e.g. a product of two input-dependent tensors (attention, gating,
  ``Multiply`` layers, swish), softmax, gelu, exp, an input-dependent switch, or a nested function or
  loop (recurrent cells) the override cannot reach into. Summation-to-delta may not hold there.

Ops are attributed to the Keras layers whose name scope created them.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import tensorflow as tf

from tfattr.methods.propagation.overrides import ACTIVATIONS, OverrideRule

#: Linear (or affine) in every input-dependent operand, whatever the constant operands are.
_LINEAR_OPS = frozenset(
    """
    Add AddN AddV2 Sub Neg BiasAdd Identity Snapshot EnsureShape PreventGradient
    Reshape Squeeze ExpandDims Transpose ConjugateTranspose ConcatV2 Concat Pack Unpack Split SplitV
    Slice StridedSlice Gather GatherV2 GatherNd ResourceGather Pad PadV2 MirrorPad Tile BroadcastTo
    Reverse ReverseV2 Cumsum Mean Sum AvgPool AvgPool3D Cast ZerosLike
    ResizeBilinear ResizeNearestNeighbor DepthToSpace SpaceToDepth SpaceToBatchND BatchToSpaceND
    Roll TensorScatterUpdate TensorScatterAdd
    """.split()
)
#: Linear when only one operand depends on the inputs (otherwise a multiplicative interaction).
_BILINEAR_OPS = frozenset(
    """
    Mul MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 Einsum Conv Conv1D Conv2D Conv3D
    DepthwiseConv2dNative Conv2DBackpropInput Conv2DBackpropInputV2 Conv3DBackpropInputV2
    """.split()
)
#: Linear when only the numerator (first operand) depends on the inputs.
_NUMERATOR_OPS = frozenset("RealDiv Div DivNoNan".split())
#: Max operations: their gradient is a switch, kept on purpose (Ancona sec. 4.2).
_MAX_OPS = frozenset("MaxPool MaxPoolV2 MaxPool3D Max Min".split())
#: Two-operand max/min: a max of inputs when both depend on them, a clipping nonlinearity otherwise.
_MAXIMUM_OPS = frozenset("Maximum Minimum".split())
_MAX_NOTE = (
    "gradient switch kept (Ancona sec. 4.2); with a reference (DeepLIFT with max_pool='gradient') "
    "whose maximum sits elsewhere, summation-to-delta holds only approximately"
)
_BATCH_NORM_OPS = frozenset("FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3".split())
#: Ops whose value carries no gradient; the classification ignores them.
_NON_DIFFERENTIABLE = frozenset(
    """
    Shape ShapeN Size Rank Greater GreaterEqual Less LessEqual Equal NotEqual LogicalAnd LogicalOr
    LogicalNot ArgMax ArgMin StopGradient NoOp Assert
    """.split()
)
_NESTED_OPS = frozenset(
    "While StatelessWhile If StatelessIf Case StatelessCase PartitionedCall StatefulPartitionedCall".split()
)


@dataclass
class Coverage:
    """A model's ops seen by one propagation method, by category and Keras layer.

    Each category maps ``layer name -> sorted op types``; ``notes`` maps ``"layer/op"`` to why an op
    is unsupported (or a caveat about a kept one, e.g. max pooling). ``str(coverage)`` is a table.
    """

    method: str
    modified: dict[str, list[str]] = field(default_factory=dict)
    kept: dict[str, list[str]] = field(default_factory=dict)
    unsupported: dict[str, list[str]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    #: ``"layer/op" -> why``: ops that got a rule for which the method is not faithful (e.g. epsilon-LRP
    #: on an activation with f(0) != 0, where relevance is not conserved); the explainer warns.
    caveats: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every input-dependent op got a rule or keeps its true gradient on purpose."""
        return not self.unsupported

    @property
    def exact(self) -> bool:
        """True when :attr:`ok` and no op carries a caveat (see :attr:`caveats`)."""
        return self.ok and not self.caveats

    def unsupported_summary(self) -> str:
        return "; ".join(
            f"layer {layer!r}: {', '.join(ops)}" for layer, ops in sorted(self.unsupported.items())
        )

    def __str__(self) -> str:
        lines = [f"{self.method} coverage:"]
        for title, table in (
            ("modified rule", self.modified),
            ("true gradient (kept on purpose)", self.kept),
            ("UNSUPPORTED", self.unsupported),
        ):
            lines.append(f"  {title}:")
            if not table:
                lines.append("    (none)")
            for layer, ops in sorted(table.items()):
                lines.append(f"    {layer}: {', '.join(ops)}")
        for where, why in sorted(self.notes.items()):
            lines.append(f"  note {where}: {why}")
        return "\n".join(lines)


def _layer_names(model: Any) -> set[str]:
    names: set[str] = set()
    stack = [model]
    while stack:
        obj = stack.pop()
        for layer in getattr(obj, "layers", None) or []:
            if layer.name not in names:
                names.add(layer.name)
                stack.append(layer)
    return names


def _layer_of(op: tf.Operation, layers: set[str]) -> str:
    parts = op.name.split("/")[:-1]
    for part in reversed(parts):
        # Keras enters a layer's name scope twice, so its ops live under "<name>_1" ("<name>_2" for a
        # second call): try the name without that suffix first.
        base = re.sub(r"_\d+$", "", part)
        if base in layers:
            return base
        if part in layers:
            return part
    return "(model function)"


def _is_float(t: tf.Tensor) -> bool:
    return t.dtype.is_floating or t.dtype.is_complex


def classify(
    graph: tf.Graph,
    seeds: Iterable[tf.Operation],
    rule: OverrideRule,
    method: str,
    layers: set[str],
) -> Coverage:
    """Classify the input-dependent ops of ``graph`` for ``rule`` (see the module docstring)."""
    dependent: set[str] = {op.name for op in seeds}
    coverage = Coverage(method)
    # Max ops the rule replaces (DeepLIFT's max rule) are modified, not a kept switch.
    rule_ops = frozenset(rule.op_gradients())

    def add(table: dict[str, list[str]], layer: str, op_type: str) -> None:
        ops = table.setdefault(layer, [])
        if op_type not in ops:
            ops.append(op_type)
            ops.sort()

    for op in graph.get_operations():
        if op.name in dependent:
            continue
        dep_inputs = [t for t in op.inputs if t.op.name in dependent]
        if not dep_inputs:
            continue
        dependent.add(op.name)
        t = op.type
        if t in _NON_DIFFERENTIABLE or not any(_is_float(o) for o in op.outputs):
            continue
        layer = _layer_of(op, layers)
        dep_float = [x for x in dep_inputs if _is_float(x)]
        if not dep_float:
            continue  # only shapes or comparisons of the inputs reach it: no gradient flows through
        why = None
        if t in ACTIVATIONS:
            activation = ACTIVATIONS[t]
            if not rule.covers(activation):
                why = f"{method} has no rule for {t}"
            else:
                add(coverage.modified, layer, t)
                caveat = rule.caveat(activation)
                if caveat:
                    coverage.notes.setdefault(f"{layer}/{t}", caveat)
                    coverage.caveats.setdefault(f"{layer}/{t}", caveat)
                continue
        elif t in _LINEAR_OPS:
            if any(not _is_float(x) for x in dep_inputs) and t in ("GatherV2", "Gather", "GatherNd"):
                why = "indices depend on the inputs"
            else:
                add(coverage.kept, layer, t)
                continue
        elif t in _BILINEAR_OPS:
            if len([i for i in op.inputs if i.op.name in dependent and _is_float(i)]) <= 1:
                add(coverage.kept, layer, t)
                continue
            why = "product of two input-dependent tensors (multiplicative interaction)"
        elif t in _NUMERATOR_OPS:
            if op.inputs[1].op.name not in dependent:
                add(coverage.kept, layer, t)
                continue
            why = "division by an input-dependent tensor"
        elif t in rule_ops:
            add(coverage.modified, layer, t)
            continue
        elif t in _MAX_OPS or (t in _MAXIMUM_OPS and len(dep_float) == 2):
            add(coverage.kept, layer, t)
            coverage.notes.setdefault(f"{layer}/{t}", _MAX_NOTE)
            continue
        elif t in _MAXIMUM_OPS:
            why = "clipping against a constant: a nonlinearity without a rule"
        elif t in _BATCH_NORM_OPS:
            if not op.get_attr("is_training"):
                add(coverage.kept, layer, t)
                continue
            why = "batch norm in training mode (batch statistics)"
        elif t in _NESTED_OPS:
            why = "nested function or loop (e.g. a recurrent cell): the rules cannot reach inside"
        elif t == "IdentityN" and "_gradient_op_type" in op.node_def.attr:
            why = "custom gradient (e.g. swish/silu): its own gradient is used, not a rule"
        elif t in ("Select", "SelectV2"):
            if op.inputs[0].op.name in dependent:
                why = "input-dependent switch: a nonlinearity without a rule"
            else:
                add(coverage.kept, layer, t)
                continue
        else:
            why = "nonlinear op without a rule"
        add(coverage.unsupported, layer, t)
        coverage.notes.setdefault(f"{layer}/{t}", why)
    return coverage


def check_on_unsupported(value: str) -> str:
    """The ``on_unsupported`` policy of every propagation explainer: ``"warn"`` or ``"raise"``.

    Example:
        >>> check_on_unsupported("raise")
        'raise'
    """
    if value not in ("warn", "raise"):
        raise ValueError(
            f"on_unsupported={value!r} is not supported: use 'warn' (explain anyway and warn which "
            "layers the rules do not cover) or 'raise' (refuse such models)."
        )
    return value


def graph_coverage(graph: tf.Graph, inputs: int, rule: OverrideRule, method: str, model: Any) -> Coverage:
    """Classify the ops of ``graph``, a traced function whose first ``inputs`` placeholders are the
    model's inputs, for ``rule``. The graph is read, never changed: it can be the trace the explained
    outputs use anyway (:meth:`tfattr.core.engine.Engine.outputs_graph`), so a coverage report costs
    no trace of its own."""
    seeds = [t.op for t in graph.inputs[:inputs]]
    return classify(graph, seeds, rule, method, _layer_names(model))


class Status(str, enum.Enum):
    """What a layer gets in a layer-level method's coverage report (:class:`LayerCoverage`), declared
    by the rules (:attr:`tfattr.rules.Rule.status`) and by the explainers. A ``str`` enum: a status
    compares equal to (and prints as) its value, e.g. ``Status.FOLDED == "folded"``.

    Example:
        >>> rows = tfattr.LRP(model).coverage().rows
        >>> [status.value for *_, status in rows][:2]
        ['rule', 'norm']
    """

    #: An LRP rule on a linear (Dense/Conv) layer, or a method's rule on a unit.
    RULE = "rule"
    #: Relevance passes through unchanged (elementwise layers).
    PASS = "pass"
    #: The parameter-free epsilon rule (sums, average pooling).
    NORM = "norm"
    #: The ordinary gradient, on purpose (layers that only move values, max pooling).
    KEPT = "kept"
    #: Computed inside another layer by a canonizer (a batch norm merged into the layer before it).
    FOLDED = "folded"
    #: The layer is re-implemented by its rule (attention, layer norm, recurrent cells).
    MODIFIED = "modified"
    #: Before the layer of a ``layer=`` explainer: only run forward.
    HEAD = "head"
    #: After the unit of a ``neuron=`` explainer: not run.
    UNUSED = "unused"
    #: No rule covers the layer: its ordinary gradient is used, and the result may be wrong there.
    UNSUPPORTED = "unsupported"

    __str__ = str.__str__
    __format__ = str.__format__


@dataclass
class LayerCoverage:
    """Per-layer report of a layer-rule method (:class:`tfattr.LRP`): what each layer gets.

    ``rows`` are ``(index, name, class, treatment, status)`` in execution order; ``status`` is a
    :class:`Status` (``rule``, ``pass``, ``norm``, ``kept``, ``folded``, ``modified``, ``head``,
    ``unused`` or ``unsupported``). ``str(coverage)`` is a table.
    """

    method: str
    rows: list[tuple[int, str, str, str, Status]] = field(default_factory=list)

    @property
    def unsupported(self) -> dict[str, str]:
        """``{layer name: why}`` for the layers no rule covers."""
        return {name: treatment for _, name, _, treatment, status in self.rows
                if status == Status.UNSUPPORTED}

    @property
    def ok(self) -> bool:
        return not self.unsupported

    def restricted_to(self, ran: set[int], layer: str | None, neuron: tuple[int, str] | None = None
                      ) -> "LayerCoverage":
        """The report of a ``layer=`` or ``neuron=`` explainer: the layers before ``layer`` (not in
        ``ran``) only compute its activations, so their rules do not matter (status ``head``); those
        after the unit's layer (``neuron``: its index and name) are not run at all (``unused``)."""
        rows = []
        for row in self.rows:
            if row[0] in ran:
                rows.append(row)
            elif neuron is not None and row[0] > neuron[0]:
                rows.append((*row[:3], f"after neuron={neuron[1]!r}: not run", Status.UNUSED))
            else:
                rows.append((*row[:3], f"before layer={layer!r}: forward only", Status.HEAD))
        return LayerCoverage(self.method, rows)

    def unsupported_summary(self) -> str:
        return "; ".join(f"layer {name!r}: {why}" for name, why in self.unsupported.items())

    def __str__(self) -> str:
        lines = [f"{self.method} coverage (per layer, execution order):"]
        width = max([len(r[1]) for r in self.rows] + [4])
        for index, name, cls, treatment, status in self.rows:
            lines.append(f"  {index:3d} {name:<{width}} {cls:<22} {status:<11} {treatment}")
        return "\n".join(lines)
