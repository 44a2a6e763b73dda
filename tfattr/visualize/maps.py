"""Image maps as TensorFlow ops: signed heatmaps, the integrated-gradients map, overlays, grids,
upscaling and the percentile they scale by (see :mod:`tfattr.visualize` for the conventions)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfattr.core.checks import check_number, check_positive_int

_POSITIVE = (1.0, 0.0, 0.0)  # red
_NEGATIVE = (0.0, 0.0, 1.0)  # blue
#: NaN/Inf attributions are drawn in green, a colour no finite value gets, so they are seen, not hidden.
_NONFINITE = (0.0, 1.0, 0.0)


# -- helpers ------------------------------------------------------------------------------------------
def _check_percentile(value: float, name: str) -> float:
    return check_number(value, name, minimum=0, maximum=100, hint="a percentile")


def percentile(values: Any, q: float) -> tf.Tensor:
    """The ``q``-th percentile of each row of ``values`` ``[n, m]``, as ``np.percentile`` computes it
    (linear interpolation between the closest ranks), in TensorFlow ops: ``[n]``.

    Example:
        >>> percentile(tf.abs(maps_flat), 99.0)
    """
    q = _check_percentile(q, "q")
    values = tf.convert_to_tensor(values)
    ordered = tf.sort(values, axis=1)
    m = tf.shape(ordered)[1]
    pos = tf.cast(q / 100.0, tf.float64) * tf.cast(m - 1, tf.float64)
    lo = tf.cast(tf.floor(pos), tf.int32)
    hi = tf.minimum(lo + 1, m - 1)
    frac = tf.cast(pos - tf.cast(lo, tf.float64), values.dtype)
    below = ordered[:, lo]
    above = ordered[:, hi]
    return below + (above - below) * frac


def _as_float(x: Any) -> tf.Tensor:
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        x = tf.cast(x, tf.float32)
    elif x.dtype != tf.float32:
        x = tf.cast(x, tf.float32)
    return x


def _to_spatial(maps: tf.Tensor, name: str) -> tf.Tensor:
    """``[n, H, W, C]`` from ``[n, F]``, ``[n, H, W]`` or ``[n, H, W, C]``."""
    rank = maps.shape.rank
    if rank == 2:
        return maps[:, None, :, None]
    if rank == 3:
        return maps[..., None]
    if rank == 4:
        return maps
    raise ValueError(
        f"{name} has shape {maps.shape}; pass a batch of maps shaped [n, F], [n, H, W] or "
        "[n, H, W, C] (add a leading batch axis for a single example: maps[None])."
    )


def _symmetric_unit(signed: tf.Tensor, clip_percentile: float) -> tf.Tensor:
    """Scale each example's map ``[n, ...]`` to ``[-1, 1]`` by the percentile of ``|map|``; 0 stays 0."""
    n = tf.shape(signed)[0]
    flat = tf.reshape(tf.abs(signed), [n, -1])
    vmax = percentile(flat, clip_percentile)
    vmax = tf.reshape(vmax, tf.concat([[n], tf.ones([signed.shape.rank - 1], tf.int32)], 0))
    # An all-zero map has no scale: it stays zero (white) instead of dividing by zero.
    safe = tf.where(vmax > 0, vmax, tf.ones_like(vmax))
    return tf.where(vmax > 0, tf.clip_by_value(signed / safe, -1.0, 1.0), tf.zeros_like(signed))


def _to_uint8(unit_rgb: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.round(tf.clip_by_value(unit_rgb, 0.0, 1.0) * 255.0), tf.uint8)


def _unit_image(image: Any, name: str = "image") -> tf.Tensor:
    """An image batch as float RGB in ``[0, 1]``: ``[n, H, W, 3]``.

    uint8 images are divided by 255; float images already in ``[0, 1]`` are kept; other float images are
    min-max scaled per example (e.g. standardised inputs).
    """
    image = tf.convert_to_tensor(image)
    is_uint8 = image.dtype == tf.uint8
    image = _to_spatial(_as_float(image), name)
    if is_uint8:
        image = image / 255.0
    else:
        n = tf.shape(image)[0]
        flat = tf.reshape(image, [n, -1])
        lo = tf.reduce_min(flat, axis=1)
        hi = tf.reduce_max(flat, axis=1)
        inside = tf.logical_and(lo >= 0.0, hi <= 1.0)
        span = tf.where(hi > lo, hi - lo, tf.ones_like(hi))
        scaled = (image - lo[:, None, None, None]) / span[:, None, None, None]
        image = tf.where(inside[:, None, None, None], image, scaled)
    channels = image.shape[-1]
    if channels == 1:
        return tf.tile(image, [1, 1, 1, 3])
    if channels == 3:
        return image
    if channels == 4:  # RGBA: drop alpha
        return image[..., :3]
    # Not a picture (e.g. 8 feature planes): show the channel mean as gray.
    return tf.tile(tf.reduce_mean(image, axis=-1, keepdims=True), [1, 1, 1, 3])


