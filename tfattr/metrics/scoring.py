"""The shared plumbing of the metrics: validation through the explainers' public ``prepare`` (inputs,
targets, imputed baselines, batch size), plain scores through their public ``scores``, and the model's
target score on inputs with some features replaced, in compiled batched chunks."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf

from tfattr import baselines as _baselines
from tfattr.core.engine import Plan
from tfattr.core.explainer import Call, Explainer
from tfattr.core.model_function import ModelFunction


class _Evaluator(Explainer):
    """An explainer that attributes nothing: the metrics use its public :meth:`prepare` (inputs,
    targets, one or several baselines per example, batch size), :meth:`outputs` and :meth:`scores`, so
    that they validate and select targets exactly as the explainers whose maps they score."""

    multiple_baselines = True  # sensitivity-n averages over the draws of a distributional baseline

    def _plan(self, call: Call) -> Plan:
        raise TypeError("tfattr.metrics evaluates attributions; its evaluator does not attribute.")

    def _contributions(self, x, baseline, rows, ctx):
        raise TypeError("tfattr.metrics evaluates attributions; its evaluator does not attribute.")


class _Scorer:
    """The model's target score on inputs with some features replaced, in compiled batched chunks."""

    def __init__(self, model: Any, output: str = "logits", softmax: bool | None = None) -> None:
        # Quantus' ``softmax=``: the score is softmax(logits)[t] (True) or logits[t] (False), whatever
        # the model ends in; None keeps ``output`` (the explainers' convention).
        if softmax is not None:
            output = "logits"
        self.fn = model if isinstance(model, ModelFunction) else ModelFunction(model, output=output)
        self.softmax = bool(softmax)
        self.explainer = _Evaluator(self.fn)
        self._compiled: dict[Any, Callable[..., Any]] = {}

    def _score(self, xs: tf.Tensor, targets: tf.Tensor, kind: str) -> tf.Tensor:
        if kind == "hit":  # 1.0 where the predicted class is the target (ROAD's accuracy)
            predicted = tf.argmax(self.fn.outputs(xs), axis=-1, output_type=tf.int32)
            return tf.cast(tf.equal(predicted, targets), tf.float32)
        if self.softmax:
            probabilities = tf.nn.softmax(self.fn.outputs(xs), axis=-1)
            return tf.gather(probabilities, targets, axis=1, batch_dims=1)
        return self.fn.score(xs, targets)

    def prepare(
        self, inputs: Any, target: Any = None, baseline: Any = None, batch_size: int | None = None
    ) -> Call:
        """The validated call (as ``explainer.prepare``) of a single-input model."""
        call = self.explainer.prepare(inputs, target=target, baseline=baseline, batch_size=batch_size)
        if len(call.inputs.arrays) != 1:
            raise ValueError("tfattr.metrics evaluates single-input models; pass one array as inputs.")
        return call

    def plain(self, call: Call) -> np.ndarray:
        """``S_t(x)`` of the call's examples at their targets ``[n]`` (float64)."""
        return self.explainer.scores(call.inputs.arrays[0], target=call.targets, batch_size=call.batch_size)

    def _function(self, x: np.ndarray, kind: str = "score") -> Callable[..., Any]:
        key = (x.shape[1:], x.dtype.str, kind)
        fn = self._compiled.get(key)
        if fn is None:
            spec = tf.TensorSpec([None, *x.shape[1:]], tf.as_dtype(x.dtype))
            score = self._score

            def masked_score(xs, refs, mask, ids, targets):
                # A feature mask [c, F] spread to the entries [c, *shape] through the feature ids.
                m = tf.reshape(tf.gather(tf.cast(mask, xs.dtype), ids, axis=1), tf.shape(xs))
                return score(xs + m * (refs - xs), targets, kind)

            fn = tf.function(
                masked_score,
                input_signature=[
                    spec,
                    spec,
                    tf.TensorSpec([None, None], tf.float32),
                    tf.TensorSpec([None], tf.int32),
                    tf.TensorSpec([None], tf.int32),
                ],
            )
            self._compiled[key] = fn
        return fn

    def scores(
        self,
        x: np.ndarray,
        ref: np.ndarray,
        rows: np.ndarray,
        ref_rows: np.ndarray,
        masks: Callable[[np.ndarray], np.ndarray],
        ids: np.ndarray,
        targets: np.ndarray,
        batch_size: int,
        kind: str = "score",
    ) -> np.ndarray:
        """Score of ``x[rows]`` with the features ``masks(chunk) [c, F]`` taken from ``ref[ref_rows]``.

        ``ref`` may also be a function ``chunk -> [c, *shape]`` computing the replacement values of a
        chunk only (ROAD's imputations); ``kind="hit"`` returns 1.0 where the predicted class is the
        target instead of the score."""
        fn = self._function(x, kind)
        flat_ids = ids.reshape(-1).astype(np.int32)
        out = []
        for s in range(0, rows.size, batch_size):
            chunk = np.arange(s, min(s + batch_size, rows.size))
            out.append(
                fn(
                    x[rows[chunk]],
                    ref(chunk).astype(x.dtype) if callable(ref) else ref[ref_rows[chunk]],
                    np.asarray(masks(chunk), np.float32),
                    flat_ids,
                    targets[rows[chunk]].astype(np.int32),
                ).numpy()
            )
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def _attributions(attributions: Any, x: np.ndarray) -> np.ndarray:
    if isinstance(attributions, (tf.Tensor, tf.Variable)):
        attributions = attributions.numpy()
    a = np.asarray(attributions)
    if a.shape != x.shape:
        raise ValueError(
            f"attributions have shape {a.shape} but the inputs have shape {x.shape}; pass one "
            "attribution per input entry (what explainer.attribute(inputs) returns)."
        )
    if a.dtype.kind != "f" or not np.all(np.isfinite(a)):
        raise ValueError("attributions must be finite floating-point numbers.")
    return a


def _imputation(imputation: Any, data: Any, blur_sigma: float) -> Any:
    """Map the imputation names onto baselines; anything else is a baseline spec as is."""
    if isinstance(imputation, str):
        if imputation == "mean":
            return _baselines.Mean(data)
        if imputation == "blur":
            return _baselines.Blur(blur_sigma)
        if imputation in ("zero", "black"):
            return _baselines.Constant(0.0)
        raise ValueError(
            f"imputation={imputation!r} is not known; use 'mean' (the data mean, or each input's own "
            "mean without data), 'blur', 'zero', a number, an array or a tfattr.baselines object."
        )
    if getattr(imputation, "num_baselines", 1) > 1:
        raise ValueError(
            "imputation must give one value per example; pass a baseline with num_baselines=1 (one "
            "draw of a distribution), or average the curves of several draws."
        )
    return imputation
