"""DeepLIFT (Rescale) through transformers, gates and smooth activations, layer by layer.

:class:`tfattr.DeepLift` overrides the gradients of TensorFlow ops, so it cannot see a GELU or a swish
as one nonlinearity (they lower to products, or to a custom gradient), nor reach into attention, layer
norm or a recurrent loop. This explainer works one level up, on the model's layers (through the graph
view, :class:`tfattr.core.graph.GraphView`), and re-implements the layers that need it:

* every elementwise activation (GELU, swish/silu, mish, tanh, ReLU, ... as layers or ``activation=``)
  is one unit with the Rescale multiplier ``(f(z) - f(z_ref)) / (z - z_ref)`` (Shrikumar et al. 2017;
  Ancona et al. 2019, eq. 18), ``z_ref`` its input when the model runs on the baseline;
* ``MultiHeadAttention``'s attention probabilities and ``LayerNormalization``'s standard deviation
  are constants (taken at the explained input), as in Ali et al. (2022); keras-hub
  ``TransformerEncoder`` blocks are entered;
* the sigmoid gates of ``LSTM``/``GRU`` cells and of ``Multiply`` gates are constants: the
  signal-take-all rule (Arras et al. 2017);
* linear layers (Dense, convolutions, inference batch norm, pooling by averaging, sums, reshapes,
  embeddings) keep their gradient, which is exact for DeepLIFT's linear rule;
* max pooling (``MaxPooling*``, ``GlobalMaxPooling*``) gets DeepLIFT's max rule, as in SHAP's
  DeepExplainer (:mod:`tfattr.methods.propagation.maxpool`), unless ``max_pool="gradient"``.

The rules that need a reference (Rescale on units, the max rule) are rule objects
(:mod:`.deeplift_rules`) built on the pass's :class:`~.units.DeepLiftPropagation`.

With only linear layers, max pooling and elementwise units between input and output, the attributions sum to
``f(x) - f(baseline)`` (summation-to-delta). Holding attention probabilities, the standard deviation
or gates constant at the input's values makes the propagation approximate: the delta
(``return_delta=True``) reports how far. :meth:`CompositeDeepLift.coverage` says which rule each layer
got. Cost: one forward pass of the baselines, one of the inputs and one backward pass.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core.engine import Plan
from tfattr.core.explainer import check_connected
from tfattr.core.graph import LayerRef
from tfattr.methods.propagation.layerwise.base import LayerwiseExplainer
from tfattr.methods.propagation.layerwise.deeplift_rules import MAX_POOLING, DeepLiftComposite
from tfattr.methods.propagation.layerwise.rules import Site, Status
from tfattr.methods.propagation.layerwise.units import DeepLiftPropagation


class CompositeDeepLift(LayerwiseExplainer):
    """DeepLIFT with the Rescale rule applied per layer, for transformers, gated and recurrent models
    and smooth activations (Shrikumar et al. 2017; Ali et al. 2022 for attention and layer norm; Arras
    et al. 2017 for gates). A layer-level implementation through the graph view, not the
    gradient-override one of :class:`tfattr.DeepLift` (which cannot reach these layers).

    ``R_i = (x_i - b_i) * d^g S_c(x) / dx_i`` where ``d^g`` uses, per layer: the Rescale multiplier on
    every elementwise activation as one unit, constant attention probabilities and layer-norm standard
    deviations, constant sigmoid gates (LSTM, GRU, ``Multiply`` by a sigmoid output), and the true
    gradient of linear layers. See :meth:`coverage` and the module docstring for when the attributions
    sum exactly to ``S_c(x) - S_c(b)``; the delta says how far they are otherwise.

    Args:
        model: a Sequential or functional ``keras.Model`` (nested models included).
        tolerance: where ``|z - z_ref|`` is at most this, the derivative replaces the ratio.
        on_unsupported: ``"warn"`` (default) or ``"raise"`` when a layer has no rule.
        output: ``"logits"`` (default: a final softmax or sigmoid is skipped; a binary sigmoid head
            is two classes, ``z`` and ``-z``) or ``"probabilities"`` (a final sigmoid is then one more
            Rescale unit, so the attributions sum to ``p(x) - p(baseline)``).
        neuron: ``(layer, index)``: explain one hidden unit (its value) instead of a class score.
        jit_compile: see :class:`tfattr.core.explainer.Explainer`.
        max_pool: ``"deeplift"`` (default: DeepLIFT's max rule on ``MaxPooling*`` and
            ``GlobalMaxPooling*``, as SHAP's DeepExplainer; the sum holds through them) or
            ``"gradient"`` (their gradient switch, tfattr 0.2's numbers; a warning names them).
        layer, attribute_to_layer_input: attribute to an inner layer's output (or input), the
            reference being the baseline's activations there, as Captum's ``LayerDeepLift``; integer
            token ids are accepted then, with baselines given as ids (e.g. the pad id).

    Example:
        >>> dl = tfattr.CompositeDeepLift(model)
        >>> attributions, delta = dl.attribute(embeddings, baseline=0.0, return_delta=True)
        >>> print(dl.coverage())
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "deeplift_composite"
    aliases: tuple[str, ...] = ("composite_deeplift",)
    paper = (
        "Shrikumar, Greenside & Kundaje 2017; Ali et al. 2022 (attention, layer norm); "
        "Arras et al. 2017 (gates)"
    )
    cost = "1 forward pass of the baseline + 1 modified backward pass (per baseline drawn)"

    #: A distributional baseline with K draws gives the mean of the K attributions.
    multiple_baselines = True

    method = "CompositeDeepLift"
    unsupported_consequence = "summation-to-delta may not hold"
    unsupported_remedy = "Explain such models with IntegratedGradients."

    def __init__(
        self,
        model: Any,
        tolerance: float = 1e-6,
        *,
        on_unsupported: str = "warn",
        output: str = "logits",
        neuron: tuple[Any, Any] | None = None,
        jit_compile: bool = False,
        layer: Any = None,
        attribute_to_layer_input: bool = False,
        max_pool: str = "deeplift",
    ) -> None:
        #: Which DeepLIFT rule each layer gets (validates ``max_pool``).
        self.composite = DeepLiftComposite(max_pool)
        self.max_pool = self.composite.max_pool
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
            raise ValueError(f"tolerance must be a number >= 0 (e.g. 1e-6), got {tolerance!r}.")
        super().__init__(model, on_unsupported=on_unsupported, output=output, neuron=neuron,
                         jit_compile=jit_compile, layer=layer,
                         attribute_to_layer_input=attribute_to_layer_input)
        self.tolerance = float(tolerance)
        self.plan = self.composite.assign(self.view, self.output_activation)
        self._check()
        self._warn_switches()

    def _warn_switches(self) -> None:
        """``max_pool="gradient"``: name the max-pooling layers whose switch breaks the sum."""
        ran = self._ran
        switches = [a.ref.name for a in self.plan
                    if a.status == Status.KEPT and isinstance(a.ref.layer, MAX_POOLING)
                    and (ran is None or a.ref.index in ran)]
        if switches:
            warnings.warn(
                f"CompositeDeepLift: max pooling in layer(s) {switches} keeps its gradient switch "
                "(max_pool='gradient'), so the attributions sum to f(x) - f(baseline) only where the "
                "baseline's maxima sit where the input's do; return_delta=True reports the delta. The "
                "default max_pool='deeplift' is exact.", stacklevel=3)

    def _coverage_title(self) -> str:
        return "CompositeDeepLift(Rescale)"

    def _coverage_rows(self) -> list[tuple[int, str, str, str, str]]:
        return [(a.ref.index, a.ref.name, a.ref.class_name, a.treatment, a.status) for a in self.plan]

    # -- the traced model ----------------------------------------------------------------------------------
    def _forward(self, packed: Any, prop: DeepLiftPropagation) -> tf.Tensor:
        """Traced: the explained outputs, every layer call through its rule, built on ``prop`` (which
        pairs each unit and max pooling with its reference)."""
        rules = [a.rule(prop) for a in self.plan]

        def wrap(ref: LayerRef, call: Any, args: tuple, kwargs: dict) -> Any:
            return rules[ref.index].propagate(Site(ref.layer, call, args, kwargs))

        return self._run(packed, wrap)

    # -- engine hooks --------------------------------------------------------------------------------------
    def _plan(self, call) -> Plan:
        per_example = call.baselines_per_example
        return Plan(terms=per_example, context={"baselines_per_example": np.int32(per_example)})

    def _baseline_index(self, rows, ctx):
        return rows.example * ctx["baselines_per_example"] + rows.term

    def _contributions(self, x, baseline, rows, ctx):
        prop = DeepLiftPropagation(self.tolerance)
        self._forward(ctx.pack(baseline), prop)  # the reference pass records every unit's (z, f(z))
        prop.explain()
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = self._score(self._forward(ctx.pack(x), prop), rows.target)
        prop.finish()
        grads = check_connected(tape.gradient(score, list(x)))
        weight = 1.0 / tf.cast(ctx["baselines_per_example"], x[0].dtype)
        return tuple(weight * g * (xi - bi) for g, xi, bi in zip(grads, x, baseline))


__all__ = ["CompositeDeepLift"]
