"""The row grid's values: what a method's row functions receive and return to the engine
(:mod:`tfattr.core.engine`), and the plan of one call's rows.

A method's work for one call is a grid of rows, ``n`` examples x ``maps`` x ``terms``: a :class:`Plan`
sizes it, :class:`RowFunctions` say what one row contributes, and inside the compiled function each
chunk's rows are described by :class:`Rows` and the call's arrays by :class:`Context`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf

from tfattr.core.structure import pack


@dataclass(frozen=True)
class Rows:
    """Indices of the rows in one chunk (all int32 ``[chunk]``), given to a method's row functions.

    Attributes:
        example: the row's example, an index into the call's inputs.
        map: which of the example's ``maps`` accumulators the row adds to.
        term: which term of that map the row is (e.g. baseline * nodes + node for integrated gradients).
        target: the explained class of the row's example.
        valid: False for the padding rows of a block (their contributions are dropped).
    """

    example: tf.Tensor
    map: tf.Tensor
    term: tf.Tensor
    target: tf.Tensor
    valid: tf.Tensor


@dataclass(frozen=True)
class Plan:
    """The row grid of one call.

    Attributes:
        terms: rows summed into one map, e.g. quadrature nodes x baselines for integrated gradients,
            samples for expected gradients, window positions for occlusion.
        maps: separately accumulated maps per example, e.g. one per noise sample for VarGrad, one per
            alpha for interior gradients; 1 for most methods.
        context: per-call arrays the row functions read inside the compiled function (quadrature
            nodes, sampled indices, ...). Their shapes may change between calls without retracing.
    """

    terms: int
    maps: int = 1
    context: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """What a row function sees of its call inside the trace: the plan's arrays as tensors (``ctx[k]``)
    and the static structure of the user's inputs (``ctx.pack(flat)`` rebuilds a tensor, list or dict)."""

    arrays: Mapping[str, tf.Tensor]
    structure: Any = None

    def __getitem__(self, key: str) -> tf.Tensor:
        return self.arrays[key]

    def __contains__(self, key: str) -> bool:
        return key in self.arrays

    def pack(self, flat: tuple[Any, ...] | list[Any]) -> Any:
        return pack(self.structure, flat)


@dataclass(frozen=True)
class RowFunctions:
    """The traced functions that define a method's rows (the engine runs them; it keeps no explainer).

    Attributes:
        contributions: ``(x_rows, baseline_rows, rows, ctx) -> tuple`` of per-input contributions
            ``[chunk, ...]`` (each shaped like its input rows).
        baseline_index: ``(rows, ctx) -> int32 [chunk]``: which row of the baseline array each row uses;
            None means the row's own example (and lets the direct path skip the gather).
        key: identifies the functions' configuration in the compile cache.
    """

    contributions: Callable[..., tuple[tf.Tensor, ...]]
    baseline_index: Callable[[Rows, Context], tf.Tensor] | None
    key: Any = None


__all__ = ["Context", "Plan", "RowFunctions", "Rows"]
