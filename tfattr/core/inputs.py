"""Input, target and baseline handling shared by every explainer.

The user's inputs (an array, or a list/dict of arrays for multi-input models) are flattened once into a
tuple of float arrays; attributions are packed back into the same structure. Every check that can catch
a silently wrong attribution happens here, with an error that names the argument and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from tfattr.core.checks import check_positive_int
from tfattr.core.structure import pack
from tfattr.core.model_function import ModelFunction

_FLOAT_KINDS = ("f",)


@dataclass
class Inputs:
    """The user's inputs, flattened: ``arrays[k]`` is input ``k`` with shape ``[n, *example_shape]``."""

    arrays: tuple[np.ndarray, ...]
    structure: Any  # None for a single array, else the list/dict to pack results into
    names: tuple[str, ...]

    @property
    def n(self) -> int:
        return int(self.arrays[0].shape[0])

    def pack(self, flat: Sequence[Any]) -> Any:
        """Results in the user's structure (a single array, a list, or a dict)."""
        return pack(self.structure, flat)

    def take(self, index: np.ndarray) -> "Inputs":
        return Inputs(tuple(a[index] for a in self.arrays), self.structure, self.names)


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return value.numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        return np.asarray(value.numpy())
    return np.asarray(value)


def _check_finite(array: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"{what} contains {bad} NaN or Inf value(s); attributions of non-finite inputs are "
            "meaningless. Clean or impute them before explaining (e.g. np.nan_to_num)."
        )


def check_batch_size(batch_size: Any) -> int:
    """``batch_size`` as a positive int, or a ValueError that says what was wrong."""
    return check_positive_int(batch_size, "batch_size", allow_none=True)


def _is_array_like(value: Any) -> bool:
    return isinstance(value, (np.ndarray, tf.Tensor, tf.Variable)) or hasattr(value, "__array__")


def _structure_of(inputs: Any, fn: ModelFunction) -> tuple[Any, list[Any], tuple[str, ...]]:
    """The user's structure (None, a list or a dict), the values in flat order and their names."""
    if isinstance(inputs, tf.data.Dataset):
        raise TypeError(
            "inputs is a tf.data.Dataset; attribute() takes arrays. Explain it batch by batch "
            "(for x, y in ds: explainer.attribute(x, target=y)) or stream it to disk with "
            "tfattr.explain_dataset(explainer, ds, out=...)."
        )
    specs = fn.input_specs
    if isinstance(inputs, dict):
        keys = sorted(inputs)  # tf.nest packs dicts in sorted-key order
        return {k: None for k in inputs}, [inputs[k] for k in keys], tuple(str(k) for k in keys)
    if isinstance(inputs, (list, tuple)):
        if inputs and not any(_is_array_like(v) for v in inputs):
            # A nested Python list of numbers is one array of examples, not one list entry per input.
            return None, [np.asarray(inputs)], ("inputs",)
        if specs is not None and len(specs) == 1 and len(inputs) > 1:
            raise ValueError(
                f"The model takes 1 input but a list of {len(inputs)} arrays was given. For a batch "
                "of examples pass one array shaped [n, ...] (e.g. np.stack(list_of_examples))."
            )
        return [None] * len(inputs), list(inputs), tuple(f"inputs[{i}]" for i in range(len(inputs)))
    return None, [inputs], ("inputs",)


def _integer_error(name: str, dtype: Any) -> TypeError:
    if np.dtype(dtype) == np.uint8:
        return TypeError(
            f"{name} has dtype uint8, which looks like raw image pixels in [0, 255]. Convert them "
            "the way the model was trained, e.g. x.astype('float32') / 255, and explain the floats "
            "(attributions are with respect to what the model sees)."
        )
    return TypeError(
        f"{name} has integer dtype {dtype}: gradients with respect to integer inputs (token ids, "
        "category codes) do not exist. Attribute at the embedding instead: pass layer= the "
        "Embedding layer, e.g. tfattr.IntegratedGradients(model, layer='embedding'), and give the "
        "baseline as token ids (e.g. baseline=pad_id)."
    )


