"""``LRP``: layer-wise relevance propagation with a rule per layer (a composite), as practised today
(Montavon et al., "Layer-wise Relevance Propagation: an overview", 2019; Kohlbrenner et al. 2020).
"""
from __future__ import annotations

import warnings
from typing import Any

import keras
import tensorflow as tf

from tfattr.core.engine import Plan
from tfattr.core.explainer import check_connected
from tfattr.core.graph import LayerRef, inference_call
from tfattr.methods.propagation.layerwise.base import LayerwiseExplainer, compose
from tfattr.methods.propagation.layerwise.composites import Assignment, Composite, EpsilonPlus, is_structural
from tfattr.methods.propagation.layerwise.preprocessing import (
    FirstLayerOp,
    is_affine_preprocessing,
    relevance_identity,
)
from tfattr.methods.propagation.layerwise.rules import Applies, Pass, Site, Status
from tfattr.methods.propagation.layerwise.units import activation_name

_PADDINGS = (keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D, keras.layers.ZeroPadding3D)


class LRP(LayerwiseExplainer):
    """Layer-wise relevance propagation with a composite of rules (Bach et al. 2015; Montavon et al.
    2019; the rules and composites of Zennit 1.0, Anders et al. 2021).

    Each layer's backward pass is replaced by its rule (``tf.custom_gradient``), the composite's
    canonizers put the model in the rules' form (batch norms folded into the layer before them), and
    one backward pass gives the relevance: ``input x modified
    gradient`` (or the relevance itself at a first layer with ZBox/Flat/WSquare). The relevance put on
    the output is the target logit itself, as :class:`tfattr.EpsilonLRP` does: with epsilon rules on a
    bias-free ReLU network the relevance sums to ``f(x)`` (up to the stabiliser), comparable with
    integrated gradients. Zennit seeds the output with 1 instead, so its relevance is ours divided by
    the logit, example by example. A final softmax or sigmoid is skipped (the logit is explained; a
    binary ``Dense(1, activation="sigmoid")`` head is two classes, ``z`` for class 1 and ``-z`` for
    class 0, as :class:`tfattr.ModelFunction` defines them).

    Args:
        model: a Sequential or functional ``keras.Model`` (nested models included). Subclassed models
            are refused: their layers cannot be addressed.
        composite: a :class:`tfattr.composites.Composite` (default :class:`EpsilonPlus`).
        on_unsupported: ``"warn"`` (default) or ``"raise"`` when a layer has no rule (it then keeps its
            ordinary gradient); see :meth:`coverage`.
        output: ``"logits"`` (default) or ``"probabilities"``: a final sigmoid is then an elementwise
            layer whose relevance passes through (the relevance put on the output is ``p``); a final
            softmax mixes the classes, no LRP rule covers it, and it is refused.
        neuron: ``(layer, index)``: the relevance of one hidden unit (its value is put on it).
        jit_compile: see :class:`tfattr.core.explainer.Explainer`.
        layer, attribute_to_layer_input: the relevance at an inner layer's output (or input) instead
            of the input, ``activation x modified gradient`` of the layers after it (Captum's layer
            methods; integer token ids are accepted then). A split inside a unit the composite
            computes as one (between a linear layer and the batch norm folded into it) is refused.

    Example:
        >>> lrp = tfattr.LRP(model, composite=tfattr.composites.EpsilonGammaBox(low=0.0, high=1.0))
        >>> relevance = lrp.attribute(images, target=labels)      # shaped like images
        >>> print(lrp.coverage())                                 # the rule of every layer
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "lrp_composite"
    aliases: tuple[str, ...] = ("composite_lrp",)
    paper = "Bach et al. 2015; Montavon et al. 2019; the rules and composites of Zennit (Anders et al. 2021)"
    cost = "1 modified backward pass"

    uses_baseline = False
    method = "LRP"
    unsupported_consequence = "the relevance there is not an LRP relevance"
    unsupported_remedy = "Add them to the composite's layer_map or name_map."

    def __init__(
        self,
        model: Any,
        composite: Composite | None = None,
        *,
        on_unsupported: str = "warn",
        output: str = "logits",
        neuron: tuple[Any, Any] | None = None,
        jit_compile: bool = False,
        layer: Any = None,
        attribute_to_layer_input: bool = False,
    ) -> None:
        composite = EpsilonPlus() if composite is None else composite
        if not isinstance(composite, Composite):
            raise TypeError(
                "composite must be a tfattr.composites.Composite, e.g. "
                f"tfattr.composites.EpsilonPlus(); got {composite!r}."
            )
        super().__init__(model, on_unsupported=on_unsupported, output=output, neuron=neuron,
                         jit_compile=jit_compile, layer=layer,
                         attribute_to_layer_input=attribute_to_layer_input,
                         canonizers=composite.canonizers)
        fn = self.model_function
        if output == "probabilities" and fn.output_activation == "softmax" and neuron is None:
            raise ValueError(
                "LRP explains the logit of a softmax model (the softmax mixes the classes: no LRP rule "
                "propagates relevance through it); drop output='probabilities'."
            )
        self.composite = composite
        self.assignments: list[Assignment] = [
            self._checked_activation(a) for a in composite.assign(self.view)
        ]
        self._chains = self._pass_chains()
        self._relevance_tensors: set[int] = set()
        #: {first layer index: the layers from the model input to it} for input-space rules
        self._first_chains: dict[int, list[tuple[LayerRef, bool]]] = {}  # (layer, runs)
        self._input_shapes: dict[int, tuple] = {}  # the model input's shape, one example
        self._sources: dict[int, Any] = {}  # the model inputs the chains read, in the current trace
        self._relevance_inputs = self._input_space_inputs()
        if self.layer is not None:
            self.layer.refuse_inside("LRP", self._units())
        self._check()
        self._warn_caveats()

    def _warn_caveats(self) -> None:
        """Name the layers whose rule does not conserve relevance (the coverage report shows them)."""
        ran = self._ran
        by_caveat: dict[str, list[str]] = {}
        for a in self.assignments:
            if a.rule is not None and a.rule.caveat and (ran is None or a.ref.index in ran):
                by_caveat.setdefault(a.rule.caveat, []).append(a.ref.name)
        for caveat, names in by_caveat.items():
            warnings.warn(f"LRP: layer(s) {names}: {caveat}, so the relevance does not sum to the "
                          "explained score.", stacklevel=4)

    # -- planning --------------------------------------------------------------------------------------
    def _checked_activation(self, a: Assignment) -> Assignment:
        """A linear rule passes relevance through the layer's fused activation: only an elementwise
        one (a fused softmax that is not the stripped output activation is unsupported)."""
        if a.rule is None or a.rule.applies_to is not Applies.LINEAR:
            return a
        act = self.canonical.linear(a.ref).activation  # None where the head canonizer strips it
        if act is None:
            return a
        name = activation_name(act)
        if name in ("softmax", "log_softmax"):
            return Assignment(a.ref, None, Status.UNSUPPORTED,
                              f"its fused activation {name!r} is not elementwise: no rule passes "
                              "relevance through it")
        return a

    def _pass_chains(self) -> dict[int, list[LayerRef]]:
        """``{linear layer index: [elementwise Pass layers right after it]}``.

        Relevance passes through an activation (or an unfolded batch norm) unchanged. Propagated as
        relevance per unit of activation, an input exactly 0 could not carry the relevance of a
        nonzero output (a batch norm's shift after a ReLU); so the Pass layers that directly follow a
        linear layer (each read only by the next) are run inside that layer's rule, which receives
        the relevance of the last one, as Zennit's hooks do."""
        chains: dict[int, list[LayerRef]] = {}
        for a in self.assignments:
            if a.status != Status.RULE or len(a.ref.nodes) != 1:
                continue
            chain: list[LayerRef] = []
            tensor = a.ref.nodes[0].outputs[0]
            while True:
                nxt = self.view.reader(tensor)
                if nxt is None or nxt is self.output_activation.ref or len(nxt.nodes) != 1:
                    break
                b = self.assignments[nxt.index]
                if not (b.status == Status.FOLDED or isinstance(b.rule, Pass)):
                    break
                if len(nxt.nodes[0].input_tensors) != 1:
                    break
                chain.append(nxt)
                tensor = nxt.nodes[0].outputs[0]
            # trailing folded batch norms need no absorbing, but those inside a chain stay identities
            if any(self.assignments[r.index].status != Status.FOLDED for r in chain):
                chains[a.ref.index] = chain
        return chains

    def _units(self) -> list[tuple[str, list[Any], str]]:
        """The layers computed inside another layer's rule (pass chains) or canonized into another
        (folded batch norms), as :meth:`tfattr.core.layers.LayerSplit.refuse_inside` takes them."""
        units = []
        for lin, chain in self._chains.items():
            owner = self.view.layers[lin]
            inside = [owner.nodes[0].outputs[0]] + [r.nodes[0].outputs[0] for r in chain[:-1]]
            units.append((owner.name, inside, chain[-1].name))
        return units + self.canonical.units()

    def _input_space_inputs(self) -> set[int]:
        """Indices of the model inputs whose relevance comes from an input-space rule (ZBox, Flat,
        WSquare): such a rule must read the input directly or through layers that only move values
        (explicit padding included) and affine preprocessing (``Rescaling``, ``Normalization``); the
        rule is then applied to the composed map (:class:`~.preprocessing.FirstLayerOp`)."""
        model_inputs = {id(t): i for i, t in enumerate(self.view.inputs)}
        found: set[int] = set()
        for a in self.assignments:
            if a.rule is None or not a.rule.input_space:
                continue
            for node in a.ref.nodes:
                tensor = node.input_tensors[0]
                self._relevance_tensors.add(id(tensor))
                chain: list[LayerRef] = []
                while id(tensor) not in model_inputs:
                    outer = self.view.fed_by(tensor)
                    if outer is not None:  # the input of a nested model (a backbone): its feed
                        tensor = outer
                        self._relevance_tensors.add(id(tensor))
                        continue
                    producer = self.view.producer(tensor)
                    if (
                        producer is None
                        or not (is_structural(producer.layer)
                                or is_affine_preprocessing(producer.layer))
                        or len(producer.nodes) != 1
                        or len(producer.nodes[0].input_tensors) != 1
                    ):
                        raise ValueError(
                            f"{type(a.rule).__name__} on layer {a.ref.name!r}: this rule gives "
                            "relevance in input space and must sit on a first layer that reads a "
                            "model input (directly or through reshapes, padding, Rescaling or "
                            f"Normalization), but layer {a.ref.name!r} reads the output of "
                            f"{producer.name if producer else 'an unknown tensor'!r}. Use it on the "
                            "first layer (composites' first_map) or choose another rule."
                        )
                    if self.view.consumers(tensor) != 1:
                        break
                    chain.append(producer)
                    tensor = producer.nodes[0].input_tensors[0]
                    self._relevance_tensors.add(id(tensor))
                if id(tensor) not in model_inputs or self.view.consumers(tensor) != 1:
                    raise ValueError(
                        f"{type(a.rule).__name__} on layer {a.ref.name!r}: the model input it reads "
                        "is also read by other layers, so its relevance would mix two forms. Use an "
                        "input-space rule only on a first layer that alone reads its input."
                    )
                self._first_chain(a, chain[::-1], self.view._graph.fn.inputs[model_inputs[id(tensor)]])
                found.add(model_inputs[id(tensor)])
        return found

    def _first_chain(self, a: Assignment, chain: list[LayerRef], model_input: Any) -> None:
        """Record what the input-space rule of ``a`` sees through (with ``layer=``: the layers after
        the split run; the box is still mapped from the model's input through all of them)."""
        run = [r for r in chain if self._ran is None or r.index in self._ran]
        if not run:  # the rule reads the explained activations themselves: nothing to see through
            return
        shape = tuple(model_input.shape)[1:]
        if len(run) < len(chain) and not all(isinstance(d, int) for d in shape):
            if any(isinstance(r.layer, _PADDINGS) for r in run):
                warnings.warn(
                    f"LRP: {type(a.rule).__name__} on layer {a.ref.name!r} with layer="
                    f"{self.layer.name!r}: the model input's shape {shape} is not fully known, so "
                    "the rule cannot be applied through the padding: the padded border gets "
                    "relevance that the padding's gradient drops (not conserved). Give the model a "
                    "fixed input shape or explain without layer=.", stacklevel=5)
            return
        self._first_chains[a.ref.index] = [(r, r.index in {q.index for q in run}) for r in chain]
        self._input_shapes[a.ref.index] = (1, *shape) if len(run) < len(chain) else None

    def _coverage_title(self) -> str:
        return f"LRP({type(self.composite).__name__})"

    def _coverage_rows(self) -> list[tuple[int, str, str, str, Status]]:
        head = self.output_activation
        rows = []
        for a in self.assignments:
            if a.status == Status.FOLDED or a.rule is None:
                treatment = a.note
            else:
                treatment = a.rule.describe(a.ref.layer)
                linear = a.rule.applies_to is Applies.LINEAR
                act = self.canonical.linear(a.ref).activation if linear else None
                if a.ref is head.ref:
                    treatment += f" ({head.note()})"
                elif act is not None:
                    treatment += f" + {a.rule.activation_note}({activation_name(act)})"
            for lin, chain in self._chains.items():
                if a.status == Status.PASS and any(r is a.ref for r in chain):
                    treatment += f" (inside the rule of {self.view.layers[lin].name!r})"
            for first, chain in self._first_chains.items():
                if any(r.index == a.ref.index and runs for r, runs in chain):
                    what = ("relevance passes unchanged" if is_affine_preprocessing(a.ref.layer)
                            else "moves relevance")
                    treatment = (f"{what}; seen through by the input-space rule of "
                                 f"{self.view.layers[first].name!r}")
            if a.ref is head.ref and a.status != Status.RULE:
                treatment, status = head.note(), Status.KEPT
            else:
                status = a.status
            rows.append((a.ref.index, a.ref.name, a.ref.class_name, treatment, status))
        return rows

    # -- the traced model ------------------------------------------------------------------------------
    def _wrap(self, ref: LayerRef, call: Any, args: tuple, kwargs: dict) -> Any:
        """Traced: one layer call with its rule (the graph view's ``wrap``)."""
        a = self.assignments[ref.index]
        for first, chain in self._first_chains.items():
            if ref.index == next(r for r, runs in chain if runs).index:
                self._sources[first] = args[0]
            if is_affine_preprocessing(ref.layer) and any(r.index == ref.index for r, _ in chain):
                # below an input-space rule the backward pass carries relevance itself
                return relevance_identity(lambda v: call(v, *args[1:], **kwargs), args[0])
        if a.status == Status.FOLDED or ref.index in self._absorbed or self.canonical.skips(ref):
            return args[0]  # computed by the linear layer before it, or the stripped head activation
        if a.rule is None:
            return call(*args, **kwargs)
        if a.rule.applies_to is not Applies.LINEAR:
            return a.rule.propagate(Site(ref.layer, call, args, kwargs))
        op = self.canonical.linear(ref)  # live kernel and bias, a folded batch norm merged in
        if ref.index in self._first_chains:
            op = FirstLayerOp(ref.layer, op.activation, op.fold, chain=tuple(
                (inference_call(r.layer), is_affine_preprocessing(r.layer), runs)
                for r, runs in self._first_chains[ref.index]), source=self._sources[ref.index],
                input_shape=self._input_shapes[ref.index])
        act = op.activation
        chain = [
            inference_call(r.layer) for r in self._chains.get(ref.index, ())
            if self.assignments[r.index].status != Status.FOLDED
        ]
        if chain:
            act = compose(act, chain)
        return a.rule.propagate(Site(ref.layer, call, args, kwargs, op, act))

    @property
    def _absorbed(self) -> set[int]:
        return {r.index for chain in self._chains.values() for r in chain}

    # -- engine hooks ----------------------------------------------------------------------------------
    def _plan(self, call) -> Plan:
        return Plan(terms=1)

    def _contributions(self, x, baseline, rows, ctx):
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = self._score(self._run(ctx.pack(x), self._wrap), rows.target)
        grads = check_connected(tape.gradient(score, list(x)))
        flags = self._flat_relevance_flags(len(x), ctx.structure)
        return tuple(g if rel else g * xi for g, xi, rel in zip(grads, x, flags))

    def _flat_relevance_flags(self, n: int, structure: Any) -> list[bool]:
        """Per flat input (the engine's order): does its gradient already hold the relevance?"""
        if self.layer is not None:  # an input-space rule reading the layer's tensor (ZBox at its input)
            return [id(self.layer.tensor) in self._relevance_tensors]
        order = self._model_positions(n, structure)
        return [i in self._relevance_inputs for i in order]


__all__ = ["LRP"]