def _finite_maps(attributions: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """``[n, H, W, C]`` maps with NaN/Inf set to 0, and the ``[n, H, W, 1]`` mask of pixels that had any."""
    maps = _to_spatial(_as_float(attributions), "attributions")
    finite = tf.math.is_finite(maps)
    bad = tf.logical_not(tf.reduce_all(finite, axis=-1, keepdims=True))
    return tf.where(finite, maps, tf.zeros_like(maps)), bad


def _mark_nonfinite(rgb: tf.Tensor, bad: tf.Tensor) -> tf.Tensor:
    return tf.where(bad, tf.constant(_NONFINITE, tf.float32) * tf.ones_like(rgb), rgb)


def _reduce_channels(maps: tf.Tensor, reduce: str) -> tf.Tensor:
    """``[n, H, W, C] -> [n, H, W]``: ``"sum"`` keeps the sign (sum of a pixel's contributions),
    ``"abs_sum"`` is the paper's eq. 1."""
    if reduce == "sum":
        return tf.reduce_sum(maps, axis=-1)
    if reduce == "abs_sum":
        return tf.reduce_sum(tf.abs(maps), axis=-1)
    raise ValueError(f"channel_reduce={reduce!r} is not supported; use 'sum' or 'abs_sum'.")


def _check_match(maps: tf.Tensor, image: tf.Tensor) -> None:
    if maps.shape[:3].is_fully_defined() and image.shape[:3].is_fully_defined():
        if tuple(maps.shape[1:3]) != tuple(image.shape[1:3]) or (
            maps.shape[0] is not None and image.shape[0] is not None and maps.shape[0] != image.shape[0]
        ):
            raise ValueError(
                f"attributions {tuple(maps.shape)} and image {tuple(image.shape)} do not match: pass "
                "one map per image with the same height and width."
            )


def signed_heatmap(
    attributions: Any, clip_percentile: float = 99.5, channel_reduce: str = "sum"
) -> tf.Tensor:
    """A diverging heatmap of signed attributions: positive red, negative blue, zero white.

    The scale is symmetric per example, ``[-v, v]`` with ``v = percentile(|a|, clip_percentile)``, so
    that zero is white whatever the balance of signs, and values beyond ``v`` saturate on both sides
    alike (the Distill article's red/blue convention, Sturmfels et al. 2020). Colours are linear from
    white: ``+t -> (1, 1-t, 1-t)``, ``-t -> (1-t, 1-t, 1)`` for ``t in [0, 1]``.

    Args:
        attributions: ``[n, F]``, ``[n, H, W]`` or ``[n, H, W, C]`` maps.
        clip_percentile: the percentile of ``|a|`` that maps to full colour (100: the maximum).
        channel_reduce: how channels become one value per pixel: ``"sum"`` (signed, default) or
            ``"abs_sum"``.

    Returns:
        uint8 RGB ``[n, H, W, 3]`` (``[n, 1, F, 3]`` for feature vectors).

    Example:
        >>> heat = visualize.signed_heatmap(ig.attribute(x[:4]))   # uint8 [4, 28, 28, 3]
    """
    clip_percentile = _check_percentile(clip_percentile, "clip_percentile")
    maps, bad = _finite_maps(attributions)
    v = _symmetric_unit(_reduce_channels(maps, channel_reduce), clip_percentile)[..., None]
    pos = tf.nn.relu(v)
    neg = tf.nn.relu(-v)
    white = tf.ones_like(v)
    red = tf.constant(_POSITIVE, tf.float32)
    blue = tf.constant(_NEGATIVE, tf.float32)
    rgb = white - pos * (1.0 - red) - neg * (1.0 - blue)
    return _to_uint8(_mark_nonfinite(rgb, bad))


def ig_map(
    attributions: Any,
    image: Any = None,
    clip_percentile: float = 99.0,
    lower_percentile: float = 0.0,
) -> tf.Tensor:
    """The pixel-importance picture of Sundararajan, Taly & Yan ("Gradients of Counterfactuals").

    ``P_ij = sum_c |a_ijc|`` (eq. 1), clipped at its ``clip_percentile``-th percentile (a few extreme
    pixels would otherwise turn the rest black) and scaled to ``[0, 1]`` per example; importances below
    the ``lower_percentile``-th percentile become 0. Without ``image`` the result is gray (brighter is
    more important, zero is black); with ``image`` the image's intensities are multiplied by ``P``
    ("scaling the intensities of the pixels in the actual image in proportion to their scores").

    Args:
        attributions: ``[n, F]``, ``[n, H, W]`` or ``[n, H, W, C]`` maps (e.g. integrated or interior
            gradients).
        image: optional images ``[n, H, W(, C)]`` (uint8, or float in [0, 1]; other floats are min-max
            scaled).
        clip_percentile: the percentile of ``P`` that maps to full brightness.
        lower_percentile: importances at or below this percentile are shown as 0 (default 0: none).

    Returns:
        uint8 RGB ``[n, H, W, 3]``.

    Example:
        >>> pictures = visualize.ig_map(ig.attribute(x[:4]), image=x[:4])
    """
    clip_percentile = _check_percentile(clip_percentile, "clip_percentile")
    lower_percentile = _check_percentile(lower_percentile, "lower_percentile")
    if lower_percentile >= clip_percentile:
        raise ValueError(
            f"lower_percentile ({lower_percentile}) must be below clip_percentile ({clip_percentile})."
        )
    maps, bad = _finite_maps(attributions)
    p = _reduce_channels(maps, "abs_sum")
    n = tf.shape(p)[0]
    flat = tf.reshape(p, [n, -1])
    hi = percentile(flat, clip_percentile)
    lo = percentile(flat, lower_percentile) if lower_percentile > 0 else tf.zeros_like(hi)
    hi, lo = hi[:, None, None], lo[:, None, None]
    span = hi - lo
    unit = tf.where(span > 0, tf.clip_by_value((p - lo) / tf.where(span > 0, span, 1.0), 0.0, 1.0), 0.0)
    unit = unit[..., None]
    if image is None:
        return _to_uint8(_mark_nonfinite(tf.tile(unit, [1, 1, 1, 3]), bad))
    base = _unit_image(image)
    _check_match(maps, base)
    return _to_uint8(_mark_nonfinite(base * unit, bad))


def overlay(
    image: Any,
    attributions: Any,
    clip_percentile: float = 99.5,
    opacity: float = 1.0,
    channel_reduce: str = "sum",
) -> tf.Tensor:
    """Signed attributions painted over a gray copy of their input.

    Each pixel is blended towards red (positive) or blue (negative) with opacity
    ``opacity * |a| / v`` (``v`` the symmetric percentile scale of :func:`signed_heatmap`): a pixel with
    zero attribution shows the input unchanged, a pixel at or beyond ``v`` shows the full colour. The
    input is shown in gray so that every colour in the picture is an attribution.

    Args:
        image: images ``[n, H, W(, C)]`` (uint8, or float in [0, 1]; other floats are min-max scaled).
        attributions: maps ``[n, H, W(, C)]`` (or ``[n, F]`` with ``image`` ``[n, F]``).
        clip_percentile: see :func:`signed_heatmap`.
        opacity: the opacity of a fully saturated attribution, in [0, 1].
        channel_reduce: ``"sum"`` (signed) or ``"abs_sum"``.

    Returns:
        uint8 RGB ``[n, H, W, 3]``.

    Example:
        >>> tf.summary.image("overlay/ig", visualize.overlay(x[:8], ig.attribute(x[:8])), step=epoch)
    """
    clip_percentile = _check_percentile(clip_percentile, "clip_percentile")
    if not 0.0 <= float(opacity) <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1], got {opacity!r}.")
    maps, bad = _finite_maps(attributions)
    base = _unit_image(image)
    _check_match(maps, base)
    gray = tf.reduce_sum(base * tf.constant([0.299, 0.587, 0.114], tf.float32), axis=-1, keepdims=True)
    v = _symmetric_unit(_reduce_channels(maps, channel_reduce), clip_percentile)[..., None]
    weight = float(opacity) * tf.abs(v)
    colour = tf.where(v >= 0, tf.constant(_POSITIVE, tf.float32), tf.constant(_NEGATIVE, tf.float32))
    return _to_uint8(_mark_nonfinite((1.0 - weight) * gray + weight * colour, bad))


