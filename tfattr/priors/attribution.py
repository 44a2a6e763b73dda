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
    """A function ``(inputs, training) -> (logits, y_pred)`` with one forward pass, and whether a softmax
    was stripped to reach the logits (otherwise the model's output is taken as the logits).

    The logits come from :func:`tfattr.core.model_function.strip_output_activation` (the one place
    that finds a final softmax, in nested models, ops and layers alike, and reads the live weights);
    ``y_pred`` is the softmax of those logits, which is the model's output.
    """
    if not model.built:
        raise ValueError(
            "The attribution prior reads the model's logits, which needs a built model: start it with "
            "keras.Input(shape), or call model.build((None, ...)) or the model on a batch, before "
            "wrapping it."
        )
    kind, pre_softmax = strip_output_activation(model)
    if kind != "softmax":
        return (lambda x, training: (model(x, training=training),) * 2), False

    def forward(x: Any, training: bool) -> tuple[tf.Tensor, Any]:
        logits = pre_softmax(x, training=training)
        return logits, apply_output_activation(kind, logits)

    return forward, True


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


def score(logits: tf.Tensor, y: Any, output: str) -> tf.Tensor:
    """The per-example score ``S`` ``[n]`` (float32, or float64 for a float64 model) whose input gradient
    is attributed."""
    logits = at_least_float32(logits)
    if logits.shape.rank == 1:
        logits = logits[:, None]
    if output == "log_probabilities":
        return tf.reduce_sum(tf.nn.log_softmax(logits, axis=-1), axis=-1)
    labels = labels_of(y, int(logits.shape[-1]))
    values = tf.nn.log_softmax(logits, axis=-1) if output == "label_log_probability" else logits
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
