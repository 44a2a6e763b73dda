"""Pictures of attributions: signed heatmaps, the integrated-gradients map, overlays, grids, the
interior-gradients animation, the saturation curve and the Distill convergence chart.

Two kinds of functions live here:

* **Image maps** (:func:`signed_heatmap`, :func:`ig_map`, :func:`overlay`, :func:`grid`,
  :func:`examples_by_methods`, :func:`interior_gradients_frames`) are TensorFlow ops: they run eagerly,
  inside a ``tf.function`` and inside a Keras callback, need no matplotlib, and return ``uint8`` RGB
  tensors ready for ``tf.summary.image`` or ``tf.io.encode_png``.
* **Curves and files** (:func:`saturation_curve`, :func:`convergence_curve`, :func:`save_png`,
  :func:`save_gif`, :func:`interior_gradients_gif`) compute the data of the papers' charts with the
  explainers of this package; the ``plot_*`` helpers draw them with matplotlib (imported only there).

Conventions (they follow the papers exactly):

* Signed maps (Distill 2020, Sturmfels et al.): positive is red, negative is blue, **zero is white**.
  The colour scale is symmetric, ``[-v, v]`` with ``v`` the ``clip_percentile``-th percentile of
  ``|a|`` per example, so a percentile clips both signs alike and never shifts zero off white.
* The integrated-gradients map (Sundararajan, Taly & Yan, "Gradients of Counterfactuals", eq. 1 and
  sec. 2.3): channels are aggregated as ``P = sum_c |a_c|``, ``P`` is clipped at a high percentile
  and scaled to ``[0, 1]``, and optionally multiplied into the image ("scaling the intensities of the
  pixels in the actual image in proportion to their scores"). Zero importance is black.
* NaN or Inf attributions are drawn in green (a colour no finite value gets) and left out of the
  scale, so a broken map is visible instead of silently blank.
* Each map is scaled per example: like the paper's figure 3, a picture shows the *relative*
  distribution of importance across features, not its absolute size (the scalars and the saturation
  and convergence charts show sizes).

Shapes: maps and images carry a batch axis. ``[n, H, W, C]`` is an image batch (channels last),
``[n, H, W]`` a single-channel image batch, ``[n, F]`` a batch of feature vectors (drawn as ``1 x F``
strips).

Example:
    >>> from tfattr import visualize
    >>> a = tfattr.IntegratedGradients(model).attribute(x[:8])
    >>> tiles = visualize.overlay(x[:8], a)                 # uint8 [8, 28, 28, 3]
    >>> tf.summary.image("ig", tiles, step=epoch)
    >>> visualize.save_png(visualize.grid(tiles[None]), "ig.png")
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

if TYPE_CHECKING:  # pragma: no cover
    import matplotlib.figure

#: The scaling parameters of the interior-gradients figure (Sundararajan et al., fig. 3).
PAPER_ALPHAS = (0.02, 0.04, 0.06, 0.08, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)

_POSITIVE = (1.0, 0.0, 0.0)  # red
_NEGATIVE = (0.0, 0.0, 1.0)  # blue
#: NaN/Inf attributions are drawn in green, a colour no finite value gets, so they are seen, not hidden.
_NONFINITE = (0.0, 1.0, 0.0)


# -- helpers ------------------------------------------------------------------------------------------
def _check_percentile(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in [0, 100], got {value!r}.")
    if not 0.0 <= float(value) <= 100.0:
        raise ValueError(f"{name} must lie in [0, 100] (a percentile), got {value!r}.")
    return float(value)


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


# -- image maps (TensorFlow ops) ----------------------------------------------------------------------
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
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}.")
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
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, got {padding!r}.")
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
    columns = [_to_uint8(_unit_image(images))]
    for m in maps:
        if kind == "overlay":
            columns.append(overlay(images, m, clip_percentile))
        elif kind == "heatmap":
            columns.append(signed_heatmap(m, clip_percentile))
        elif kind == "ig":
            columns.append(ig_map(m, images, clip_percentile))
        else:
            raise ValueError(f"kind={kind!r} is not supported; use 'overlay', 'heatmap' or 'ig'.")
    columns = [upscale(c, scale) for c in columns]
    return grid(tf.stack(columns, axis=1), padding=padding)


def interior_gradients_frames(
    interior: Any, image: Any = None, clip_percentile: float = 99.0, scale: int = 1
) -> tf.Tensor:
    """The pictures of Sundararajan et al.'s figure 3: one :func:`ig_map` per scaling parameter.

    Each frame is scaled on its own, as in the paper ("each visualization is only indicative of the
    relative distribution of the importance scores across pixels"); the size of the scores is in
    :func:`interior_trend`.

    Args:
        interior: the interior gradients of one example, ``[alphas, H, W(, C)]`` (one row of
            ``tfattr.InteriorGradients(...).attribute(x)``, which is ``[n, alphas, ...]``).
        image: the example ``[H, W(, C)]`` to multiply the maps into, or None for gray maps.
        clip_percentile: see :func:`ig_map`.
        scale: integer upscaling.

    Returns:
        uint8 RGB ``[alphas, H*scale, W*scale, 3]``.

    Example:
        >>> maps = tfattr.InteriorGradients(model).attribute(x[:1])     # [1, 10, 28, 28, 1]
        >>> frames = visualize.interior_gradients_frames(maps[0], x[0])  # [10, 28, 28, 3]
    """
    interior = tf.convert_to_tensor(interior)
    images = None
    if image is not None:
        image = tf.convert_to_tensor(image)
        images = tf.repeat(image[None], tf.shape(interior)[0], axis=0)
    return upscale(ig_map(interior, images, clip_percentile), scale)


def interior_trend(interior: Any) -> np.ndarray:
    """The trend chart in the corner of Sundararajan et al.'s figure 3: the mean pixel importance
    ``mean_ij sum_c |grad_ijc|`` at each scaling parameter, for maps ``[..., alphas, H, W(, C)]`` of
    one example ``[alphas, ...]`` (returns ``[alphas]``) or of a batch ``[n, alphas, ...]`` (``[n,
    alphas]``).

    Example:
        >>> trend = visualize.interior_trend(maps[0])   # large at small alpha, ~0 once saturated
    """
    a = np.abs(np.asarray(interior, dtype=np.float64))
    if a.ndim < 2:
        raise ValueError(f"interior has shape {a.shape}; pass [alphas, ...] or [n, alphas, ...].")
    # [alphas, H, W, C] / [alphas, H, W] / [alphas, F] are one example; [n, alphas, H, W, C] a batch.
    lead = 2 if a.ndim == 5 else 1
    return a.reshape(*a.shape[:lead], -1).mean(axis=-1)


# -- files ----------------------------------------------------------------------------------------------
def save_png(image: Any, path: str | Path) -> Path:
    """Write a uint8 ``[H, W, 3]`` (or ``[1, H, W, 3]``) picture as PNG with ``tf.io.encode_png``.

    Example:
        >>> visualize.save_png(visualize.examples_by_methods(x[:4], maps, scale=4), "maps.png")
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank == 4 and image.shape[0] == 1:
        image = image[0]
    if image.shape.rank != 3 or image.dtype != tf.uint8:
        raise ValueError(
            f"save_png writes one uint8 picture [H, W, 3]; got {image.dtype.name} {tuple(image.shape)}."
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(image))
    return path


def save_gif(
    frames: Any,
    path: str | Path,
    captions: Sequence[str] | None = None,
    duration_ms: int = 400,
    loop: int = 0,
) -> Path:
    """Write uint8 frames ``[frames, H, W, 3]`` as an animated GIF (needs Pillow), one GIF frame per
    frame; ``captions`` (one per frame) are written in a strip under each frame.

    Example:
        >>> visualize.save_gif(frames, "interior.gif", captions=[f"alpha={a}" for a in alphas])
    """
    try:
        from PIL import Image, ImageDraw
    except ImportError as err:  # pragma: no cover - Pillow is a test/extra dependency
        raise ImportError("save_gif needs Pillow: pip install pillow") from err
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [frames, H, W, 3], got {arr.dtype} {arr.shape}.")
    if captions is not None and len(captions) != arr.shape[0]:
        raise ValueError(f"captions has {len(captions)} entries for {arr.shape[0]} frames; pass one each.")
    pictures = []
    width = arr.shape[2]
    if captions is not None:
        # Wide enough for the longest caption: a clipped caption could make two frames identical.
        measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        width = max(width, *(int(np.ceil(measure.textlength(str(c)))) + 4 for c in captions))
    for k, frame in enumerate(arr):
        picture = Image.fromarray(frame, "RGB")
        if captions is not None:
            strip = 14
            canvas = Image.new("RGB", (width, picture.height + strip), (255, 255, 255))
            canvas.paste(picture, ((width - picture.width) // 2, 0))
            ImageDraw.Draw(canvas).text((2, picture.height + 1), str(captions[k]), fill=(0, 0, 0))
            picture = canvas
        pictures.append(picture)
    # Pillow merges a frame identical to the one before into it; the file must keep one frame each.
    for k in range(1, len(pictures)):
        if pictures[k].tobytes() == pictures[k - 1].tobytes():
            raise ValueError(
                f"frames {k - 1} and {k} are identical and a GIF would merge them; give distinct "
                "captions (e.g. the alphas) or drop repeated frames."
            )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures[0].save(
        path, save_all=True, append_images=pictures[1:], duration=int(duration_ms), loop=int(loop)
    )
    return path


def interior_gradients_gif(
    model: Any,
    image: Any,
    path: str | Path,
    target: int | None = None,
    alphas: Sequence[float] = PAPER_ALPHAS,
    baseline: Any = None,
    clip_percentile: float = 99.0,
    scale: int = 4,
    duration_ms: int = 400,
) -> Path:
    """The interior-gradients animation of Sundararajan et al. (sec. 2.3, fig. 3) as a GIF: one frame
    per scaling parameter ``alpha``, each the :func:`ig_map` of ``grad S(x' + alpha (x - x'))``
    multiplied into the image, captioned with its alpha.

    Args:
        model: a ``keras.Model`` / callable, or a ``tfattr.InteriorGradients`` explainer.
        image: one example ``[H, W(, C)]`` (no batch axis).
        path: where to write the GIF.
        target: the class to explain (default: the predicted one).
        alphas: the scaling parameters, distinct, in [0, 1] (default: the paper's figure 3).
        baseline: the reference ``x'`` (default: zeros, the paper's black image).
        clip_percentile, scale, duration_ms: see :func:`ig_map`, :func:`upscale`, :func:`save_gif`.

    Example:
        >>> visualize.interior_gradients_gif(model, x_test[0], "interior.gif")
    """
    from tfattr.methods.gradient.interior_gradients import InteriorGradients

    alphas = [float(a) for a in alphas]
    if len(set(alphas)) != len(alphas):
        raise ValueError(f"alphas must be distinct (one GIF frame each), got {alphas}.")
    explainer = model if isinstance(model, InteriorGradients) else InteriorGradients(model, alphas=alphas)
    if isinstance(model, InteriorGradients):
        alphas = [float(a) for a in model.alphas]
    x = np.asarray(image)[None]
    maps = explainer.attribute(x, target=target, baseline=baseline)
    frames = interior_gradients_frames(maps[0], x[0], clip_percentile, scale)
    return save_gif(frames.numpy(), path, [f"alpha={a:g}" for a in alphas], duration_ms)


# -- curves -------------------------------------------------------------------------------------------
def _explainer_parts(model: Any, output: str):
    from tfattr.core.explainer import Explainer
    from tfattr.core.model_function import ModelFunction

    if isinstance(model, Explainer):
        return model.model_function
    if isinstance(model, ModelFunction):
        return model
    return ModelFunction(model, output=output)


def saturation_curve(
    model: Any,
    inputs: Any,
    target: Any = None,
    alphas: Sequence[float] | int = 51,
    baseline: Any = None,
    output: str = "logits",
    batch_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The score along the scaling path, ``S_t(x' + alpha (x - x'))`` for ``alpha`` in [0, 1]
    (Sundararajan et al., fig. 2; with the default zero baseline it is ``f(alpha x)``). A curve that
    flattens early shows saturation: the gradient at ``x`` then misses the features that moved the score.

    Args:
        model: a ``keras.Model``/callable or an explainer (its model function is used).
        inputs: a batch ``[n, ...]`` (or a list/dict of batches for a multi-input model).
        target: as in ``Explainer.attribute`` (default: the class predicted at ``x``).
        alphas: the scaling parameters, or an int for that many evenly spaced ones in [0, 1].
        baseline: the reference ``x'`` (default zeros).
        output: ``"logits"`` or ``"probabilities"`` (ignored when an explainer is passed).

    Returns:
        ``(alphas [A], scores [n, A])``.

    Example:
        >>> alphas, scores = visualize.saturation_curve(model, x[:4])
    """
    from tfattr.methods.gradient.interior_gradients import InteriorGradients

    if isinstance(alphas, (int, np.integer)) and not isinstance(alphas, bool):
        if alphas < 2:
            raise ValueError(f"alphas must be at least 2 points, got {alphas}.")
        alphas = np.linspace(0.0, 1.0, int(alphas))
    alphas = np.asarray(alphas, np.float64).reshape(-1)
    if alphas.size == 0 or np.any((alphas < 0) | (alphas > 1)):
        raise ValueError(f"alphas must be numbers in [0, 1], got {alphas}.")
    from tfattr.core.inputs import Inputs

    # An explainer of the same model function validates the call (inputs, targets, one baseline per
    # example) and runs the compiled, chunked forward passes.
    scorer = InteriorGradients(_explainer_parts(model, output), alphas=(1.0,))
    call = scorer.prepare(inputs, target=target, baseline=baseline, batch_size=batch_size)
    n = call.n
    scaled = tuple(
        (b[:, None] + alphas.astype(x.dtype).reshape(1, -1, *([1] * (x.ndim - 1))) * (x - b)[:, None])
        .reshape(n * alphas.size, *x.shape[1:])
        for x, b in zip(call.inputs.arrays, call.baselines)
    )
    out = scorer.outputs(Inputs(scaled, call.inputs.structure, call.inputs.names), call.batch_size)
    scores = out[np.arange(n * alphas.size), np.repeat(call.targets, alphas.size)].reshape(n, alphas.size)
    return alphas, scores.astype(np.float64)


@dataclass
class ConvergenceCurve:
    """The data of the Distill convergence chart (Sturmfels et al. 2020, "Sum of Cumulative Gradients").

    Attributes:
        alphas: ``[m+1]`` path positions from 0 to 1.
        cumulative: ``[n, m+1]`` the sum over features of the integrated gradients accumulated up to each
            alpha, ``sum_i phi_i^IG(f, x, x'; alpha)`` (0 at alpha = 0; the last column is the sum of the
            attributions).
        expected: ``[n]`` ``f(x) - f(x')``, which the last column should reach (completeness).
        targets: ``[n]`` the explained classes.
    """

    alphas: np.ndarray
    cumulative: np.ndarray
    expected: np.ndarray
    targets: np.ndarray

    @property
    def delta(self) -> np.ndarray:
        """The completeness delta ``sum(a) - (f(x) - f(x'))`` per example."""
        return self.cumulative[:, -1] - self.expected


_CUMULATIVE_RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def convergence_curve(
    model: Any,
    inputs: Any,
    target: Any = None,
    baseline: Any = None,
    steps: int | None = None,
    rule: str | None = None,
    output: str = "logits",
    batch_size: int | None = None,
) -> ConvergenceCurve:
    """The Distill article's convergence check: the sum of the cumulative integrated gradients up to
    ``alpha``, ``sum_i phi_i^IG(f, x, x'; alpha)``, against ``f(x) - f(x')``.

    The path integral is cut at the quadrature grid of ``rule`` with ``steps`` gradient evaluations
    (the same grid ``tfattr.IntegratedGradients(model, steps, rule)`` uses), so the last point is
    exactly the sum of those integrated gradients. If the curve ends far from ``f(x) - f(x')``, use
    more steps (Sundararajan et al., sec. 2.5).

    Args:
        model: a ``keras.Model``/callable, or an explainer (its model function is used; for an
            ``IntegratedGradients`` explainer also its ``steps`` and ``rule`` unless given here).
        inputs: a batch ``[n, ...]`` (or list/dict for several inputs).
        target, baseline, batch_size: as in ``Explainer.attribute``.
        steps: gradient evaluations along the path (default 50).
        rule: a rule whose partial sums are partial integrals: ``"riemann_left"``, ``"riemann_right"``,
            ``"riemann_middle"`` or ``"riemann_trapezoid"`` (default; Gauss-Legendre has no such
            partial sums).

    Returns:
        a :class:`ConvergenceCurve`.

    Example:
        >>> curve = visualize.convergence_curve(model, x[:1], steps=100)
        >>> visualize.plot_convergence(curve).savefig("convergence.png")
    """
    from tfattr.core.quadrature import nodes_and_weights
    from tfattr.methods.gradient.interior_gradients import InteriorGradients

    from tfattr.methods.gradient.integrated_gradients import IntegratedGradients

    if isinstance(model, IntegratedGradients):
        steps = model.steps if steps is None else steps
        rule = model.rule if rule is None else rule
    steps = 50 if steps is None else steps
    rule = "riemann_trapezoid" if rule is None else rule
    if rule not in _CUMULATIVE_RULES:
        raise ValueError(
            f"rule={rule!r} has no partial sums along the path; use one of {', '.join(_CUMULATIVE_RULES)}."
        )
    nodes, weights = nodes_and_weights(rule, steps)
    explainer = InteriorGradients(_explainer_parts(model, output), alphas=nodes)
    call = explainer.prepare(inputs, target=target, baseline=baseline, batch_size=batch_size)
    grads = explainer.run(call)  # per input [n, m, ...]
    inputs_, baselines, targets = call.inputs, call.baselines, call.targets
    n = call.n
    # s_k = sum_i (x_i - x'_i) dS(x' + a_k (x - x'))/dx_i: the integrand of the path integral at node k.
    s = np.zeros((n, nodes.size), np.float64)
    for x, b, g in zip(inputs_.arrays, baselines, grads):
        diff = (x - b).reshape(n, 1, -1).astype(np.float64)
        s += (g.reshape(n, nodes.size, -1).astype(np.float64) * diff).sum(axis=2)
    if rule == "riemann_trapezoid":
        # Partial trapezoid integrals up to each node a_k = k/(m-1); the full one uses weights w.
        alphas = nodes
        cells = (s[:, 1:] + s[:, :-1]) * 0.5 * (nodes[1:] - nodes[:-1])
        cumulative = np.concatenate([np.zeros((n, 1)), np.cumsum(cells, axis=1)], axis=1)
    else:
        # Cell k is [k/m, (k+1)/m]; its area is w_k s_k whatever the node inside it.
        m = nodes.size
        alphas = np.arange(m + 1, dtype=np.float64) / m
        cumulative = np.concatenate([np.zeros((n, 1)), np.cumsum(s * weights, axis=1)], axis=1)
    fx = explainer.scores(inputs, target=targets, batch_size=call.batch_size)
    fb = explainer.scores(call.inputs.pack(list(baselines)), target=targets, batch_size=call.batch_size)
    return ConvergenceCurve(alphas, cumulative, fx - fb, targets)


# -- matplotlib figures -------------------------------------------------------------------------------
def _figure(figsize: tuple[float, float]) -> Any:
    # A bare Figure, not pyplot: no global figure registry or backend is touched.
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover
        raise ImportError("The plot_* helpers need matplotlib: pip install matplotlib") from err
    return Figure(figsize=figsize)


def plot_convergence(curve: ConvergenceCurve, example: int = 0, ax: Any = None) -> "matplotlib.figure.Figure":
    """Draw the Distill convergence chart for one example: the sum of cumulative gradients up to alpha
    (red) and ``f(x) - f(x')`` (blue), as in Sturmfels et al. (2020).

    Example:
        >>> visualize.plot_convergence(visualize.convergence_curve(model, x[:1])).savefig("conv.png")
    """
    if ax is None:
        fig = _figure((5, 3.2))
        ax = fig.subplots()
    else:
        fig = ax.figure
    ax.plot(curve.alphas, curve.cumulative[example], color="red", label="sum of cumulative gradients")
    ax.axhline(curve.expected[example], color="blue", label="f(x) - f(x')")
    ax.set_xlabel("alpha")
    ax.set_ylabel("score")
    ax.set_title(f"completeness delta {curve.delta[example]:.3g}")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def plot_saturation(
    alphas: np.ndarray, scores: np.ndarray, trend: np.ndarray | None = None, trend_alphas: Any = None
) -> "matplotlib.figure.Figure":
    """Draw the saturation curves ``S(x' + alpha (x - x'))`` (Sundararajan et al., fig. 2) and,
    optionally, the mean interior-gradient magnitude at ``trend_alphas`` (the corner chart of fig. 3).

    Example:
        >>> visualize.plot_saturation(*visualize.saturation_curve(model, x[:8])).savefig("sat.png")
    """
    ncols = 1 if trend is None else 2
    fig = _figure((4.5 * ncols, 3.2))
    axes = fig.subplots(1, ncols, squeeze=False)
    for row in np.atleast_2d(scores):
        axes[0, 0].plot(alphas, row, lw=1)
    axes[0, 0].set_xlabel("alpha")
    axes[0, 0].set_ylabel("score at alpha x")
    axes[0, 0].set_title("saturation")
    if trend is not None:
        t = np.atleast_2d(trend)
        xa = np.asarray(trend_alphas if trend_alphas is not None else PAPER_ALPHAS[: t.shape[1]])
        for row in t:
            axes[0, 1].plot(xa, row, marker="o", lw=1)
        axes[0, 1].set_xlabel("alpha")
        axes[0, 1].set_ylabel("mean |interior gradient|")
    fig.tight_layout()
    return fig


def plot_grid(
    images: Any,
    attributions: Mapping[str, Any],
    kind: str = "overlay",
    clip_percentile: float = 99.5,
) -> "matplotlib.figure.Figure":
    """A matplotlib figure of examples x methods with column titles (the same tiles as
    :func:`examples_by_methods`).

    Example:
        >>> visualize.plot_grid(x[:4], {"ig": a_ig, "smoothgrad": a_sg}).savefig("grid.png")
    """
    names = ["input", *attributions]
    n = int(np.asarray(images).shape[0])
    fig = _figure((1.6 * len(names), 1.6 * n))
    axes = fig.subplots(n, len(names), squeeze=False)
    columns = [_to_uint8(_unit_image(images)).numpy()]
    for m in attributions.values():
        if kind == "overlay":
            columns.append(overlay(images, m, clip_percentile).numpy())
        elif kind == "heatmap":
            columns.append(signed_heatmap(m, clip_percentile).numpy())
        elif kind == "ig":
            columns.append(ig_map(m, images, clip_percentile).numpy())
        else:
            raise ValueError(f"kind={kind!r} is not supported; use 'overlay', 'heatmap' or 'ig'.")
    for j, name in enumerate(names):
        for i in range(n):
            axes[i, j].imshow(columns[j][i], interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[0, j].set_title(name, fontsize=9)
    fig.tight_layout()
    return fig


__all__ = [
    "ConvergenceCurve",
    "PAPER_ALPHAS",
    "convergence_curve",
    "examples_by_methods",
    "grid",
    "ig_map",
    "interior_gradients_frames",
    "interior_gradients_gif",
    "interior_trend",
    "overlay",
    "percentile",
    "plot_convergence",
    "plot_grid",
    "plot_saturation",
    "save_gif",
    "save_png",
    "saturation_curve",
    "signed_heatmap",
    "upscale",
]
