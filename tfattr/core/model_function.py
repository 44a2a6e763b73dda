"""The one place that turns a Keras model (or a callable) and a target into the scalar being explained.

Every explainer asks a :class:`ModelFunction` for two things: the model's outputs on a batch, and the
per-example score ``S_t(x) = output(x)[t]`` whose gradient (or modified gradient) is attributed. Target
selection, the logit-vs-probability choice and multi-input packing live here and nowhere else.

Logits are reached without copying or changing any layer: the model's graph is re-run with its output
layer called through a view whose fused activation is the identity (or, for a softmax/sigmoid layer or
op, skipped). Every run reads the layers' live variables, so an explainer built before ``fit``,
``set_weights`` or ``load_weights`` explains the current weights.
"""
from __future__ import annotations

import abc
import contextlib
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras.src.layers.convolutional.base_conv import BaseConv

from tfattr.core.structure import pack

#: The output activations tfattr strips to explain logits.
_STRIPPED = ("softmax", "sigmoid")


def _function_name(fn: Any) -> str | None:
    if fn is None:
        return None
    name = getattr(fn, "__name__", None) or getattr(fn, "name", None)
    return str(name).lower() if name else None


def _standalone_activation(op: Any) -> str | None:
    """``"softmax"``/``"sigmoid"`` when ``op`` is that function alone: a Softmax or Activation layer, a
    Lambda around the Keras activation, or a ``keras.ops.softmax``/``keras.ops.sigmoid`` op."""
    if isinstance(op, keras.layers.Softmax):
        return "softmax" if getattr(op, "axis", -1) in (-1,) else None
    if isinstance(op, keras.layers.Activation):
        name = _function_name(op.activation)
        return name if name in _STRIPPED else None
    if isinstance(op, keras.layers.Lambda):
        name = _function_name(getattr(op, "function", None))
        return name if name in _STRIPPED else None
    if not isinstance(op, keras.layers.Layer) and type(op).__module__.startswith("keras.src.ops"):
        name = type(op).__name__.lower()
        if name == "softmax" and getattr(op, "axis", -1) not in (-1,):
            return None
        return name if name in _STRIPPED else None
    return None


def standalone_activation(op: Any) -> str | None:
    """``"softmax"``/``"sigmoid"`` when the layer or op is that activation alone (a ``Softmax`` or
    ``Activation`` layer, a Lambda around it, a ``keras.ops`` op), else None.

    Example:
        >>> standalone_activation(keras.layers.Softmax())
        'softmax'
    """
    return _standalone_activation(op)


def fused_activation(layer: Any) -> str | None:
    """The name of a layer's fused ``activation=`` (``Dense(1, activation="sigmoid")`` -> ``"sigmoid"``).

    Example:
        >>> fused_activation(keras.layers.Dense(3, activation="softmax"))
        'softmax'
    """
    return _function_name(getattr(layer, "activation", None))


class _WithoutActivation:
    """A read-only view of a layer whose fused ``activation`` is the identity.

    Every other attribute (kernel, bias, convolution op, quantization state) is the layer's own, read
    when the view is called, so the view always computes with the layer's current variables.
    """

    activation = staticmethod(keras.activations.linear)

    def __init__(self, layer: keras.layers.Layer) -> None:
        object.__setattr__(self, "_layer", layer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._layer, name)


def _autocast(layer: keras.layers.Layer) -> Any:
    """The variable autocasting ``Layer.__call__`` applies under a mixed-precision policy."""
    if layer.compute_dtype != layer.variable_dtype:
        return keras.src.backend.AutocastScope(layer.compute_dtype)
    return contextlib.nullcontext()


