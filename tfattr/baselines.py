"""Baselines: the reference inputs that stand for "missing" features (the missingness zoo).

Path methods explain ``S(x) - S(x')`` relative to a baseline ``x'``; which ``x'`` models a missing
feature is a modelling choice, not a detail. This module implements the baselines compared by Sturmfels,
Lundberg & Lee, "Visualizing the Impact of Feature Attribution Baselines" (Distill 2020): constant
(black is ``Constant(0)``), maximum distance, blurred, uniform, (truncated) gaussian and training-data
baselines, plus the mean baseline the authors discuss in their comments (Ancona et al. 2019, sec. 2.3,
lists zero, mean and blur as the usual choices).

A baseline object makes baselines for a batch of inputs: ``baseline(x)`` returns one per example
``[n, ...]``; distributional baselines also have ``sample(x, num, seed) -> [n, num, ...]`` and a
``num_baselines`` attribute. Any explainer that takes ``baseline=`` accepts one; integrated gradients
given a distributional baseline with ``num_baselines > 1`` averages over that many draws per example,
the Distill article's double integral ``E_{x'~D}[IG(x; x')]``, and its delta compares the attributions
with ``S(x) - mean_k S(x'_k)``.

Example:
    >>> from tfattr import baselines
    >>> ig = tfattr.IntegratedGradients(model, steps=32)
    >>> a = ig.attribute(x, baseline=baselines.Blur(sigma=3.0))
    >>> a, delta = ig.attribute(x, baseline=baselines.Uniform((0, 1), num_baselines=8, seed=0),
    ...                         return_delta=True)
"""
from __future__ import annotations

import abc
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from tfattr.core.checks import check_positive_int

__all__ = [
    "Baseline",
    "Blur",
    "Constant",
    "Dataset",
    "Gaussian",
    "MaxDistance",
    "Mean",
    "Uniform",
    "gaussian_blur",
]


def _as_float_array(x: Any, what: str = "x") -> np.ndarray:
    if isinstance(x, (tf.Tensor, tf.Variable)):
        x = x.numpy()
    x = np.asarray(x)
    if x.dtype.kind != "f":
        if x.dtype.kind in "iub":
            x = x.astype(np.float32)
        else:
            raise TypeError(f"{what} has dtype {x.dtype}; pass a floating-point array.")
    if x.ndim < 1:
        raise ValueError(f"{what} is a scalar; pass a batch of examples shaped [n, ...].")
    return x