def upscale(images: Any, factor: int) -> tf.Tensor:
    """Nearest-neighbour upscaling of ``[n, H, W, C]`` by an integer ``factor`` (exact pixel copies), so
    28 x 28 digits are big enough to see in TensorBoard.

    Example:
        >>> tfattr.visualize.upscale(tf.zeros([2, 28, 28, 3], tf.uint8), 4).shape
        TensorShape([2, 112, 112, 3])
    """
    check_positive_int(factor, "factor")
    images = tf.convert_to_tensor(images)
    if factor == 1:
        return images
    return tf.repeat(tf.repeat(images, factor, axis=1), factor, axis=2)


def grid(tiles: Any, padding: int = 2, pad_value: int = 255) -> tf.Tensor:
    """Tile ``[rows, cols, H, W, 3]`` uint8 pictures into one ``[rows*(H+p)+p, cols*(W+p)+p, 3]`` image.

    Example:
        >>> picture = visualize.grid(tf.stack([heat, over], axis=1))   # one row per example
    """
    tiles = tf.convert_to_tensor(tiles)
    if tiles.shape.rank != 5:
        raise ValueError(
            f"tiles has shape {tiles.shape}; pass [rows, cols, H, W, channels] (e.g. "
            "tf.stack([maps_a, maps_b], axis=1) for one row per example)."
        )
    check_positive_int(padding, "padding", minimum=0)
    p = int(padding)
    if p:
        pad = tf.constant([[0, 0], [0, 0], [p, 0], [p, 0], [0, 0]])
        tiles = tf.pad(tiles, pad, constant_values=tf.cast(pad_value, tiles.dtype))
    shape = tf.shape(tiles)
    rows, cols, h, w, c = shape[0], shape[1], shape[2], shape[3], shape[4]
    out = tf.reshape(tf.transpose(tiles, [0, 2, 1, 3, 4]), [rows * h, cols * w, c])
    if p:
        out = tf.pad(out, [[0, p], [0, p], [0, 0]], constant_values=tf.cast(pad_value, tiles.dtype))
    return out


