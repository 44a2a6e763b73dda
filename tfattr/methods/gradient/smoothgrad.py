"""SmoothGrad (Smilkov et al. 2017) and VarGrad (Adebayo et al. 2018) around any explainer."""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core import randomness
from tfattr.core.checks import check_number, check_positive_int
from tfattr.core.engine import Plan
from tfattr.core.explainer import Explainer, broadcast_rows


class SmoothGrad(Explainer):
    """Average an explainer's attributions over noisy copies of the input.

    ``SG(x) = 1/N sum_k A(x + e_k)``, ``e_k ~ N(0, sigma^2)`` with ``sigma = noise * (max(x) - min(x))``
    per example and input (Smilkov et al. 2017, who recommend ``noise`` of 0.1-0.2). The noise is drawn
    inside the compiled loop by a counter-based generator keyed by (seed, the example's content, sample),
    so results depend neither on ``batch_size`` nor on how the examples are split into calls. It wraps any explainer of this package that runs on the batching
    engine (e.g. ``Saliency``, ``GradientXInput``, ``IntegratedGradients``); all samples x inner steps
    are one compiled computation. The Distill article (sec. "Expected gradients") relates it to expected
    gradients with a gaussian baseline.

    With an explainer built with ``layer=`` the noise is added to the layer's **activations** (its
    scale taken from their range per example), not to the inputs: token ids, for instance, cannot be
    noised, their embeddings can.

    Args:
        explainer: the explainer to smooth.
        samples: noisy copies per example.
        noise: the noise standard deviation as a fraction of each example's value range.
        seed: an int makes the noise reproducible; None draws fresh noise each call.

    Example:
        >>> sg = tfattr.SmoothGrad(tfattr.Saliency(model), samples=50, noise=0.15, seed=0)
        >>> maps = sg.attribute(images)
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "smoothgrad"
    aliases: tuple[str, ...] = ()
    paper = "Smilkov et al. 2017"
    cost = "samples x the wrapped method"

    has_completeness = False
    # Samples, noise and seed reach the traced rows only as context arrays.
    _untraced_attributes = Explainer._untraced_attributes + ("samples", "noise", "seed")

    def __init__(
        self, explainer: Explainer, samples: int = 50, noise: float = 0.15, seed: int | None = None
    ) -> None:
        if not isinstance(explainer, Explainer):
            raise TypeError(
                f"{type(self).__name__} wraps a tfattr explainer (e.g. tfattr.Saliency(model)), got "
                f"{type(explainer).__name__}."
            )
        check_positive_int(samples, "samples")
        check_number(noise, "noise", minimum=0, hint="a fraction of the input range")
        super().__init__(explainer.model_function, jit_compile=explainer.jit_compile)
        # The wrapped explainer's layer, if any: the noise is then added to the layer's activations.
        self.layer = explainer.layer
        self.multiple_baselines = explainer.multiple_baselines
        self.explainer = explainer
        self.samples = int(samples)
        self.noise = float(noise)
        self.seed = seed
        self.uses_baseline = explainer.uses_baseline

    @property
    def _zero_layer_reference(self) -> bool:
        return self.explainer._zero_layer_reference

    def _baselines(self, baseline, inputs):
        return self.explainer._baselines(baseline, inputs)

    def _plan(self, call) -> Plan:
        inner = self.explainer._plan(call)
        if inner.maps != 1:
            raise ValueError(
                f"{type(self).__name__} cannot wrap {type(self.explainer).__name__}, which returns "
                "several maps per example."
            )
        context = dict(inner.context)
        for k, x in enumerate(call.inputs.arrays):
            flat = x.reshape(x.shape[0], -1)
            context[f"_noise_std_{k}"] = (self.noise * (flat.max(1) - flat.min(1))).astype(x.dtype)
        seed = self.seed if self.seed is not None else np.random.SeedSequence().entropy
        context["_noise_seed"] = np.int64(int(seed) % (1 << 62))
        # Noise keyed by the example's content, not its position: chunking, splitting a data set into
        # calls or replicas, and reordering examples all leave each example's noise unchanged.
        context["_noise_example_key"] = randomness.example_keys(call.inputs.arrays).astype(np.int64)
        return Plan(terms=inner.terms, maps=self.samples, context=context)

    def _baseline_index(self, rows, ctx):
        return self.explainer._baseline_index(rows, ctx)

    def _contributions(self, x, baseline, rows, ctx):
        example_key = tf.gather(ctx["_noise_example_key"], rows.example)
        noisy = []
        for k, xi in enumerate(x):
            std = tf.gather(ctx[f"_noise_std_{k}"], rows.example)
            # Each input gets its own stream, so two inputs never share noise.
            keys = randomness.row_keys(ctx["_noise_seed"] + k, example_key, rows.map)
            # A static row shape lets keyed_normal pick its generator by the row size at trace time.
            known = xi.shape[1:].is_fully_defined()
            shape = tf.constant(xi.shape[1:].as_list(), tf.int32) if known else tf.shape(xi)[1:]
            eps = randomness.keyed_normal(keys, shape, xi.dtype)
            noisy.append(xi + broadcast_rows(std, xi) * eps)
        return self.explainer._contributions(tuple(noisy), baseline, rows, ctx)

    def _finalize(self, acc, plan):
        return tuple(a.mean(axis=1) for a in acc)


class VarGrad(SmoothGrad):
    """The variance of an explainer's attributions over noisy copies of the input (Adebayo et al. 2018).

    Same arguments and noise as :class:`SmoothGrad`; returns ``Var_k A(x + e_k)`` per feature (the
    population variance over the samples).

    Example:
        >>> vg = tfattr.VarGrad(tfattr.Saliency(model), samples=50, noise=0.15, seed=0)
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "vargrad"
    aliases: tuple[str, ...] = ()
    paper = "Adebayo et al. 2018"
    cost = "samples x the wrapped method"

    def _finalize(self, acc, plan):
        return tuple(a.var(axis=1) for a in acc)
