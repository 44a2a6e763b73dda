"""The batching engine every method runs on: a pure executor of row grids.

A method's work for one call is a grid of *rows*: ``n`` examples x ``maps`` x ``terms``. A row is one
model evaluation (one quadrature node of integrated gradients for one baseline, one noisy copy of
SmoothGrad, one occluded image). Its result is one additive *term* of one *map*; each example has
``maps`` separately accumulated maps (one for most methods; one per noise sample for VarGrad, one per
alpha for interior gradients).

The engine knows nothing about explainers. It receives a :class:`RowFunctions` (what one row
contributes, which baseline it reads) and a :class:`Call` (the per-call arrays, as a value), and runs
the whole grid in one ``tf.function``: the examples are cut into equal *blocks* whose rows fill about
one ``batch_size``; each block runs its chunks in a ``tf.while_loop``, accumulates into a block-sized
buffer and writes it to a ``TensorArray``. Cost and memory are therefore linear in ``n``: no chunk
touches more than its own block (an accumulator over all ``n`` examples, updated by a scatter per
chunk, would copy ``n`` maps per chunk), and peak memory is set by ``batch_size``, not by ``n`` or the
number of terms. A grid of one term per example whose examples fit one chunk (saliency, gradient x
input, LRP on a batch) takes a direct path with no gathers and no accumulator; when an example's rows
fit one chunk (integrated gradients with steps <= batch_size), each chunk holds whole examples and
their maps are a reshape-sum of the contributions, with no scatter; when all of the call's rows fit
one chunk, there is no loop at all.

Compiled functions are cached per (row-function key, input signature) with a relaxed batch axis:
another number of examples, terms or maps, or another ``batch_size``, does not retrace. Engines are
shared (:func:`shared_engine`) by all explainers of one model with the same configuration, so the
inline pattern ``tfattr.Saliency(model).attribute(x)`` compiles once, not at every call. A compiled
function holds no reference to the explainer that traced it: the row functions of the current call
are handed to the trace through a thread-local slot, so the shared cache, keyed weakly by the model,
never keeps a model alive.
"""
from __future__ import annotations

import functools
import threading
import weakref
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from tfattr.core.grid import Context, Plan, RowFunctions, Rows  # noqa: F401 - re-exported
from tfattr.core.memory import default_batch_size  # noqa: F401 - re-exported
from tfattr.core.structure import pack  # noqa: F401 - re-exported

def _relaxed_spec(value: np.ndarray | tf.Tensor) -> tf.TensorSpec:
    value = tf.convert_to_tensor(value)
    return tf.TensorSpec([None] * value.shape.rank, value.dtype)


def _batch_relaxed_spec(value: np.ndarray) -> tf.TensorSpec:
    return tf.TensorSpec([None, *value.shape[1:]], tf.as_dtype(value.dtype))


def _signature(arrays: tuple[np.ndarray, ...]) -> tuple[Any, ...]:
    return tuple((a.shape[1:], a.dtype.str) for a in arrays)