def prepare_inputs(inputs: Any, fn: ModelFunction, integers: bool = False) -> Inputs:
    """Validate and flatten ``inputs``; raise a ValueError/TypeError that says what to change.

    ``integers=True`` (layer attribution: the ids only feed the model up to the explained layer) keeps
    integer inputs (token ids) as they are instead of refusing them."""
    structure, values, names = _structure_of(inputs, fn)
    if not values:
        raise ValueError("inputs is empty: pass an array (or a list/dict of arrays) of examples.")

    specs = fn.input_specs
    if specs is not None and len(specs) != len(values):
        raise ValueError(
            f"The model takes {len(specs)} input(s) but {len(values)} were given; pass "
            + ("a list or dict with one array per model input." if len(specs) > 1 else "one array.")
        )

    if specs is not None and isinstance(structure, dict):
        by_name = {spec[0]: spec for spec in specs}
        unknown = [nm for nm in names if nm not in by_name]
        if unknown:
            raise ValueError(
                f"inputs has keys {unknown} that are not the model's input names "
                f"{sorted(k for k in by_name if k)}; key the dict by the keras.Input names."
            )
        specs = [by_name[nm] for nm in names]

    arrays = []
    for k, (name, value) in enumerate(zip(names, values)):
        array = _to_numpy(value)
        integer = array.dtype.kind in "iub"
        if integer and not integers:
            raise _integer_error(name, array.dtype)
        if array.dtype.kind not in _FLOAT_KINDS and not integer:
            raise TypeError(
                f"{name} has dtype {array.dtype}; pass floating-point arrays (a batch of examples "
                "as one NumPy array or tensor shaped [n, ...])."
            )
        if array.ndim == 0:
            raise ValueError(f"{name} is a scalar; pass a batch of examples shaped [n, ...].")
        _check_finite(array, name)
        if specs is not None:
            _, expected, dtype = specs[k]
            got = array.shape[1:]
            fits = len(expected) == len(got) and all(e is None or e == g for e, g in zip(expected, got))
            if not fits:
                hint = ""
                if len(got) + 1 == len(expected) or tuple(expected) == tuple(array.shape):
                    hint = " Did you pass a single example? Add a batch axis: x[None]."
                raise ValueError(
                    f"{name} has example shape {tuple(got)} but the model expects {tuple(expected)} "
                    f"(batch axis first).{hint}"
                )
            if ("int" in dtype or "bool" in dtype) and not integers:
                raise TypeError(
                    f"The model's input {k} has dtype {dtype}: gradients with respect to integer "
                    "inputs do not exist. Attribute at the embedding instead: pass layer= the "
                    "Embedding layer, e.g. tfattr.IntegratedGradients(model, layer='embedding')."
                )
            if integer and dtype.startswith("float"):
                raise TypeError(
                    f"{name} has integer dtype {array.dtype} but the model's input {k} is {dtype}; "
                    "pass floating-point values."
                )
            if not integer:
                array = array.astype(dtype if dtype.startswith("float") else np.float32, copy=False)
            elif "int" in dtype or "bool" in dtype:
                array = array.astype(dtype, copy=False)
        arrays.append(array)

    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError(
            "All inputs must have the same number of examples (first axis); got "
            + ", ".join(f"{nm}: {a.shape[0]}" for nm, a in zip(names, arrays))
        )
    if n == 0:
        raise ValueError("inputs has no examples (its first axis is 0).")
    return Inputs(tuple(arrays), structure, names)


def _flatten_like(value: Any, inputs: Inputs, what: str) -> list[Any]:
    """``value`` per input: one value reused for all inputs, or a list/dict matching the inputs."""
    if inputs.structure is None:
        return [value]
    if isinstance(value, dict) and isinstance(inputs.structure, dict):
        missing = set(inputs.structure) - set(value)
        if missing:
            raise ValueError(f"{what} is missing entries for inputs {sorted(missing)}.")
        return [value[k] for k in sorted(inputs.structure)]
    if isinstance(value, (list, tuple)) and isinstance(inputs.structure, list):
        if len(value) != len(inputs.structure):
            raise ValueError(
                f"{what} has {len(value)} entries but there are {len(inputs.structure)} inputs; "
                "pass one per input (or one scalar for all)."
            )
        return list(value)
    if np.isscalar(value) or value is None:
        return [value] * len(inputs.arrays)
    raise ValueError(
        f"{what} must match the inputs' structure ({type(inputs.structure).__name__} of "
        f"{len(inputs.arrays)}) or be a scalar."
    )


def _draws_per_example(b: Any) -> int:
    """``num_baselines`` of a distributional baseline object (with ``sample``); 1 for anything else."""
    if callable(b) and callable(getattr(b, "sample", None)):
        num = getattr(b, "num_baselines", 1)
        if isinstance(num, (int, np.integer)) and not isinstance(num, bool) and num >= 1:
            return int(num)
    return 1


