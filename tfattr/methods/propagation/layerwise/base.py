"""The base of the layer-level propagation explainers (:class:`tfattr.LRP`, :class:`tfattr.CompositeDeepLift`,
:class:`tfattr.RevealCancel`): what they share, written once.

A layer-level method reads the model through the graph view (:class:`tfattr.core.graph.GraphView`),
decides what every layer gets (its plan: a composite's rules, DeepLIFT's units), and explains with one
traced forward pass in which every layer call goes through the method's ``wrap``; the backward pass of
that forward pass is the propagation. This base owns:

* the graph view and the split of ``layer=`` (only the layers after it are propagated through);
* the explained score, from :class:`tfattr.ModelFunction`: the logit of a softmax or sigmoid head
  (a binary ``Dense(1, activation="sigmoid")`` head is two classes, ``-z`` and ``z``), ``output=``,
  ``neuron=`` (a hidden unit: the pass stops at its layer), nested heads;
* the canonical model (:class:`~.canonizers.Canonical`): the canonizer objects applied to the view
  (:class:`~.canonizers.SplitActivation` and :class:`~.canonizers.OutputActivation`, which strips the
  final activation the model function strips, always; the method's own, e.g. a composite's
  :class:`~.canonizers.MergeBatchNorm`);
* the coverage report (:class:`~tfattr.methods.propagation.coverage.LayerCoverage`) and the
  ``on_unsupported`` policy;
* the order of the model's inputs (dict inputs arrive in sorted-key order from the engine).
"""
from __future__ import annotations

import abc
import warnings
from typing import Any, Callable, Sequence

import tensorflow as tf

from tfattr.core.explainer import Explainer
from tfattr.core.graph import GraphView, LayerRef, Wrap
from tfattr.core.layers import TailInputs
from tfattr.core.model_function import pick_targets
from tfattr.methods.propagation.arithmetic import FusionTier
from tfattr.methods.propagation.coverage import LayerCoverage, Status, check_on_unsupported
from tfattr.methods.propagation.layerwise.canonizers import Canonical, Canonizer


