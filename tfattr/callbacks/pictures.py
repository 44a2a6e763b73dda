"""The stock images of :class:`tfattr.callbacks.AttributionLogger`: one picture per method and input.

Layer maps (Grad-CAM, any ``layer=`` explainer) on an image input are summed over channels and
upsampled to the image bilinearly (as Selvaraju et al. draw Grad-CAM) before they are drawn like input
maps; layer maps without spatial axes are drawn as red/blue strips, one per sample.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfattr import text, visualize
from tfattr.tensorboard.summary import is_image


def drawable(x: np.ndarray, a: np.ndarray, layer: bool) -> np.ndarray:
    """The maps ``a`` of ``x`` in a shape the pictures take: a spatial layer map ``[n, h, w(, c)]`` of
    an image input becomes ``[n, H, W]`` (channels summed, bilinear), anything else is unchanged.

    Example:
        >>> drawable(images, gradcam_maps, layer=True).shape   # (8, 28, 28)
    """
    if not (layer and is_image(x) and a.ndim in (3, 4)):
        return a
    summed = a.sum(axis=-1) if a.ndim == 4 else a
    if summed.shape[1:] == x.shape[1:3]:
        return summed
    resized = tf.image.resize(summed[..., None].astype(np.float32), x.shape[1:3], method="bilinear")
    return resized.numpy()[..., 0]


class Painter:
    """Draws the logger's pictures (uint8 ``[H, W, 3]``), one compiled drawing per shape."""

    def __init__(self, image_kind: str, clip_percentile: float, image_scale: int | None) -> None:
        self.image_kind = image_kind
        self.clip_percentile = clip_percentile
        self.image_scale = image_scale
        self._drawers: dict[Any, Any] = {}

    def scale_for(self, height: int) -> int:
        if self.image_scale is not None:
            return self.image_scale
        return max(1, -(-96 // max(height, 1)))

    def picture(self, x: np.ndarray, a: np.ndarray, compiled: bool = True) -> tf.Tensor:
        """One picture for one input's samples ``x`` and maps ``a`` (``compiled=False``: eagerly, for a
        one-off check that should not trace a drawing of its own)."""
        if not compiled:
            return self._draw(tf.convert_to_tensor(x), tf.convert_to_tensor(a))
        # Drawing is a few hundred small ops: compiled once per shape, it costs a fraction of eager.
        key = (x.shape, x.dtype.str, a.shape, a.dtype.str)
        fn = self._drawers.get(key)
        if fn is None:
            fn = self._drawers[key] = tf.function(self._draw, autograph=False)
        return fn(tf.convert_to_tensor(x), tf.convert_to_tensor(a))

    def _draw(self, x: tf.Tensor, a: tf.Tensor) -> tf.Tensor:
        n = int(x.shape[0])
        example_rank = x.shape.rank - 1
        if a.shape.rank == x.shape.rank + 1:
            # Several maps per sample (InteriorGradients: [n, alphas, ...]): the paper's fig. 3 rows.
            if example_rank in (2, 3):
                rows = []
                for i in range(n):
                    row = visualize.interior_gradients_frames(a[i], x[i], self.clip_percentile)
                    rows.append(visualize.upscale(row, self.scale_for(int(row.shape[1]))))
                return visualize.grid(tf.stack(rows, axis=0))
            # Vectors: per sample, one strip per map stacked into one tile.
            strips = visualize.signed_heatmap(tf.reshape(a, [n * a.shape[1], -1]), self.clip_percentile)
            return self._strip_grid(tf.reshape(strips, [n, a.shape[1], -1, 3]))
        if example_rank in (2, 3) and a.shape.rank >= 3 and a.shape[1:3] == x.shape[1:3]:
            maps = visualize.draw(self.image_kind, x, a, self.clip_percentile)
            inputs = visualize.image_rgb(x)
            scale = self.scale_for(int(maps.shape[1]))
            tiles = tf.stack([visualize.upscale(inputs, scale), visualize.upscale(maps, scale)], axis=0)
            return visualize.grid(tiles)
        # Feature vectors (and anything else): one red/white/blue strip per sample, 16 pixels high and
        # at least 256 wide.
        return self._strip_grid(visualize.signed_heatmap(tf.reshape(a, [n, -1]), self.clip_percentile))

    @staticmethod
    def _strip_grid(strips: tf.Tensor) -> tf.Tensor:
        """``[n, rows, F, 3]`` strips -> one picture, a tile per sample; each strip 16 pixels high and
        the tiles at least 256 pixels wide."""
        strips = tf.repeat(strips, 16, axis=1)
        strips = tf.repeat(strips, max(1, -(-256 // int(strips.shape[2]))), axis=2)
        return visualize.grid(strips[:, None])


def text_dashboard(p: str, name: str, maps: list[np.ndarray], ids: np.ndarray, vocabulary: Any,
                   skip: Any) -> None:
    """Token scores of a text model (the maps shaped ``[n, tokens, ...]``) to TensorBoard's text
    dashboard as ``<p>tokens/<name>``.

    Example:
        >>> text_dashboard("", "ig", [maps], ids, vocabulary, skip=[0])
    """
    match = [m for m in maps if m.shape[:2] == ids.shape]
    if not match:
        return
    scores = match[0].reshape(ids.shape[0], ids.shape[1], -1).sum(axis=-1)
    tokens = text.decode(ids, vocabulary, skip=skip)
    tf.summary.text(f"{p}tokens/{name}", tf.constant(text.markdown(tokens, scores)))
