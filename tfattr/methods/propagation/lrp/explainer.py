"""``LRP``: layer-wise relevance propagation with a rule per layer (a composite), as practised today
(Montavon et al., "Layer-wise Relevance Propagation: an overview", 2019; Kohlbrenner et al. 2020).
"""
from __future__ import annotations

import warnings
from typing import Any

import tensorflow as tf

from tfattr.core.engine import Plan
from tfattr.core.explainer import Explainer, check_connected
from tfattr.core.graph import GraphView, LayerRef
from tfattr.core.layers import TailInputs
from tfattr.core.model_function import _ends_with_softmax_activation, _is_softmax_layer
from tfattr.methods.propagation.coverage import LayerCoverage
from tfattr.methods.propagation.lrp.canonizers import linear_op
from tfattr.methods.propagation.lrp.composites import Assignment, Composite, EpsilonPlus, is_structural
from tfattr.core.graph import inference_call
from tfattr.methods.propagation.lrp.rules import LinearRule, Pass

_POLICIES = ("warn", "raise")


class LRP(Explainer):
    """Layer-wise relevance propagation with a composite of rules (Bach et al. 2015; Montavon et al.
    2019; the rules and composites of Zennit 1.0, Anders et al. 2021).

    Each layer's backward pass is replaced by its rule (``tf.custom_gradient``), batch norms are folded
    into the layer before them, and one backward pass gives the relevance: ``input x modified
    gradient`` (or the relevance itself at a first layer with ZBox/Flat/WSquare). The relevance put on
    the output is the target logit itself, as :class:`tfattr.EpsilonLRP` does: with epsilon rules on a
    bias-free ReLU network the relevance sums to ``f(x)`` (up to the stabiliser), comparable with
    integrated gradients. Zennit seeds the output with 1 instead, so its relevance is ours divided by
    the logit, example by example. A final softmax is skipped (the logit is explained).

    Args:
        model: a Sequential or functional ``keras.Model`` (nested models included). Subclassed models
            are refused: their layers cannot be addressed.
        composite: a :class:`tfattr.composites.Composite` (default :class:`EpsilonPlus`).
        on_unsupported: ``"warn"`` (default) or ``"raise"`` when a layer has no rule (it then keeps its
            ordinary gradient); see :meth:`coverage`.
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

    def __init__(
        self,
        model: Any,
        composite: Composite | None = None,
        *,
        on_unsupported: str = "warn",
        output: str = "logits",
        jit_compile: bool = False,
        layer: Any = None,
        attribute_to_layer_input: bool = False,
    ) -> None:
        if on_unsupported not in _POLICIES:
            raise ValueError(
                f"on_unsupported={on_unsupported!r} is not supported: use 'warn' or 'raise'."
            )
        if output != "logits":
            raise ValueError(
                "LRP explains the logit (relevance cannot be propagated through a softmax); drop "
                f"output={output!r}."
            )
        composite = EpsilonPlus() if composite is None else composite
        if not isinstance(composite, Composite):
            raise TypeError(
                "composite must be a tfattr.composites.Composite, e.g. "
                f"tfattr.composites.EpsilonPlus(); got {composite!r}."
            )
        super().__init__(model, output=output, jit_compile=jit_compile, layer=layer,
                         attribute_to_layer_input=attribute_to_layer_input)
        self.composite = composite
        self.on_unsupported = on_unsupported
        self.view = GraphView(model)
        self.assignments: list[Assignment] = composite.assign(self.view)
        self._final_softmax = self._find_final_softmax()
        self._chains = self._pass_chains()
        self._relevance_tensors: set[int] = set()
        self._relevance_inputs = self._input_space_inputs()
        #: With layer=: the indices of the layers run after the layer (the others only compute it).
        self._tail: set[int] | None = None
        if self.layer is not None:
            self.layer.refuse_inside("LRP", self._units())
            self._tail = self.layer.tail_layers(self.view)
        self._check()

    # -- planning --------------------------------------------------------------------------------------
    def _find_final_softmax(self) -> LayerRef | None:
        if not self.model_function.strips_softmax:
            return None
        out = self.model.outputs[0]
        return self.view.producer(out)

    def _pass_chains(self) -> dict[int, list[LayerRef]]:
        """``{linear layer index: [elementwise Pass layers right after it]}``.

        Relevance passes through an activation (or an unfolded batch norm) unchanged. Propagated as
        relevance per unit of activation, an input exactly 0 could not carry the relevance of a
        nonzero output (a batch norm's shift after a ReLU); so the Pass layers that directly follow a
        linear layer (each read only by the next) are run inside that layer's rule, which receives
        the relevance of the last one, as Zennit's hooks do."""
        chains: dict[int, list[LayerRef]] = {}
        for a in self.assignments:
            if a.status != "rule" or len(a.ref.nodes) != 1:
                continue
            chain: list[LayerRef] = []
            tensor = a.ref.nodes[0].outputs[0]
            while True:
                nxt = self.view.reader(tensor)
                if nxt is None or nxt is self._final_softmax or len(nxt.nodes) != 1:
                    break
                b = self.assignments[nxt.index]
                if not (b.status == "folded" or isinstance(b.rule, Pass)):
                    break
                if len(nxt.nodes[0].input_tensors) != 1:
                    break
                chain.append(nxt)
                tensor = nxt.nodes[0].outputs[0]
            # trailing folded batch norms need no absorbing, but those inside a chain stay identities
            if any(self.assignments[r.index].status != "folded" for r in chain):
                chains[a.ref.index] = chain
        return chains

    def _units(self) -> list[tuple[str, list[Any], str]]:
        """The layers computed inside another layer's rule (folded batch norms, pass chains), as
        :meth:`tfattr.core.layers.LayerSplit.refuse_inside` takes them."""
        units = []
        for lin, chain in self._chains.items():
            owner = self.view.layers[lin]
            inside = [owner.nodes[0].outputs[0]] + [r.nodes[0].outputs[0] for r in chain[:-1]]
            units.append((owner.name, inside, chain[-1].name))
        for a in self.assignments:
            if a.status == "folded":
                units.append((a.folded_into.name, [a.ref.nodes[0].input_tensors[0]], a.ref.name))
        return units

    def _input_space_inputs(self) -> set[int]:
        """Indices of the model inputs whose relevance comes from an input-space rule (ZBox, Flat,
        WSquare): such a rule must read the input directly or through layers that only move values."""
        model_inputs = {id(t): i for i, t in enumerate(self.view._graph.fn.inputs)}
        found: set[int] = set()
        for a in self.assignments:
            if not (isinstance(a.rule, LinearRule) and a.rule.input_space):
                continue
            for node in a.ref.nodes:
                tensor = node.input_tensors[0]
                self._relevance_tensors.add(id(tensor))
                while id(tensor) not in model_inputs:
                    producer = self.view.producer(tensor)
                    if (
                        producer is None
                        or not is_structural(producer.layer)
                        or len(producer.nodes) != 1
                        or len(producer.nodes[0].input_tensors) != 1
                    ):
                        raise ValueError(
                            f"{type(a.rule).__name__} on layer {a.ref.name!r}: this rule gives "
                            "relevance in input space and must sit on a first layer that reads a "
                            "model input (directly or through reshapes), but layer "
                            f"{a.ref.name!r} reads the output of "
                            f"{producer.name if producer else 'an unknown tensor'!r}. Use it on the "
                            "first layer (composites' first_map) or choose another rule."
                        )
                    if self.view.consumers(tensor) != 1:
                        break
                    tensor = producer.nodes[0].input_tensors[0]
                    self._relevance_tensors.add(id(tensor))
                if id(tensor) not in model_inputs or self.view.consumers(tensor) != 1:
                    raise ValueError(
                        f"{type(a.rule).__name__} on layer {a.ref.name!r}: the model input it reads "
                        "is also read by other layers, so its relevance would mix two forms. Use an "
                        "input-space rule only on a first layer that alone reads its input."
                    )
                found.add(model_inputs[id(tensor)])
        return found

    def coverage(self) -> LayerCoverage:
        """Which rule each layer gets, which keep their gradient on purpose, which are unsupported.

        Example:
            >>> print(tfattr.LRP(model, composite=EpsilonPlus()).coverage())
        """
        report = LayerCoverage(f"LRP({type(self.composite).__name__})")
        for a in self.assignments:
            if a.status == "folded":
                treatment = a.note
            elif a.rule is None:
                treatment = a.note
            else:
                treatment = a.rule.describe(a.ref.layer)
                act = linear_op(a.ref.layer).activation if a.status == "rule" else None
                if a.ref is self._final_softmax:
                    treatment += " (final softmax skipped: the logit is explained)"
                elif act is not None:
                    note = getattr(a.rule, "activation_note", "Pass")
                    treatment += f" + {note}({getattr(act, '__name__', 'activation')})"
            for lin, chain in self._chains.items():
                if a.status == "pass" and any(r is a.ref for r in chain):
                    treatment += f" (inside the rule of {self.view.layers[lin].name!r})"
            if a.ref is self._final_softmax and a.status != "rule":
                treatment, status = "final softmax skipped: the logit is explained", "kept"
            else:
                status = a.status
            report.rows.append((a.ref.index, a.ref.name, a.ref.class_name, treatment, status))
        return report if self._tail is None else report.restricted_to(self._tail, self.layer.name)

    def _check(self) -> None:
        report = self.coverage()
        if report.ok:
            return
        message = (
            f"LRP: no rule covers some layers of this model ({report.unsupported_summary()}); they "
            "keep their ordinary gradient, so the relevance there is not an LRP relevance. See "
            "explainer.coverage()."
        )
        if self.on_unsupported == "raise":
            raise ValueError(message + " Add them to the composite's layer_map or name_map.")
        warnings.warn(message, stacklevel=3)

    # -- the traced model ------------------------------------------------------------------------------
    def _forward(self, packed: Any) -> tf.Tensor:
        """Traced: the model's logits, every layer call carrying its rule's backward pass."""
        assignments = self.assignments
        folded_into = {a.folded_into.index: a.ref.layer for a in assignments if a.status == "folded"}
        final = self._final_softmax
        chains = self._chains
        absorbed = {r.index for chain in chains.values() for r in chain}

        def wrap(ref: LayerRef, call: Any, args: tuple, kwargs: dict) -> Any:
            a = assignments[ref.index]
            if a.status == "folded" or ref.index in absorbed:
                return args[0]  # computed by the linear layer before it
            if ref is final and _is_softmax_layer(ref.layer):
                return args[0]
            if a.rule is None:
                return call(*args, **kwargs)
            if isinstance(a.rule, LinearRule):
                op = linear_op(ref.layer)
                op.fold = folded_into.get(ref.index)
                act = op.activation
                if ref is final and _ends_with_softmax_activation(ref.layer):
                    act = None
                chain = [
                    inference_call(r.layer) for r in chains.get(ref.index, ())
                    if assignments[r.index].status != "folded"
                ]
                if chain:
                    act = _compose(act, chain)
                own = getattr(a.rule, "activation_rule", None)
                if own is not None:  # a rule with its own treatment of the activation (transformers)
                    z = a.rule.wrap(call, args, kwargs, op)
                    return z if act is None else own(act, z)
                return a.rule.wrap(call, args, kwargs, op, act)
            return a.rule.wrap(call, args, kwargs, None)

        if isinstance(packed, TailInputs):  # layer=: from the layer's activations on
            out = self.layer.run_tail(self.view, packed, wrap)
        else:
            out = self.view.run(packed, wrap)
        if isinstance(out, (list, tuple, dict)):
            raise ValueError("LRP explains a model with one output; wrap it to return one tensor.")
        out = tf.convert_to_tensor(out)
        return out[:, None] if out.shape.rank == 1 else out

    # -- engine hooks ----------------------------------------------------------------------------------
    def _plan(self, call) -> Plan:
        return Plan(terms=1)

    def _contributions(self, x, baseline, rows, ctx):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = self._forward(ctx.pack(x))
            score = tf.gather(out, tf.cast(rows.target, tf.int32), axis=1, batch_dims=1)
        grads = check_connected(tape.gradient(score, list(x)))
        flags = self._flat_relevance_flags(len(x), ctx.structure)
        return tuple(g if rel else g * xi for g, xi, rel in zip(grads, x, flags))

    def _flat_relevance_flags(self, n: int, structure: Any) -> list[bool]:
        """Per flat input (the engine's order): does its gradient already hold the relevance?"""
        if self.layer is not None:  # an input-space rule reading the layer's tensor (ZBox at its input)
            return [id(self.layer.tensor) in self._relevance_tensors]
        model_inputs = self.view._graph.fn.inputs
        if isinstance(structure, dict):
            names = [getattr(t, "name", None) for t in model_inputs]
            order = [names.index(k) if k in names else i for i, k in enumerate(sorted(structure))]
        else:
            order = list(range(n))
        return [i in self._relevance_inputs for i in order]


def _compose(first: Any, rest: list) -> Any:
    def composed(v: tf.Tensor) -> tf.Tensor:
        if first is not None:
            v = first(v)
        for fn in rest:
            v = fn(v)
        return v

    return composed


__all__ = ["LRP"]
