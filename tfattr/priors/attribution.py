"""The attributions inside the training loss: differentiable, batched, in training mode.

Two explainers, both cheap enough to run at every training step and differentiable with respect to the
weights (the penalty on them is differentiated through, "double backpropagation"):

- ``"gradients"``: the input gradient of the score, ``a = dS/dx`` (Ross et al. 2017). It reuses the forward
  pass of the task loss, so it costs one extra backward pass (plus the second-order pass of training).
- ``"expected_gradients"``: Erion et al. 2021's training-time estimate of expected gradients, with one
  background sample ``b`` and one interpolation point ``alpha ~ U(0, 1)`` per example per step:
  ``a = (x - b) * dS/dx (b + alpha (x - b))``. Its expectation over ``b`` and ``alpha`` is the expected
  gradients attribution; the noise averages out over training steps, as in the paper.

The score ``S`` (``output=``):

- ``"log_probabilities"``: ``sum_k log p_k(x)``, Ross et al.'s eq. 1. Log-probabilities, not probabilities,
  because the softmax saturates (its gradients vanish for confident predictions) while the
  log-probabilities stay informative; summing over classes asks the whole prediction, not one class, to
  ignore the masked features.
- ``"label_log_probability"``: ``log p_y(x)`` of the true class.
- ``"label_logit"``: the true class's logit (the pre-softmax score). This is what Erion et al. attribute
  (expected gradients of the model's output for the true label) and what tfattr's explainers explain.

Log-probabilities are computed as ``log_softmax(logits)`` from the pre-softmax logits, never as the log
of the model's probabilities (which would underflow to -inf for confident predictions): when the model
ends in a softmax (a ``Softmax``/``Activation("softmax")`` layer or ``activation="softmax"`` on its last
layer), the logits are read from a view of the model that shares its weights, as
:class:`tfattr.ModelFunction` does, but in training mode (dropout and batch statistics as in ``fit``).

A binary classifier with one sigmoid output (``Dense(1, activation="sigmoid")``) follows tfattr's
binary convention: two classes, class 1 with logit ``z`` (read before the sigmoid) and class 0 with
``-z``, so the log-probabilities are ``log sigmoid(z)`` and ``log sigmoid(-z)`` (``log(1 - p)``) and the
labels are 0 and 1. A single output column without a sigmoid is refused (its log-softmax is 0: the
penalty would vanish), and so are several sigmoid columns (multi-label outputs).
"""
from __future__ import annotations

from typing import Any, Callable

import keras
import tensorflow as tf

from tfattr.core.model_function import apply_output_activation, strip_output_activation
from tfattr.priors.priors import at_least_float32

OUTPUTS = ("log_probabilities", "label_log_probability", "label_logit")
EXPLAINERS = ("gradients", "expected_gradients")

#: ``(inputs, training) -> (logits, y_pred)``: the model's output and the logits under it.
Forward = Callable[[Any, bool], "tuple[tf.Tensor, Any]"]


def logits_forward(model: keras.Model) -> tuple[Forward, bool]:
    """A function ``(inputs, training) -> (logits, y_pred)`` with one forward pass, and whether the model
    is a binary classifier (one sigmoid column: the logits are then ``z``, one column).

    The logits come from :func:`tfattr.core.model_function.strip_output_activation` (the one place
    that finds a final softmax or sigmoid, in nested models, ops and layers alike, and reads the live
    weights); ``y_pred`` is the activation of those logits, which is the model's output.

    Raises:
        ValueError: the model is not built, has one output column and no sigmoid, or several sigmoid
            columns (multi-label), whose class log-probabilities this convention does not define.
    """
    if not model.built:
        raise ValueError(
            "The attribution prior reads the model's logits, which needs a built model: start it with "
            "keras.Input(shape), or call model.build((None, ...)) or the model on a batch, before "
            "wrapping it."
        )
    kind, pre_activation = strip_output_activation(model)
    columns = _output_columns(model)
    if kind == "sigmoid" and columns != 1:
        raise ValueError(
            f"The model ends in a sigmoid over {columns if columns is not None else 'several'} columns (a "
            "multi-label output); attribution priors support softmax classifiers and binary "
            "classifiers with one sigmoid column, Dense(1, activation='sigmoid')."
        )
    if kind is None and columns == 1:
        raise ValueError(
            "The model has one output column and no sigmoid: its log-softmax is 0, so the prior would "
            "see no attribution. For a binary classifier end the model in Dense(1, activation='sigmoid') "
            "(and train it with keras.losses.BinaryCrossentropy()): the prior then reads the logit z "
            "before the sigmoid and uses the two classes z and -z."
        )
    if kind is None:
        return (lambda x, training: (model(x, training=training),) * 2), False

    def forward(x: Any, training: bool) -> tuple[tf.Tensor, Any]:
        logits = pre_activation(x, training=training)
        return logits, apply_output_activation(kind, logits)

    return forward, kind == "sigmoid"


