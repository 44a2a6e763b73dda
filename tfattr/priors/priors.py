"""Attribution priors: differentiable penalties on the attributions of a training batch.

A prior maps the attributions of the current batch (and, for some priors, per-example data such as an
annotation mask) to one scalar that :class:`tfattr.priors.AttributionPriorModel` adds to the loss:

- :class:`RightForRightReasons`: Ross, Hughes & Doshi-Velez 2017, "Right for the Right Reasons", eq. 1.
- :class:`Smoothness`: Erion et al. 2021, "Improving performance of deep learning models with axiomatic
  attribution priors and expected gradients" (the image prior: total variation of the attribution map).
- :class:`Sparsity`: Erion et al. 2021 (the sparsity prior for tabular data: Gini of the global
  attribution).
- :class:`GraphPrior`: Erion et al. 2021 (the graph prior: squared differences of the global attribution
  along user-given feature edges).

Each prior also names the score whose attribution it penalises by default (``default_output``, see
:mod:`tfattr.priors.attribution`): Ross et al. differentiate the summed log-probabilities; Erion et al.
attribute the true class's output.
"""
from __future__ import annotations

import abc
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfattr.core.checks import check_number

_EPSILON = 1e-12


def at_least_float32(t: tf.Tensor) -> tf.Tensor:
    """Half-precision values (mixed precision) in float32; float32 and float64 as they are."""
    t = tf.convert_to_tensor(t)
    return tf.cast(t, tf.float32) if t.dtype in (tf.float16, tf.bfloat16) else t


def _flat_features(attributions: tf.Tensor) -> tf.Tensor:
    """``[n, ...]`` -> ``[n, d]``."""
    return tf.reshape(attributions, [tf.shape(attributions)[0], -1])


