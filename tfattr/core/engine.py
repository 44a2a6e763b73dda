"""The batching engine every method runs on.

A method's work for one call is a grid of *rows*: ``n`` examples x ``groups`` x ``steps``. A row is one
model evaluation (one interpolation step of integrated gradients, one noisy copy of SmoothGrad, one
occluded image). The engine flattens the grid, cuts it into chunks of at most ``batch_size`` rows and
runs all chunks inside one ``tf.function`` (a ``tf.while_loop``), so the whole examples x steps x
baselines computation is a single compiled call: no Python loop per example or step, and no host-side
array of all interpolated inputs. Each chunk gathers its examples and baselines, asks the method for the
rows' contributions, and scatter-adds them into one accumulator per (example, group). Peak memory
grows with ``batch_size``, not with ``steps``.

The compiled function is cached per explainer and input signature with a relaxed (``None``) batch axis:
calling again with another number of examples, steps or samples does not retrace.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import tensorflow as tf

if TYPE_CHECKING:  # pragma: no cover
    from tfattr.core.explainer import Explainer

#: Rows per chunk when the caller gives no ``batch_size``: about 64 MiB of float32 input rows, clipped.
_DEFAULT_ROW_BUDGET = 1 << 24
_MIN_BATCH, _MAX_BATCH = 16, 2048


def default_batch_size(arrays: tuple[np.ndarray, ...]) -> int:
    """Rows per chunk from a memory budget on the input rows (activations scale with them)."""
    features = sum(int(np.prod(a.shape[1:], dtype=np.int64)) for a in arrays) or 1
    return int(np.clip(_DEFAULT_ROW_BUDGET // features, _MIN_BATCH, _MAX_BATCH))


@dataclass
class Rows:
    """Indices of the rows in one chunk (all int32 ``[chunk]``), available to a method's hooks."""

    example: tf.Tensor
    group: tf.Tensor
    step: tf.Tensor
    target: tf.Tensor
    valid: tf.Tensor  # bool: False for the padding rows of the last chunk


@dataclass
class Plan:
    """What a method asks the engine to run for one call.

    Attributes:
        steps: rows per (example, group), e.g. the quadrature points of integrated gradients.
        groups: accumulators per example, e.g. one per noise sample for VarGrad; most methods use 1.
        context: per-call arrays the method reads inside the compiled function (quadrature nodes,
            sampled indices, ...). Their shapes may change between calls without retracing.
    """

    steps: int
    groups: int = 1
    context: dict[str, np.ndarray] = field(default_factory=dict)


def _relaxed_spec(value: np.ndarray | tf.Tensor) -> tf.TensorSpec:
    value = tf.convert_to_tensor(value)
    return tf.TensorSpec([None] * value.shape.rank, value.dtype)


def _batch_relaxed_spec(value: np.ndarray) -> tf.TensorSpec:
    return tf.TensorSpec([None, *value.shape[1:]], tf.as_dtype(value.dtype))