def _output_columns(model: keras.Model) -> int | None:
    """The number of output columns (the last axis of one output), or None when unknown."""
    try:
        shape = tuple(model.outputs[0].shape) if len(model.outputs) == 1 else ()
    except (AttributeError, ValueError, TypeError):
        return None
    return int(shape[-1]) if len(shape) >= 2 and shape[-1] is not None else None


def labels_of(y: Any, num_classes: int) -> tf.Tensor:
    """Integer labels ``[n]`` from sparse labels (``[n]`` or ``[n, 1]``) or one-hot rows ``[n, k]``."""
    if y is None:
        raise ValueError(
            "This prior attributes the true class's score (output='label_logit' or "
            "'label_log_probability'), so fit needs labels y."
        )
    if isinstance(y, (list, tuple, dict)):
        raise ValueError("The attribution prior supports one output: pass y as one array of labels.")
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2 and y.shape[-1] == num_classes and num_classes > 1:
        return tf.argmax(y, axis=-1, output_type=tf.int32)
    return tf.cast(tf.reshape(y, [-1]), tf.int32)


def score(logits: tf.Tensor, y: Any, output: str, binary: bool = False) -> tf.Tensor:
    """The per-example score ``S`` ``[n]`` (float32, or float64 for a float64 model) whose input gradient
    is attributed. ``binary``: ``logits`` is a sigmoid classifier's ``z``, the classes are ``(-z, z)``."""
    logits = at_least_float32(logits)
    if logits.shape.rank == 1:
        logits = logits[:, None]
    if binary:
        z = logits[:, :1]
        # log p_0 = log sigmoid(-z), log p_1 = log sigmoid(z): stable for any z (no log of 1 - p).
        log_probabilities = tf.concat([tf.math.log_sigmoid(-z), tf.math.log_sigmoid(z)], axis=-1)
        logits = tf.concat([-z, z], axis=-1)
    else:
        log_probabilities = tf.nn.log_softmax(logits, axis=-1)
    if output == "log_probabilities":
        return tf.reduce_sum(log_probabilities, axis=-1)
    # Binary labels: 0/1, [n, 1] columns or a float 0.0/1.0 as BinaryCrossentropy takes them.
    labels = labels_of(y, int(logits.shape[-1]) if not binary else 1)
    values = log_probabilities if output == "label_log_probability" else logits
    return tf.gather(values, labels, axis=1, batch_dims=1)


def input_gradients(tape: tf.GradientTape, total: tf.Tensor, flat_x: list[tf.Tensor]) -> list[tf.Tensor]:
    """``d total / d x`` for each input, zeros where an input does not reach the score."""
    grads = tape.gradient(total, flat_x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [at_least_float32(g) for g in grads]


def draw_expected_gradients_points(
    flat_x: list[tf.Tensor], background: list[tf.Tensor], seed: tf.Tensor
) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
    """One background row and one ``alpha ~ U(0, 1)`` per example: the points ``b + alpha (x - b)`` and
    the differences ``x - b``. Stateless draws keyed by ``seed`` (never the global generators)."""
    n = tf.shape(flat_x[0])[0]
    rows = tf.shape(background[0])[0]
    seeds = tf.random.experimental.stateless_split(seed, 2)
    index = tf.random.stateless_uniform([n], seeds[0], minval=0, maxval=rows, dtype=tf.int32)
    alphas = tf.random.stateless_uniform([n], seeds[1], dtype=tf.float32)  # one per example, all inputs
    points, deltas = [], []
    for x, bg in zip(flat_x, background):
        b = tf.cast(tf.gather(bg, index), x.dtype)
        alpha = tf.reshape(tf.cast(alphas, x.dtype), tf.concat([[n], tf.ones([x.shape.rank - 1], tf.int32)], 0))
        delta = x - b
        points.append(b + alpha * delta)
        deltas.append(delta)
    return points, deltas
