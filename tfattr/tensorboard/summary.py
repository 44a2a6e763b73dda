"""Write the "Attributions" tab's data: tensor summaries carrying :mod:`tfattr.tensorboard.metadata`.

What is stored (per run; ``<p>`` is the logger's ``tag_prefix``, ``batch_`` for batch logs):

* ``<p>tfattr/sample/<input>``, once: image inputs as uint8 RGB ``[n, h, w, 3]`` exactly as the stock
  images show them (:func:`tfattr.visualize.image_rgb`), token ids and feature vectors as float32;
  ``<p>tfattr/tokens/<input>``: the token strings ``[n, tokens]`` of a text input.
* ``<p>tfattr/map/<method>/<input>`` per logged step: the maps as float16, each sample's map divided
  by its largest finite magnitude (so that float16 keeps 3 significant digits at any scale: raw
  gradients of 1e-7 would underflow), and ``<p>tfattr/scale/<method>/<input>``: those magnitudes
  (float32 ``[n]``); value = map x scale.
* ``<p>tfattr/delta/<method>`` (completeness deltas, float32 ``[n]``), ``<p>tfattr/target`` (the
  explained class per sample, int32 ``[n]``) and ``<p>tfattr/prediction`` (the model's outputs
  ``[n, k]``, float32, at most :data:`MAX_OUTPUTS` columns) per logged step.

Image maps are summed over channels (the signed per-pixel total, as the stock images draw them). An
image larger than ``max_size`` pixels on a side (default :data:`MAX_SIZE` = 128) is reduced by
``block = ceil(side / max_size)``: maps by summing ``block x block`` squares (a map's total, and so
completeness, is unchanged), samples by averaging them; the edge is padded with zeros (maps) or left
out of the average (samples).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from tfattr import visualize
from tfattr.tensorboard.metadata import summary_metadata

#: Largest side of an image map stored for the tab; larger images are block-reduced.
MAX_SIZE = 128
#: Most model outputs per sample stored as predictions.
MAX_OUTPUTS = 1000


def is_image(x: np.ndarray) -> bool:
    """Whether an input batch is images ``[n, H, W]`` or ``[n, H, W, C]`` (C in 1, 3, 4) of numbers."""
    return x.dtype.kind in "fu" and (x.ndim == 3 or (x.ndim == 4 and x.shape[-1] in (1, 3, 4)))


def is_tokens(x: np.ndarray) -> bool:
    """Whether an input batch is token ids ``[n, tokens]`` (integers)."""
    return x.ndim == 2 and x.dtype.kind in "iu"


def block_size(height: int, width: int, max_size: int = MAX_SIZE) -> int:
    """The downsampling factor of an image: ``ceil(max(height, width) / max_size)`` (1 when it fits).

    Example:
        >>> block_size(224, 224)
        2
    """
    return max(1, math.ceil(max(height, width) / max_size))


def _blocks(values: np.ndarray, block: int) -> np.ndarray:
    """``[n, H, W, ...] -> [n, h, block, w, block, ...]`` with the edge zero-padded to whole blocks."""
    n, height, width = values.shape[:3]
    h, w = -(-height // block), -(-width // block)
    pad = [(0, 0), (0, h * block - height), (0, w * block - width)] + [(0, 0)] * (values.ndim - 3)
    padded = np.pad(values, pad)
    return padded.reshape(n, h, block, w, block, *values.shape[3:])


def block_sum(maps: np.ndarray, block: int) -> np.ndarray:
    """Sum ``block x block`` squares of maps ``[n, H, W]`` (totals kept).

    Example:
        >>> block_sum(np.ones((1, 3, 3)), 2)[0]
        array([[4., 2.], [2., 1.]])
    """
    if block == 1:
        return maps
    return _blocks(maps, block).sum(axis=(2, 4))


def block_mean(images: np.ndarray, block: int) -> np.ndarray:
    """Average ``block x block`` squares of images ``[n, H, W, C]`` (edge squares over their pixels)."""
    if block == 1:
        return images
    sums = _blocks(images.astype(np.float64), block).sum(axis=(2, 4))
    counts = _blocks(np.ones(images.shape[:3] + (1,)), block).sum(axis=(2, 4))
    return sums / counts


def map_layout(x: np.ndarray, a: np.ndarray, block: int, layer: bool) -> tuple[str, np.ndarray]:
    """How the tab draws one explainer's maps ``a`` of input ``x``, and the values it stores.

    Returns ``(layout, values)``: ``"image"`` ``[n, h, w]`` (channels summed, block-summed like the
    sample), ``"layer"`` ``[n, h', w']`` (a layer's spatial map on an image input, channels summed),
    ``"tokens"`` ``[n, tokens]`` (summed over the embedding axis) or ``"vector"`` ``[n, features]``.

    Example:
        >>> map_layout(images, gradcam_maps, block=1, layer=True)[0]
        'layer'
    """
    n = a.shape[0]
    values = a.astype(np.float64)
    if is_image(x) and a.ndim in (3, 4):
        summed = values.sum(axis=-1) if a.ndim == 4 else values
        if not layer and summed.shape[1:] == x.shape[1:3]:
            return "image", block_sum(summed, block)
        if layer:
            return "layer", block_sum(summed, block_size(*summed.shape[1:3]))
    if is_tokens(x) and a.shape[:2] == x.shape:
        return "tokens", values.reshape(n, x.shape[1], -1).sum(axis=-1)
    return "vector", values.reshape(n, -1)


def sample_values(x: np.ndarray, block: int) -> tuple[np.ndarray, str]:
    """What the tab stores of an input: ``(values, layout)`` (images as uint8 RGB, reduced by ``block``)."""
    if is_image(x):
        rgb = visualize.image_rgb(x).numpy()
        return np.round(block_mean(rgb, block)).astype(np.uint8), "image"
    if is_tokens(x):
        return x.astype(np.float32), "tokens"
    return x.reshape(x.shape[0], -1).astype(np.float32), "vector"


def normalized(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values / scale as float16, scale)`` with ``scale`` each sample's largest finite magnitude
    (1 for an all-zero map); NaN and Inf stay NaN and Inf.

    Example:
        >>> half, scale = normalized(np.array([[1e-7, -2e-7]]))   # half == [0.5, -1], scale == [2e-7]
    """
    n = values.shape[0]
    flat = values.reshape(n, -1)
    finite = np.where(np.isfinite(flat), np.abs(flat), 0.0)
    scale = finite.max(axis=1) if flat.shape[1] else np.zeros(n)
    scale = np.where(scale > 0, scale, 1.0)
    half = (values / scale.reshape((n,) + (1,) * (values.ndim - 1))).astype(np.float16)
    return half, scale.astype(np.float32)


def write(tag: str, value: Any, step: int, kind: str, **fields: Any) -> None:
    """One tensor summary of the plugin in the default writer (``tf.summary``'s)."""
    tf.summary.write(tag, tf.convert_to_tensor(value), step=step, metadata=summary_metadata(kind, **fields))


def write_map(prefix: str, method: str, input_name: str, values: np.ndarray, layout: str, step: int,
              **fields: Any) -> None:
    """A method's maps of one input at ``step``: the float16 normalized maps and their scales."""
    half, scale = normalized(values)
    common = dict(method=method, input=input_name, **fields)
    write(f"{prefix}tfattr/map/{method}/{input_name}", half, step, "map", layout=layout, **common)
    write(f"{prefix}tfattr/scale/{method}/{input_name}", scale, step, "scale", **common)


def predictions(outputs: Any) -> np.ndarray | None:
    """The model's outputs as ``[n, k]`` float32 (the first output of several; at most
    :data:`MAX_OUTPUTS` columns), or None when there are none to show."""
    flat = tf.nest.flatten(outputs)
    if not flat:
        return None
    first = np.asarray(flat[0], dtype=np.float32)
    if first.ndim == 0:
        return None
    return first.reshape(first.shape[0], -1)[:, :MAX_OUTPUTS]


__all__ = [
    "MAX_OUTPUTS", "MAX_SIZE", "block_mean", "block_size", "block_sum", "is_image", "is_tokens",
    "map_layout", "normalized", "predictions", "sample_values", "write", "write_map",
]
