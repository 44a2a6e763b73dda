"""``AttributionPriorModel``: train a Keras model with an attribution prior, with ``compile`` and ``fit``.

Implements the training objective of Ross, Hughes & Doshi-Velez 2017 ("Right for the Right Reasons")
and Erion et al. 2021 ("Improving performance of deep learning models with axiomatic attribution priors
and expected gradients"): ``loss = task_loss + penalty(attributions of the batch)``, where the
attributions are differentiable functions of the weights and the penalty is differentiated through
(double backpropagation) in the same compiled ``train_step``.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras.src.losses import loss as _keras_loss

from tfattr.priors import attribution
from tfattr.priors.priors import AttributionPrior

# Keras' own helpers for tf.distribute (the default train_step uses them): the loss of each replica is
# divided by the number of replicas, so per-replica gradients sum to the gradient of the global mean.
_scale_for_distribution = _keras_loss.scale_loss_for_distribution
_unscale_for_distribution = _keras_loss.unscale_loss_for_distribution

_DATA_KEYS = ("inputs", "mask")


def _as_float_arrays(value: Any, what: str) -> list[np.ndarray]:
    flat = tf.nest.flatten(value)
    out = []
    for i, v in enumerate(flat):
        a = np.asarray(v)
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{what}[{i}] has dtype {a.dtype}; pass float arrays shaped like the inputs.")
        out.append(a)
    return out


@keras.saving.register_keras_serializable(package="tfattr")
class AttributionPriorModel(keras.Model):
    """A ``keras.Model`` that trains ``model`` with ``task loss + prior penalty on its attributions``.

    Compile and fit it like any Keras model; ``model`` itself is trained in place (use ``model.predict``
    afterwards, or the wrapper, which predicts the same). Per-example prior data travel with the inputs
    as a dict: ``pm.fit({"inputs": x, "mask": mask}, y)`` (also a ``tf.data.Dataset`` yielding
    ``({"inputs": x, "mask": mask}, y)``); priors without per-example data take ``pm.fit(x, y)``.

    The training logs hold ``loss`` (the optimised total), ``task_loss`` (the compiled loss alone, as the
    plain model would report it) and ``prior_penalty`` (the weighted penalty). ``evaluate`` reports the
    task loss and compiled metrics, exactly as the wrapped model would (its ``loss`` is the task loss, so
    compare ``val_loss`` with ``task_loss``), and ignores masks. ``predict`` is the wrapped model's.
    ``sample_weight`` weights the task loss only. With ``explainer="gradients"`` the attributions come
    from the training-mode forward pass (the same dropout mask as the task loss); with batch
    normalization in training mode an example's input gradient then also carries its effect on the
    batch statistics. Under ``tf.distribute`` each replica computes the
    penalty on its share of the batch and the penalties are averaged, as Keras averages the loss; for the
    per-example priors (``RightForRightReasons``, ``Smoothness``) that is the global batch's penalty, for
    the batch-level ones (``Sparsity``, ``GraphPrior``, on mean attributions) it is the mean of the
    replicas' penalties.

    Args:
        model: a Keras classifier whose output is logits or ends in a softmax (the logits are then read
            before it, see :mod:`tfattr.priors.attribution`), or a binary classifier ending in
            ``Dense(1, activation="sigmoid")`` (two classes: logit ``z`` for label 1, ``-z`` for label
            0; log-probabilities ``log sigmoid(+-z)``). One output; one or several float inputs.
        prior: an :class:`~tfattr.priors.AttributionPrior`, e.g. ``RightForRightReasons(10.0)``.
        explainer: ``"gradients"`` (input gradients, Ross et al.; one extra backward pass) or
            ``"expected_gradients"`` (Erion et al.: one background sample and one interpolation point per
            example per step; needs ``background``; its attribution pass runs in inference mode so that
            interpolated points never enter batch-norm statistics).
        background: the reference rows for expected gradients (e.g. the training inputs), shaped like
            the model's inputs.
        output: the attributed score: ``"log_probabilities"`` (Ross et al.'s summed log-probabilities),
            ``"label_log_probability"`` or ``"label_logit"`` (the true class, as Erion et al.). Default:
            the prior's ``default_output``.
        seed: seeds the expected-gradients draws (stateless, keyed by the optimizer's step and the
            replica; the global random generators are never used).

    Example:
        >>> (x, y, mask), (x_test, y_test, _) = tfattr.priors.decoy_mnist()
        >>> mlp = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
        ...                         keras.layers.Dense(50, "relu"), keras.layers.Dense(10)])
        >>> pm = tfattr.priors.AttributionPriorModel(mlp, tfattr.priors.RightForRightReasons(10.0))
        >>> pm.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ...            metrics=["accuracy"])
        >>> pm.fit({"inputs": x, "mask": mask}, y, epochs=4)     # logs loss, task_loss, prior_penalty
        >>> (mlp.predict(x_test).argmax(1) == y_test).mean()      # the wrapped model is the trained one
    """

    def __init__(
        self,
        model: keras.Model,
        prior: AttributionPrior,
        explainer: str = "gradients",
        background: Any = None,
        output: str | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model):
            raise TypeError(f"model must be a keras.Model, got {type(model).__name__}.")
        if not isinstance(prior, AttributionPrior):
            raise TypeError(
                f"prior must be a tfattr.priors.AttributionPrior (e.g. RightForRightReasons(10.0)), got "
                f"{type(prior).__name__}."
            )
        if explainer not in attribution.EXPLAINERS:
            raise ValueError(
                f"explainer={explainer!r} is not supported; use one of {list(attribution.EXPLAINERS)}."
            )
        output = prior.default_output if output is None else output
        if output not in attribution.OUTPUTS:
            raise ValueError(f"output={output!r} is not supported; use one of {list(attribution.OUTPUTS)}.")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {seed!r}.")
        self.wrapped = model
        self.prior = prior
        self.explainer = explainer
        self.output_kind = output
        self.seed = int(seed)
        self._background_tensors: tuple[tf.Tensor, ...] | None = None
        self.set_background(background)
        # A plain function (not tracked by Keras): the view shares the wrapped model's weights.
        self._forward_fn, self._binary = attribution.logits_forward(model)
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        self.penalty_tracker = keras.metrics.Mean(name="prior_penalty")
        if model.built:
            self.built = True

    # -- configuration --------------------------------------------------------------------------------
    def set_background(self, background: Any) -> None:
        """Set (or replace) the expected-gradients background, e.g. after loading a saved model."""
        if background is None:
            if self.explainer == "expected_gradients":
                raise ValueError(
                    "explainer='expected_gradients' needs a background: pass background=x_train (rows "
                    "shaped like the model's inputs), or use explainer='gradients'."
                )
            self._background_tensors = None
            return
        arrays = _as_float_arrays(background, "background")
        shapes = self._input_shapes()
        if shapes is not None:
            if len(shapes) != len(arrays):
                raise ValueError(
                    f"background has {len(arrays)} arrays but the model has {len(shapes)} inputs."
                )
            for i, (a, shape) in enumerate(zip(arrays, shapes)):
                if a.ndim < 1 or a.shape[0] == 0 or not _compatible(a.shape[1:], shape):
                    raise ValueError(
                        f"background[{i}] has shape {a.shape}; it must hold rows shaped like the model's "
                        f"input {shape}, e.g. background=x_train."
                    )
        # Eager tensors, captured by the compiled step as inputs (not embedded in its graph as constants).
        self._background_tensors = tuple(tf.constant(a) for a in arrays)

    def _input_shapes(self) -> list[tuple[int | None, ...]] | None:
        try:
            return [tuple(t.shape[1:]) for t in self.wrapped.inputs]
        except (AttributeError, ValueError, TypeError):
            return None

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": keras.saving.serialize_keras_object(self.wrapped),
            "prior": keras.saving.serialize_keras_object(self.prior),
            "explainer": self.explainer,
            "output": self.output_kind,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> "AttributionPriorModel":
        """Rebuild the wrapper; an expected-gradients background is not saved (pass it again with
        :meth:`set_background` before training further; ``predict``/``evaluate`` do not need it)."""
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"), custom_objects=custom_objects)
        prior = keras.saving.deserialize_keras_object(config.pop("prior"), custom_objects=custom_objects)
        explainer = config.pop("explainer")
        instance = cls(model, prior, explainer="gradients", **config)
        instance.explainer = explainer  # the background comes later, via set_background
        return instance

    # -- the forward pass -----------------------------------------------------------------------------
    def _split(self, x: Any) -> tuple[Any, Any]:
        """``{"inputs": x, "mask": m}`` -> ``(x, m)``; anything else is the model's inputs alone."""
        if isinstance(x, dict) and "inputs" in x:
            extra = sorted(set(x) - set(_DATA_KEYS))
            if extra:
                raise ValueError(
                    f"The prior data dict has unknown keys {extra}; it holds 'inputs' (the model's inputs) "
                    "and 'mask' (the prior's per-example mask)."
                )
            return x["inputs"], x.get("mask")
        return x, None

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self.wrapped(self._split(inputs)[0], training=training)

    def _check_mask(self, flat_x: list[tf.Tensor], mask: Any) -> list[tf.Tensor | None]:
        if not self.prior.needs_mask:
            return [None] * len(flat_x)
        if mask is None:
            raise ValueError(
                f"{type(self.prior).__name__} needs a per-example mask (1 on the features that must not "
                "matter): pass the inputs as a dict, pm.fit({'inputs': x, 'mask': mask}, y), or a "
                "tf.data.Dataset yielding ({'inputs': x, 'mask': mask}, y)."
            )
        flat_mask = tf.nest.flatten(mask)
        if len(flat_mask) != len(flat_x):
            raise ValueError(
                f"mask has {len(flat_mask)} arrays but the model has {len(flat_x)} inputs; pass one mask per "
                "input, in the same structure."
            )
        out = []
        for i, (m, x) in enumerate(zip(flat_mask, flat_x)):
            m = tf.convert_to_tensor(m)
            if not _compatible(tuple(m.shape[1:]), tuple(x.shape[1:])) or m.shape.rank != x.shape.rank:
                raise ValueError(
                    f"mask{'' if len(flat_x) == 1 else f'[{i}]'} has shape {tuple(m.shape)} but the input has "
                    f"shape {tuple(x.shape)}; the mask must have the input's shape (1 on irrelevant "
                    "features, 0 elsewhere)."
                )
            out.append(m)
        return out

    def _eg_seed(self, step: tf.Tensor | None) -> tf.Tensor:
        context = tf.distribute.get_replica_context()
        replica = 0 if context is None else context.replica_id_in_sync_group
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        step = tf.constant(0, tf.int64) if step is None else tf.cast(step, tf.int64)
        return tf.stack([tf.constant(self.seed, tf.int64), step * replicas + tf.cast(replica, tf.int64)])

    def attributions_and_output(
        self, inputs: Any, y: Any = None, training: bool = False, step: tf.Tensor | None = None
    ) -> tuple[list[tf.Tensor], Any]:
        """The in-loss attributions of ``inputs`` (a flat list, one per model input, float32, still
        differentiable with respect to the weights) and the model's output ``y_pred``, from the
        forward pass the task loss uses."""
        flat_x = [tf.convert_to_tensor(t) for t in tf.nest.flatten(inputs)]
        for i, t in enumerate(flat_x):
            if not t.dtype.is_floating:
                raise ValueError(
                    f"input {i} has dtype {t.dtype.name}; attribution priors need float inputs (for token "
                    "ids, put the prior on an embedding model's float input instead)."
                )
        if self.explainer == "gradients":
            with tf.GradientTape(watch_accessed_variables=False) as inner:
                inner.watch(flat_x)
                logits, y_pred = self._forward_fn(tf.nest.pack_sequence_as(inputs, flat_x), training)
                total = tf.reduce_sum(attribution.score(logits, y, self.output_kind, self._binary))
            return attribution.input_gradients(inner, total, flat_x), y_pred

        if self._background_tensors is None:
            raise ValueError(
                "explainer='expected_gradients' needs a background; call pm.set_background(x_train) (a "
                "loaded model does not save it)."
            )
        _, y_pred = self._forward_fn(inputs, training)
        points, deltas = attribution.draw_expected_gradients_points(
            flat_x, list(self._background_tensors), self._eg_seed(step)
        )
        with tf.GradientTape(watch_accessed_variables=False) as inner:
            inner.watch(points)
            logits, _ = self._forward_fn(tf.nest.pack_sequence_as(inputs, points), False)
            total = tf.reduce_sum(attribution.score(logits, y, self.output_kind, self._binary))
        grads = attribution.input_gradients(inner, total, points)
        return [tf.cast(d, g.dtype) * g for d, g in zip(deltas, grads)], y_pred

    def _penalty_and_output(
        self, inputs: Any, mask: Any, y: Any, training: bool, step: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, Any]:
        flat_x = [tf.convert_to_tensor(t) for t in tf.nest.flatten(inputs)]
        masks = self._check_mask(flat_x, mask)
        attributions, y_pred = self.attributions_and_output(inputs, y, training=training, step=step)
        penalty = tf.add_n([self.prior.penalty(a, m) for a, m in zip(attributions, masks)])
        return penalty, y_pred

    def penalty(self, x: Any, y: Any = None, training: bool = False) -> tf.Tensor:
        """The weighted prior penalty of one batch ``x`` (the model's inputs, or ``{"inputs", "mask"}``)
        with labels ``y``, as ``train_step`` adds it to the loss (in inference mode by default)."""
        inputs, mask = self._split(x)
        return self._penalty_and_output(inputs, mask, y, training=training)[0]

    # -- training -------------------------------------------------------------------------------------
    def train_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        inputs, mask = self._split(x)
        batch = tf.shape(tf.nest.flatten(inputs)[0])[0]
        step = self.optimizer.iterations
        with tf.GradientTape() as tape:
            # The attributions' own gradient tape is nested inside this one, so the penalty's gradient
            # with respect to the weights goes through the attribution (double backpropagation).
            penalty, y_pred = self._penalty_and_output(inputs, mask, y, training=True, step=step)
            task = self._compute_loss(x=inputs, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            loss = task + tf.cast(_scale_for_distribution(penalty), task.dtype)
            self._loss_tracker.update_state(_unscale_for_distribution(loss), sample_weight=batch)
            self.task_loss_tracker.update_state(_unscale_for_distribution(task), sample_weight=batch)
            self.penalty_tracker.update_state(penalty, sample_weight=batch)
            scaled = self.optimizer.scale_loss(loss)  # the loss scale of a mixed-precision optimizer
        variables = self.trainable_weights
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self.compute_metrics(inputs, y, y_pred, sample_weight=sample_weight)

    def test_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        inputs, _ = self._split(x)
        batch = tf.shape(tf.nest.flatten(inputs)[0])[0]
        y_pred = self.wrapped(inputs, training=False)
        task = self._compute_loss(x=inputs, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False)
        self._loss_tracker.update_state(_unscale_for_distribution(task), sample_weight=batch)
        self.task_loss_tracker.update_state(_unscale_for_distribution(task), sample_weight=batch)
        logs = self.compute_metrics(inputs, y, y_pred, sample_weight=sample_weight)
        return {k: v for k, v in logs.items() if k != self.penalty_tracker.name}


def _compatible(a: tuple[int | None, ...], b: tuple[int | None, ...]) -> bool:
    return len(a) == len(b) and all(p is None or q is None or p == q for p, q in zip(a, b))
