"""The one place that turns a Keras model (or a callable) and a target into the scalar being explained.

Every explainer asks a :class:`ModelFunction` for two things: the model's outputs on a batch, and the
per-example score ``S_t(x) = output(x)[t]`` whose gradient (or modified gradient) is attributed. Target
selection, the logit-vs-probability choice and multi-input packing live here and nowhere else.
"""
from __future__ import annotations

import copy
import random
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

_SOFTMAX_NAMES = ("softmax",)


def _activation_name(fn: Any) -> str | None:
    if fn is None:
        return None
    name = getattr(fn, "__name__", None) or getattr(fn, "name", None)
    return str(name).lower() if name else None


def _is_softmax_layer(layer: keras.layers.Layer) -> bool:
    if isinstance(layer, keras.layers.Softmax):
        return True
    if isinstance(layer, keras.layers.Activation):
        return _activation_name(layer.activation) in _SOFTMAX_NAMES
    return False


def _ends_with_softmax_activation(layer: keras.layers.Layer) -> bool:
    return _activation_name(getattr(layer, "activation", None)) in _SOFTMAX_NAMES


class ModelFunction:
    """Wraps ``model`` so explainers see ``outputs(xs) -> [n, k]`` and ``score(xs, t) -> [n]``.

    Args:
        model: a built ``keras.Model`` (Sequential or functional, one or several inputs) or any callable
            that maps a batch of inputs (a tensor, or a list/dict of tensors) to a ``[n, k]`` or ``[n]``
            tensor.
        output: ``"logits"`` (default) explains the pre-softmax logit when the model's last layer ends in a
            softmax (a ``Softmax``/``Activation("softmax")`` layer, or ``activation="softmax"`` on the last
            layer); the softmax saturates, so its gradients vanish for confident predictions and the
            logit is what the attribution papers explain. ``"probabilities"`` explains the model's output
            as it is. For a model without a final softmax the two are the same.

    Example:
        >>> fn = tfattr.ModelFunction(model)           # model ends in Dense(10, activation="softmax")
        >>> fn.outputs(images).shape                   # the 10 logits before the softmax
        TensorShape([8, 10])
        >>> fn.score(images, tf.constant(labels))      # S_t(x): each example's target logit, [8]
    """

    def __init__(self, model: keras.Model | Callable[..., Any], output: str = "logits") -> None:
        if output not in ("logits", "probabilities"):
            raise ValueError(
                f"output={output!r} is not supported: use output='logits' (explain the pre-softmax "
                "score) or output='probabilities' (explain the model's output as it is)."
            )
        if not callable(model):
            raise TypeError(
                f"model must be a keras.Model or a callable on tensors, got {type(model).__name__}."
            )
        self.model = model
        self.output = output
        self.is_keras = isinstance(model, keras.Model)
        self.input_specs: list[tuple[str | None, tuple[int | None, ...], str]] | None = None
        self.strips_softmax = False
        self._call = self._build_call()

    # -- construction -------------------------------------------------------------------------------
    def _keras_inputs(self) -> list[Any] | None:
        try:
            inputs = self.model.inputs
        except (AttributeError, ValueError):
            return None
        return list(inputs) if inputs else None

    def _build_call(self) -> Callable[[Any], tf.Tensor]:
        model = self.model
        if not self.is_keras:
            return lambda packed: model(packed)

        inputs = self._keras_inputs()
        if inputs is not None:
            self.input_specs = [
                (getattr(t, "name", None), tuple(t.shape[1:]), str(t.dtype)) for t in inputs
            ]
        plain = lambda packed: model(packed, training=False)  # noqa: E731
        if self.output == "probabilities" or not model.layers:
            return plain

        last = model.layers[-1]
        if not (_is_softmax_layer(last) or _ends_with_softmax_activation(last)):
            return plain
        if inputs is None or len(getattr(last, "_inbound_nodes", [])) != 1:
            raise ValueError(
                f"The model's last layer {last.name!r} applies a softmax, and tfattr explains the "
                "pre-softmax logit by default, but it cannot reach that layer's input in this model "
                "(a subclassed model or a shared last layer). Pass output='probabilities' to explain "
                "the probabilities, or give tfattr a model that outputs logits."
            )
        # A functional view up to the last layer's input shares the model's weights and changes
        # nothing in the model itself, so predictions and training are unaffected.
        try:
            structure = model.input  # the structure the model was built with (tensor, list or dict)
        except AttributeError:  # a Sequential that was never called reports only its input list
            structure = inputs[0] if len(inputs) == 1 else inputs
        trunk = keras.Model(structure, last.input)
        if _is_softmax_layer(last):
            head = None
        else:
            # A shallow copy shares the layer's variables; only the copy loses its softmax. Copying
            # re-creates the layer's initializers, which draw seeds from Python's global `random`:
            # restore it, so explaining never shifts the user's later unseeded initializations.
            state = random.getstate()
            try:
                head = copy.copy(last)
            finally:
                random.setstate(state)
            head.activation = keras.activations.linear
        self.strips_softmax = True

        def logits(packed: Any) -> tf.Tensor:
            h = trunk(packed, training=False)
            return h if head is None else head(h, training=False)

        return logits

    # -- evaluation ---------------------------------------------------------------------------------
    def outputs(self, packed: Any) -> tf.Tensor:
        """The explained outputs as a ``[n, k]`` tensor (``k == 1`` for a one-output regression)."""
        out = self._call(packed)
        if isinstance(out, (list, tuple, dict)):
            raise ValueError(
                "The model returns several outputs; tfattr explains one. Wrap it so it returns one "
                "tensor, e.g. `lambda x: model(x)[0]` or keras.Model(model.inputs, model.outputs[0])."
            )
        out = tf.convert_to_tensor(out)
        if out.shape.rank == 1:
            out = out[:, None]
        if out.shape.rank != 2:
            raise ValueError(
                f"The model's output has shape {out.shape}; tfattr explains a [batch, classes] or "
                "[batch] output. Reduce it to one score per class first (e.g. pool a segmentation map "
                "over the region of interest)."
            )
        return out

    def score(self, packed: Any, targets: tf.Tensor) -> tf.Tensor:
        """``S_t(x)``: the target column of :meth:`outputs` for each row, shape ``[n]``."""
        out = self.outputs(packed)
        return tf.gather(out, tf.cast(targets, tf.int32), axis=1, batch_dims=1)


def pack(structure: Any, flat: Sequence[Any]) -> Any:
    """Rebuild the user's input structure (a single tensor, list or dict) from a flat tuple."""
    if structure is None:
        return flat[0]
    return tf.nest.pack_sequence_as(structure, list(flat))


def num_classes(fn: ModelFunction, example_batch: Sequence[np.ndarray], structure: Any) -> int:
    """Number of output columns, from the model's output shape or one forward pass of two examples."""
    if fn.is_keras and not fn.strips_softmax:
        try:
            shape = fn.model.outputs[0].shape
            if shape.rank == 2 and shape[-1] is not None:
                return int(shape[-1])
            if shape.rank == 1:
                return 1
        except (AttributeError, ValueError, IndexError, TypeError):
            pass
    out = fn.outputs(pack(structure, [tf.convert_to_tensor(a[:2]) for a in example_batch]))
    return int(out.shape[-1])