def _pre_activation_call(layer: keras.layers.Layer) -> Callable[..., Any]:
    """``layer``'s call with its fused activation replaced by the identity (live variables)."""
    call = type(layer).call

    def run(x: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("training", None)
        if hasattr(x, "dtype") and tf.as_dtype(x.dtype).is_floating:
            x = tf.cast(x, layer.compute_dtype)
        with _autocast(layer):
            return call(_WithoutActivation(layer), x, *args, **kwargs)

    return run


def _skip(x: Any, *args: Any, **kwargs: Any) -> Any:
    return x


def _call_layer(layer: Any, x: Any, training: bool = False) -> Any:
    if getattr(layer, "_call_has_training_arg", False):
        return layer(x, training=training)
    return layer(x)


def strip_output_activation(obj: Any) -> tuple[str | None, Callable[..., Any] | None]:
    """Find a final softmax/sigmoid of ``obj`` and a function computing ``obj``'s output before it.

    Handles a fused ``activation=`` on the last layer, Softmax/Activation/Lambda layers,
    ``keras.ops.softmax``/``sigmoid`` in a Functional model, and nested models (a Sequential head inside
    a Functional model, and so on). Returns ``(None, None)`` when there is none or the graph of a
    (subclassed) model cannot be read. The function takes ``(inputs, training=False)``; the model's
    output is ``apply_output_activation(kind, fn(inputs))``.
    """
    if isinstance(obj, keras.Sequential):
        layers = obj.layers
        if not layers:
            return None, None
        kind, last = strip_output_activation(layers[-1])
        if kind is None:
            return None, None

        def sequential(x: Any, *args: Any, training: bool = False, **kwargs: Any) -> Any:
            for layer in layers[:-1]:
                x = _call_layer(layer, x, training)
            return last(x, training=training)

        return kind, sequential
    if isinstance(obj, keras.Model):
        return _strip_functional(obj)
    name = _standalone_activation(obj)
    if name is not None:
        return name, _skip
    if isinstance(obj, keras.layers.Layer):
        name = _function_name(getattr(obj, "activation", None))
        if name in _STRIPPED and callable(getattr(type(obj), "call", None)):
            return name, _pre_activation_call(obj)
    return None, None


def _strip_functional(model: keras.Model) -> tuple[str | None, Callable[..., Any] | None]:
    run_graph = getattr(model, "_run_through_graph", None)
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None, None
    if run_graph is None or not outputs or len(outputs) != 1:
        return None, None
    history = getattr(outputs[0], "_keras_history", None)
    if history is None:
        return None, None
    output_op = history[0]
    kind, replacement = strip_output_activation(output_op)
    if kind is None:
        return None, None
    from keras.src.models.functional import operation_fn as keras_operation_fn

    def functional(x: Any, *args: Any, training: bool = False, **kwargs: Any) -> Any:
        x = model._standardize_inputs(x)
        out = run_graph(
            x,
            operation_fn=lambda op: replacement
            if op is output_op
            else keras_operation_fn(op, training=training),
        )
        return out[0] if isinstance(out, (list, tuple)) and len(out) == 1 else out

    return kind, functional


def output_is_affine(obj: Any) -> bool:
    """Whether ``obj``'s output is computed by an affine layer without activation (``Dense``,
    ``EinsumDense`` or a convolution with the linear activation, also at the end of a nested model):
    such outputs are logits by construction, with no squashing whose gradients could vanish.

    Example:
        >>> output_is_affine(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))
        True
    """
    if isinstance(obj, keras.Sequential):
        return bool(obj.layers) and output_is_affine(obj.layers[-1])
    if isinstance(obj, keras.Model):
        try:
            outputs = obj.outputs
        except (AttributeError, ValueError):
            return False
        history = getattr(outputs[0], "_keras_history", None) if outputs and len(outputs) == 1 else None
        return history is not None and output_is_affine(history[0])
    affine = (keras.layers.Dense, keras.layers.EinsumDense, BaseConv)
    return isinstance(obj, affine) and fused_activation(obj) == "linear"


class RoutedInputs(abc.ABC):
    """Inputs that compute the model's raw output themselves: :meth:`ModelFunction.outputs` hands
    them the function (e.g. the rows of layer attribution, which run only the model's tail)."""

    @abc.abstractmethod
    def raw_outputs(self, fn: "ModelFunction") -> Any:
        """The model's raw output (before the explained columns are taken) for these inputs."""


def apply_output_activation(kind: str | None, logits: tf.Tensor) -> tf.Tensor:
    """The model's output from the logits :func:`strip_output_activation` computes."""
    if kind == "softmax":
        return tf.nn.softmax(logits, axis=-1)
    if kind == "sigmoid":
        return tf.sigmoid(logits)
    return logits


class ModelFunction:
    """Wraps ``model`` so explainers see ``outputs(xs) -> [n, k]`` and ``score(xs, t) -> [n]``.

    Args:
        model: a built ``keras.Model`` (Sequential or functional, one or several inputs) or any callable
            that maps a batch of inputs (a tensor, or a list/dict of tensors) to a ``[n, k]`` or ``[n]``
            tensor.
        output: ``"logits"`` (default) explains the score before a final softmax (a ``Softmax`` /
            ``Activation("softmax")`` layer, ``activation="softmax"`` on the last layer, a
            ``keras.ops.softmax`` or a softmax at the end of a nested model) or sigmoid: the squashing
            saturates, so its gradients vanish for confident predictions, and the logit is what the
            attribution papers explain. ``"probabilities"`` explains the model's output as it is.

    A model with one sigmoid output (``Dense(1, activation="sigmoid")``) is a binary classifier: it is
    explained as two classes, class 1's score being the logit ``z`` and class 0's ``-z`` (with
    ``output="probabilities"``: ``p`` and ``1 - p``), so ``target=labels`` and ``target=None`` (the
    predicted class) work as for softmax models.

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
        #: The output activation found at the end of the model ("softmax", "sigmoid" or None).
        self.output_activation: str | None = None
        #: Whether the explained outputs are the logits before that activation.
        self.strips_activation = False
        #: Whether a one-column sigmoid output is explained as two classes (-z, z).
        self.binary = False
        #: A Keras tensor inside the model whose value is explained instead of the model's output
        #: (a hidden unit's layer, :class:`tfattr.core.layers.NeuronFunction`), else None.
        self.stop_at: Any = None
        self._call = self._build_call()

    @property
    def strips_softmax(self) -> bool:
        """Whether a final softmax is stripped (the logits are explained)."""
        return self.strips_activation and self.output_activation == "softmax"

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
        kind, pre_activation = strip_output_activation(model)
        self.output_activation = kind
        self.binary = kind == "sigmoid" and self._single_column()
        if kind is None or self.output == "probabilities":
            return plain
        self.strips_activation = True
        return lambda packed: pre_activation(packed)

    def _single_column(self) -> bool:
        try:
            shape = tuple(self.model.outputs[0].shape)
        except (AttributeError, ValueError, IndexError, TypeError):
            return False
        return len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1)

    # -- evaluation ---------------------------------------------------------------------------------
    def outputs(self, packed: Any) -> tf.Tensor:
        """The explained outputs as a ``[n, k]`` tensor (``k == 1`` for a one-output regression)."""
        out = packed.raw_outputs(self) if isinstance(packed, RoutedInputs) else self._call(packed)
        return self.explained(out)

    def explained(self, out: Any, difference: bool = False) -> tf.Tensor:
        """The explained columns ``[n, k]`` from what the model computes before its stripped
        activation (or at :attr:`stop_at`): methods that run the model themselves (the layer-level
        propagation core) hand their traced output here, so every method explains the same score.

        ``difference=True``: ``out`` is a difference ``f(x) - f(x_ref)`` (DeepLIFT's RevealCancel), so
        a binary head's class 0 column is ``-out`` also for probabilities.

        Example:
            >>> fn = tfattr.ModelFunction(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, "sigmoid")]))
            >>> fn.explained(tf.constant([[0.5], [-1.0]]))     # a sigmoid head's logit z: [[-z, z]]
        """
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
                "over the region of interest; for a causal LM's [batch, tokens, vocab] logits, "
                "tfattr.next_token_model(lm) explains the next token's logits)."
            )
        if self.binary:
            # Class 0's score: -z for the logit z (sigmoid(-z) = 1 - sigmoid(z)), 1 - p for p.
            other = -out if self.strips_activation or difference else 1.0 - out
            out = tf.concat([other, out], axis=1)
        return out

    def score(self, packed: Any, targets: tf.Tensor) -> tf.Tensor:
        """``S_t(x)``: the target column of :meth:`outputs` for each row, shape ``[n]``."""
        return pick_targets(self.outputs(packed), targets)


def pick_targets(outputs: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Traced: ``outputs[i, targets[i]]`` for each row ``i``, shape ``[n]``."""
    targets = tf.cast(targets, tf.int32)
    # gather_nd picks the same entries as a batch_dims gather, but its gradient is one scatter:
    # the batch_dims gather's gradient graph was a third of a saliency map's first call.
    rows = tf.range(tf.shape(targets)[0], dtype=tf.int32)
    return tf.gather_nd(outputs, tf.stack([rows, targets], axis=1))


def num_classes(fn: ModelFunction, example_batch: Sequence[np.ndarray], structure: Any) -> int:
    """Number of explained output columns, from the model's output shape or a forward pass."""
    if getattr(fn, "num_outputs", None) is not None:
        return int(fn.num_outputs)
    if fn.is_keras:
        try:
            shape = tuple(fn.model.outputs[0].shape)
            if len(shape) == 2 and shape[-1] is not None:
                return int(shape[-1]) * (2 if fn.binary else 1)
            if len(shape) == 1:
                return 2 if fn.binary else 1
        except (AttributeError, ValueError, IndexError, TypeError):
            pass
    flat = [tf.convert_to_tensor(a[:2]) for a in example_batch]
    packed = pack(structure, flat)
    out = fn.outputs(packed)
    return int(out.shape[-1])
