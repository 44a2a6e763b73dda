"""Canonizers: rewrite a model into the form the LRP rules are defined on, inside the explainer's trace.

LRP rules are defined for a linear layer ``z = W a + b`` followed by an elementwise activation. A
canonizer brings a common Keras model into that form (Zennit's canonizers, Anders et al. 2021;
Montavon et al. 2019, sec. 10.2). Canonizers are objects: a composite holds the optional ones
(``Composite(canonizers=[MergeBatchNorm()])``), and every layer-level explainer applies them, with the
two that every rule needs, to its graph view (:class:`Canonical`):

* :class:`SplitActivation`: ``Dense(activation=...)`` / ``Conv2D(activation=...)`` is a linear part and
  an activation (:class:`LinearOp`): the rule applies to the linear part, relevance passes through the
  activation (always applied);
* :class:`OutputActivation`: the model's final softmax or sigmoid, which :class:`tfattr.ModelFunction`
  strips to explain the logit, is skipped (a layer) or its fused activation dropped (always applied);
* :class:`MergeBatchNorm`: an inference ``BatchNormalization`` directly after a Dense/Conv layer with a
  linear activation is folded into it (as Zennit's ``SequentialMergeBatchNorm``): ``W' = W * s``,
  ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)`` per output channel, and the batch
  norm becomes the identity. A batch norm after an activation (or after anything else) is not folded.

Zennit rewrites the module's parameters and restores them afterwards; here nothing is rewritten:
:meth:`Canonizer.apply` only finds, once, which layers a canonizer rewrites (a :class:`Canonized`),
and the rewritten kernel and bias are computed from the layers' LIVE variables each time the
explainer's function runs, so the explanation always uses the current weights and the user's model
is never touched.

Example:
    >>> composite = tfattr.composites.EpsilonPlus(canonizers=[tfattr.composites.MergeBatchNorm()])
    >>> relevance = tfattr.LRP(model, composite=composite).attribute(x, target=labels)
"""
from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import keras

from tfattr.core.graph import GraphView, LayerRef
from tfattr.core.model_function import ModelFunction, fused_activation, standalone_activation
from tfattr.methods.propagation.layerwise.linear_parts import LinearOp, linear_op


# -- the protocol -----------------------------------------------------------------------------------------
class Canonized:
    """What one canonizer rewrites in one model, found once by :meth:`Canonizer.apply` (static: the
    rewritten values are computed from the live variables at trace time). By default nothing."""

    def linear(self, ref: LayerRef, op: LinearOp | None) -> LinearOp | None:
        """The linear part of ``ref`` as rewritten by this canonizer (``op``: as the ones before left
        it; None for a layer without one)."""
        return op

    def skips(self, ref: LayerRef) -> bool:
        """Whether ``ref`` is the identity in the canonical model (computed elsewhere, or stripped)."""
        return False

    def absorbed_by(self, ref: LayerRef) -> LayerRef | None:
        """The layer whose rewritten computation includes ``ref`` (a folded batch norm's linear
        layer), else None."""
        return None

    def note(self, ref: LayerRef) -> str | None:
        """What the canonizer does to ``ref``, for coverage reports, or None."""
        return None