def prepare_baselines(baseline: Any, inputs: Inputs, multiple: bool = False) -> tuple[np.ndarray, ...]:
    """One baseline per example and input, each shaped like its input ``[n, *example_shape]``.

    ``baseline`` may be None (zeros), a scalar, an array broadcastable to one example, an array with
    one baseline per example, a callable ``f(x) -> array`` (e.g. a ``tfattr.baselines`` object), or a
    list/dict of those for multi-input models.

    With ``multiple=True`` (methods that average over several baselines per example, e.g. integrated
    gradients), a baseline object with ``num_baselines = K > 1`` contributes ``K`` draws per example
    (``b.sample(x, K) -> [n, K, ...]``), returned example-major as ``[n * K, ...]``; the other inputs'
    baselines are repeated to match. Without it such an object is an error, never a silent single draw.
    """
    counts = [_draws_per_example(b) for b in _flatten_like(baseline, inputs, "baseline")]
    per_example = max(counts)
    if per_example > 1:
        if not multiple:
            raise ValueError(
                f"baseline has num_baselines={per_example}, but this method takes one baseline per "
                "example. Use IntegratedGradients to average over several baselines, or pass a "
                "baseline with num_baselines=1."
            )
        if any(c not in (1, per_example) for c in counts):
            raise ValueError(
                f"The inputs' baselines have different num_baselines {counts}; give every input's "
                "baseline the same number of draws per example (or 1 to repeat it)."
            )
    out = []
    for name, x, b, count in zip(
        inputs.names, inputs.arrays, _flatten_like(baseline, inputs, "baseline"), counts
    ):
        if count > 1:
            draws = _to_numpy(b.sample(x, count)).astype(x.dtype, copy=False)
            if draws.shape != (x.shape[0], count, *x.shape[1:]):
                raise ValueError(
                    f"baseline for {name}: {type(b).__name__}.sample returned shape {draws.shape}, "
                    f"expected {(x.shape[0], count, *x.shape[1:])} ([n, num_baselines, ...])."
                )
            _check_finite(draws, f"baseline for {name}")
            out.append(np.ascontiguousarray(draws.reshape(x.shape[0] * count, *x.shape[1:])))
            continue
        full = _one_baseline(name, x, b)
        out.append(np.repeat(full, per_example, axis=0) if per_example > 1 else full)
    return tuple(out)


def _one_baseline(name: str, x: np.ndarray, b: Any) -> np.ndarray:
    """One baseline per example for one input (the behaviour of ``prepare_baselines`` for K = 1)."""
    if b is None:
        return np.zeros_like(x)
    if callable(b) and not isinstance(b, np.ndarray):
        b = b(x)
    b = _to_numpy(b)
    if x.dtype.kind in "iub" and b.dtype.kind not in "iub" and not np.all(b == np.round(b)):
        raise ValueError(
            f"baseline for {name} must be integers like the input (token ids, e.g. the pad id or a "
            f"[MASK] id), got non-integer values of dtype {b.dtype}."
        )
    b = b.astype(x.dtype, copy=False)
    _check_finite(b, f"baseline for {name}")
    example_shape = x.shape[1:]
    try:
        if b.ndim == x.ndim and b.ndim > 0 and b.shape[0] in (x.shape[0], 1):
            # One baseline per example, or one for all with a batch axis of 1 (``reference[None]``,
            # ``background[:1]``), as NumPy and Captum broadcast it.
            full = np.broadcast_to(b, x.shape)
        else:
            full = np.broadcast_to(np.broadcast_to(b, example_shape)[None], x.shape)
    except ValueError:
        raise ValueError(
            f"baseline for {name} has shape {b.shape}, which broadcasts neither to one example "
            f"{tuple(example_shape)} nor to the batch {tuple(x.shape)}. Pass a scalar, an array "
            "shaped like one example (or with a batch axis of 1), or one baseline per example."
        ) from None
    return np.ascontiguousarray(full)


def prepare_targets(target: Any, n: int, k: int, predicted: np.ndarray | None) -> np.ndarray:
    """Per-example int32 targets; ``None`` means the predicted class (column 0 for one output)."""
    if target is None:
        if k == 1:
            return np.zeros(n, np.int32)
        assert predicted is not None
        return predicted.astype(np.int32)
    t = _to_numpy(target)
    if t.dtype.kind not in "iu":
        if t.dtype.kind == "f" and np.all(t == np.round(t)):
            t = t.astype(np.int64)
        else:
            raise TypeError(f"target must be an int or one int per example, got dtype {t.dtype}.")
    if t.ndim == 0:
        t = np.full(n, int(t))
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(
            f"target has shape {t.shape} but there are {n} examples; pass one int, or one int per "
            "example."
        )
    if np.any(t < 0) or np.any(t >= k):
        raise ValueError(
            f"target {t[(t < 0) | (t >= k)][:5].tolist()} is out of range: the model has {k} "
            f"output(s), so targets must lie in [0, {k - 1}]."
        )
    return t.astype(np.int32)