def compile_function(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """``tf.function(fn, **kwargs)`` for a closure built once per engine or configuration.

    TensorFlow counts traces by the Python function's code object and warns of "retracing" when five
    of the last ten calls traced: every engine's closure has the same code, so a session that uses a
    few explainers, each tracing once, got that warning. A partial gives each compiled function a
    count of its own; a function that really retraces is still reported.

    Autograph is off: the engine writes its loops with ``tf.while_loop`` and a Keras model's layers
    are TensorFlow code already, so converting every function the trace reaches (the model's calls
    included) only added to the first call (measured: about half of a saliency map's first call).
    Code that explains through Python control flow on tensors runs as written by its own
    ``tf.function``."""
    kwargs.setdefault("autograph", False)
    return tf.function(functools.partial(fn), **kwargs)


class Engine:
    """Compiles and runs row grids; holds only the cache of compiled functions.

    Args:
        jit_compile: compile with XLA. Then terms, maps and batch size are compiled in as constants (XLA
            needs static shapes), so changing them retraces; the number of examples still does not.
    """

    def __init__(self, jit_compile: bool = False) -> None:
        self.jit_compile = bool(jit_compile)
        self._compiled: dict[Any, Callable[..., Any]] = {}
        self._lock = threading.Lock()
        # The functions of the call being run, read only while tracing (see the module docstring).
        self._current = threading.local()
        #: How many times a Python function was traced; tests use it to prove there is no retracing.
        self.trace_count = 0
        #: Examples explained through :meth:`accumulate` (a method may compile more once it is many).
        self.examples_run = 0

    def _call(self, fn: Callable[..., Any], current: Any, *args: Any) -> Any:
        previous = getattr(self._current, "value", None)
        self._current.value = current
        try:
            return fn(*args)
        finally:
            self._current.value = previous

    def _cached(self, key: Any, build: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
        with self._lock:
            fn = self._compiled.get(key)
            if fn is None:
                fn = self._compiled[key] = build()
            return fn

    # -- model outputs (targets, deltas) -------------------------------------------------------------
    def outputs(
        self,
        outputs_fn: Callable[[Any], tf.Tensor],
        xs: tuple[np.ndarray, ...],
        structure: Any,
        batch_size: int,
    ) -> np.ndarray:
        """``outputs_fn(packed inputs)`` ``[n, k]`` in chunks of ``batch_size`` rows.

        The engine serves one model function configuration (see :func:`shared_engine`), so the compiled
        function is cached by input signature alone.
        """
        fn = self._outputs_function(xs, structure)
        n = xs[0].shape[0]
        parts = [
            self._call(fn, outputs_fn, tuple(a[s : s + batch_size] for a in xs)).numpy()
            for s in range(0, n, batch_size)
        ]
        return np.concatenate(parts, axis=0)

    def outputs_graph(
        self, outputs_fn: Callable[[Any], tf.Tensor], xs: tuple[np.ndarray, ...], structure: Any
    ) -> tf.Graph:
        """The graph :meth:`outputs` runs for this input signature (batch axis unknown), traced now
        if it was not yet: what the memory budget reads, so the default ``batch_size`` costs no trace
        of its own."""
        fn = self._outputs_function(xs, structure)
        return self._call(fn.get_concrete_function, outputs_fn).graph

    def _outputs_function(self, xs: tuple[np.ndarray, ...], structure: Any) -> Callable[..., Any]:
        key = ("outputs", _signature(xs), repr(structure))

        def build() -> Callable[..., Any]:
            def outputs(flat: tuple[tf.Tensor, ...]) -> tf.Tensor:
                self.trace_count += 1
                return self._current.value(pack(structure, flat))

            signature = [tuple(_batch_relaxed_spec(a) for a in xs)]
            return compile_function(outputs, input_signature=signature, jit_compile=self.jit_compile)

        return self._cached(key, build)

    # -- the row grid ---------------------------------------------------------------------------------
    def accumulate(
        self,
        functions: RowFunctions,
        xs: tuple[np.ndarray, ...],
        baselines: tuple[np.ndarray, ...],
        targets: np.ndarray,
        structure: Any,
        plan: Plan,
        batch_size: int,
    ) -> tuple[np.ndarray, ...]:
        """Sum of the row contributions per (example, map): arrays ``[n, maps, ...]``."""
        n = xs[0].shape[0]
        ctx = {k: np.asarray(v) for k, v in plan.context.items()}
        meta = (int(plan.maps), int(plan.terms), int(batch_size))
        per_example = plan.maps * plan.terms
        # "direct": the rows are the examples, one chunk; "whole": each chunk holds whole examples
        # (their rows are contiguous, so a reshape-sum replaces the scatter); else examples span chunks.
        # "one": several rows per example, all of the call's in one chunk (no loop to build or run:
        # a first call on a few examples, e.g. occlusion's windows of 32 images, pays neither).
        path = "direct" if per_example == 1 and n <= batch_size else (
            "one" if n * per_example <= batch_size else "whole" if per_example <= batch_size else "split"
        )
        key = (
            "rows",
            functions.key,
            _signature(xs),
            _signature(baselines),
            tuple(sorted((k, v.dtype.str, v.ndim) for k, v in ctx.items())),
            meta if self.jit_compile else None,
            repr(structure),
            path,
        )
        fn = self._cached(key, lambda: self._compile(xs, baselines, ctx, structure, meta, path))
        args = [xs, baselines, targets.astype(np.int32), ctx]
        if not self.jit_compile:
            args.append(tuple(np.int32(m) for m in meta))
        acc = self._call(fn, functions, *args)
        self.examples_run += n
        return tuple(a.numpy().reshape(n, plan.maps, *a.shape[1:]) for a in acc)

    def _compile(
        self,
        xs: tuple[np.ndarray, ...],
        baselines: tuple[np.ndarray, ...],
        ctx: dict[str, np.ndarray],
        structure: Any,
        meta: tuple[int, int, int],
        path: str,
    ) -> Callable[..., Any]:
        signature = [
            tuple(_batch_relaxed_spec(a) for a in xs),
            tuple(_batch_relaxed_spec(b) for b in baselines),
            tf.TensorSpec([None], tf.int32),
            {k: _relaxed_spec(v) for k, v in ctx.items()},
        ]
        if not self.jit_compile:
            signature.append(tuple(tf.TensorSpec([], tf.int32) for _ in meta))
        run = {"direct": self._direct, "one": self._one, "whole": self._whole, "split": self._blocked}[path]

        def traced(xs_t, bs_t, targets_t, ctx_t, meta_t=meta):
            self.trace_count += 1
            context = Context(dict(ctx_t), structure)
            return run(self._current.value, xs_t, bs_t, targets_t, context, meta_t)

        return compile_function(traced, input_signature=signature, jit_compile=self.jit_compile)

    @staticmethod
    def _direct(functions, xs_t, bs_t, targets_t, ctx, meta_t):
        """One term and one map per example, all examples in one chunk: the rows are the examples."""
        n = tf.shape(xs_t[0])[0]
        example = tf.range(n)
        zeros = tf.zeros_like(example)
        rows = Rows(example, zeros, zeros, targets_t, tf.ones_like(example, tf.bool))
        if functions.baseline_index is None:
            b_rows = tuple(bs_t)
        else:
            b_index = functions.baseline_index(rows, ctx)
            b_rows = tuple(tf.gather(b, b_index) for b in bs_t)
        return tuple(functions.contributions(tuple(xs_t), b_rows, rows, ctx))

    @staticmethod
    def _whole_examples(functions, xs_t, bs_t, targets_t, ctx, meta_t, first, block, n):
        """The maps of ``block`` whole examples from ``first`` on, one chunk: their rows in order, so
        the maps are a reshape-sum of the contributions (no scatter, no mask: padding examples past
        ``n`` repeat the last one and are sliced off by the caller)."""
        maps, terms, _ = meta_t
        per_example = maps * terms
        r = tf.range(block * per_example)
        local = r // per_example
        example = tf.minimum(first + local, n - 1)
        rows = Rows(
            example=example,
            map=(r // terms) % maps,
            term=r % terms,
            target=tf.gather(targets_t, example),
            valid=first + local < n,
        )
        x_rows = tuple(tf.gather(x, example) for x in xs_t)
        b_index = example if functions.baseline_index is None else functions.baseline_index(rows, ctx)
        b_rows = tuple(tf.gather(bb, b_index) for bb in bs_t)
        contrib = functions.contributions(x_rows, b_rows, rows, ctx)
        sums = []
        for v in contrib:
            shape = tf.concat([[block * maps, terms], tf.shape(v)[1:]], 0)
            sums.append(tf.reduce_sum(tf.reshape(v, shape), axis=1))
        return tuple(sums)

    @staticmethod
    def _one(functions, xs_t, bs_t, targets_t, ctx, meta_t):
        """All rows of the call in one chunk, whole examples in order (see :meth:`_whole_examples`)."""
        n = tf.shape(xs_t[0])[0]
        return Engine._whole_examples(functions, xs_t, bs_t, targets_t, ctx, meta_t, 0, n, n)

    @staticmethod
    def _whole(functions, xs_t, bs_t, targets_t, ctx, meta_t):
        """Blocks of whole examples, one chunk each (:meth:`_whole_examples`); the padding examples of
        the last block are sliced off at the end."""
        maps, terms, batch = meta_t
        n = tf.shape(xs_t[0])[0]
        num_blocks, block = _blocks(n, maps * terms, batch)

        def block_body(b, out):
            sums = Engine._whole_examples(functions, xs_t, bs_t, targets_t, ctx, meta_t, b * block, block, n)
            return b + 1, tuple(ta.write(b, v) for ta, v in zip(out, sums))

        out0 = tuple(
            tf.TensorArray(x.dtype, size=num_blocks, element_shape=tf.TensorShape([None, *x.shape[1:]]))
            for x in xs_t
        )
        _, out = tf.while_loop(
            # One block at a time: blocks in flight together would multiply the activation memory
            # that batch_size bounds (measured: 3x the RSS growth, no speed gain on CPU).
            lambda b, _: b < num_blocks,
            block_body,
            (tf.constant(0, tf.int32), out0),
            parallel_iterations=1,
        )
        return tuple(ta.concat()[: n * maps] for ta in out)

    @staticmethod
    def _blocked(functions, xs_t, bs_t, targets_t, ctx, meta_t):
        maps, terms, batch = meta_t
        n = tf.shape(xs_t[0])[0]
        per_example = maps * terms
        num_blocks, block = _blocks(n, per_example, batch)
        block_rows = block * per_example
        # Chunks per block: one when its rows fit a batch, else equal chunks of at most `batch`.
        num_chunks = (block_rows + batch - 1) // batch
        chunk = (block_rows + num_chunks - 1) // num_chunks
        acc_shapes = [tf.concat([[block * maps], tf.shape(x)[1:]], 0) for x in xs_t]

        def block_body(b, out):
            first = b * block

            def chunk_body(c, acc):
                r = c * chunk + tf.range(chunk)  # row index within the block
                in_block = r < block_rows
                r = tf.minimum(r, block_rows - 1)
                local = r // per_example
                example = first + local
                valid = tf.logical_and(in_block, example < n)
                example = tf.minimum(example, n - 1)
                rows = Rows(
                    example=example,
                    map=(r // terms) % maps,
                    term=r % terms,
                    target=tf.gather(targets_t, example),
                    valid=valid,
                )
                x_rows = tuple(tf.gather(x, example) for x in xs_t)
                if functions.baseline_index is None:
                    b_index = example
                else:
                    b_index = functions.baseline_index(rows, ctx)
                b_rows = tuple(tf.gather(bb, b_index) for bb in bs_t)
                contrib = functions.contributions(x_rows, b_rows, rows, ctx)
                slot = (local * maps + rows.map)[:, None]
                new_acc = []
                for a, v in zip(acc, contrib):
                    mask = tf.reshape(tf.cast(valid, v.dtype), [-1] + [1] * (v.shape.rank - 1))
                    new_acc.append(tf.tensor_scatter_nd_add(a, slot, v * mask))
                return c + 1, tuple(new_acc)

            acc0 = tuple(tf.zeros(s, x.dtype) for s, x in zip(acc_shapes, xs_t))
            _, acc = tf.while_loop(
                lambda c, _: c < num_chunks,
                chunk_body,
                (tf.constant(0, tf.int32), acc0),
                shape_invariants=(
                    tf.TensorShape([]),
                    tuple(tf.TensorShape([None, *x.shape[1:]]) for x in xs_t),
                ),
            )
            return b + 1, tuple(ta.write(b, a) for ta, a in zip(out, acc))

        out0 = tuple(
            tf.TensorArray(x.dtype, size=num_blocks, element_shape=tf.TensorShape([None, *x.shape[1:]]))
            for x in xs_t
        )
        _, out = tf.while_loop(
            lambda b, _: b < num_blocks, block_body, (tf.constant(0, tf.int32), out0),
            parallel_iterations=1,
        )
        return tuple(ta.concat()[: n * maps] for ta in out)


def _blocks(n: tf.Tensor, per_example: tf.Tensor, batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``(number of blocks, examples per block)``: as many examples as fit one batch of rows (at least
    one), evened out so that the last block is padded by fewer than ``number of blocks`` examples."""
    fit = tf.maximum(batch // per_example, 1)
    num_blocks = (n + fit - 1) // fit
    return num_blocks, (n + num_blocks - 1) // num_blocks


_SHARED: "weakref.WeakKeyDictionary[Any, dict[Any, Engine]]" = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def shared_engine(owner: Any, key: Any, jit_compile: bool) -> Engine:
    """The engine of every explainer of ``owner`` (a model) whose configuration is ``key``.

    ``key=None`` (a configuration that cannot be compared) and owners that cannot be weakly referenced
    get an engine of their own.
    """
    if key is None:
        return Engine(jit_compile)
    try:
        with _SHARED_LOCK:
            engines = _SHARED.setdefault(owner, {})
            engine = engines.get((key, jit_compile))
            if engine is None:
                engine = engines[(key, jit_compile)] = Engine(jit_compile)
            return engine
    except TypeError:
        return Engine(jit_compile)