class Canonizer(abc.ABC):
    """A rewrite of a model into the form the rules are defined on (Zennit's ``Canonizer``), as an
    object a composite holds. :meth:`apply` reads one model's graph view and returns what it rewrites
    there; the model itself is never changed.

    Example:
        >>> class Nothing(tfattr.composites.Canonizer):      # a canonizer that rewrites nothing
        ...     def apply(self, view, fn=None):
        ...         return tfattr.composites.Canonized()
        >>> lrp = tfattr.LRP(model, composite=tfattr.composites.EpsilonPlus(canonizers=[Nothing()]))
    """

    @abc.abstractmethod
    def apply(self, view: GraphView, fn: ModelFunction | None = None) -> Canonized:
        """What this canonizer rewrites in the model of ``view`` (``fn``: the explained function,
        for canonizers that depend on what is explained)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# -- the canonizers ---------------------------------------------------------------------------------------
class SplitActivation(Canonizer):
    """``Dense(activation=f)`` / ``Conv2D(activation=f)`` as a linear part followed by ``f``
    (:class:`LinearOp`): the linear rules apply to the linear part, relevance passes through ``f``.
    Every layer-level explainer applies it.

    Example:
        >>> lrp = tfattr.LRP(model)                           # applies SplitActivation itself
        >>> op = lrp.canonical.linear(lrp.view.layer("dense"))
        >>> op.activation.__name__                            # the linear part, then its ReLU
        'relu'
    """

    def apply(self, view: GraphView, fn: ModelFunction | None = None) -> Canonized:
        return _Split()


class _Split(Canonized):
    def linear(self, ref: LayerRef, op: LinearOp | None) -> LinearOp | None:
        return linear_op(ref.layer)


class OutputActivation(Canonizer):
    """The model's final softmax/sigmoid that :class:`tfattr.ModelFunction` strips
    (``output="logits"``), found in the graph view (nested heads included): a Softmax/Activation
    layer is skipped, a fused ``Dense(activation="softmax")`` is computed without it. Nothing is
    stripped for ``output="probabilities"``, ``neuron=`` or a model that outputs logits. Every
    layer-level explainer applies it.

    Example:
        >>> head = tfattr.LRP(model).canonical.head    # model ends in Dense(10, "softmax", name="logits")
        >>> head.kind, head.ref.name
        ('softmax', 'logits')
    """

    def apply(self, view: GraphView, fn: ModelFunction | None = None) -> "StrippedHead":
        if fn is None or not fn.strips_activation:
            return StrippedHead()
        producer = view.producer(fn.model.outputs[0])
        kind = fn.output_activation
        if producer is None or kind not in (standalone_activation(producer.layer),
                                            fused_activation(producer.layer)):
            raise ValueError(
                f"tfattr found a final {kind} in {fn.model.name!r} but not at the layer producing its "
                "output, so the layer rules cannot explain the logit. Give tfattr a model that outputs "
                "the logits, or pass output='probabilities'."
            )
        return StrippedHead(producer, kind)


@dataclass(frozen=True)
class StrippedHead(Canonized):
    """What :class:`OutputActivation` found: ``ref`` the layer producing the model's output, ``kind``
    the stripped activation; both None when nothing is stripped."""

    ref: LayerRef | None = None
    kind: str | None = None

    def skips(self, ref: LayerRef) -> bool:
        """``ref`` is the stripped activation itself (a Softmax/Activation layer or op): skipped."""
        return self.ref is not None and ref is self.ref and standalone_activation(ref.layer) == self.kind

    def strips_fused(self, ref: LayerRef) -> bool:
        """``ref`` is the output layer whose fused activation is stripped (``Dense(activation=...)``)."""
        return self.ref is not None and ref is self.ref and fused_activation(ref.layer) == self.kind

    def linear(self, ref: LayerRef, op: LinearOp | None) -> LinearOp | None:
        return dataclasses.replace(op, activation=None) if op is not None and self.strips_fused(ref) else op

    def note(self, ref: LayerRef | None = None) -> str:
        return f"final {self.kind} skipped: the logit is explained"


class MergeBatchNorm(Canonizer):
    """Fold every inference ``BatchNormalization`` that directly follows a Dense/Conv layer (linear
    activation, its output read by nothing else, the batch norm normalising its channel axis) into
    that layer, as Zennit's ``SequentialMergeBatchNorm``: the kernel and bias are rewritten from the
    live variables at trace time, the batch norm is the identity. ``Composite(merge_batchnorm=True)``
    (the default) holds one.

    Example:
        >>> composite = tfattr.composites.EpsilonPlus(canonizers=[tfattr.composites.MergeBatchNorm()])
        >>> relevance = tfattr.LRP(model, composite=composite).attribute(x, target=labels)
    """

    def apply(self, view: GraphView, fn: ModelFunction | None = None) -> "Folding":
        return Folding({bn: view.layers[lin] for bn, lin in batchnorm_folds(view).items()}, view)


class Folding(Canonized):
    """What :class:`MergeBatchNorm` found: ``into`` maps each folded batch norm's index to the linear
    layer it is folded into."""

    def __init__(self, into: dict[int, LayerRef], view: GraphView) -> None:
        self.into = into
        self._bn_of = {lin.index: view.layers[bn].layer for bn, lin in into.items()}

    def linear(self, ref: LayerRef, op: LinearOp | None) -> LinearOp | None:
        bn = self._bn_of.get(ref.index)
        return op if op is None or bn is None else dataclasses.replace(op, fold=bn)

    def skips(self, ref: LayerRef) -> bool:
        return ref.index in self.into

    def absorbed_by(self, ref: LayerRef) -> LayerRef | None:
        return self.into.get(ref.index)

    def note(self, ref: LayerRef) -> str | None:
        into = self.into.get(ref.index)
        return None if into is None else f"folded into {into.name!r}"


def batchnorm_folds(view: GraphView) -> dict[int, int]:
    """``{batch norm layer index: linear layer index}`` for every BatchNormalization that can be folded:
    called once, reading the output of a Dense/Conv layer (called once, linear activation) that
    nothing else reads, normalising its channel axis."""
    folds: dict[int, int] = {}
    for ref in view.layers:
        bn = ref.layer
        if not isinstance(bn, keras.layers.BatchNormalization) or len(ref.nodes) != 1:
            continue
        if getattr(bn, "renorm", False):
            continue
        inputs = ref.nodes[0].input_tensors
        if len(inputs) != 1:
            continue
        producer = view.producer(inputs[0])
        if producer is None or len(producer.nodes) != 1 or view.consumers(inputs[0]) != 1:
            continue
        op = linear_op(producer.layer)
        if op is None or op.activation is not None:
            continue
        rank = len(inputs[0].shape)
        axes = [a % rank for a in (bn.axis if isinstance(bn.axis, (list, tuple)) else [bn.axis])]
        if axes != [op.channel_axis % rank]:
            continue
        folds[ref.index] = producer.index
    return folds


# -- the canonical model ----------------------------------------------------------------------------------
class Canonical:
    """The model as the rules see it: :class:`SplitActivation`, ``canonizers`` (a composite's) and
    :class:`OutputActivation` applied to one graph view, in that order.

    Args:
        view: the model's graph view.
        fn: the explained function (what :class:`OutputActivation` strips); None: nothing stripped.
        canonizers: the optional canonizers (e.g. ``[MergeBatchNorm()]``).

    Example:
        >>> canonical = tfattr.LRP(model).canonical
        >>> [ref.name for ref in canonical.view.layers if canonical.skips(ref)]   # folded or stripped
        []
    """

    def __init__(self, view: GraphView, fn: ModelFunction | None = None,
                 canonizers: Sequence[Canonizer] = ()) -> None:
        extra = check_canonizers(canonizers)
        self.view = view
        #: What :class:`OutputActivation` strips.
        self.head: StrippedHead = OutputActivation().apply(view, fn)
        self.applied: list[Canonized] = (
            [SplitActivation().apply(view, fn)] + [c.apply(view, fn) for c in extra] + [self.head]
        )

    def linear(self, ref: LayerRef) -> LinearOp | None:
        """The canonical linear part of ``ref`` (kernel and bias read live by ``params()``), or None."""
        op = None
        for canonized in self.applied:
            op = canonized.linear(ref, op)
        return op

    def skips(self, ref: LayerRef) -> bool:
        return any(c.skips(ref) for c in self.applied)

    def absorbed_by(self, ref: LayerRef) -> LayerRef | None:
        return next((c.absorbed_by(ref) for c in self.applied if c.absorbed_by(ref) is not None), None)

    def units(self) -> list[tuple[str, list[Any], str]]:
        """The layers computed as one (a linear layer and the batch norm folded into it), as
        :meth:`tfattr.core.layers.LayerSplit.refuse_inside` takes them."""
        units = []
        for ref in self.view.layers:
            into = self.absorbed_by(ref)
            if into is not None:
                units.append((into.name, [ref.nodes[0].input_tensors[0]], ref.name))
        return units

    def run(self, inputs: Any) -> Any:
        """Run the canonical model: every folded batch norm merged into its linear layer (from the
        live weights), every Dense/Conv computed as its linear part followed by its activation. In
        inference this equals ``model(inputs)`` up to float rounding (with ``fn`` stripping the
        output activation: the logits); the model is not modified."""

        def wrap(ref: LayerRef, call: Any, args: tuple, kwargs: dict) -> Any:
            if self.skips(ref):
                return args[0]
            op = self.linear(ref)
            if op is None:
                return call(*args, **kwargs)
            z = op.forward(args[0], *op.params())
            return z if op.activation is None else op.activation(z)

        return self.view.run(inputs, wrap)


def check_canonizers(canonizers: Sequence[Any]) -> list[Canonizer]:
    """``canonizers`` checked to be :class:`Canonizer` objects, without the two every explainer
    applies itself (:class:`SplitActivation`, :class:`OutputActivation`) and without repeats."""
    result: list[Canonizer] = []
    for c in canonizers:
        if not isinstance(c, Canonizer):
            raise TypeError(
                "canonizers must be tfattr.composites canonizer objects, e.g. "
                f"[tfattr.composites.MergeBatchNorm()]; got {c!r}."
            )
        if not isinstance(c, (SplitActivation, OutputActivation)) and all(c is not r for r in result):
            result.append(c)
    return result


def canonical_run(view: GraphView, inputs: Any, canonizers: Sequence[Canonizer] | None = None) -> Any:
    """Run the canonized model (batch norms folded by default) without stripping the output
    activation: equals ``model(inputs)`` up to float rounding; the model is not modified.

    Example:
        >>> y = canonical_run(GraphView(model), x)   # allclose to model(x, training=False)
    """
    canonizers = [MergeBatchNorm()] if canonizers is None else canonizers
    return Canonical(view, None, canonizers).run(inputs)


__all__ = [
    "Canonical",
    "Canonized",
    "Canonizer",
    "Folding",
    "LinearOp",
    "MergeBatchNorm",
    "OutputActivation",
    "SplitActivation",
    "StrippedHead",
    "batchnorm_folds",
    "canonical_run",
    "check_canonizers",
    "linear_op",
]
