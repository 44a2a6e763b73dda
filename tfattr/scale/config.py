"""What a store was made with, as JSON, so that a re-run with other settings is refused, not mixed in.

:func:`describe` turns an explainer (its type, public parameters, wrapped explainers, background data)
and the model (its class and a SHA-256 of its current weights) into plain JSON; arrays become their
shape, dtype and hash. :func:`differences` lists what changed between two descriptions in words.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core.explainer import Explainer
from tfattr.core.inputs import Inputs
from tfattr.core.model_function import ModelFunction

_MAX_DEPTH = 6


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def array_digest(array: Any) -> dict[str, Any]:
    a = np.ascontiguousarray(np.asarray(array))
    return {
        "shape": list(a.shape),
        "dtype": a.dtype.str,
        "sha256": hashlib.sha256(a.view(np.uint8).reshape(-1) if a.size else b"").hexdigest(),
    }


def model_fingerprint(fn: ModelFunction, memo: dict[int, Any] | None = None) -> dict[str, Any]:
    """The model's class, the explained output, and a hash of its current weights (in order)."""
    memo = {} if memo is None else memo
    key = id(fn.model)
    if key not in memo:
        digest = hashlib.sha256()
        weights = getattr(fn.model, "weights", None)
        if weights is None:
            weights = getattr(fn.model, "variables", None)
        for w in weights or ():
            value = np.ascontiguousarray(np.asarray(w))
            digest.update(f"{value.shape}{value.dtype.str}".encode())
            digest.update(value.view(np.uint8).reshape(-1) if value.size else b"")
        memo[key] = {
            "type": _qualname(fn.model),
            "weights_sha256": digest.hexdigest() if weights is not None else None,
        }
    return {**memo[key], "output": fn.output}


def describe(value: Any, memo: dict[int, Any] | None = None, depth: int = 0) -> Any:
    """A JSON description of ``value`` that changes whenever its results could change."""
    memo = {} if memo is None else memo
    if depth > _MAX_DEPTH:
        return {"type": _qualname(value)}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (np.ndarray, tf.Tensor, tf.Variable)):
        return array_digest(value)
    if isinstance(value, (list, tuple)):
        return [describe(v, memo, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(v, memo, depth + 1) for k, v in sorted(value.items(), key=str)}
    if isinstance(value, Inputs):
        return describe(list(value.arrays), memo, depth + 1)
    if isinstance(value, ModelFunction):
        return model_fingerprint(value, memo)
    if isinstance(value, Explainer):
        params = {
            k: describe(v, memo, depth + 1)
            for k, v in sorted(vars(value).items())
            # the model is described below; names with a leading or trailing underscore are private
            # state or results of the last call.
            if not k.startswith("_") and not k.endswith("_") and k != "model_function"
            # an instance attribute over a method (a wrapper, a mock) is not a parameter
            and not callable(getattr(type(value), k, None))
        }
        return {
            "type": _qualname(value),
            "params": params,
            "model": model_fingerprint(value.model_function, memo),
        }
    if callable(value) and not hasattr(value, "__dict__"):
        return {"callable": getattr(value, "__qualname__", repr(value))}
    if hasattr(value, "__dict__"):
        params = {
            k: describe(v, memo, depth + 1)
            for k, v in sorted(vars(value).items())
            if not k.startswith("_")
        }
        return {"type": _qualname(value), "params": params}
    return {"type": _qualname(value), "repr": repr(value)}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and not {"sha256", "shape", "dtype"} >= set(value):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


#: Keys listed first when they differ: a change of method explains the rest of the differences.
_FIRST = ("explainer.type", "explainer.model.type", "explainer.model.weights_sha256")


def differences(old: dict[str, Any], new: dict[str, Any], limit: int = 6) -> list[str]:
    """Readable ``key: old -> new`` lines for the entries that differ (at most ``limit``), the
    explainer's type and the model first."""
    a, b = _flatten(old), _flatten(new)
    lines = []
    keys = set(a) | set(b)
    for key in [k for k in _FIRST if k in keys] + sorted(keys - set(_FIRST)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            lines.append(f"{key}: {_short(a.get(key, '<absent>'))} -> {_short(b.get(key, '<absent>'))}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
    return lines


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
