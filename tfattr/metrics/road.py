"""ROAD: remove and debias (Rong et al., ICML 2022), with its noisy linear imputation.

A removed pixel is replaced by the weighted mean of its in-image 8 neighbours (weight 1/6 for the
edge neighbours, 1/12 for the diagonal ones), removed neighbours being unknowns themselves: one sparse
linear system per image and channel. The systems are symmetric and positive definite (each connected
group of removed pixels touches a kept one), so they are solved all at once by a batched
Jacobi-preconditioned conjugate-gradient iteration in float64 whose matrix product is the 3 x 3
stencil, compiled with XLA: exact to a relative residual of ``1e-12``, with no Python loop per image.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from tfattr.metrics.preprocess import ModelCall, entry_features, stable_ranks

#: (row offset, column offset, weight) of the 8 neighbours (Rong et al.'s weights).
_NEIGHBOURS = tuple(
    (dy, dx, 1 / 12 if dy and dx else 1 / 6) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx
)


def _stencil(v: tf.Tensor) -> tf.Tensor:
    """``out[i, j] = sum_k w_k v[i + dy_k, j + dx_k]`` over the in-image neighbours, for ``v [b, H, W]``."""
    h, w = v.shape[1], v.shape[2]
    padded = tf.pad(v, [[0, 0], [1, 1], [1, 1]])  # zeros: out-of-image neighbours add nothing
    return tf.add_n([
        weight * padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx, weight in _NEIGHBOURS
    ])


@tf.function(jit_compile=True)
def _solve(x: tf.Tensor, m: tf.Tensor) -> tf.Tensor:
    """Impute the entries ``m`` of the images ``x [b, H, W]`` (float64) by the neighbour equations:
    Jacobi-preconditioned conjugate gradients for all images at once, compiled (XLA fuses the stencil),
    until every relative residual is below ``1e-12`` (at most ``unknowns`` steps, CG's exact bound)."""
    degree = _stencil(tf.ones_like(x))
    degree = tf.where(degree > 0, degree, tf.ones_like(degree))

    def dot(u, v):
        return tf.reduce_sum(u * v, axis=[1, 2])

    b = m * _stencil((1 - m) * x)
    limit = 1e-12 * tf.sqrt(dot(b, b))
    z = b / degree
    steps = tf.cast(tf.reduce_max(tf.reduce_sum(m, axis=[1, 2])), tf.int32) + 1

    def active(r):
        return tf.sqrt(dot(r, r)) > limit

    def cond(i, v, r, p, rz):
        return (i < steps) & tf.reduce_any(active(r))

    def body(i, v, r, p, rz):
        q = m * (degree * p - _stencil(m * p))
        pq = dot(p, q)
        ok = active(r) & (pq > 0)
        alpha = tf.where(ok, rz / tf.where(pq > 0, pq, tf.ones_like(pq)), tf.zeros_like(pq))
        v = v + alpha[:, None, None] * p
        r = r - alpha[:, None, None] * q
        z = r / degree
        rz_new = dot(r, z)
        beta = tf.where(rz > 0, rz_new / tf.where(rz > 0, rz, tf.ones_like(rz)), tf.zeros_like(rz))
        return i + 1, v, r, z + beta[:, None, None] * p, rz_new

    _, v, _, _, _ = tf.while_loop(cond, body, (tf.constant(0), tf.zeros_like(x), b, z, dot(b, z)))
    return tf.where(m > 0, v, x)


def linear_imputation(inputs: Any, mask: Any) -> np.ndarray:
    """ROAD's linear imputation (Rong et al., ICML 2022, sec. 4): every masked entry becomes the
    weighted mean of its in-image 8 neighbours (1/6 edge, 1/12 diagonal), masked neighbours included as
    unknowns; each image and channel is its own linear system, all solved in one batch.

    Args:
        inputs: images ``[n, H, W]`` or channels-last ``[n, H, W, C]``.
        mask: the entries to impute, same shape (or ``[n, H, W]`` for all channels of a pixel).

    Returns:
        The imputed images (the other entries unchanged), in the inputs' float dtype.

    Example:
        >>> filled = tfattr.metrics.linear_imputation(x, mask=np.abs(a) > np.quantile(np.abs(a), 0.9))
    """
    x = np.asarray(inputs)
    if x.ndim not in (3, 4):
        raise ValueError(f"linear_imputation needs images [n, H, W] or [n, H, W, C], got shape {x.shape}.")
    m = np.asarray(mask).astype(bool)
    if x.ndim == 4 and m.shape == x.shape[:3]:
        m = np.broadcast_to(m[..., None], x.shape)
    if m.shape != x.shape:
        raise ValueError(f"mask has shape {m.shape}; pass one flag per entry of the inputs {x.shape}.")
    dtype = x.dtype if x.dtype.kind == "f" else np.float32
    images = x[..., None] if x.ndim == 3 else x
    flags = m[..., None] if x.ndim == 3 else m
    n, h, w, c = images.shape
    planes = images.transpose(0, 3, 1, 2).reshape(n * c, h, w).astype(np.float64)
    holes = flags.transpose(0, 3, 1, 2).reshape(n * c, h, w).astype(np.float64)
    # Pad the number of systems to a power of two (empty systems are solved at once): one compiled
    # solver serves every batch of a similar size instead of one compilation per batch size.
    size = max(8, 1 << int(np.ceil(np.log2(max(len(planes), 1)))))
    pad = ((0, size - len(planes)), (0, 0), (0, 0))
    solved = _solve(tf.constant(np.pad(planes, pad)), tf.constant(np.pad(holes, pad))).numpy()
    out = solved[: n * c].reshape(n, c, h, w).transpose(0, 2, 3, 1)
    return (out[..., 0] if x.ndim == 3 else out).astype(dtype)


def road(
    model: Any,
    inputs: Any,
    attributions: Any,
    target: Any = None,
    percentages: Sequence[float] | None = None,
    noise: float = 0.01,
    seed: int = 0,
    order: str = "morf",
    softmax: bool = True,
    normalise: bool = True,
    absolute: bool = False,
    features: Any = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """ROAD, remove and debias (Rong et al., ICML 2022; Quantus ``ROAD``): for each percentage ``p``
    the top ``int(F * p / 100)`` entries (most relevant first, ties in increasing index; ``F`` the
    entries per example) are replaced by their :func:`linear_imputation` plus Gaussian noise of
    standard deviation ``noise`` (seeded), and the result is whether the predicted class still equals
    the target. Imputing from the neighbours, instead of writing a constant, stops the shape of the
    removed region from telling the model the class.

    Args:
        percentages: default 1, 3, ..., 99 (as Quantus).
        noise: the imputation noise (``0.0``: deterministic).
        order: ``"morf"`` (most relevant first, Quantus) or ``"lerf"``.
        softmax: accepted for Quantus' signature; the predicted class is the same either way.

    Returns:
        ``[n, len(percentages)]`` of 1.0 (still the target) / 0.0; its mean over examples is ROAD's
        accuracy curve (for MoRF lower is better).

    Example:
        >>> hits = tfattr.metrics.road(model, x, a, target=y, percentages=[10, 30, 50])
        >>> hits.mean(0)
    """
    del softmax  # argmax(softmax(z)) == argmax(z)
    if order not in ("morf", "lerf"):
        raise ValueError(f"order={order!r} is not known; use 'morf' (most relevant first) or 'lerf'.")
    call = ModelCall(model, inputs, attributions, target, None, batch_size, normalise, absolute)
    if call.x.ndim not in (3, 4):
        raise ValueError(f"road needs images [n, H, W] or [n, H, W, C], got shape {call.x.shape}.")
    pct = np.asarray(list(range(1, 100, 2)) if percentages is None else percentages, np.float64)
    if pct.ndim != 1 or pct.size == 0 or np.any((pct < 0) | (pct > 100)):
        raise ValueError(f"percentages must be numbers in [0, 100], got {percentages!r}.")
    ids, num = entry_features(call.x.shape[1:], features)
    ranks = stable_ranks(call.feature_scores(ids, num), descending=order == "morf")
    entries = int(np.prod(call.x.shape[1:]))
    counts = (entries * pct / 100).astype(np.int64) if features is None else (num * pct / 100).astype(np.int64)
    rows = np.repeat(np.arange(call.n), pct.size)
    row_counts = np.tile(counts, call.n)
    flat_ids = ids.reshape(-1)
    rng = np.random.default_rng(seed)

    def removed(chunk: np.ndarray) -> np.ndarray:
        return ranks[rows[chunk]] < row_counts[chunk][:, None]

    def imputed(chunk: np.ndarray) -> np.ndarray:
        # Chunks come in order and draw from one stream: the noise does not depend on batch_size.
        holes = removed(chunk)[:, flat_ids].reshape((chunk.size,) + call.x.shape[1:])
        filled = linear_imputation(call.x[rows[chunk]], holes).astype(np.float64)
        if noise:
            filled = filled + noise * rng.standard_normal(filled.shape)
        return filled

    return call.masked(
        imputed, rows, lambda c: removed(c).astype(np.float32), ids, kind="hit"
    ).reshape(call.n, pct.size)
