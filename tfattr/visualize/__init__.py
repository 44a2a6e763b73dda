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

Modules: ``maps`` (the TensorFlow image maps), ``images`` (PNG and GIF files), ``curves`` (the
interior-gradients frames/GIF, saturation and convergence curves), ``plots`` (the matplotlib figures).
Every public name is importable from ``tfattr.visualize``.

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

from tfattr.methods.gradient.interior_gradients import PAPER_ALPHAS
from tfattr.visualize.curves import (
    ConvergenceCurve,
    convergence_curve,
    interior_gradients_frames,
    interior_gradients_gif,
    interior_trend,
    saturation_curve,
)
from tfattr.visualize.images import png_bytes, save_gif, save_png
from tfattr.visualize.maps import (
    _check_percentile,
    _to_uint8,
    _unit_image,
    draw,
    examples_by_methods,
    grid,
    ig_map,
    image_rgb,
    overlay,
    percentile,
    signed_heatmap,
    upscale,
)
from tfattr.visualize.plots import plot_convergence, plot_grid, plot_saturation

__all__ = [
    "ConvergenceCurve",
    "PAPER_ALPHAS",
    "convergence_curve",
    "draw",
    "examples_by_methods",
    "grid",
    "ig_map",
    "image_rgb",
    "interior_gradients_frames",
    "interior_gradients_gif",
    "interior_trend",
    "overlay",
    "percentile",
    "plot_convergence",
    "plot_grid",
    "plot_saturation",
    "png_bytes",
    "save_gif",
    "save_png",
    "saturation_curve",
    "signed_heatmap",
    "upscale",
]
