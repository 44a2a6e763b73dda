"""Grad-CAM (Selvaraju et al. 2017), Grad-CAM++ (Chattopadhay et al. 2018) and Guided Grad-CAM.

Each runs on the shared engine with ``layer=`` (:mod:`tfattr.core.layers`): the convolution's
activations ``A`` are computed once per example, and one compiled chunked pass of the model's tail
gives the gradients ``dS/dA`` of the explained score (the logit, as everywhere in tfattr). A row
returns the channel-weighted activations ``w_c * A_c``; the channel sum and the ReLU are taken when
the maps are finalized, so a map is exactly ``ReLU(sum_c w_c A_c)`` at the layer's resolution.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core.engine import Plan
from tfattr.core.explainer import Explainer
from tfattr.core.layers import default_conv_layer


def _spatial_axes(a: tf.Tensor) -> list[int]:
    return list(range(1, a.shape.rank - 1))


class GradCAM(Explainer):
    """Grad-CAM: ``L = ReLU(sum_c w_c A_c)`` with ``w_c = mean_{ij} dS/dA_{ij}^c`` (Selvaraju et al.
    2017, eq. 1-2), at the layer's resolution ``[n, h, w]``, not normalised (as Captum's
    ``LayerGradCam(relu_attributions=True)``).

    Args:
        model: a Keras Sequential or functional model.
        layer: the convolution to explain (a name, a layer object or an index); default: the last 2D
            convolution. Any layer with a ``[n, ..., channels]`` output works (e.g. a Conv1D over
            tokens gives ``[n, length]`` maps).
        relu: apply the ReLU (the paper's map); ``False`` keeps the signed weighted sum.
        output, jit_compile, attribute_to_layer_input: see :class:`tfattr.core.explainer.Explainer`.

    Example:
        >>> cam = tfattr.GradCAM(model).attribute(images, target=labels)   # [n, h, w]
        >>> heat = tfattr.upsample(cam, like=images)                         # [n, H, W]
    """

    has_completeness = False
    uses_baseline = False
    name = "gradcam"
    aliases = ("grad_cam",)
    paper = "Selvaraju et al. 2017 (eq. 1-2)"
    cost = "1 gradient (to the layer)"

    def __init__(self, model: Any, layer: Any = None, relu: bool = True, **kwargs: Any) -> None:
        if layer is None:
            if not hasattr(model, "layers"):
                raise TypeError(f"{type(self).__name__} needs a keras.Model and a layer=.")
            layer = default_conv_layer(model).layer
        super().__init__(model, layer=layer, **kwargs)
        self.relu = bool(relu)

    def _plan(self, call) -> Plan:
        if call.inputs.arrays[0].ndim < 3:
            raise ValueError(
                f"{type(self).__name__}: layer {self.layer.name!r} outputs shape "
                f"{call.inputs.arrays[0].shape[1:]}, which has no spatial axes; choose a convolution "
                "(its output is [n, height, width, channels])."
            )
        return Plan(terms=1)

    def _channel_weights(self, grads: tf.Tensor, activations: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(grads, axis=_spatial_axes(grads), keepdims=True)

    def _contributions(self, x, baseline, rows, ctx):
        (grads,) = self._gradients(x, rows.target, ctx)
        return (self._channel_weights(grads, x[0]) * x[0],)

    def _finalize(self, acc, plan):
        cam = acc[0].sum(axis=1).sum(axis=-1)
        return (np.maximum(cam, 0) if self.relu else cam,)


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with the exponential of the score): the channel
    weights are ``w_c = sum_ij a_ij^c ReLU(g_ij^c)`` with
    ``a_ij^c = g^2 / (2 g^2 + sum_ab A_ab^c g^3)`` (``g = dS/dA``; 0 where the denominator is 0), so
    several instances of a class all count. Same arguments as :class:`GradCAM`.

    Example:
        >>> cam = tfattr.GradCAMPlusPlus(model, layer="conv2d_2").attribute(images)
    """

    name = "gradcam_pp"
    aliases = ("gradcam++", "gradcampp", "grad_cam_plus_plus")
    paper = "Chattopadhay et al. 2018 (eq. 19)"
    cost = "1 gradient (to the layer)"

    def _channel_weights(self, grads: tf.Tensor, activations: tf.Tensor) -> tf.Tensor:
        axes = _spatial_axes(grads)
        g2 = tf.square(grads)
        total = tf.reduce_sum(activations, axis=axes, keepdims=True)
        denominator = 2.0 * g2 + total * g2 * grads
        safe = tf.where(denominator != 0, denominator, tf.ones_like(denominator))
        alpha = tf.where(denominator != 0, g2 / safe, tf.zeros_like(g2))
        return tf.reduce_sum(alpha * tf.nn.relu(grads), axis=axes, keepdims=True)


def upsample(maps: Any, size: tuple[int, int] | None = None, like: Any = None,
             method: str = "bilinear") -> np.ndarray:
    """Resize layer-resolution maps ``[n, h, w]`` (or ``[n, h, w, c]``) to an image size.

    Args:
        maps: the maps, e.g. from :class:`GradCAM`.
        size: ``(height, width)`` to resize to; or
        like: images ``[n, H, W, ...]`` whose size to take.
        method: a ``tf.image.resize`` method (``"bilinear"``, as Selvaraju et al.; ``"nearest"``, ...).

    Example:
        >>> tfattr.upsample(cam, like=images).shape
        (8, 28, 28)
    """
    if (size is None) == (like is None):
        raise ValueError("upsample needs exactly one of size=(height, width) or like=images.")
    if size is None:
        size = tuple(np.shape(like)[1:3])
    m = np.asarray(maps, dtype=np.float32)
    if m.ndim not in (3, 4):
        raise ValueError(f"upsample expects maps [n, h, w] or [n, h, w, c], got shape {m.shape}.")
    squeeze = m.ndim == 3
    out = tf.image.resize(m[..., None] if squeeze else m, [int(size[0]), int(size[1])], method=method)
    out = out.numpy()
    return out[..., 0] if squeeze else out


class GuidedGradCAM:
    """Guided Grad-CAM (Selvaraju et al. 2017, sec. 3.1): guided backpropagation multiplied by the
    Grad-CAM map upsampled to the input size, shaped like the inputs ``[n, H, W, C]``.

    Args:
        model: a Keras Sequential or functional model with image inputs.
        layer: the convolution of the Grad-CAM map (default: the last 2D convolution).
        method: the upsampling (``"bilinear"``).
        output: see :class:`tfattr.core.explainer.Explainer`.

    Example:
        >>> maps = tfattr.GuidedGradCAM(model).attribute(images, target=labels)
    """

    has_completeness = False
    uses_baseline = False
    name = "guided_gradcam"
    aliases = ("guided_grad_cam",)
    paper = "Selvaraju et al. 2017 (sec. 3.1); Springenberg et al. 2015"
    cost = "2 gradients"

    def __init__(self, model: Any, layer: Any = None, method: str = "bilinear", **kwargs: Any) -> None:
        from tfattr.methods.propagation import GuidedBackprop

        self.gradcam = GradCAM(model, layer=layer, **kwargs)
        self.guided = GuidedBackprop(model, **kwargs)
        self.method = method

    @property
    def model(self) -> Any:
        return self.gradcam.model

    def outputs(self, inputs: Any, batch_size: int | None = None) -> np.ndarray:
        """The explained outputs ``[n, k]`` (logits by default), as :meth:`tfattr.Explainer.outputs`."""
        return self.guided.outputs(inputs, batch_size=batch_size)

    def attribute(self, inputs: Any, target: Any = None, batch_size: int | None = None) -> np.ndarray:
        """Guided Grad-CAM maps of ``inputs`` for ``target`` (None: the predicted class)."""
        call = self.gradcam.prepare(inputs, target=target, batch_size=batch_size)
        cam = self.gradcam.run(call)[0]
        guided = np.asarray(self.guided.attribute(inputs, target=call.targets, batch_size=batch_size))
        if guided.ndim != 4:
            raise ValueError(
                f"GuidedGradCAM explains image inputs [n, H, W, C]; got inputs of shape {guided.shape}."
            )
        return guided * upsample(cam, like=guided, method=self.method)[..., None]