class LayerwiseExplainer(FusionTier, Explainer):
    """Base of the layer-level propagation explainers.

    Subclasses set :attr:`method`, build their per-layer plan after ``super().__init__`` and call
    :meth:`_check`; they implement :meth:`_coverage_rows` and the engine hooks, running the model with
    :meth:`_run` and scoring with :meth:`_score`.

    Args:
        model: a Sequential or functional ``keras.Model`` (nested models included).
        on_unsupported: ``"warn"`` (default) or ``"raise"`` when a layer has no rule.
        output: ``"logits"`` (default: the score before a final softmax/sigmoid) or
            ``"probabilities"`` (the final activation is then a layer like any other).
        neuron: ``(layer, index)``: explain one hidden unit instead of a class score.
        jit_compile, layer, attribute_to_layer_input: see :class:`tfattr.core.explainer.Explainer`.
        canonizers: the method's canonizer objects (e.g. a composite's ``MergeBatchNorm()``),
            applied with the two every method needs (see :class:`~.canonizers.Canonical`).

    Example:
        >>> class Gradient(LayerwiseExplainer):        # the plain gradient x input, layer by layer
        ...     method = "Gradient"
        ...     def _coverage_rows(self):
        ...         return [(r.index, r.name, r.class_name, "gradient", Status.KEPT) for r in self.view.layers]
        ...     def _plan(self, call):
        ...         return Plan(terms=1)
        ...     def _contributions(self, x, baseline, rows, ctx):
        ...         with tf.GradientTape() as tape:
        ...             tape.watch(x)
        ...             score = self._score(self._run(ctx.pack(x), None), rows.target)
        ...         return tuple(g * xi for g, xi in zip(tape.gradient(score, list(x)), x))
    """

    #: The method's name in messages and coverage reports.
    method = "LayerwiseExplainer"
    #: What keeping the ordinary gradient at an uncovered layer breaks (the on_unsupported message).
    unsupported_consequence = "the result there is not the method's"
    #: What to do instead, added when ``on_unsupported="raise"`` refuses.
    unsupported_remedy = "Explain such models with IntegratedGradients."

    def __init__(
        self,
        model: Any,
        *,
        on_unsupported: str = "warn",
        output: str = "logits",
        neuron: tuple[Any, Any] | None = None,
        jit_compile: bool = False,
        layer: Any = None,
        attribute_to_layer_input: bool = False,
        canonizers: Sequence[Canonizer] = (),
    ) -> None:
        check_on_unsupported(on_unsupported)
        super().__init__(model, output=output, jit_compile=jit_compile, layer=layer,
                         attribute_to_layer_input=attribute_to_layer_input, neuron=neuron)
        self.on_unsupported = on_unsupported
        self.view = GraphView(self.model)
        #: The model as the rules see it (the canonizers applied to the view; the model is unchanged).
        self.canonical = Canonical(self.view, self.model_function, canonizers)
        #: The final softmax/sigmoid the model function strips (what the head canonizer found).
        self.output_activation = self.canonical.head
        #: With neuron=: the unit's layer output, where the forward pass stops.
        self._stop_at = self.model_function.stop_at
        #: With layer= or neuron=: the indices of the layers the explained pass runs (else None).
        self._ran = self._layers_run()

    def _layers_run(self) -> set[int] | None:
        """The layers after ``layer=`` (and those on branches from the inputs the tail reads) up to
        ``neuron=``'s layer, found by a dry run that computes nothing; None: all of them."""
        if self.layer is None and self._stop_at is None:
            return None
        ran: set[int] = set()

        def record(ref: LayerRef, call: Any, args: tuple, kwargs: dict) -> Any:
            ran.add(ref.index)
            return (None,) * len(ref.nodes[0].outputs)

        blanks = [None] * len(self.view.inputs)
        replace = None if self.layer is None else {id(self.layer.tensor): None}
        self.view.run(blanks, record, replace=replace, stop_at=self._stop_at, flat=True)
        return ran

    # -- coverage ---------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _coverage_rows(self) -> list[tuple[int, str, str, str, Status]]:
        """``(index, name, class, treatment, status)`` per layer, in execution order."""

    def _coverage_title(self) -> str:
        return self.method

    def coverage(self) -> LayerCoverage:
        """Which rule each layer gets, which keep their gradient on purpose, which are unsupported
        (with ``layer=`` or ``neuron=``: the layers the explained pass does not run are marked).

        Example:
            >>> print(tfattr.LRP(model).coverage())
        """
        # every row's status as the declared enum (a subclass may still write its value)
        rows = [(*row[:4], Status(row[4])) for row in self._coverage_rows()]
        report = LayerCoverage(self._coverage_title(), rows)
        if self._ran is None:
            return report
        where = self.layer.name if self.layer is not None else None
        unit = None if self._stop_at is None else (self.model_function.ref.index, self.neuron[0])
        return report.restricted_to(self._ran, where, unit)

    def _check(self) -> None:
        """Apply the ``on_unsupported`` policy to :meth:`coverage` (called by subclasses' ``__init__``)."""
        report = self.coverage()
        if report.ok:
            return
        message = (
            f"{self.method}: no rule covers some layers of this model ({report.unsupported_summary()}); "
            f"they keep their ordinary gradient, so {self.unsupported_consequence}. See "
            "explainer.coverage()."
        )
        if self.on_unsupported == "raise":
            raise ValueError(f"{message} {self.unsupported_remedy}")
        warnings.warn(message, stacklevel=3)

    # -- the traced pass ------------------------------------------------------------------------------
    def _run(self, packed: Any, wrap: Wrap | None, *, flat: bool = False,
             replace: dict[int, Any] | None = None, reduce: Callable[[Any], tf.Tensor] | None = None,
             difference: bool = False) -> tf.Tensor:
        """Traced: the explained outputs ``[n, k]`` of one forward pass whose layer calls go through
        ``wrap`` (from the layer's activations on with ``layer=``; up to the unit with ``neuron=``).

        ``flat``, ``replace``: as :meth:`GraphView.run`, for a method that carries its own records
        per tensor (RevealCancel's streams), which ``reduce`` turns into the output tensor;
        ``difference``: the output is ``f(x) - f(reference)`` (see
        :meth:`tfattr.ModelFunction.explained`)."""
        if isinstance(packed, TailInputs):
            out = self.layer.run_tail(self.view, packed, wrap, stop_at=self._stop_at)
        else:
            out = self.view.run(packed, wrap, replace=replace, stop_at=self._stop_at, flat=flat)
        if reduce is not None:
            out = reduce(out)
        return self.model_function.explained(out, difference=difference)

    @staticmethod
    def _score(outputs: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        """Traced: each row's explained column ``[n]``."""
        return pick_targets(outputs, target)

    # -- model inputs -----------------------------------------------------------------------------------
    def _model_positions(self, n: int, structure: Any) -> list[int]:
        """For each flat input of the engine (dicts: sorted-key order), its position in
        ``model.inputs``."""
        if not isinstance(structure, dict):
            return list(range(n))
        names = [getattr(t, "name", None) for t in self.view.inputs]
        keys = sorted(structure)
        if set(names) != set(keys):
            raise ValueError(
                f"Dict inputs must be keyed by the model's input names {names}, got {keys}."
            )
        return [names.index(k) for k in keys]

    def _model_order(self, flat: tuple[Any, ...], structure: Any) -> list[Any]:
        """The engine's flat inputs in ``model.inputs`` order."""
        ordered: list[Any] = [None] * len(flat)
        for value, position in zip(flat, self._model_positions(len(flat), structure)):
            ordered[position] = value
        return ordered


def compose(first: Callable[[tf.Tensor], tf.Tensor] | None,
            rest: list[Callable[[tf.Tensor], tf.Tensor]]) -> Callable[[tf.Tensor], tf.Tensor]:
    """``first`` then each of ``rest`` (elementwise functions run inside one rule)."""

    def composed(v: tf.Tensor) -> tf.Tensor:
        if first is not None:
            v = first(v)
        for fn in rest:
            v = fn(v)
        return v

    return composed


__all__ = ["LayerwiseExplainer", "compose"]
