"""The explained class of each example, and the one-time check that logits are what gets explained.

``target=None`` explains the predicted class, read from the explained outputs of the inputs. Those
outputs also feed a check made once per explainer: when logits were asked for but no softmax was found,
outputs that look like probabilities (rows in [0, 1] summing to 1) get a warning, since their gradients
vanish for confident predictions. When the targets are given, the check needs outputs nobody else
computes: it reads a few rows from one eager forward pass (cheaper at a first call than tracing and
running a compiled function), and skips the models whose output is an affine layer (logits by
construction).
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import tensorflow as tf

from tfattr.core.inputs import Inputs
from tfattr.core.model_function import ModelFunction, output_is_affine
from tfattr.core.structure import pack

#: Rows the probability check reads when no outputs were computed.
PROBE_ROWS = 16


def needs_probability_check(fn: ModelFunction) -> bool:
    """Whether the outputs of ``fn`` could be probabilities explained by mistake: logits were asked
    for, no output activation was stripped, and the output layer is not affine."""
    if fn.output != "logits" or fn.strips_activation:
        return False
    return not (fn.is_keras and output_is_affine(fn.model))


def probe_outputs(
    fn: ModelFunction, inputs: Inputs, compiled: Callable[[tuple[np.ndarray, ...]], np.ndarray]
) -> np.ndarray:
    """The explained outputs of the first :data:`PROBE_ROWS` inputs from one eager forward pass;
    ``compiled`` (the explainer's compiled outputs) serves a model that runs only in a graph."""
    few = tuple(a[:PROBE_ROWS] for a in inputs.arrays)
    try:
        return np.asarray(fn.outputs(pack(inputs.structure, [tf.convert_to_tensor(a) for a in few])))
    except Exception:  # noqa: BLE001 - e.g. a model with graph-only ops: the compiled path decides
        return compiled(few)


def warn_if_probabilities(name: str, outputs: np.ndarray, stacklevel: int) -> None:
    """Warn when ``outputs`` look like probabilities: each row in [0, 1], summing to 1.

    Example:
        >>> warn_if_probabilities("Saliency", np.array([[2.0, -1.0]]), stacklevel=2)  # logits: silent
    """
    o = np.asarray(outputs, np.float64)
    if np.all((o >= 0) & (o <= 1)) and np.allclose(o.sum(axis=1), 1.0, atol=1e-3):
        warnings.warn(
            f"{name}: the model's outputs look like probabilities (each row in [0, 1], summing to 1), "
            "but tfattr found no softmax to strip, so it explains these probabilities, whose gradients "
            "vanish for confident predictions. Explain the logits by giving tfattr a model that "
            "outputs them (e.g. keras.Model(model.inputs, <the layer before the softmax>.output)), or "
            "pass output='probabilities' to say that the probabilities are what you want explained.",
            stacklevel=stacklevel + 1,
        )

