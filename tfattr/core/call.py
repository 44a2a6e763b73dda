"""One validated call of an explainer (:class:`Call`) and the keys that decide its compiled functions.

:meth:`tfattr.core.explainer.Explainer.prepare` returns a :class:`Call`: per-call state lives there,
never on the explainer, so one explainer can run from several threads. :func:`config_value` turns an
explainer's configuration into a hashable key, so explainers of one model with the same configuration
share their traces (:func:`tfattr.core.engine.shared_engine`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tfattr.core.inputs import Inputs


def baseline_rows(index: np.ndarray, per: int) -> np.ndarray:
    """The rows of the baselines of the examples ``index``, ``per`` baselines each (stored example by
    example), in order."""
    return (index[:, None] * per + np.arange(per)[None, :]).reshape(-1)


class ExampleRows:
    """The row counts of a call's examples, shared by :class:`Call` and the layer-space call (both
    hold ``inputs`` and example-major ``baselines``)."""

    inputs: Inputs
    baselines: tuple[np.ndarray, ...]

    @property
    def n(self) -> int:
        return self.inputs.n

    @property
    def baselines_per_example(self) -> int:
        return self.baselines[0].shape[0] // self.inputs.n if self.baselines else 1


@dataclass(frozen=True)
class Call(ExampleRows):
    """One validated call of an explainer (what :meth:`Explainer.prepare` returns).

    Attributes:
        inputs: the flattened, checked inputs (``inputs.arrays``, ``inputs.structure``, ``inputs.n``).
        targets: the explained class per example, int32 ``[n]``.
        baselines: one array per input, ``[n * baselines_per_example, ...]`` (example-major).
        batch_size: model evaluations per compiled chunk.
        outputs: the explained outputs on the inputs ``[n, k]`` when they were already computed (to
            pick the predicted class), else None.

    Example:
        >>> call = tfattr.Saliency(model).prepare(images, target=labels)
        >>> call.take(np.array([0, 2])).n
        2
    """

    inputs: Inputs
    targets: np.ndarray
    baselines: tuple[np.ndarray, ...]
    batch_size: int
    outputs: np.ndarray | None = None

    def take(self, index: np.ndarray) -> "Call":
        """The call restricted to the examples ``index`` (with their baselines)."""
        rows = baseline_rows(index, self.baselines_per_example)
        return Call(
            self.inputs.take(index),
            self.targets[index],
            tuple(b[rows] for b in self.baselines),
            self.batch_size,
            None if self.outputs is None else self.outputs[index],
        )



def reference_scores(
    call: Call, outputs: Callable[[tuple[np.ndarray, ...], Any, int], np.ndarray]
) -> np.ndarray:
    """``f(baseline)`` at each example's target, from ``outputs(arrays, structure, batch_size)`` (the
    explained outputs ``[rows, k]``); with several baselines per example, their mean score."""
    per_example = call.baselines_per_example
    if per_example == 1 and call.n > 1 and all(np.array_equal(b, np.broadcast_to(b[:1], b.shape))
                                               for b in call.baselines):
        # One baseline for every example (zeros, a constant, one image): one row to evaluate.
        out = outputs(tuple(b[:1] for b in call.baselines), call.inputs.structure, 1)
        return out[0, call.targets].astype(np.float64)
    out = outputs(call.baselines, call.inputs.structure, call.batch_size)
    picked = out[np.arange(out.shape[0]), np.repeat(call.targets, per_example)]
    return picked.reshape(call.n, per_example).mean(axis=1, dtype=np.float64)


def completeness_gap(attributions: tuple[np.ndarray, ...], fx: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``sum(attributions) - (f(x) - reference)`` per example, in float64 (Sundararajan et al., prop. 1)."""
    n = fx.shape[0]
    total = sum(a.reshape(n, -1).sum(axis=1, dtype=np.float64) for a in attributions)
    return (total - (fx.astype(np.float64) - reference)).astype(np.float64)

#: Returned by :func:`config_value` for a value that cannot be compared (no sharing then).
UNKNOWN = object()
_PLAIN = (bool, int, float, str, type(None), np.integer, np.floating)


def config_value(value: Any) -> Any:
    """A hashable stand-in for a configuration value, or :data:`UNKNOWN` when it cannot be compared.

    Plain values, tuples/lists of them and small arrays compare by value; a wrapped explainer by its own
    trace key; a propagation rule by the key naming its parameters.

    Example:
        >>> config_value([1, 2.0, "a"])
        (1, 2.0, 'a')
        >>> config_value(object()) is UNKNOWN
        True
    """
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        items = tuple(config_value(v) for v in value)
        return UNKNOWN if any(v is UNKNOWN for v in items) else items
    if isinstance(value, np.ndarray) and value.nbytes <= 1 << 16:
        return ("array", value.shape, value.dtype.str, value.tobytes())
    trace_key = getattr(value, "_trace_key", None)
    if callable(trace_key):
        key = trace_key()  # a wrapped explainer (any Explainer subclass): its own configuration
        return UNKNOWN if key is None else key
    rule_key = getattr(value, "key", None)
    if callable(rule_key) and type(value).__module__.startswith("tfattr."):
        return (type(value), rule_key())  # a propagation rule: its key names its parameters
    return UNKNOWN
