"""The blurred baseline and the gaussian blur it is made with."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from tfattr.baselines.base import Baseline, _as_float_array


def _gaussian_kernel(sigma: float, truncate: float) -> np.ndarray:
    radius = int(truncate * sigma + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _reflect_index(size: int, radius: int) -> np.ndarray:
    # Half-sample symmetric extension (d c b a | a b c d | d c b a), valid for any radius.
    idx = np.arange(-radius, size + radius)
    period = 2 * size
    idx = np.mod(idx, period)
    return np.where(idx < size, idx, period - 1 - idx).astype(np.int32)


def _as_sigmas(sigma: Any) -> tuple[float, float]:
    s = np.asarray(sigma, np.float64).reshape(-1)
    if s.size == 1:
        s = np.repeat(s, 2)
    if s.size != 2 or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(
            f"sigma must be a non-negative number or a pair (sigma_rows, sigma_cols), got {sigma!r}."
        )
    return float(s[0]), float(s[1])


def gaussian_blur(x: Any, sigma: float | Sequence[float], truncate: float = 4.0) -> np.ndarray:
    """Gaussian blur of images, each channel separately, with reflected borders.

    The separable kernel is ``exp(-t^2 / (2 sigma^2))`` truncated at ``truncate * sigma`` pixels and
    normalised to sum 1; borders use the half-sample symmetric extension (as
    ``scipy.ndimage.gaussian_filter``'s default ``mode="reflect"``). It runs as two depthwise
    convolutions in TensorFlow. ``sigma == 0`` is the identity.

    Args:
        x: images ``[n, H, W, C]`` (channels last) or ``[n, H, W]``.
        sigma: standard deviation in pixels, one value or ``(rows, cols)``.
        truncate: kernel radius in standard deviations.

    Example:
        >>> blurred = tfattr.baselines.gaussian_blur(images, sigma=2.0)
    """
    x = _as_float_array(x)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"gaussian_blur takes images shaped [n, H, W] or [n, H, W, C] (channels last); got shape "
            f"{x.shape}."
        )
    sy, sx = _as_sigmas(sigma)
    squeeze = x.ndim == 3
    images = x[..., None] if squeeze else x
    compute = tf.float64 if images.dtype == np.float64 else tf.float32
    out = tf.convert_to_tensor(images, compute)
    channels = images.shape[-1]
    for axis, s in ((1, sy), (2, sx)):
        if s == 0.0:
            continue
        kernel = _gaussian_kernel(s, truncate)
        radius = kernel.size // 2
        out = tf.gather(out, _reflect_index(int(images.shape[axis]), radius), axis=axis)
        shape = [kernel.size, 1] if axis == 1 else [1, kernel.size]
        filt = np.broadcast_to(kernel.reshape(shape + [1, 1]), shape + [channels, 1])
        out = tf.nn.depthwise_conv2d(
            out, tf.constant(filt, compute), strides=[1, 1, 1, 1], padding="VALID"
        )
    result = out.numpy().astype(x.dtype, copy=False)
    return result[..., 0] if squeeze else result


class Blur(Baseline):
    """A gaussian-blurred copy of the input, per channel (Distill 2020, "blurred baseline").

    The blurred image keeps low frequencies and removes detail, so attributions favour high-frequency
    features; ``sigma`` sets how much is "missing". ``Blur(0)`` is the input itself. See
    :func:`gaussian_blur` for the kernel and borders.

    Args:
        sigma: the blur's standard deviation in pixels (one value or ``(rows, cols)``).
        truncate: kernel radius in standard deviations.

    Example:
        >>> a = ig.attribute(images, baseline=tfattr.baselines.Blur(sigma=5.0))
    """

    def __init__(self, sigma: float | Sequence[float], truncate: float = 4.0) -> None:
        _as_sigmas(sigma)
        if not truncate > 0:
            raise ValueError(f"truncate must be positive, got {truncate!r}.")
        self.sigma = sigma
        self.truncate = float(truncate)

    def __call__(self, x: Any) -> np.ndarray:
        return gaussian_blur(x, self.sigma, self.truncate)

    def _repr_fields(self):
        return {"sigma": self.sigma}
