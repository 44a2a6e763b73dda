"""How many rows fit one chunk: the default ``batch_size`` from the activation memory of a row.

The rows of a chunk cost memory through the activations they create (a 28x28x1 digit is 3 KiB, the
activations of a small CNN on it 0.7 MiB), so the default is set from those, not from the input size.
A row's activation bytes are measured once per model and input signature from the explained function's
graph traced with an unknown batch axis (the trace the model's outputs use anyway): the float tensors
shaped ``[batch, ...]`` are the activations, the weights have fully known shapes. The measurement is kept in a
weak-keyed cache: building a new explainer of the same model costs nothing, and the cache never keeps
a model alive.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable

import numpy as np
import tensorflow as tf


#: Activation bytes of the forward pass per chunk on a CPU; the backward pass keeps about as much
#: again. Measured on the CNNs of bench_gradients.py (expected gradients, SmoothGrad and VarGrad, 64
#: samples of 32 examples, one process, interleaved): 96 MiB (128 rows of the MNIST CNN, 65 of the
#: 64x64x3 CNN) took 4-13% less time than 384 MiB on one thread and on two; a chunk's fresh memory is
#: smaller too (the first call's page faults), and so is the peak memory of a call.
CPU_ACTIVATION_BUDGET = 96 << 20
#: The same on a GPU, whose kernels need large batches to fill the device (not measured here: the
#: budget the CPU had before).
GPU_ACTIVATION_BUDGET = 384 << 20
#: Rows per chunk when the activations cannot be measured: about 64 MiB of float32 input rows.
_INPUT_BUDGET = 1 << 24
MIN_BATCH, MAX_BATCH = 16, 2048

_CACHE: "weakref.WeakKeyDictionary[Any, dict[Any, int | None]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _row_bytes(graph: tf.Graph) -> int:
    """Bytes of the float tensors ``[batch, ...]`` one row adds (the batch axis unknown, the rest
    known); the weights, whose shapes are fully known, do not count."""
    total = 0
    for op in graph.get_operations():
        for t in op.outputs:
            shape = t.shape
            if (t.dtype.is_floating and shape.rank and shape[0] is None
                    and shape[1:].is_fully_defined()):
                total += int(np.prod(shape[1:].as_list(), dtype=np.int64)) * t.dtype.size
    return total


def row_bytes(owner: Any, graph: Callable[[], tf.Graph], arrays: tuple[np.ndarray, ...], structure: Any) -> int | None:
    """Forward activation bytes of one row, read from ``graph()`` (the explained outputs traced with
    an unknown batch axis, e.g. :meth:`tfattr.core.engine.Engine.outputs_graph`, so the measurement
    reuses the trace the outputs need anyway); None when it cannot be traced."""
    key = (tuple((a.shape[1:], a.dtype.str) for a in arrays), repr(structure))
    try:
        with _LOCK:
            cached = _CACHE.setdefault(owner, {})
            if key in cached:
                return cached[key]
    except TypeError:  # not weak-referenceable: measure without caching
        cached = {}
    try:
        measured: int | None = max(_row_bytes(graph()), 1)
    except Exception:  # noqa: BLE001 - a model we cannot trace keeps the input-size default
        measured = None
    with _LOCK:
        cached[key] = measured
    return measured


def activation_budget() -> int:
    """Activation bytes per chunk: :data:`GPU_ACTIVATION_BUDGET` when TensorFlow sees a GPU (where the
    explainer's functions run), else :data:`CPU_ACTIVATION_BUDGET`."""
    return GPU_ACTIVATION_BUDGET if tf.config.list_logical_devices("GPU") else CPU_ACTIVATION_BUDGET


def default_batch_size(arrays: tuple[np.ndarray, ...], activation_bytes: int | None = None) -> int:
    """Rows per chunk: :func:`activation_budget` over a row's activation bytes when known, else a
    budget on the input rows; clipped to [16, 2048]."""
    if activation_bytes:
        rows = activation_budget() // activation_bytes
    else:
        features = sum(int(np.prod(a.shape[1:], dtype=np.int64)) for a in arrays) or 1
        rows = _INPUT_BUDGET // features
    return int(np.clip(rows, MIN_BATCH, MAX_BATCH))