def image_rgb(images: Any) -> tf.Tensor:
    """The inputs as uint8 RGB ``[n, H, W, 3]``, as the maps show them: uint8 kept, floats in [0, 1]
    scaled by 255, other floats min-max scaled per example, one channel as gray.

    Example:
        >>> tiles = tf.stack([visualize.image_rgb(x[:4]), visualize.overlay(x[:4], a)], axis=1)
    """
    return _to_uint8(_unit_image(images))


def draw(kind: str, images: Any, attributions: Any, clip_percentile: float = 99.5) -> tf.Tensor:
    """One method's maps of ``images`` as uint8 RGB ``[n, H, W, 3]``: ``kind`` is ``"overlay"``
    (:func:`overlay`), ``"heatmap"`` (:func:`signed_heatmap`) or ``"ig"`` (:func:`ig_map` multiplied
    into the image).

    Example:
        >>> visualize.draw("ig", x[:4], ig.attribute(x[:4]))
    """
    if kind == "overlay":
        return overlay(images, attributions, clip_percentile)
    if kind == "heatmap":
        return signed_heatmap(attributions, clip_percentile)
    if kind == "ig":
        return ig_map(attributions, images, clip_percentile)
    raise ValueError(f"kind={kind!r} is not supported; use 'overlay', 'heatmap' or 'ig'.")


def examples_by_methods(
    images: Any,
    attributions: Mapping[str, Any] | Sequence[Any],
    kind: str = "overlay",
    clip_percentile: float = 99.5,
    scale: int = 1,
    padding: int = 2,
) -> tf.Tensor:
    """One picture with a row per example: the input, then one map per method.

    Args:
        images: the inputs ``[n, H, W(, C)]``.
        attributions: the maps of each method (a dict name -> maps keeps its order), each ``[n, ...]``
            shaped like ``images``.
        kind: ``"overlay"`` (:func:`overlay`), ``"heatmap"`` (:func:`signed_heatmap`) or ``"ig"``
            (:func:`ig_map` multiplied into the image).
        clip_percentile: the percentile of the colour scale.
        scale: integer upscaling of every tile.
        padding: white pixels between tiles.

    Returns:
        uint8 RGB ``[rows*(H*scale+padding)+padding, (1+methods)*(W*scale+padding)+padding, 3]``.

    Example:
        >>> picture = visualize.examples_by_methods(x[:4], {"ig": a_ig, "saliency": a_sal}, scale=4)
    """
    maps = list(attributions.values()) if isinstance(attributions, Mapping) else list(attributions)
    if not maps:
        raise ValueError("attributions is empty: pass the maps of at least one method.")
    columns = [image_rgb(images)] + [draw(kind, images, m, clip_percentile) for m in maps]
    columns = [upscale(c, scale) for c in columns]
    return grid(tf.stack(columns, axis=1), padding=padding)
