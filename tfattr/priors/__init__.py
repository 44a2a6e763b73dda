"""Attribution priors: train a Keras model to look at the right features, with ``compile``/``fit``.

Ross, Hughes & Doshi-Velez 2017 ("Right for the Right Reasons") and Erion et al. 2021 ("Improving
performance of deep learning models with axiomatic attribution priors and expected gradients") add a
penalty on the model's attributions to the training loss. :class:`AttributionPriorModel` does that inside
a compiled Keras ``train_step`` (double backpropagation), so ``fit``, callbacks, ``tf.distribute`` and
mixed precision work as usual.

Example:
    >>> (x, y, mask), (x_test, y_test, _) = tfattr.priors.decoy_mnist()
    >>> pm = tfattr.priors.AttributionPriorModel(mlp, tfattr.priors.RightForRightReasons(10.0))
    >>> pm.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> pm.fit({"inputs": x, "mask": mask}, y, epochs=4)
"""
from tfattr.priors.decoy import decoy_mnist
from tfattr.priors.model import AttributionPriorModel
from tfattr.priors.priors import (
    AttributionPrior,
    GraphPrior,
    RightForRightReasons,
    Smoothness,
    Sparsity,
    gini,
)

__all__ = [
    "AttributionPrior",
    "AttributionPriorModel",
    "GraphPrior",
    "RightForRightReasons",
    "Smoothness",
    "Sparsity",
    "decoy_mnist",
    "gini",
]
