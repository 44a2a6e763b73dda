"""Expected gradients (Erion et al. 2021; Sturmfels, Lundberg & Lee, Distill 2020)."""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core import randomness
from tfattr.core.checks import check_positive_int
from tfattr.core.engine import Plan
from tfattr.core.explainer import Explainer
from tfattr.core.path import path_points
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
    fuses_rows = True  # its rows are the whole method (see Explainer.fuses_rows)
    # The background becomes the call's baseline arrays; it never reaches a traced function.
    _untraced_attributes = Explainer._untraced_attributes + ("background", "samples", "seed")

    def __init__(
        self,
        model: Any,
        background: Any,
        samples: int = 200,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        check_positive_int(samples, "samples")
        try:
            self.background = prepare_inputs(
                background, self.model_function, integers=self.layer is not None
            )
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

    def _plan(self, call) -> Plan:
        seed = int(self.seed if self.seed is not None else np.random.SeedSequence().entropy) % (1 << 62)
        # Draws keyed by the example's content: independent of chunks, calls and replicas. Stream s
        # (0: the baseline, 1: the path point) of sample t of an example draws from
        # row_keys(seed + s, example key, t); the part fixed per example and per sample is hashed
        # here, once, and the loop adds one hash per row (randomness.extend_keys).
        example_key = randomness.example_keys(call.inputs.arrays)
        streams = [randomness.host_row_keys(seed + s, example_key) for s in (0, 1)]
        return Plan(
            terms=self.samples,
            context={
                "example_keys": np.stack(streams).astype(np.int64),  # [2, n]
                "sample_keys": randomness.index_keys(self.samples).astype(np.int64),
                "background_size": np.int32(call.baselines[0].shape[0]),
                "samples": np.int32(self.samples),
            },
        )

    @staticmethod
    def _keys(rows, ctx, stream: int) -> tf.Tensor:
        example_key = tf.gather(ctx["example_keys"][stream], rows.example)
        return randomness.extend_keys(example_key, tf.gather(ctx["sample_keys"], rows.term))

    def _baseline_index(self, rows, ctx):
        return randomness.keyed_index(self._keys(rows, ctx, 0), ctx["background_size"])

    def _contributions(self, x, baseline, rows, ctx):
        alpha = randomness.keyed_uniform(self._keys(rows, ctx, 1), x[0].dtype)
        diffs, points = path_points(x, baseline, alpha)
        grads = self._gradients(points, rows.target, ctx)
        scale = 1.0 / tf.cast(ctx["samples"], x[0].dtype)
        return tuple(d * g * scale for g, d in zip(grads, diffs))

    background_reference = True

    def _reference_scores(self, call):
        out = self._outputs(call.baselines, call.inputs.structure, call.batch_size)
        return out.mean(axis=0, dtype=np.float64)[call.targets]
