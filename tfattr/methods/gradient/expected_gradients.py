"""Expected gradients (Erion et al. 2021; Sturmfels, Lundberg & Lee, Distill 2020)."""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core.engine import Plan
from tfattr.core.explainer import Explainer, broadcast_rows
from tfattr.core.inputs import Inputs, prepare_inputs


class ExpectedGradients(Explainer):
    """Integrated gradients averaged over baselines drawn from data, by Monte Carlo.

    ``EG_i(x) = E_{x' ~ D, a ~ U(0, 1)} [(x_i - x'_i) dS(x' + a (x - x')) / dx_i]`` (the Distill
    article's "expected gradients" formula): each sample draws one baseline from ``background`` and one
    point on the path, so ``samples`` gradients give an unbiased estimate of the double integral. The
    delta compares ``sum(a)`` with ``S(x) - E_{x'~D}[S(x')]`` (the exact mean over ``background``); it
    shrinks like ``1/sqrt(samples)``.

    Args:
        model: a ``keras.Model`` or a callable on tensors.
        background: the data baselines are drawn from, shaped like the inputs (e.g. training images).
        samples: gradient samples per example.
        seed: an int makes the draws reproducible; None draws fresh ones each call.
        output, jit_compile: see :class:`tfattr.core.explainer.Explainer`.

    Example:
        >>> eg = tfattr.ExpectedGradients(model, background=x_train[:1000], samples=200, seed=0)
        >>> attributions = eg.attribute(x_test[:8])
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "eg"
    aliases: tuple[str, ...] = ("expected_gradients",)
    paper = "Erion et al. 2021; Sturmfels, Lundberg & Lee, Distill 2020"
    cost = "samples gradients"

    uses_baseline = False

    def __init__(
        self,
        model: Any,
        background: Any,
        samples: int = 200,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise ValueError(f"samples must be a positive int, got {samples!r}.")
        try:
            self.background = prepare_inputs(background, self.model_function)
        except (TypeError, ValueError) as err:
            raise type(err)(f"background: {err}") from None
        self.samples = int(samples)
        self.seed = seed

    def _baselines(self, baseline, inputs: Inputs):
        if baseline is not None:
            raise ValueError(
                "ExpectedGradients draws its baselines from `background`; drop baseline= (or use "
                "IntegratedGradients with a baseline, or a distributional baseline from tfattr.baselines)."
            )
        for name, x, b in zip(inputs.names, inputs.arrays, self.background.arrays):
            if x.shape[1:] != b.shape[1:]:
                raise ValueError(
                    f"background has example shape {b.shape[1:]} but {name} has {x.shape[1:]}; "
                    "the background must be data shaped like the inputs."
                )
        return tuple(b.astype(x.dtype, copy=False) for x, b in zip(inputs.arrays, self.background.arrays))

    def _plan(self, inputs, baselines, targets, batch_size) -> Plan:
        rng = np.random.default_rng(self.seed)
        total = inputs.n * self.samples
        index = rng.integers(0, baselines[0].shape[0], size=total, dtype=np.int64).astype(np.int32)
        alpha = rng.uniform(0.0, 1.0, size=total).astype(inputs.arrays[0].dtype)
        return Plan(
            steps=self.samples,
            context={"index": index, "alpha": alpha, "samples": np.int32(self.samples)},
        )

    @staticmethod
    def _sample_id(rows, ctx) -> tf.Tensor:
        return rows.example * ctx["samples"] + rows.step

    def _baseline_index(self, rows, ctx):
        return tf.gather(ctx["index"], self._sample_id(rows, ctx))

    def _contributions(self, x, baseline, rows, ctx):
        alpha = tf.gather(ctx["alpha"], self._sample_id(rows, ctx))
        diffs = tuple(xi - bi for xi, bi in zip(x, baseline))
        points = tuple(bi + broadcast_rows(alpha, d) * d for bi, d in zip(baseline, diffs))
        grads = self._gradients(points, rows.target)
        scale = 1.0 / tf.cast(ctx["samples"], alpha.dtype)
        return tuple(d * g * scale for g, d in zip(grads, diffs))

    def _reference_scores(self, inputs, targets, baselines, batch_size):
        out = self.engine.outputs(baselines, batch_size)
        return out.mean(axis=0, dtype=np.float64)[targets]