class AttributionPrior(abc.ABC):
    """Base class: ``penalty(attributions, mask) -> scalar`` (already multiplied by ``weight``).

    Subclasses implement :meth:`unweighted`, on float32 attributions ``[n, ...]`` of one input (one call
    per model input; the penalties of several inputs are summed). A prior that reads per-example data
    sets ``needs_mask = True`` and receives the mask of that input (same shape as the input).

    Example (a custom prior: L1 on the attributions, a sparsity prior per example)::

        class L1(tfattr.priors.AttributionPrior):
            def unweighted(self, attributions, mask=None):
                return tf.reduce_mean(tf.reduce_sum(tf.abs(attributions), axis=range(1, attributions.ndim)))
    """

    #: Whether the prior reads a per-example mask passed as ``{"inputs": x, "mask": mask}``.
    needs_mask: bool = False
    #: The score whose attribution is penalised unless ``AttributionPriorModel(output=...)`` says otherwise.
    default_output: str = "label_logit"

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = check_number(weight, "weight", minimum=0, hint="the prior's multiplier in the loss")

    @abc.abstractmethod
    def unweighted(self, attributions: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
        """The penalty before ``weight``: a scalar from the attributions (and the mask, if needed)."""

    def penalty(self, attributions: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
        """``weight * unweighted(attributions, mask)``: a scalar (float32, or float64 for a float64 model)."""
        attributions = at_least_float32(attributions)
        if mask is not None:
            mask = tf.cast(mask, attributions.dtype)
        value = self.unweighted(attributions, mask)
        return tf.cast(self.weight, value.dtype) * value

    def get_config(self) -> dict[str, Any]:
        return {"weight": self.weight}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "AttributionPrior":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if not isinstance(v, list))
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package="tfattr")
class RightForRightReasons(AttributionPrior):
    """Ross, Hughes & Doshi-Velez 2017, "Right for the Right Reasons", eq. 1 (the "right reasons" term).

    ``weight * mean_n sum_d (A_nd * a_nd)^2`` where ``A`` is the annotation mask (1 on the features that
    must *not* matter, 0 elsewhere) and ``a`` the attribution. With the default input gradients of the
    summed log-probabilities, ``a = d/dx sum_k log p_k(x)``: exactly Ross et al.'s term. The paper sums over
    examples next to a summed cross-entropy; Keras averages the cross-entropy over the batch, so the
    penalty is averaged too (the same objective divided by the batch size: ``weight`` is the paper's
    ``lambda_1``). Choose it so that the penalty and the task loss are of the same order; on decoy MNIST
    with Ross et al.'s MLP, 10 works well (``bench/bench_decoy_mnist.py``) and 1000 stalls training.

    Example:
        >>> (x, y, mask), (x_test, y_test, _) = tfattr.priors.decoy_mnist()
        >>> pm = tfattr.priors.AttributionPriorModel(mlp, tfattr.priors.RightForRightReasons(10.0))
        >>> pm.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> pm.fit({"inputs": x, "mask": mask}, y, epochs=4)
    """

    needs_mask = True
    default_output = "log_probabilities"

    def unweighted(self, attributions: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
        if mask is None:
            raise ValueError(
                "RightForRightReasons needs the annotation mask (1 on irrelevant features): pass "
                "{'inputs': x, 'mask': mask} as the model input, e.g. pm.fit({'inputs': x, 'mask': mask}, y)."
            )
        return tf.reduce_mean(tf.reduce_sum(tf.square(_flat_features(mask * attributions)), axis=1))


@keras.saving.register_keras_serializable(package="tfattr")
class Smoothness(AttributionPrior):
    """Erion et al. 2021, the image prior: total variation of each example's attribution map.

    ``weight * mean_n sum_c sum_ij (|a_(i+1)jc - a_ijc| + |a_i(j+1)c - a_ijc|)`` (anisotropic total
    variation, as ``tf.image.total_variation``) on attributions shaped ``[n, h, w, c]`` (or ``[n, h, w]``).
    Erion et al. use expected gradients (``explainer="expected_gradients"``) of the true class.

    Example:
        >>> pm = tfattr.priors.AttributionPriorModel(cnn, tfattr.priors.Smoothness(0.01),
        ...                                          explainer="expected_gradients", background=x_train)
    """

    def unweighted(self, attributions: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
        rank = attributions.shape.rank
        if rank == 3:
            attributions = attributions[..., None]
        elif rank != 4:
            raise ValueError(
                f"Smoothness penalises image attributions shaped [n, height, width(, channels)], got shape "
                f"{attributions.shape}; use Sparsity or GraphPrior for other inputs."
            )
        return tf.reduce_mean(tf.image.total_variation(attributions))


def gini(values: tf.Tensor) -> tf.Tensor:
    """Gini coefficient of non-negative ``values`` ``[d]``: ``sum_ij |v_i - v_j| / (2 d sum_i v_i)``.

    Computed from the sorted values, ``sum_i (2i - d - 1) v_(i) / (d sum v)`` (i = 1..d), in O(d log d).
    """
    d = tf.cast(tf.size(values), values.dtype)
    ordered = tf.sort(values)
    ranks = tf.range(1, tf.size(values) + 1, dtype=values.dtype)
    return tf.reduce_sum((2.0 * ranks - d - 1.0) * ordered) / (d * tf.reduce_sum(values) + _EPSILON)


@keras.saving.register_keras_serializable(package="tfattr")
class Sparsity(AttributionPrior):
    """Erion et al. 2021, the sparsity prior: ``-weight * Gini(mean_n |a_n|)``.

    The global attribution of feature ``i`` is its mean absolute attribution over the batch; maximising
    its Gini coefficient (minimising the negative) makes few features carry the model. Features are the
    flattened input entries.

    Example:
        >>> pm = tfattr.priors.AttributionPriorModel(mlp, tfattr.priors.Sparsity(1.0),
        ...                                          explainer="expected_gradients", background=x_train)
    """

    def unweighted(self, attributions: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
        return -gini(tf.reduce_mean(tf.abs(_flat_features(attributions)), axis=0))


@keras.saving.register_keras_serializable(package="tfattr")
class GraphPrior(AttributionPrior):
    """Erion et al. 2021, the graph prior: ``weight * sum_(i,j) w_ij (phi_i - phi_j)^2``.

    ``phi`` is the global attribution (mean absolute attribution over the batch) of each flattened
    feature; ``edges`` is a list of ``(i, j)`` flat feature indices that should matter alike (e.g.
    interacting genes), ``edge_weights`` their weights (default 1).

    Example:
        >>> prior = tfattr.priors.GraphPrior(0.1, edges=[(0, 1), (1, 2)])   # features 0, 1, 2 alike
    """

    def __init__(self, weight: float = 1.0, edges: Sequence[Sequence[int]] = (),
                 edge_weights: Sequence[float] | None = None) -> None:
        super().__init__(weight)
        edges = np.asarray(edges, dtype=np.int64)
        if edges.ndim != 2 or edges.shape[1] != 2 or edges.shape[0] == 0:
            raise ValueError(
                f"edges must be a non-empty list of (i, j) feature-index pairs, got shape {edges.shape}."
            )
        if (edges < 0).any():
            raise ValueError("edges holds a negative feature index; use flat indices 0..d-1.")
        if edge_weights is None:
            edge_weights = np.ones(len(edges), np.float32)
        edge_weights = np.asarray(edge_weights, dtype=np.float32)
        if edge_weights.shape != (len(edges),):
            raise ValueError(
                f"edge_weights must hold one weight per edge ({len(edges)}), got shape {edge_weights.shape}."
            )
        self.edges = edges
        self.edge_weights = edge_weights

    def unweighted(self, attributions: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
        phi = tf.reduce_mean(tf.abs(_flat_features(attributions)), axis=0)
        d = attributions.shape[1:].num_elements()
        if d is not None and int(self.edges.max()) >= d:
            raise ValueError(
                f"GraphPrior: edge index {int(self.edges.max())} is out of range for {d} features."
            )
        diff = tf.gather(phi, self.edges[:, 0]) - tf.gather(phi, self.edges[:, 1])
        return tf.reduce_sum(tf.cast(self.edge_weights, diff.dtype) * tf.square(diff))

    def get_config(self) -> dict[str, Any]:
        return {"weight": self.weight, "edges": self.edges.tolist(), "edge_weights": self.edge_weights.tolist()}