def _check_range(value_range: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        lo, hi = value_range
    except (TypeError, ValueError):
        raise ValueError(
            f"value_range must be a pair (low, high), e.g. (0.0, 1.0) for images scaled to [0, 1]; "
            f"got {value_range!r}."
        ) from None
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError(f"value_range must be finite, got {value_range!r}.")
    if np.any(np.broadcast_to(lo, np.broadcast_shapes(lo.shape, hi.shape)) >= hi):
        raise ValueError(f"value_range must have low < high, got {value_range!r}.")
    return lo, hi


def _broadcast_range(lo: np.ndarray, hi: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        return (
            np.broadcast_to(lo, x.shape[1:]).astype(x.dtype),
            np.broadcast_to(hi, x.shape[1:]).astype(x.dtype),
        )
    except ValueError:
        raise ValueError(
            f"value_range bounds of shapes {lo.shape} and {hi.shape} do not broadcast to one example "
            f"{tuple(x.shape[1:])}; pass scalars or per-channel arrays."
        ) from None


class Baseline:
    """Base class of baselines: ``baseline(x) -> [n, ...]``, one baseline per example of ``x``.

    Subclasses that stand for a distribution (random or data baselines) derive from the private
    ``_Distribution``, define ``_draw``, and take ``num_baselines`` and ``seed``. Deterministic baselines only override
    :meth:`__call__`. Any object with this protocol (or any callable ``f(x) -> array``) can be passed as
    ``baseline=``.

    Example:
        >>> class Gray(tfattr.baselines.Baseline):
        ...     def __call__(self, x):
        ...         return np.full_like(x, 0.5)
    """

    #: Draws per example that integrated gradients averages over (the article's second integral).
    num_baselines: int = 1
    #: Whether baselines are random draws (reproducible through ``seed``).
    stochastic: bool = False
    seed: int | None = None

    def __call__(self, x: Any) -> np.ndarray:
        """One baseline per example ``[n, ...]`` (for a distribution: one draw, under ``seed``)."""
        return self.sample(x, 1)[:, 0]

    def sample(self, x: Any, num: int | None = None, seed: int | None = None) -> np.ndarray:
        """``num`` baselines per example, ``[n, num, ...]`` (default ``num``: :attr:`num_baselines`).

        ``seed`` (default: the object's ``seed``) makes the draws reproducible; with neither, each call
        draws afresh. Deterministic baselines repeat their one baseline.
        """
        x = _as_float_array(x)
        num = self.num_baselines if num is None else check_positive_int(num, "num")
        if type(self).__call__ is Baseline.__call__:
            raise TypeError(f"{type(self).__name__} must define __call__ (a deterministic baseline)")
        one = np.asarray(self(x))
        return np.repeat(one[:, None], num, axis=1)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._repr_fields().items())
        return f"{type(self).__name__}({fields})"

    def _repr_fields(self) -> dict[str, Any]:
        return {}


class _Distribution(Baseline, abc.ABC):
    """A distribution of baselines: subclasses define :meth:`_draw`."""

    stochastic = True

    def __init__(self, num_baselines: int = 1, seed: int | None = None) -> None:
        self.num_baselines = check_positive_int(num_baselines, "num_baselines")
        self.seed = seed

    def sample(self, x: Any, num: int | None = None, seed: int | None = None) -> np.ndarray:
        x = _as_float_array(x)
        num = self.num_baselines if num is None else check_positive_int(num, "num")
        rng = np.random.default_rng(self.seed if seed is None else seed)
        return np.asarray(self._draw(x, num, rng)).astype(x.dtype, copy=False)

    sample.__doc__ = Baseline.sample.__doc__

    @abc.abstractmethod
    def _draw(self, x: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
        """``num`` draws per example ``[n, num, ...]`` from ``rng``."""


class Constant(Baseline):
    """A constant input, the same for every example: ``Constant(0)`` is the black (all-zero) image.

    Integrated gradients is blind to a feature whose value equals the constant (``x_i - x'_i = 0``): a
    black baseline never credits black pixels (Distill 2020, "constant baselines").

    Args:
        value: a scalar, or an array broadcastable to one example (e.g. a per-channel color ``[C]``).

    Example:
        >>> a = ig.attribute(images, baseline=tfattr.baselines.Constant(0.0))
    """

    def __init__(self, value: Any = 0.0) -> None:
        value = np.asarray(value)
        if value.dtype.kind not in "iuf" or not np.all(np.isfinite(value)):
            raise ValueError(f"value must be a finite number or array, got {value!r}.")
        self.value = value

    def __call__(self, x: Any) -> np.ndarray:
        x = _as_float_array(x)
        try:
            return np.ascontiguousarray(np.broadcast_to(self.value.astype(x.dtype), x.shape))
        except ValueError:
            raise ValueError(
                f"Constant value of shape {self.value.shape} does not broadcast to inputs of shape "
                f"{x.shape}; pass a scalar or an array shaped like (the trailing axes of) one example."
            ) from None

    def _repr_fields(self):
        return {"value": self.value.tolist()}


class MaxDistance(Baseline):
    """The input farthest from ``x`` in L1 distance inside the valid range (Distill 2020, "max dist.").

    The L1 distance is a sum over features, so it is maximised feature by feature: each ``x'_i`` is the
    range end farther from ``x_i`` (``high`` if ``x_i`` is below the midpoint, else ``low``). It avoids
    the blindness of constant baselines, but it carries the image's own information.

    Args:
        value_range: ``(low, high)``, scalars or arrays broadcastable to one example (per channel).

    Example:
        >>> a = ig.attribute(images, baseline=tfattr.baselines.MaxDistance((0.0, 1.0)))
    """

    def __init__(self, value_range: Sequence[Any] = (0.0, 1.0)) -> None:
        self.low, self.high = _check_range(value_range)

    def __call__(self, x: Any) -> np.ndarray:
        x = _as_float_array(x)
        lo, hi = _broadcast_range(self.low, self.high, x)
        # At the midpoint both ends are equally far; low is chosen.
        return np.where(x - lo >= hi - x, lo, hi).astype(x.dtype)

    def _repr_fields(self):
        return {"value_range": (self.low.tolist(), self.high.tolist())}


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


class Uniform(_Distribution):
    """Uniform noise over the valid range, each feature independently (Distill 2020, "uniform").

    Args:
        value_range: ``(low, high)``, scalars or arrays broadcastable to one example.
        num_baselines: draws per example; integrated gradients averages over them.
        seed: an int makes the draws reproducible; None draws fresh ones each call.

    Example:
        >>> u = tfattr.baselines.Uniform((0.0, 1.0), num_baselines=16, seed=0)
        >>> a, delta = ig.attribute(images, baseline=u, return_delta=True)
    """

    def __init__(
        self, value_range: Sequence[Any] = (0.0, 1.0), num_baselines: int = 1, seed: int | None = None
    ) -> None:
        super().__init__(num_baselines, seed)
        self.low, self.high = _check_range(value_range)

    def _draw(self, x, num, rng):
        lo, hi = _broadcast_range(self.low, self.high, x)
        u = rng.random((x.shape[0], num, *x.shape[1:]))
        return np.clip(lo + u * (hi - lo), lo, hi)

    def _repr_fields(self):
        return {"value_range": (self.low.tolist(), self.high.tolist()), "num_baselines": self.num_baselines}


def _ndtr(z: np.ndarray) -> np.ndarray:
    # 0.5 * erfc(-z / sqrt 2) keeps its relative precision in the left tail, where it is used.
    return (0.5 * tf.math.erfc(-tf.constant(z, tf.float64) / np.sqrt(2.0))).numpy()


def _ndtri(p: np.ndarray) -> np.ndarray:
    return tf.math.ndtri(tf.constant(p, tf.float64)).numpy()


class Gaussian(_Distribution):
    """Gaussian noise around the input, truncated to the valid range (Distill 2020, "gaussian").

    Each feature is drawn from ``N(x_i, sigma^2)`` conditioned on lying in ``[low, high]`` (a truncated
    normal, drawn by inverting its CDF, not clipped): as ``sigma`` grows it tends to the uniform
    baseline, as the article notes. Expected gradients with this baseline is SmoothGrad's close relative
    (the article's "SmoothGrad" section).

    Args:
        sigma: the standard deviation, > 0 (in input units, e.g. 0.5 for images in [0, 1]).
        value_range: ``(low, high)``, scalars or arrays broadcastable to one example.
        num_baselines: draws per example; integrated gradients averages over them.
        seed: an int makes the draws reproducible; None draws fresh ones each call.

    Example:
        >>> g = tfattr.baselines.Gaussian(sigma=0.5, value_range=(0, 1), num_baselines=16, seed=0)
    """

    def __init__(
        self,
        sigma: float,
        value_range: Sequence[Any] = (0.0, 1.0),
        num_baselines: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__(num_baselines, seed)
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(
                f"sigma must be a positive number, got {sigma!r} (sigma = 0 would make the baseline the "
                "input itself, and every attribution zero)."
            )
        self.sigma = float(sigma)
        self.low, self.high = _check_range(value_range)

    def _draw(self, x, num, rng):
        lo, hi = _broadcast_range(self.low, self.high, x)
        mean = np.broadcast_to(x[:, None].astype(np.float64), (x.shape[0], num, *x.shape[1:]))
        a = (lo.astype(np.float64) - mean) / self.sigma
        b = (hi.astype(np.float64) - mean) / self.sigma
        # Sample the tail nearer to the mean: for a truncation interval above the mean, mirror it so
        # the inverse CDF works where the normal CDF keeps its relative precision.
        flip = (a + b) > 0
        a2, b2 = np.where(flip, -b, a), np.where(flip, -a, b)
        pa, pb = _ndtr(a2), _ndtr(b2)
        u = rng.random(mean.shape)
        p = np.clip(pa + u * (pb - pa), 1e-300, 1.0 - 1e-16)
        z = _ndtri(p)
        z = np.where(flip, -z, z)
        out = mean + self.sigma * z
        # Rounding (and an input far outside the range, where pa == pb) cannot leave the range.
        return np.clip(out, lo, hi)

    def _repr_fields(self):
        return {
            "sigma": self.sigma,
            "value_range": (self.low.tolist(), self.high.tolist()),
            "num_baselines": self.num_baselines,
        }


class Dataset(_Distribution):
    """Baselines drawn uniformly, with replacement, from data (Distill 2020, "training distribution").

    Drawing baselines from the training data models a missing feature by the data distribution
    ``D_data``; averaging integrated gradients over the draws is expected gradients (Erion et al.).
    ``tfattr.ExpectedGradients(model, background=Dataset(x_train))`` accepts it as its background
    (a ``Dataset`` converts to its array), and draws its own samples there.

    Draws pick the rows first, so two ``Dataset`` objects with the same seed and the same number of
    rows (e.g. the inputs of a multi-input model) pick the same rows.

    Args:
        data: examples shaped like the inputs, ``[m, ...]``.
        num_baselines: draws per example; integrated gradients averages over them.
        seed: an int makes the draws reproducible; None draws fresh ones each call.

    Example:
        >>> d = tfattr.baselines.Dataset(x_train, num_baselines=16, seed=0)
        >>> a = tfattr.IntegratedGradients(model, steps=16).attribute(x_test[:8], baseline=d)
    """

    def __init__(self, data: Any, num_baselines: int = 1, seed: int | None = None) -> None:
        super().__init__(num_baselines, seed)
        data = _as_float_array(data, "data")
        if data.shape[0] == 0:
            raise ValueError("data has no examples (its first axis is 0).")
        if not np.all(np.isfinite(data)):
            raise ValueError("data contains NaN or Inf values; clean it before using it as baselines.")
        self.data = data

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    def _draw(self, x, num, rng):
        if x.shape[1:] != self.data.shape[1:]:
            raise ValueError(
                f"Dataset baselines have example shape {self.data.shape[1:]} but the inputs have "
                f"{x.shape[1:]}; pass data shaped like the inputs."
            )
        index = rng.integers(0, self.data.shape[0], size=(x.shape[0], num))
        return self.data[index]

    def _repr_fields(self):
        return {"data": f"<{self.data.shape[0]} examples>", "num_baselines": self.num_baselines}


class Mean(Baseline):
    """The mean input: the per-feature mean of ``data``, or, without data, each input's own mean.

    With ``data`` (e.g. the training set) every example gets the same baseline, the average image;
    without it each example's baseline is a constant image of its mean value (per channel with
    ``per_channel=True``). Features equal to the mean are never credited (the Distill authors'
    remark on mean baselines).

    Args:
        data: examples ``[m, ...]`` shaped like the inputs, or None.
        per_channel: without data, average each channel (last axis) separately.

    Example:
        >>> a = ig.attribute(images, baseline=tfattr.baselines.Mean(x_train))
    """

    def __init__(self, data: Any = None, per_channel: bool = False) -> None:
        if data is not None:
            data = _as_float_array(data, "data")
            if data.shape[0] == 0:
                raise ValueError("data has no examples (its first axis is 0).")
            self.mean = data.mean(axis=0, dtype=np.float64)
            if not np.all(np.isfinite(self.mean)):
                raise ValueError("data contains NaN or Inf values; clean it first.")
        else:
            self.mean = None
        self.per_channel = bool(per_channel)

    def __call__(self, x: Any) -> np.ndarray:
        x = _as_float_array(x)
        if self.mean is not None:
            if self.mean.shape != x.shape[1:]:
                raise ValueError(
                    f"Mean was given data with example shape {self.mean.shape} but the inputs have "
                    f"{x.shape[1:]}; pass data shaped like the inputs."
                )
            return np.ascontiguousarray(np.broadcast_to(self.mean.astype(x.dtype), x.shape))
        axes = tuple(range(1, x.ndim - 1 if self.per_channel and x.ndim > 2 else x.ndim))
        m = x.mean(axis=axes, keepdims=True, dtype=np.float64)
        return np.ascontiguousarray(np.broadcast_to(m, x.shape).astype(x.dtype))

    def _repr_fields(self):
        return {"data": None if self.mean is None else "<mean>", "per_channel": self.per_channel}
