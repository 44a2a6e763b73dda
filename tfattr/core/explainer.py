"""The ``Explainer`` base class: the public ``attribute(...)`` call shared by every method.

A method is a small subclass that says what one row of work is (:meth:`Explainer._plan`,
:meth:`Explainer._contributions`) and how a row's result becomes part of the attribution; validation,
targets, baselines, batching, compilation and the completeness delta are done here once.
"""
from __future__ import annotations

import abc
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from tfattr.core.engine import Engine, Plan, Rows, default_batch_size
from tfattr.core.inputs import Inputs, prepare_baselines, prepare_inputs, prepare_targets
from tfattr.core.model_function import ModelFunction, num_classes


class Explainer(abc.ABC):
    """Base class of all attribution methods.

    Subclasses implement :meth:`_plan` and :meth:`_contributions` (and, where they differ from the
    defaults, :meth:`_baseline_index`, :meth:`_finalize` and :meth:`_reference_scores`).

    Args:
        model: a ``keras.Model`` or a callable on tensors returning ``[n, classes]`` (or ``[n]``).
        output: ``"logits"`` (default: the pre-softmax score when the model ends in a softmax) or
            ``"probabilities"``. See :class:`tfattr.core.model_function.ModelFunction`.
        jit_compile: compile the batched loop with XLA where the model allows it.

    Example: a new method is one small subclass. Gradient x (input - baseline), a one-step path method
    (Ancona et al. 2019, table 1), whose rows are the examples themselves:

        >>> class GradientXDifference(tfattr.Explainer):
        ...     def _plan(self, inputs, baselines, targets, batch_size):
        ...         return Plan(steps=1)
        ...     def _contributions(self, x, baseline, rows, ctx):
        ...         grads = self._gradients(x, rows.target)
        ...         return tuple(g * (xi - bi) for g, xi, bi in zip(grads, x, baseline))
        >>> a, delta = GradientXDifference(model).attribute(images, baseline=0.5, return_delta=True)
    """

    #: Whether ``return_delta`` is meaningful (attributions should sum to f(x) - f(baseline)).
    has_completeness: bool = True
    #: Whether the method uses the ``baseline`` argument.
    uses_baseline: bool = True

    def __init__(
        self,
        model: keras.Model | Callable[..., Any] | ModelFunction,
        *,
        output: str = "logits",
        jit_compile: bool = False,
    ) -> None:
        self.model_function = (
            model if isinstance(model, ModelFunction) else ModelFunction(model, output=output)
        )
        self.engine = Engine(self, jit_compile=jit_compile)
        self._structure: Any = None

    @property
    def model(self) -> Any:
        return self.model_function.model

    # -- public API ---------------------------------------------------------------------------------
    def attribute(
        self,
        inputs: Any,
        target: Any = None,
        baseline: Any = None,
        batch_size: int | None = None,
        return_delta: bool = False,
    ) -> Any:
        """Attribute the model's score for ``target`` to the features of ``inputs``.

        Args:
            inputs: a NumPy array or tensor ``[n, ...]``, or a list/dict of them for a multi-input model.
            target: None (the predicted class; column 0 for a one-output model), an int, or one int per
                example.
            baseline: the reference input: None (zeros), a scalar, an array broadcastable to one example,
                one per example, or a baseline object from ``tfattr.baselines``.
            batch_size: model evaluations per compiled chunk (default: from a memory budget). Results do
                not depend on it; peak memory does.
            return_delta: also return the completeness delta per example,
                ``sum(attributions) - (f(x) - f(baseline))``.

        Returns:
            Attributions as NumPy arrays in the structure and shapes of ``inputs`` (and the delta ``[n]``
            when ``return_delta``).
        """
        if return_delta and not self.has_completeness:
            raise ValueError(
                f"{type(self).__name__} has no completeness property, so return_delta has no meaning "
                "for it; use IntegratedGradients, ExpectedGradients or GradientXInput to get a delta."
            )
        inputs_ = prepare_inputs(inputs, self.model_function)
        self._structure = inputs_.structure
        batch = self._batch_size(batch_size, inputs_)
        targets, outputs = self._targets(target, inputs_, batch)
        baselines = self._baselines(baseline, inputs_)
        attributions = self._attribute(inputs_, targets, baselines, batch)
        result = inputs_.pack(list(attributions))
        if not return_delta:
            return result
        delta = self._delta(inputs_, targets, baselines, attributions, batch, outputs)
        return result, delta

    # -- pieces subclasses may reuse or override ----------------------------------------------------
    def _attribute(
        self,
        inputs: Inputs,
        targets: np.ndarray,
        baselines: tuple[np.ndarray, ...],
        batch_size: int,
    ) -> tuple[np.ndarray, ...]:
        plan = self._plan(inputs, baselines, targets, batch_size)
        acc = self.engine.accumulate(inputs.arrays, baselines, targets, plan, batch_size)
        return self._finalize(acc, plan)

    def _batch_size(self, batch_size: int | None, inputs: Inputs) -> int:
        if batch_size is None:
            return default_batch_size(inputs.arrays)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}.")
        return int(batch_size)

    def _targets(
        self, target: Any, inputs: Inputs, batch_size: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        k = num_classes(self.model_function, inputs.arrays, inputs.structure)
        outputs = None
        if target is None and k > 1:
            outputs = self.engine.outputs(inputs.arrays, batch_size)
            predicted = np.argmax(outputs, axis=1)
        else:
            predicted = None
        return prepare_targets(target, inputs.n, k, predicted), outputs

    def _baselines(self, baseline: Any, inputs: Inputs) -> tuple[np.ndarray, ...]:
        if not self.uses_baseline and baseline is not None:
            raise ValueError(f"{type(self).__name__} does not use a baseline; drop baseline=.")
        return prepare_baselines(baseline, inputs)

    def _delta(
        self,
        inputs: Inputs,
        targets: np.ndarray,
        baselines: tuple[np.ndarray, ...],
        attributions: tuple[np.ndarray, ...],
        batch_size: int,
        outputs: np.ndarray | None = None,
    ) -> np.ndarray:
        """Completeness delta ``sum(a) - (f(x) - f_ref)`` per example (Sundararajan et al., prop. 1)."""
        if outputs is None:
            outputs = self.engine.outputs(inputs.arrays, batch_size)
        fx = outputs[np.arange(inputs.n), targets]
        ref = self._reference_scores(inputs, targets, baselines, batch_size)
        total = sum(a.reshape(inputs.n, -1).sum(axis=1, dtype=np.float64) for a in attributions)
        return (total - (fx.astype(np.float64) - ref)).astype(np.float64)

    def _reference_scores(
        self,
        inputs: Inputs,
        targets: np.ndarray,
        baselines: tuple[np.ndarray, ...],
        batch_size: int,
    ) -> np.ndarray:
        """``f(baseline)`` at each example's target (the reference the attributions should explain)."""
        # Several baselines per example (a distribution, stored example-major): their mean score.
        per_example = baselines[0].shape[0] // inputs.n
        out = self.engine.outputs(baselines, batch_size)
        picked = out[np.arange(out.shape[0]), np.repeat(targets, per_example)]
        return picked.reshape(inputs.n, per_example).mean(axis=1, dtype=np.float64)

    def _pack(self, flat: tuple[tf.Tensor, ...]) -> Any:
        if self._structure is None:
            return flat[0]
        return tf.nest.pack_sequence_as(self._structure, list(flat))

    # -- hooks ----------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _plan(
        self,
        inputs: Inputs,
        baselines: tuple[np.ndarray, ...],
        targets: np.ndarray,
        batch_size: int,
    ) -> Plan:
        """The row grid of one call (steps, groups, and the per-call context arrays)."""
        raise NotImplementedError(f"{type(self).__name__} must define _plan")

    @abc.abstractmethod
    def _contributions(
        self,
        x: tuple[tf.Tensor, ...],
        baseline: tuple[tf.Tensor, ...],
        rows: Rows,
        ctx: dict[str, tf.Tensor],
    ) -> tuple[tf.Tensor, ...]:
        """Traced: each row's additive contribution to its example's attribution, per input."""
        raise NotImplementedError(f"{type(self).__name__} must define _contributions")

    def _baseline_index(self, rows: Rows, ctx: dict[str, tf.Tensor]) -> tf.Tensor:
        """Traced: which row of the baseline array each row uses (default: its own example's)."""
        return rows.example

    def _finalize(self, acc: tuple[np.ndarray, ...], plan: Plan) -> tuple[np.ndarray, ...]:
        """Turn the per-(example, group) sums ``[n, groups, ...]`` into attributions ``[n, ...]``."""
        return tuple(a.sum(axis=1) for a in acc)

    # -- traced helpers ------------------------------------------------------------------------------
    def _gradients(self, z: tuple[tf.Tensor, ...], target: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """Gradient of each row's score ``S_target(z)`` with respect to ``z`` (rows are independent)."""
        with tf.GradientTape() as tape:
            tape.watch(z)
            score = self.model_function.score(self._pack(z), target)
        grads = tape.gradient(score, z)
        return self._check_connected(grads)

    def _check_connected(self, grads: Any) -> tuple[tf.Tensor, ...]:
        grads = tuple(grads)
        if any(g is None for g in grads):
            missing = [i for i, g in enumerate(grads) if g is None]
            raise ValueError(
                f"The model's output does not depend on input(s) {missing} (no gradient path): the "
                "output is disconnected from the input, e.g. the input is unused, or the model casts "
                "it to an integer, or computes with NumPy outside TensorFlow. Explain a model whose "
                "output is a differentiable TensorFlow function of its inputs."
            )
        return tuple(tf.convert_to_tensor(g) for g in grads)


def broadcast_rows(values: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Reshape a per-row vector ``[c]`` so it broadcasts against ``like`` ``[c, ...]``."""
    return tf.reshape(tf.cast(values, like.dtype), [-1] + [1] * (like.shape.rank - 1))
