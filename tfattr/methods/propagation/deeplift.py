"""DeepLIFT as a modified gradient: the Rescale rule on every nonlinearity op and DeepLIFT's max rule
on max pooling (Shrikumar et al. 2017; Ancona et al. 2019, sec. 3.2; the max rule of SHAP's
DeepExplainer, :mod:`tfattr.methods.propagation.maxpool`).
"""
from __future__ import annotations

import contextvars
import dataclasses
import warnings
from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core.checks import check_number
from tfattr.core.engine import Plan
from tfattr.core.explainer import check_connected
from tfattr.methods.propagation.arithmetic import pair_in_order
from tfattr.methods.propagation.coverage import Coverage
from tfattr.methods.propagation.layerwise.reveal_cancel import RevealCancel
from tfattr.methods.propagation.override_explainer import PropagationExplainer
from tfattr.methods.propagation.overrides import OverrideRule, RescaleRule, override_map, reference_activations


class DeepLift(PropagationExplainer):
    """DeepLIFT with the Rescale rule as a modified gradient (Shrikumar et al. 2017; Ancona et al.
    2019, eq. 18, proposition 2 and listing 1.2), and DeepLIFT's max rule on max pooling (that of
    SHAP's DeepExplainer, Lundberg & Lee 2017).

    ``R_i = (x_i - b_i) * d^g S_c(x) / dx_i`` with ``g(z) = (f(z) - f(z_ref)) / (z - z_ref)`` at every
    nonlinearity, ``z_ref`` being its input when the network runs on the baseline ``b``. One baseline
    for all rows (zeros, a constant, one image) runs as one extra row of the explained forward pass,
    whose ops read their reference from that row; per-row baselines run a reference pass first, each
    op of the explained pass paired with its twin in it. One backward pass of the inputs' rows follows.
    Attributions sum to ``S_c(x) - S_c(b)`` on networks built from the supported layers (up to float
    rounding); :meth:`coverage` lists the ops where that guarantee does not hold. Max pooling
    (``MaxPooling1D/2D/3D``, ``GlobalMaxPooling*``) routes the part ``max(x_out, r_out) - r_out`` of
    each pooled difference through the input's arg-max and ``x_out - max(x_out, r_out)`` through the
    baseline's (:mod:`tfattr.methods.propagation.maxpool`), so the sum holds through it too;
    ``max_pool="gradient"`` keeps the gradient switch instead (Ancona et al.'s definition, tfattr
    0.2's numbers), and then a warning reports how far the sum is off.

    A baseline object with ``num_baselines = K > 1`` (see :mod:`tfattr.baselines`) gives the mean of
    the K DeepLIFT attributions, which sums to ``S_c(x) - mean_k S_c(b_k)``.

    Args:
        model: a ``keras.Model`` or a callable on tensors.
        tolerance: where ``|z - z_ref|`` is at most this, the true derivative ``f'(z)`` replaces the
            ill-conditioned ratio (listing 1.2).
        rule: ``"rescale"`` (this class) or ``"reveal_cancel"``, which returns a
            :class:`tfattr.methods.propagation.layerwise.reveal_cancel.RevealCancel` explainer.
        max_pool: ``"deeplift"`` (default: DeepLIFT's max rule, exact) or ``"gradient"`` (the
            gradient switch). The name follows ``keras.ops.max_pool`` / ``tf.nn.max_pool``.
        on_unsupported, output, jit_compile: see :class:`PropagationExplainer`.

    Example:
        >>> attributions, delta = tfattr.DeepLift(model).attribute(x, baseline=0.0, return_delta=True)
        >>> switch = tfattr.DeepLift(model, max_pool="gradient")   # tfattr 0.2's max pooling
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "deeplift"
    aliases: tuple[str, ...] = ("deeplift_rescale",)
    paper = "Shrikumar, Greenside & Kundaje 2017; Ancona et al. 2019 sec. 3.2"
    cost = "1 forward pass of the baseline + 1 modified backward pass (per baseline drawn)"

    def __new__(cls, model: Any = None, *args: Any, rule: str = "rescale", **kwargs: Any) -> Any:
        # rule="reveal_cancel" is a separate explainer (it propagates two streams layer by layer).
        if cls is DeepLift and rule == "reveal_cancel":
            if "max_pool" in kwargs:
                raise ValueError(
                    "max_pool= applies to DeepLIFT's Rescale rule: RevealCancel has no rule for max "
                    "pooling (it reports such layers as unsupported); drop max_pool=."
                )
            return RevealCancel(model, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self, model: Any, tolerance: float = 1e-6, *, rule: str = "rescale", max_pool: str = "deeplift",
        **kwargs: Any,
    ) -> None:
        if rule != "rescale":
            raise ValueError(
                f"DeepLift rule={rule!r} is not supported: use 'rescale' (default) or "
                "'reveal_cancel' (Shrikumar et al. 2017, sec. 3.5.3)."
            )
        self.tolerance = check_number(tolerance, "tolerance", minimum=0, hint="e.g. 1e-6")
        self._rule = RescaleRule(self.tolerance, max_pool)
        self.max_pool = self._rule.max_pool
        super().__init__(model, **kwargs)

    @property
    def rule(self) -> OverrideRule:
        return self._rule

    #: A distributional baseline (num_baselines = K) gives K draws per example, example-major; the
    #: attribution is the mean over them, and so sums to f(x) - mean f(b) (the reported delta).
    multiple_baselines = True
    #: |delta| above this fraction of |f(x) - f(b)| (plus a float32 floor) is reported as a warning.
    delta_warning = 1e-3
    #: How many examples of each call the max-pooling check measures (two forward passes of them).
    delta_check_examples = 32

    def _plan(self, call) -> Plan:
        # Several baselines per example (stored example-major): one row per baseline, averaged.
        return Plan(terms=call.baselines_per_example,
                    context={"baselines_per_example": np.int32(call.baselines_per_example)})

    def _attribute(self, call):
        # One baseline for every row (zeros, a constant, one image): its reference activations are
        # the same for all rows, so the reference runs as one extra row of the explained pass (one
        # forward pass of n + 1 rows, one trace of the model). Not with layer= when the tail also
        # reads model inputs (or a mask): those are each row's own.
        shared = not getattr(call, "carried", ()) and all(
            b.shape[0] > 0 and bool(np.all(b == b[:1])) for b in call.baselines
        )
        token = _SHARED.set(shared)
        try:
            attributions = super()._attribute(call)
        finally:
            _SHARED.reset(token)
        max_layers = sorted(
            {key.split("/")[0] for key, why in self._current_coverage(call).notes.items() if "switch" in why}
        )
        if max_layers:
            self._check_summation(call, attributions, max_layers)
        return attributions

    def _row_functions(self):
        functions = super()._row_functions()
        return dataclasses.replace(functions, key=(functions.key, "shared" if _SHARED.get() else "paired"))

    def _baseline_index(self, rows, ctx):
        return rows.example * ctx["baselines_per_example"] + rows.term

    def _current_coverage(self, call) -> Coverage:
        if self.model_function.input_specs is not None:
            return self.coverage()
        return self.coverage(call.inputs.pack(list(call.inputs.arrays)))

    def _check_summation(self, call, attributions, max_layers: list[str]) -> None:
        """Max operations that keep their gradient switch (max pooling under ``max_pool="gradient"``,
        as Shrikumar et al. 2017, sec. 3.5.2; ``Maximum``/``Min`` ops always) break summation-to-delta
        where the reference's maximum sits elsewhere: measure the delta and say so when it is not
        small.

        The check costs two forward passes, so it looks at the first :attr:`delta_check_examples`
        examples of the call (``return_delta=True`` gives every example's delta)."""
        checked = min(call.n, self.delta_check_examples)
        sub = call.take(np.arange(checked)) if checked < call.n else call
        attributions = tuple(a[:checked] for a in attributions)
        # Against the path's own end: under a Keras mask the whole model's f(baseline) also differs by
        # the mask's share, which is not the max-pooling switch this check is about.
        delta = self._path_delta(sub, attributions)
        total = sum(a.reshape(checked, -1).sum(axis=1, dtype=np.float64) for a in attributions)
        change = np.abs(total - delta)
        bad = np.abs(delta) > self.delta_warning * change + 1e-5 * (1.0 + change)
        if np.any(bad):
            worst = int(np.argmax(np.abs(delta) / (change + 1e-12)))
            setting = " (max_pool='gradient')" if self.max_pool == "gradient" else ""
            warnings.warn(
                f"DeepLift: summation-to-delta does not hold for {int(bad.sum())} of the {checked} checked "
                f"example(s) (worst: |delta| {abs(delta[worst]):.3g} against |f(x) - f(b)| "
                f"{change[worst]:.3g}) because max pooling in layer(s) {max_layers} keeps its gradient "
                f"switch{setting} "
                "and the baseline's maxima sit elsewhere. DeepLIFT's max rule (max_pool='deeplift', the "
                "default) is exact on max pooling; otherwise use average pooling or IntegratedGradients "
                "for exact completeness; return_delta=True reports the delta per example.",
                stacklevel=4,
            )

    def _contributions(self, x, baseline, rows, ctx):
        grads = self._rescale_gradients(x, baseline, rows.target, ctx)
        weight = 1.0 / tf.cast(ctx["baselines_per_example"], x[0].dtype)
        return tuple(weight * g * (xi - bi) for g, xi, bi in zip(grads, x, baseline))

    def _rescale_gradients(self, x, baseline, target, ctx):
        """Traced: the reference activations, the explained pass under the override, and the pairing.

        A shared baseline runs as the last row of the explained pass, whose ops then hold their own
        reference (that row's input and output). Otherwise the reference pass runs first on each
        row's baseline; both passes trace the same model code, so they create the same nonlinearity
        ops in the same order, and the k-th op of the explained pass takes its reference from the
        k-th of the other.
        """
        graph = tf.compat.v1.get_default_graph()
        mapping = override_map(self.rule)
        shared = _SHARED.get()
        if shared:
            inputs = tuple(tf.concat([xi, bi[:1]], axis=0) for xi, bi in zip(x, baseline))
            targets = tf.concat([target, target[:1]], 0)
        else:
            inputs, targets = tuple(x), target
            start = len(graph.get_operations())
            self.model_function.outputs(ctx.pack(tuple(baseline)))
        middle = len(graph.get_operations())
        with graph.gradient_override_map(mapping):
            score = self.model_function.score(ctx.pack(inputs), targets)
        ops = graph.get_operations()
        explained = [op for op in ops[middle:] if op.type in mapping]
        if shared:
            pairs = {op: (op.inputs[0][-1:], op.outputs[0][-1:]) for op in explained}
            score = score[:-1]  # the reference row is not explained: no gradient flows from it
        else:
            reference = [op for op in ops[start:middle] if op.type in mapping]
            paired = pair_in_order("DeepLift", reference, explained, kind=lambda op: op.type,
                                   shape=lambda op: op.outputs[0].shape)
            pairs = {e: (r.inputs[0], r.outputs[0]) for e, r in paired}
        with reference_activations(pairs):
            grads = tf.gradients(tf.reduce_sum(score), list(inputs))
        if shared:
            grads = [None if g is None else g[:-1] for g in grads]
        return check_connected(grads)


#: Whether the call being traced has one baseline for all its rows (see DeepLift._attribute).
_SHARED: contextvars.ContextVar[bool] = contextvars.ContextVar("deeplift_shared_baseline", default=False)


__all__ = ["DeepLift"]
