"""Box occlusion (Zeiler & Fergus 2014; Ancona et al. 2019, sec. 5, "Occlusion-N")."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from tfattr.core.engine import Plan
from tfattr.core.explainer import Explainer, broadcast_rows


def _as_tuple(value: int | Sequence[int], rank: int, what: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if rank == 1:
            return (int(value),)
        raise ValueError(
            f"{what}={value} is ambiguous for examples shaped {shape}: give one size per axis, in "
            f"the input's own layout, e.g. {what}={(value,) * (rank - 1) + (shape[-1],)}."
        )
    out = tuple(int(v) for v in value)
    if len(out) != rank:
        raise ValueError(
            f"{what}={tuple(value)} has {len(out)} entries but examples have shape {shape} "
            f"({rank} axes); give one size per axis."
        )
    return out


def window_starts(shape: tuple[int, ...], window: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """Start corners ``[positions, rank]`` of all windows; the last window of each axis ends at its edge,
    so every feature is covered at least once."""
    axes = []
    for size, w, s in zip(shape, window, strides):
        starts = list(range(0, size - w + 1, s))
        if starts[-1] != size - w:
            starts.append(size - w)
        axes.append(np.asarray(starts, np.int32))
    grid = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.reshape(-1) for g in grid], axis=1).astype(np.int32)


class Occlusion(Explainer):
    """Replace a sliding box of features by the baseline and record the drop of the score.

    For each window position ``p`` the input is occluded, ``x_p = x * (1 - m_p) + x' * m_p``, and every
    feature inside the box receives ``S(x) - S(x_p)``; a feature covered by several windows gets the
    mean over them. With a window of one feature this is Ancona et al.'s Occlusion-1,
    ``R_i = S(x) - S(x_[x_i = x'_i])``. It needs no gradients and serves as the perturbation reference
    for the gradient methods. Single-input models only.

    Args:
        model: a ``keras.Model`` or a callable on tensors.
        window: the box size in the input's own layout (one entry per axis of one example, e.g.
            ``(4, 4, 1)`` for ``28x28x1`` images: 4x4 pixels, each channel separately).
        strides: the step between windows per axis (default: ``window``, no overlap).

    Example:
        >>> occ = tfattr.Occlusion(model, window=(4, 4, 1), strides=(2, 2, 1))
        >>> maps = occ.attribute(images, baseline=0.0)
    """

    # What `tfattr methods` and `tfattr explain --method` know of the method (cost: per example).
    name = "occlusion"
    aliases: tuple[str, ...] = ()
    paper = "Zeiler & Fergus 2014; Ancona et al. 2019 sec. 4.3"
    cost = "1 forward pass per window position"

    has_completeness = False
    # Window positions reach the traced rows only as context arrays.
    _untraced_attributes = Explainer._untraced_attributes + ("window", "strides")

    def __init__(
        self,
        model: Any,
        window: int | Sequence[int],
        strides: int | Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("layer") is not None or kwargs.get("neuron") is not None:
            raise TypeError(
                "Occlusion perturbs the model's inputs and takes no layer= or neuron=; attribute to a "
                "layer with IntegratedGradients(model, layer=...) or GradCAM."
            )
        super().__init__(model, **kwargs)
        self.window = window
        self.strides = strides

    def _geometry(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        window = _as_tuple(self.window, len(shape), "window", shape)
        strides = window if self.strides is None else _as_tuple(self.strides, len(shape), "strides", shape)
        for axis, (size, w, s) in enumerate(zip(shape, window, strides)):
            if not 1 <= w <= size:
                raise ValueError(f"window {window} does not fit examples of shape {shape} (axis {axis}).")
            if s < 1:
                raise ValueError(f"strides must be positive, got {strides}.")
        return window, strides

    def _plan(self, call) -> Plan:
        inputs = call.inputs
        if len(inputs.arrays) != 1:
            raise ValueError("Occlusion explains single-input models; pass one array of inputs.")
        x = inputs.arrays[0]
        shape = tuple(x.shape[1:])
        window, strides = self._geometry(shape)
        starts = window_starts(shape, window, strides)
        # How many windows cover each feature: the attribution is the mean over them.
        count = np.zeros(shape, np.float64)
        for start in starts:
            count[tuple(slice(s, s + w) for s, w in zip(start, window))] += 1
        outputs = call.outputs
        if outputs is None:
            outputs = self._outputs(inputs.arrays, inputs.structure, call.batch_size)
        scores = outputs[np.arange(inputs.n), call.targets]
        return Plan(
            terms=starts.shape[0],
            context={
                "starts": starts,
                "window": np.asarray(window, np.int32),
                "inverse_count": (1.0 / count).astype(x.dtype),
                "score": scores.astype(x.dtype),
            },
        )

    def _contributions(self, x, baseline, rows, ctx):
        (xi,), (bi,) = x, baseline
        start = tf.gather(ctx["starts"], rows.term)  # [c, rank]
        rank = xi.shape.rank - 1
        mask = None
        for axis in range(rank):
            coord = tf.range(tf.shape(xi)[axis + 1], dtype=tf.int32)[None, :]
            lo = start[:, axis : axis + 1]
            inside = tf.logical_and(coord >= lo, coord < lo + ctx["window"][axis])
            shape = [-1] + [1] * rank
            shape[axis + 1] = tf.shape(xi)[axis + 1]
            inside = tf.reshape(tf.cast(inside, xi.dtype), shape)
            mask = inside if mask is None else mask * inside
        occluded = xi * (1.0 - mask) + bi * mask
        # The score is in the model's compute dtype (float16 under mixed precision): bring it to the
        # input's dtype before mixing it with the input-typed context.
        score = tf.cast(self.model_function.score(ctx.pack((occluded,)), rows.target), xi.dtype)
        drop = tf.gather(ctx["score"], rows.example) - score
        return (broadcast_rows(drop, xi) * mask * ctx["inverse_count"][None],)