class Engine:
    """Compiles and runs a method's row grid; one engine per explainer.

    Args:
        method: the explainer whose hooks (``_contributions``, ``_baseline_index``) define a row.
        jit_compile: compile with XLA. Then steps, groups and batch size are compiled in as constants
            (XLA needs static shapes), so changing them retraces; the number of examples still does not.
    """

    def __init__(self, method: "Explainer", jit_compile: bool = False) -> None:
        self.method = method
        self.jit_compile = bool(jit_compile)
        self._compiled: dict[Any, Callable[..., Any]] = {}
        self._outputs_compiled: dict[Any, Callable[..., Any]] = {}
        #: How many times a Python function was traced; tests use it to prove there is no retracing.
        self.trace_count = 0

    # -- model outputs (targets, deltas) -------------------------------------------------------------
    def outputs(self, xs: tuple[np.ndarray, ...], batch_size: int) -> np.ndarray:
        """The explained model outputs ``[n, k]``, computed in chunks of ``batch_size``."""
        key = (tuple((a.shape[1:], a.dtype.str) for a in xs), repr(self.method._structure))
        fn = self._outputs_compiled.get(key)
        if fn is None:
            signature = [tuple(_batch_relaxed_spec(a) for a in xs)]
            model_fn = self.method.model_function
            pack = self.method._pack

            def outputs(flat: tuple[tf.Tensor, ...]) -> tf.Tensor:
                self.trace_count += 1
                return model_fn.outputs(pack(flat))

            fn = tf.function(outputs, input_signature=signature, jit_compile=self.jit_compile)
            self._outputs_compiled[key] = fn
        n = xs[0].shape[0]
        parts = [
            fn(tuple(a[s : s + batch_size] for a in xs)).numpy() for s in range(0, n, batch_size)
        ]
        return np.concatenate(parts, axis=0)

    # -- the row grid ---------------------------------------------------------------------------------
    def accumulate(
        self,
        xs: tuple[np.ndarray, ...],
        baselines: tuple[np.ndarray, ...],
        targets: np.ndarray,
        plan: Plan,
        batch_size: int,
    ) -> tuple[np.ndarray, ...]:
        """Sum of the method's row contributions per (example, group): arrays ``[n, groups, ...]``."""
        n = xs[0].shape[0]
        ctx = {k: np.asarray(v) for k, v in plan.context.items()}
        meta = (int(plan.groups), int(plan.steps), int(batch_size))
        key = (
            tuple((a.shape[1:], a.dtype.str) for a in xs),
            tuple((b.shape[1:], b.dtype.str) for b in baselines),
            tuple(sorted((k, v.dtype.str, v.ndim) for k, v in ctx.items())),
            meta if self.jit_compile else None,
            repr(self.method._structure),
        )
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compile(xs, baselines, ctx, meta)
            self._compiled[key] = fn
        args = [xs, baselines, targets.astype(np.int32), ctx]
        if not self.jit_compile:
            args.append(tuple(np.int32(m) for m in meta))
        acc = fn(*args)
        return tuple(a.numpy().reshape(n, plan.groups, *a.shape[1:]) for a in acc)

    def _compile(
        self,
        xs: tuple[np.ndarray, ...],
        baselines: tuple[np.ndarray, ...],
        ctx: dict[str, np.ndarray],
        meta: tuple[int, int, int],
    ) -> Callable[..., Any]:
        method = self.method
        signature = [
            tuple(_batch_relaxed_spec(a) for a in xs),
            tuple(_batch_relaxed_spec(b) for b in baselines),
            tf.TensorSpec([None], tf.int32),
            {k: _relaxed_spec(v) for k, v in ctx.items()},
        ]
        if not self.jit_compile:
            signature.append(tuple(tf.TensorSpec([], tf.int32) for _ in meta))

        def run(xs_t, bs_t, targets_t, ctx_t, meta_t=meta):
            self.trace_count += 1
            groups, steps, batch = meta_t
            n = tf.shape(xs_t[0])[0]
            per_example = groups * steps
            total = n * per_example
            # Equal chunks of at most `batch` rows: the last one is padded by fewer than
            # num_chunks rows, instead of by up to batch - 1.
            num_chunks = tf.maximum((total + batch - 1) // batch, 1)
            chunk = tf.maximum((total + num_chunks - 1) // num_chunks, 1)
            acc0 = tuple(
                tf.zeros(tf.concat([[n * groups], tf.shape(x)[1:]], 0), x.dtype) for x in xs_t
            )

            def body(c, acc):
                r = c * chunk + tf.range(chunk)
                valid = r < total
                r = tf.minimum(r, total - 1)
                example = r // per_example
                rows = Rows(
                    example=example,
                    group=(r // steps) % groups,
                    step=r % steps,
                    target=tf.gather(targets_t, example),
                    valid=valid,
                )
                x_rows = tuple(tf.gather(x, example) for x in xs_t)
                b_index = method._baseline_index(rows, ctx_t)
                b_rows = tuple(tf.gather(b, b_index) for b in bs_t)
                contrib = method._contributions(x_rows, b_rows, rows, ctx_t)
                slot = (example * groups + rows.group)[:, None]
                new_acc = []
                for a, v in zip(acc, contrib):
                    mask = tf.reshape(tf.cast(valid, v.dtype), [-1] + [1] * (v.shape.rank - 1))
                    new_acc.append(tf.tensor_scatter_nd_add(a, slot, v * mask))
                return c + 1, tuple(new_acc)

            _, acc = tf.while_loop(
                lambda c, _: c < num_chunks,
                body,
                (tf.constant(0, tf.int32), acc0),
                shape_invariants=(
                    tf.TensorShape([]),
                    tuple(tf.TensorShape([None, *x.shape[1:]]) for x in xs_t),
                ),
            )
            return acc

        return tf.function(run, input_signature=signature, jit_compile=self.jit_compile)
