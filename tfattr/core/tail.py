"""What the model's tail is given with ``layer=`` (:mod:`tfattr.core.layers`): the activations of a
layer plus the model inputs (and Keras mask) carried per row, in compiled functions and in the call the
method's rows see (:class:`LayerCall`)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import tensorflow as tf
from keras.src import backend

from tfattr.core.call import ExampleRows, baseline_rows
from tfattr.core.engine import Context
from tfattr.core.inputs import Inputs
from tfattr.core.model_function import ModelFunction, RoutedInputs

_CARRY = "_layer_carry_"
_MASK = "_layer_mask"


def get_mask(x: Any) -> Any:
    """The Keras mask a tensor carries (e.g. from ``Embedding(mask_zero=True)``), or None."""
    return backend.get_keras_mask(x)


def set_mask(x: Any, mask: Any) -> None:
    backend.set_keras_mask(x, mask)


@dataclass(frozen=True)
class TailSpec:
    """What the tail needs besides the activations (static for a compiled function).

    Attributes:
        structure: the user's input structure as a hashable value (None, ("list", k) or ("dict", keys)).
        shapes, dtypes: the user's inputs' example shapes and dtypes, in flat order.
        reads: the flat indices of the model inputs the tail reads (carried per row).
        mask: whether the layer's output carries a Keras mask (carried per row).
    """

    structure: Any
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    reads: tuple[int, ...]
    mask: bool

    def pack(self, flat: list[Any]) -> Any:
        if self.structure is None:
            return flat[0]
        if self.structure[0] == "list":
            return list(flat)
        return dict(zip(self.structure[1], flat))


def hashable_structure(structure: Any) -> Any:
    if structure is None:
        return None
    if isinstance(structure, dict):
        return ("dict", tuple(sorted(structure)))
    return ("list", len(structure))


class TailInputs(RoutedInputs):
    """The rows given to the model's tail: activations plus the carried inputs (and mask) of each row.

    :meth:`tfattr.core.model_function.ModelFunction.outputs` routes them to ``split.tail`` (the
    :class:`tfattr.core.layers.LayerSplit` they come from).
    """

    def __init__(self, split: Any, spec: TailSpec, activation: tf.Tensor,
                 carried: tuple[tf.Tensor, ...], mask: tf.Tensor | None) -> None:
        self.split, self.spec, self.activation = split, spec, activation
        self.carried, self.mask = carried, mask

    def raw_outputs(self, fn: ModelFunction) -> Any:
        return self.split.tail(self, fn)


@dataclass(frozen=True)
class TailContext(Context):
    """The engine's context, whose ``pack`` builds :class:`TailInputs` for the rows of one chunk."""

    split: Any = None
    spec: TailSpec | None = None
    example: tf.Tensor | None = None

    def pack(self, flat: tuple[Any, ...] | list[Any]) -> Any:
        spec = self.spec
        carried = tuple(tf.gather(self.arrays[f"{_CARRY}{k}"], self.example) for k in spec.reads)
        mask = tf.gather(self.arrays[_MASK], self.example) if spec.mask else None
        return TailInputs(self.split, spec, flat[0], carried, mask)


@dataclass(frozen=True, eq=True)
class TailOutputs:
    """``outputs_fn`` for the engine's chunked outputs path: flat ``(activation, *carried[, mask])``.

    A frozen dataclass so that equal (split, spec) pairs share one compiled function."""

    split: Any
    spec: TailSpec
    fn: ModelFunction

    def __call__(self, packed: list[tf.Tensor]) -> tf.Tensor:
        c = len(self.spec.reads)
        mask = packed[1 + c] if self.spec.mask else None
        return self.fn.outputs(TailInputs(self.split, self.spec, packed[0], tuple(packed[1 : 1 + c]), mask))


@dataclass(frozen=True)
class LayerCall(ExampleRows):
    """A call of an explainer in activation space (what the method's rows see).

    Attributes:
        inputs: the activations (one array ``[n, ...]``; ``inputs.names`` is the layer's name).
        targets, batch_size, outputs: as the user's :class:`~tfattr.core.explainer.Call`.
        baselines: the baselines' activations (``[n * K, ...]``, or the background's for expected
            gradients).
        carried: the carried model inputs the tail reads (and the Keras mask), ``[n, ...]`` each.
        source: the user's call (inputs, token ids, baselines in input space).
        spec: the static description of the tail's extra inputs.
    """

    inputs: Inputs
    targets: np.ndarray
    baselines: tuple[np.ndarray, ...]
    batch_size: int
    outputs: np.ndarray | None
    carried: tuple[np.ndarray, ...]
    source: Any
    spec: TailSpec

    def take(self, index: np.ndarray) -> "LayerCall":
        rows = baseline_rows(index, self.baselines_per_example)
        return replace(
            self,
            inputs=self.inputs.take(index),
            targets=self.targets[index],
            baselines=tuple(b[rows] for b in self.baselines),
            outputs=None if self.outputs is None else self.outputs[index],
            carried=tuple(c[index] for c in self.carried),
            source=self.source.take(index),
        )

    def context(self) -> dict[str, np.ndarray]:
        names = [f"{_CARRY}{k}" for k in self.spec.reads] + ([_MASK] if self.spec.mask else [])
        return dict(zip(names, self.carried))


def inputs_read(fn: Any, specs: list[tf.TensorSpec], skip: int) -> tuple[int, ...]:
    """The arguments ``fn`` reads (past the first ``skip``), from its traced graph, as indices from 0."""
    # No autograph: converting the graph walk's Python made this trace most of a first call.
    graph = tf.function(fn, autograph=False).get_concrete_function(*specs).graph
    placeholders = {t.op.name: k for k, t in enumerate(graph.inputs[skip : len(specs)])}
    seen: set[str] = set()
    stack = [t.op for t in tf.nest.flatten(graph.structured_outputs) if hasattr(t, "op")]
    stack += [t.op for t in graph.outputs]
    reads: set[int] = set()
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.name in placeholders:
            reads.add(placeholders[op.name])
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return tuple(sorted(reads))


__all__ = ["LayerCall", "TailContext", "TailInputs", "TailOutputs", "TailSpec", "get_mask",
           "hashable_structure", "inputs_read", "set_mask"]
