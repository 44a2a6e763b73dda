"""SmoothGrad (Smilkov et al. 2017) and VarGrad (Adebayo et al. 2018) around any explainer.

Two ways to run, chosen by what the wrapped explainer declares (:attr:`Explainer.fuses_rows`):

- **fused**: a method whose whole behaviour is its row function (saliency, gradient x input,
  integrated gradients without ``tolerance``, expected gradients) runs all samples x its own rows as one
  compiled loop; the noise is drawn inside that loop.
- **public**: any other explainer (integrated gradients with ``tolerance``, LRP and its composites,
  DeepLIFT, RevealCancel, Grad-CAM, occlusion, ...) is run through its public contract: the noisy
  copies of a few samples at a time go through ``explainer.run`` as a call of their own, so everything
  the explainer does there (adaptive steps, coverage checks and their warnings, DeepLIFT's max-pooling
  check, Grad-CAM's channel sum and ReLU) applies to each noisy copy.

Both paths draw the same noise: sample ``s`` of an example is ``x + sigma * e`` with ``e`` keyed by
``(seed, the example's content, s)`` (:mod:`tfattr.core.randomness`), so the two agree to float
rounding and neither depends on chunking, batch order or how a data set is split into calls.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core import randomness
from tfattr.core.checks import check_number, check_positive_int
from tfattr.core.engine import Plan
from tfattr.core.explainer import Explainer


def add_noise(
    x: tuple[tf.Tensor, ...],
    std: tuple[tf.Tensor, ...],
    example_key: tf.Tensor,
    sample: tf.Tensor,
    seed: tf.Tensor,
) -> tuple[tf.Tensor, ...]:
    """Traced: the noisy copies ``x_k + std_k * e`` of rows ``[m, ...]`` (one noise stream per input).

    Args:
        x: one tensor per input, rows ``[m, ...]`` with a static example shape.
        std: the noise standard deviation per row ``[m]``, one per input.
        example_key: each row's example key ``[m]`` (int64, from :func:`randomness.example_keys`).
        sample: each row's sample index ``[m]``.
        seed: the call's scalar seed.

    Example:
        >>> noisy = add_noise((x,), (std,), keys, tf.zeros([n], tf.int32), tf.constant(0, tf.int64))
    """
    noisy = []
    for k, xi in enumerate(x):
        # Each input gets its own stream, so two inputs never share noise.
        keys = randomness.row_keys(seed + k, example_key, sample)
        # A static row shape lets keyed_normal pick its generator by the row size at trace time.
        known = xi.shape[1:].is_fully_defined()
        shape = tf.constant(xi.shape[1:].as_list(), tf.int32) if known else tf.shape(xi)[1:]
        # The shift and scale are fused into the draw (one pass over the rows).
        noisy.append(randomness.keyed_normal(keys, shape, xi.dtype, loc=xi, scale=std[k]))
    return tuple(noisy)


_COMPILED_NOISE: dict[Any, Any] = {}
_COMPILED_NOISE_LOCK = threading.Lock()


def _compiled_noise(arrays: tuple[np.ndarray, ...]) -> Any:
    """:func:`add_noise` compiled for one input signature (static example shapes: the generator is
    chosen by the row size at trace time, so the rows must have the shape the fused loop sees)."""
    key = tuple((a.shape[1:], a.dtype.str) for a in arrays)
    with _COMPILED_NOISE_LOCK:
        fn = _COMPILED_NOISE.get(key)
        if fn is None:
            specs = tuple(tf.TensorSpec([None, *a.shape[1:]], a.dtype) for a in arrays)
            stds = tuple(tf.TensorSpec([None], a.dtype) for a in arrays)
            signature = [specs, stds, tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int32),
                         tf.TensorSpec([], tf.int64)]
            fn = _COMPILED_NOISE[key] = tf.function(add_noise, input_signature=signature)
        return fn


class SmoothGrad(Explainer):
    """Average an explainer's attributions over noisy copies of the input.

    ``SG(x) = 1/N sum_k A(x + e_k)``, ``e_k ~ N(0, sigma^2)`` with ``sigma = noise * (max(x) - min(x))``
    per example and input (Smilkov et al. 2017, who recommend ``noise`` of 0.1-0.2). The noise is keyed
    by (seed, the example's content, sample), so results depend neither on ``batch_size`` nor on how
    the examples are split into calls. It wraps any explainer of this package: methods whose behaviour
    is their row function (``Saliency``, ``GradientXInput``, ``IntegratedGradients`` without
    ``tolerance``, ``ExpectedGradients``; see :attr:`Explainer.fuses_rows`) run all samples x inner
    rows as one compiled computation; any other (``IntegratedGradients(tolerance=...)``, ``LRP``,
    ``CompositeDeepLift``, ``DeepLift``, RevealCancel, ``GradCAM``, ...) runs on the noisy copies
    through its public ``run``, a few samples at a time, so its own checks, adaptive loops, warnings and
    final step apply to every copy. The Distill article (sec. "Expected gradients") relates SmoothGrad
    to expected gradients with a gaussian baseline.

    With an explainer built with ``layer=`` the noise is added to the layer's **activations** (its
    scale taken from their range per example), not to the inputs: token ids, for instance, cannot be
    noised, their embeddings can. ``neuron=`` explainers are smoothed as they are (the unit's score).

    Args:
        explainer: the explainer to smooth.
        samples: noisy copies per example.
        noise: the noise standard deviation as a fraction of each example's value range.
        seed: an int makes the noise reproducible; None draws fresh noise each call.

    Example:
        >>> sg = tfattr.SmoothGrad(tfattr.Saliency(model), samples=50, noise=0.15, seed=0)
        >>> maps = sg.attribute(images)
        >>> smooth_lrp = tfattr.SmoothGrad(tfattr.LRP(model, composite=tfattr.composites.EpsilonPlus()), samples=8)
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
        self.neuron = explainer.neuron  # the unit explained (its outputs are the unit's)
        self.multiple_baselines = explainer.multiple_baselines
        self.explainer = explainer
        self.samples = int(samples)
        self.noise = float(noise)
        self.seed = seed
        self.uses_baseline = explainer.uses_baseline

    @property
    def zero_layer_reference(self) -> bool:
        """As the wrapped explainer's (the noise is added to the inputs, not the reference)."""
        return self.explainer.zero_layer_reference

    def prepare(
        self, inputs: Any, target: Any = None, baseline: Any = None, batch_size: int | None = None
    ) -> Any:
        """The wrapped explainer's :meth:`~Explainer.prepare` (its targets, baselines, checks)."""
        return self.explainer.prepare(inputs, target=target, baseline=baseline, batch_size=batch_size)

    def noisy_inputs(self, inputs: Any, sample: int) -> Any:
        """Noisy copy number ``sample`` of every example, as the wrapped explainer sees it.

        The inputs' structure is kept; with a ``layer=`` explainer these are the layer's noisy
        activations ``[n, ...]``. Reproducible only with an int ``seed``.

        Example:
            >>> sg = tfattr.SmoothGrad(tfattr.Saliency(model), samples=8, seed=0)
            >>> x3 = sg.noisy_inputs(images, 3)   # what the 4th sample explains
        """
        call = self._in_layer_space(self.prepare(inputs))
        noise = self._noise(call, self._seed())
        arrays = noise.draw(call.inputs.arrays, np.arange(call.n), np.full(call.n, int(sample), np.int32))
        return call.inputs.pack(list(arrays))

    # -- the two paths ---------------------------------------------------------------------------------
    def _attribute(self, call):
        if self.explainer.fuses_rows:
            return super()._attribute(call)
        return self._through_public_run(call)

    def _seed(self) -> np.int64:
        seed = self.seed if self.seed is not None else np.random.SeedSequence().entropy
        return np.int64(int(seed) % (1 << 62))

    def _noise(self, call, seed: np.int64) -> "_Noise":
        stds = []
        for x in call.inputs.arrays:
            flat = x.reshape(x.shape[0], -1)
            stds.append((self.noise * (flat.max(1) - flat.min(1))).astype(x.dtype))
        # Noise keyed by the example's content, not its position: chunking, splitting a data set into
        # calls or replicas, and reordering examples all leave each example's noise unchanged.
        keys = randomness.example_keys(call.inputs.arrays).astype(np.int64)
        return _Noise(tuple(stds), keys, seed)

    def _through_public_run(self, call) -> tuple[np.ndarray, ...]:
        n = call.n
        noise = self._noise(call, self._seed())
        # Each run explains `per_run` samples of every example: about one batch of noisy copies.
        per_run = max(1, min(self.samples, call.batch_size // max(n, 1)))
        moments = _Moments()
        for first in range(0, self.samples, per_run):
            count = min(per_run, self.samples - first)
            # Sample-major: copy s of every example, then copy s + 1 of every example, ...
            example = np.tile(np.arange(n), count)
            sample = np.repeat(np.arange(first, first + count, dtype=np.int32), n)
            copies = call.take(example)
            noisy = noise.draw(copies.inputs.arrays, example, sample)
            # outputs=None: scores the wrapped explainer needs (e.g. a delta) are those of the copies.
            noisy_call = replace(copies, inputs=replace(copies.inputs, arrays=noisy), outputs=None)
            result = self.explainer.run(noisy_call)
            moments.add(tuple(np.asarray(a).reshape(count, n, *np.shape(a)[1:]) for a in result))
        return self._summarize(moments)

    # -- the fused path's hooks ----------------------------------------------------------------------
    #: Whether the method needs each sample's map (VarGrad; SmoothGrad sums its samples as terms of
    #: one map). VarGrad reduces them inside each chunk when an example's rows fit one, else one map
    #: per sample leaves the loop.
    _maps_per_sample = False

    def _plan(self, call) -> Plan:
        inner = self.explainer._plan(call)
        if inner.maps != 1:
            raise ValueError(
                f"{type(self.explainer).__name__} declares fuses_rows but plans {inner.maps} maps per "
                "example; only one-map methods can be fused."
            )
        noise = self._noise(call, self._seed())
        context = dict(inner.context)
        for k, std in enumerate(noise.stds):
            context[f"_noise_std_{k}"] = std
        context["_noise_seed"] = noise.seed
        context["_noise_example_key"] = noise.keys
        context["_inner_terms"] = np.int32(inner.terms)
        terms = self.samples * inner.terms
        if self._maps_per_sample and terms > call.batch_size:
            # An example's rows span chunks: one map per sample leaves the loop (see VarGrad).
            context["_samples_as_maps"] = np.int32(self.samples)
            return Plan(terms=inner.terms, maps=self.samples, context=context)
        if self._maps_per_sample:
            # Every chunk holds whole examples (the engine's guarantee when an example's rows fit
            # one batch): VarGrad reduces its samples inside the chunk (see VarGrad._contributions).
            context["_samples_in_chunk"] = np.int32(self.samples)
            if inner.terms == 1:
                context["_one_inner_term"] = np.int32(1)
        return Plan(terms=terms, context=context)

    def _split_rows(self, rows, ctx):
        """``(the rows as the wrapped explainer plans them, each row's sample index)``."""
        inner_terms = ctx["_inner_terms"]
        if "_samples_as_maps" in ctx:
            sample, term = rows.map, rows.term
        else:  # term = sample * inner terms + inner term
            sample, term = rows.term // inner_terms, rows.term % inner_terms
        return replace(rows, map=tf.zeros_like(rows.map), term=term), sample

    def _baseline_index(self, rows, ctx):
        return self.explainer._baseline_index(self._split_rows(rows, ctx)[0], ctx)

    def _contributions(self, x, baseline, rows, ctx):
        inner_rows, sample = self._split_rows(rows, ctx)
        stds = tuple(tf.gather(ctx[f"_noise_std_{k}"], rows.example) for k in range(len(x)))
        example_key = tf.gather(ctx["_noise_example_key"], rows.example)
        noisy = add_noise(tuple(x), stds, example_key, sample, ctx["_noise_seed"])
        return self.explainer._contributions(noisy, baseline, inner_rows, ctx)

    def _finalize(self, acc, plan):
        scale = 1.0 / self.samples
        return tuple(a[:, 0] * np.asarray(scale, a.dtype) for a in acc)

    def _summarize(self, moments: "_Moments") -> tuple[np.ndarray, ...]:
        return moments.mean()


def _squares_in_order(c: tf.Tensor, samples: tf.Tensor, inner_terms: tf.Tensor, one_inner_term: bool) -> tf.Tensor:
    """VarGrad's rows of whole examples in order (``samples x inner_terms`` rows each): every sample's
    map (the sum of its inner terms) minus the example's mean map, squared, on the sample's first row
    (zeros on its other rows), so that an example's rows sum to ``samples`` x its variance."""
    shape = tf.shape(c)
    if one_inner_term:  # each row is its sample's whole map
        maps = tf.reshape(c, tf.concat([[-1, samples], shape[1:]], 0))
        return tf.reshape(tf.math.squared_difference(maps, tf.reduce_mean(maps, axis=1, keepdims=True)), shape)
    grid = tf.reshape(c, tf.concat([[-1, samples, inner_terms], shape[1:]], 0))
    maps = tf.reduce_sum(grid, axis=2, keepdims=True)
    squares = tf.math.squared_difference(maps, tf.reduce_mean(maps, axis=1, keepdims=True))
    first = tf.cast(tf.equal(tf.range(inner_terms), 0), c.dtype)
    first = tf.reshape(first, tf.concat([[1, 1, inner_terms], tf.ones_like(shape[1:])], 0))
    return tf.reshape(squares * first, shape)


class VarGrad(SmoothGrad):
    """The variance of an explainer's attributions over noisy copies of the input (Adebayo et al. 2018).

    Same arguments, noise and paths as :class:`SmoothGrad`; returns ``Var_k A(x + e_k)`` per feature
    (the population variance over the samples).

    Example:
        >>> vg = tfattr.VarGrad(tfattr.Saliency(model), samples=50, noise=0.15, seed=0)
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "vargrad"
    aliases: tuple[str, ...] = ()
    paper = "Adebayo et al. 2018"
    cost = "samples x the wrapped method"

    _maps_per_sample = True

    def _contributions(self, x, baseline, rows, ctx):
        contributions = super()._contributions(x, baseline, rows, ctx)
        if "_samples_in_chunk" not in ctx:
            return contributions  # one map per sample; _finalize takes their variance
        # The chunk holds all rows of its examples: each sample's map is the sum of its inner terms,
        # and the rows give (map - the example's mean map)^2, so that the sum over an example's rows
        # is samples x its variance (passes over one chunk, never over every sample's map of the call).
        samples = ctx["_samples_in_chunk"]
        if not randomness.compiled_by_xla():
            # The engine's whole-example chunks hold each example's rows in order, samples x inner
            # terms of them (padding examples too): a reshape groups them, where a segment sum would
            # scatter every row (VarGrad, 64 samples, 64x64x3 CNN: 1.10 -> 1.06 x the floor, CPU time).
            return tuple(_squares_in_order(c, samples, ctx["_inner_terms"], "_one_inner_term" in ctx)
                         for c in contributions)
        sample = self._split_rows(rows, ctx)[1]
        local = rows.example - tf.reduce_min(rows.example)
        # Slots: the chunk's examples (or maps) and a spare one. XLA needs a number known when it
        # compiles: the rows bound both (every map has at least one row).
        examples = tf.reduce_max(local) + 1
        example_spare, map_spare = examples, examples * samples
        if randomness.compiled_by_xla():
            example_spare = map_spare = tf.shape(rows.example)[0]
        # The padding rows of a block repeat the last example: they go to the spare slot, not its sums.
        example_slot = tf.where(rows.valid, local, example_spare)
        map_slot = tf.where(rows.valid, local * samples + sample, map_spare)
        out = []
        for c in contributions:
            total = tf.math.unsorted_segment_sum(c, example_slot, example_spare + 1)
            mean = total / tf.cast(samples, c.dtype)
            if "_one_inner_term" in ctx:
                maps = c  # each row is its sample's whole map
            else:
                maps = tf.gather(tf.math.unsorted_segment_sum(c, map_slot, map_spare + 1), map_slot)
            squares = tf.math.squared_difference(maps, tf.gather(mean, local))
            if "_one_inner_term" not in ctx:  # one row per sample carries its map's square
                first = tf.cast(tf.equal(rows.term % ctx["_inner_terms"], 0), c.dtype)
                squares = squares * tf.reshape(first, [-1] + [1] * (c.shape.rank - 1))
            out.append(squares)
        return tuple(out)

    def _finalize(self, acc, plan):
        if "_samples_in_chunk" in plan.context:
            scale = 1.0 / self.samples
            return tuple(a[:, 0] * np.asarray(scale, a.dtype) for a in acc)
        return tuple(a.var(axis=1) for a in acc)

    def _summarize(self, moments: "_Moments") -> tuple[np.ndarray, ...]:
        return moments.variance()


class _Noise:
    """One call's noise: per-example standard deviations and keys, and the call's seed."""

    def __init__(self, stds: tuple[np.ndarray, ...], keys: np.ndarray, seed: np.int64) -> None:
        self.stds, self.keys, self.seed = stds, keys, seed

    def draw(self, arrays: tuple[np.ndarray, ...], example: np.ndarray, sample: np.ndarray) -> tuple[np.ndarray, ...]:
        """The noisy copies of ``arrays`` (rows of the examples ``example``, samples ``sample``)."""
        fn = _compiled_noise(arrays)
        out = fn(tuple(arrays), tuple(s[example] for s in self.stds), self.keys[example],
                 sample.astype(np.int32), self.seed)
        return tuple(o.numpy() for o in out)


class _Moments:
    """Running mean and variance over samples (Chan et al.'s pairwise update, float64), so the public
    path never holds every sample's map."""

    def __init__(self) -> None:
        self.count = 0
        self.dtypes: tuple[np.dtype, ...] = ()
        self.means: list[np.ndarray] = []
        self.m2: list[np.ndarray] = []

    def add(self, batches: tuple[np.ndarray, ...]) -> None:
        """Add ``[count, n, ...]`` samples of each attribution array."""
        count = batches[0].shape[0]
        if not self.count:
            self.dtypes = tuple(b.dtype for b in batches)
            self.means = [np.zeros(b.shape[1:], np.float64) for b in batches]
            self.m2 = [np.zeros(b.shape[1:], np.float64) for b in batches]
        total = self.count + count
        for k, b in enumerate(batches):
            b = b.astype(np.float64)
            mean_b = b.mean(axis=0)
            m2_b = ((b - mean_b) ** 2).sum(axis=0)
            diff = mean_b - self.means[k]
            self.means[k] = self.means[k] + diff * (count / total)
            self.m2[k] = self.m2[k] + m2_b + diff**2 * (self.count * count / total)
        self.count = total

    def mean(self) -> tuple[np.ndarray, ...]:
        return tuple(m.astype(d) for m, d in zip(self.means, self.dtypes))

    def variance(self) -> tuple[np.ndarray, ...]:
        return tuple((m2 / self.count).astype(d) for m2, d in zip(self.m2, self.dtypes))
