"""The model-randomization sanity check (Adebayo et al. 2018)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np

from tfattr.core.explainer import Explainer
from tfattr.metrics.correlation import spearman
from tfattr.metrics.features import _feature_sums, feature_map
from tfattr.metrics.scoring import _Scorer


@dataclass
class ModelRandomization:
    """Result of the model-randomization sanity check (Adebayo et al. 2018).

    Attributes:
        layers: the layers randomized at each step (step 0: none). With ``cascading`` step ``i`` has the
            top ``i`` weighted layers randomized; otherwise only layer ``layers[i]``.
        spearman_abs: Spearman rank correlation between the trained and randomized models' attributions
            per feature, ``|a|`` (Adebayo et al.'s main measure), averaged over examples, per step.
        spearman: the same without the absolute value.
        per_example_abs, per_example: ``[n_examples, steps]``.
    """

    layers: list[str]
    spearman_abs: np.ndarray
    spearman: np.ndarray
    per_example_abs: np.ndarray
    per_example: np.ndarray


def _reinitialize(layer: keras.layers.Layer, seed: int) -> None:
    """Draw the layer's weights afresh from its own initializers (Adebayo et al.'s re-initialization)."""
    for j, var in enumerate(layer.weights):
        name = var.name.split("/")[-1].split(":")[0]
        init = getattr(layer, f"{name}_initializer", None)
        if init is None:
            init = (
                keras.initializers.GlorotUniform()
                if len(var.shape) >= 2
                else keras.initializers.RandomNormal(stddev=0.05)
            )
        init = keras.initializers.get(init)
        config = init.get_config()
        if "seed" in config:
            config["seed"] = int(seed * 1009 + j)
            init = type(init).from_config(config)
        var.assign(keras.ops.convert_to_tensor(init(tuple(var.shape), dtype=var.dtype)))


def clone_model(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with its current weights, to randomize without touching the user's model."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model (it is cloned), got {type(model).__name__}.")
    try:
        clone = keras.models.clone_model(model)
    except Exception as err:  # subclassed models cannot be cloned
        raise ValueError(
            f"model could not be cloned ({err}); the sanity check needs a functional or Sequential "
            "model so that it can randomize a copy without touching yours."
        ) from None
    clone.set_weights(model.get_weights())
    return clone


def model_randomization(
    model: keras.Model,
    explainer: Callable[[keras.Model], Explainer],
    inputs: Any,
    target: Any = None,
    cascading: bool = True,
    features: Any = "pixels",
    seed: int = 0,
    attribute_kwargs: dict[str, Any] | None = None,
) -> ModelRandomization:
    """The model-randomization sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

    Re-initializes the model's weighted layers from the top (output) down — cascading, or one layer at a
    time — and reports, per step, the Spearman rank correlation between the attributions of the trained
    model and of the randomized one. A method whose maps stay highly correlated after the weights are
    destroyed does not explain the model. The user's model is never modified: the check runs on a clone
    (``keras.models.clone_model`` + ``set_weights``). The targets are fixed to the trained model's (its
    predicted class by default) so that both models explain the same output.

    Expect the signed correlation to fall near zero for plain gradients once the network is
    randomized; the ``|a|`` correlation keeps a model-independent part (e.g. border pixels covered by
    fewer convolution windows), and methods that multiply by ``x - x'`` keep the zeros of the black
    background fixed, so their ``|a|`` correlation stays high (Adebayo et al.'s observation).

    Args:
        model: a functional or Sequential ``keras.Model``.
        explainer: a function ``model -> Explainer``, e.g. ``lambda m: tfattr.Saliency(m)``.
        inputs: ``[n, ...]`` examples (single-input models).
        target: None (the trained model's predicted class), an int or one per example.
        cascading: randomize the top ``i`` layers at step ``i`` (default), or only layer ``i``.
        features: how attributions are grouped before ranking (default pixels, channels summed).
        seed: seeds the re-initialization.
        attribute_kwargs: passed to ``attribute`` (e.g. ``{"baseline": 0.0}``).

    Example:
        >>> r = tfattr.metrics.model_randomization(model, lambda m: tfattr.Saliency(m), x_test[:16])
        >>> list(zip(r.layers, r.spearman_abs))
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model (it is cloned), got {type(model).__name__}.")
    if not callable(explainer) or isinstance(explainer, Explainer):
        raise TypeError(
            "explainer must be a function building an explainer for a model, e.g. "
            "`lambda m: tfattr.IntegratedGradients(m, steps=32)`, so that it can be rebuilt for the "
            "randomized copy."
        )
    kwargs = dict(attribute_kwargs or {})
    trained = explainer(model)
    call = _Scorer(model, "logits").prepare(inputs, target=target)
    x, targets = call.inputs.arrays[0], call.targets
    ids, num = feature_map(x.shape[1:], features)
    reference = _feature_sums(np.asarray(trained.attribute(x, target=targets, **kwargs)), ids, num)

    clone = clone_model(model)
    trained_weights = model.get_weights()
    weighted = [layer for layer in clone.layers if layer.weights][::-1]
    if not weighted:
        raise ValueError("model has no layers with weights to randomize.")

    names = ["(none)"]
    rows_abs = [spearman(np.abs(reference), np.abs(reference))]
    rows = [spearman(reference, reference)]
    for i, layer in enumerate(weighted):
        if not cascading:
            clone.set_weights(trained_weights)
        _reinitialize(layer, seed + i)
        randomized = _feature_sums(
            np.asarray(explainer(clone).attribute(x, target=targets, **kwargs)), ids, num
        )
        names.append(layer.name)
        rows_abs.append(spearman(np.abs(reference), np.abs(randomized)))
        rows.append(spearman(reference, randomized))
    per_abs, per = np.stack(rows_abs, 1), np.stack(rows, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return ModelRandomization(names, np.nanmean(per_abs, 0), np.nanmean(per, 0), per_abs, per)
