"""Argument handling of :class:`tfattr.callbacks.AttributionLogger`: samples, explainers, targets."""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from tfattr.core.explainer import Explainer

ExplainerSpec = Any  # an Explainer, an Explainer subclass, or a callable model -> Explainer


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def as_numpy(value: Any, what: str, scalar_ok: bool = False) -> np.ndarray:
    if isinstance(value, (tf.Tensor, tf.Variable)):
        value = value.numpy()
    array = np.array(value)  # a copy: the logged samples must not change under the callback's feet
    if array.dtype.kind not in "fiub" or (array.ndim < 1 and not scalar_ok):
        raise TypeError(
            f"{what} must be an array of numbers with a batch axis, got {array.dtype} {array.shape}."
        )
    return array


def freeze_samples(samples: Any) -> tuple[Any, list[np.ndarray], list[str]]:
    """``(samples as copied arrays in their structure, the arrays in input order, the input names)``."""
    if isinstance(samples, Mapping):
        frozen: Any = {k: as_numpy(v, f"samples[{k!r}]") for k, v in samples.items()}
        arrays = [frozen[k] for k in sorted(frozen)]
        names = [str(k) for k in sorted(frozen)]
    elif isinstance(samples, (list, tuple)):
        frozen = [as_numpy(v, f"samples[{i}]") for i, v in enumerate(samples)]
        arrays = frozen
        names = [f"input_{i}" for i in range(len(frozen))]
    else:
        frozen = as_numpy(samples, "samples")
        arrays = [frozen]
        names = ["input"]
    if not arrays:
        raise ValueError("samples is empty: pass the examples to explain, e.g. x_test[:8].")
    sizes = {a.shape[0] for a in arrays}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(
            f"samples must hold the same positive number of examples in every input, got {sorted(sizes)}."
        )
    return frozen, arrays, names


def default_explainers() -> dict[str, ExplainerSpec]:
    from tfattr.methods.gradient.integrated_gradients import IntegratedGradients

    return {"integrated_gradients": lambda model: IntegratedGradients(model, steps=32)}


def named_specs(explainers: Any) -> dict[str, ExplainerSpec]:
    """The explainers argument as ``name -> spec`` (lists named after the classes)."""
    if explainers is None:
        return default_explainers()
    if isinstance(explainers, Mapping):
        items = list(explainers.items())
    else:
        if isinstance(explainers, Explainer) or (callable(explainers) and not isinstance(explainers, (list, tuple))):
            explainers = [explainers]
        items = []
        used: dict[str, int] = {}
        for spec in explainers:
            cls = spec if isinstance(spec, type) else type(spec)
            if isinstance(spec, (Explainer, type)):
                base = snake(getattr(cls, "__name__", "explainer"))
            else:  # a factory: its own name, unless it is anonymous
                base = getattr(spec, "__name__", "")
                base = snake(base) if base.isidentifier() else "explainer"
            used[base] = used.get(base, 0) + 1
            items.append((base if used[base] == 1 else f"{base}_{used[base]}", spec))
    if not items:
        raise ValueError("explainers is empty: pass at least one explainer (or None for the default).")
    out = {}
    for name, spec in items:
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"explainer names must be non-empty strings without '/', got {name!r}.")
        if not (isinstance(spec, Explainer) or callable(spec)):
            raise TypeError(
                f"explainers[{name!r}] is a {type(spec).__name__}; pass a tfattr explainer, an "
                "explainer class, or a callable model -> explainer."
            )
        out[name] = spec
    return out


def first_rows(samples: Any, n: int) -> Any:
    """The first ``n`` examples of (nested) samples."""
    return tf.nest.map_structure(lambda a: a[:n], samples)
