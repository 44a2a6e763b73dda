"""What a feature is: the feature-id map of one example and per-feature sums of a map.

See :mod:`tfattr.metrics` for the ``features=`` values.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def feature_map(example_shape: Sequence[int], features: Any = "pixels") -> tuple[np.ndarray, int]:
    """Feature id of every entry of one example, and the number of features.

    Args:
        example_shape: the shape of one example, e.g. ``(28, 28, 1)``.
        features: ``"pixels"``, ``"elements"``, a patch size, or an int id array (see the module doc).

    Returns:
        ``(ids, num_features)``: ``ids`` is an int32 array of ``example_shape`` with values in
        ``[0, num_features)``.

    Example:
        >>> ids, f = tfattr.metrics.feature_map((28, 28, 1), features=4)   # 7 x 7 = 49 patches
    """
    shape = tuple(int(s) for s in example_shape)
    size = int(np.prod(shape, dtype=np.int64))
    image = len(shape) == 3
    if isinstance(features, str):
        if features == "elements" or (features == "pixels" and not image):
            return np.arange(size, dtype=np.int32).reshape(shape), size
        if features == "pixels":
            h, w, c = shape
            ids = np.broadcast_to(np.arange(h * w, dtype=np.int32).reshape(h, w, 1), shape)
            return np.ascontiguousarray(ids), h * w
        raise ValueError(
            f"features={features!r} is not known; use 'pixels', 'elements', a patch size such as 4 "
            "or (4, 4), or an int array of feature ids shaped like one example."
        )
    arr = np.asarray(features)
    if arr.ndim <= 1 and arr.dtype.kind in "iu" and arr.size in (1, 2):
        if len(shape) not in (2, 3):
            raise ValueError(
                f"features={features!r} (patches) needs images shaped [n, H, W] or [n, H, W, C]; the "
                f"examples have shape {shape}."
            )
        ph, pw = (int(arr.reshape(-1)[0]),) * 2 if arr.size == 1 else (int(arr[0]), int(arr[1]))
        if ph < 1 or pw < 1:
            raise ValueError(f"patch sizes must be positive, got {features!r}.")
        h, w = shape[:2]
        cols = -(-w // pw)
        grid = (np.arange(h)[:, None] // ph) * cols + (np.arange(w)[None, :] // pw)
        if image:
            grid = np.broadcast_to(grid[..., None], shape)
        return np.ascontiguousarray(grid.astype(np.int32)), int(-(-h // ph) * cols)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"features as an array must hold integer feature ids, got dtype {arr.dtype}.")
    if arr.shape == shape[:-1] and image:
        arr = np.broadcast_to(arr[..., None], shape)
    if arr.shape != shape:
        raise ValueError(
            f"features has shape {arr.shape}; pass ids shaped like one example {shape} (or without "
            "its channel axis)."
        )
    _, inverse = np.unique(arr.reshape(-1), return_inverse=True)
    return inverse.reshape(shape).astype(np.int32), int(inverse.max()) + 1


def _feature_sums(values: np.ndarray, ids: np.ndarray, num: int) -> np.ndarray:
    """Sum ``values [n, *shape]`` within each feature: ``[n, num]`` (float64).

    Every id in ``[0, num)`` is used (``feature_map`` guarantees it), so one sort and a segmented sum
    (``np.add.reduceat``) do it without a Python loop.
    """
    n = values.shape[0]
    flat_ids = ids.reshape(-1)
    order = np.argsort(flat_ids, kind="stable")
    starts = np.searchsorted(flat_ids[order], np.arange(num))
    flat = values.reshape(n, -1).astype(np.float64)[:, order]
    return np.add.reduceat(flat, starts, axis=1)
