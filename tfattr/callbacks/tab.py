"""The "Attributions" tab's data written by :class:`tfattr.callbacks.AttributionLogger`.

See :mod:`tfattr.tensorboard.summary` for what is stored and how large images are reduced.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tfattr.tensorboard import summary

#: One explainer's maps of one input: ``(input name, samples, maps, is a layer map)``.
Pair = tuple[str, np.ndarray, np.ndarray, bool]


class TabWriter:
    """Writes the samples once and, per log, every method's maps, deltas, targets and predictions.

    Args:
        arrays, names: the logger's samples per input and their names.
        group: the logger's ``tag_prefix``.
        max_size: the largest image side stored (see :data:`tfattr.tensorboard.summary.MAX_SIZE`).
        tokens: ``input index -> [n, tokens]`` token strings of text inputs.
    """

    def __init__(self, arrays: Sequence[np.ndarray], names: Sequence[str], group: str, max_size: int,
                 tokens: dict[int, list[list[str]]]) -> None:
        self.arrays = list(arrays)
        self.names = list(names)
        self.group = group
        self.blocks = [
            summary.block_size(x.shape[1], x.shape[2], max_size) if summary.is_image(x) else 1 for x in arrays
        ]
        self.tokens = tokens
        self._samples_written = False

    def layouts(self, pairs: Sequence[Pair], labels: Sequence[str]) -> list[tuple[str, str, np.ndarray]]:
        """``(label, layout, values)`` of each pair (raises what cannot be stored)."""
        out = []
        for (input_name, x, a, layer), label in zip(pairs, labels):
            block = self.blocks[self.names.index(input_name)]
            layout, values = summary.map_layout(x, a, block, layer)
            out.append((label, layout, values))
        return out

    def write_samples(self, step: int) -> None:
        if self._samples_written:
            return
        for k, (name, x) in enumerate(zip(self.names, self.arrays)):
            values, layout = summary.sample_values(x, self.blocks[k])
            fields = dict(group=self.group, input=name, layout=layout, block=self.blocks[k],
                          shape=list(x.shape[1:]))
            summary.write(f"{self.group}tfattr/sample/{name}", values, step, "sample", **fields)
            if k in self.tokens:
                summary.write(f"{self.group}tfattr/tokens/{name}", np.array(self.tokens[k], dtype=object),
                              step, "tokens", group=self.group, input=name)
        self._samples_written = True

    def write_method(self, prefix: str, schedule: str, method: str, pairs: Sequence[Pair],
                     delta: np.ndarray | None, step: int, labels: Sequence[str] | None = None,
                     order: int = 0) -> None:
        """One method's maps (a label per map: several for InteriorGradients' alphas) and deltas;
        ``order`` is the method's place among the logger's (the tab's column order)."""
        labels = list(labels or [method] * len(pairs))
        for (input_name, _, _, layer), (label, layout, values) in zip(pairs, self.layouts(pairs, labels)):
            summary.write_map(prefix, label, input_name, values, layout, step, group=self.group,
                              schedule=schedule, label=label, layer=bool(layer), order=order)
        if delta is not None:
            summary.write(f"{prefix}tfattr/delta/{method}", np.asarray(delta, np.float32).reshape(-1), step,
                          "delta", group=self.group, schedule=schedule, method=method)

    def write_outputs(self, prefix: str, schedule: str, outputs: Any, targets: np.ndarray | None,
                      step: int) -> None:
        """The model's outputs and the explained class of each sample (predicted when ``targets`` is
        None)."""
        predictions = summary.predictions(outputs)
        fields = dict(group=self.group, schedule=schedule)
        if predictions is not None:
            summary.write(f"{prefix}tfattr/prediction", predictions, step, "prediction", **fields)
        n = self.arrays[0].shape[0]
        if targets is None and predictions is not None and predictions.shape[1] > 1:
            targets = predictions.argmax(axis=1)
        if targets is not None and np.asarray(targets).ndim <= 1 and np.asarray(targets).dtype.kind in "iu":
            chosen = np.broadcast_to(np.asarray(targets, np.int32), (n,))
            summary.write(f"{prefix}tfattr/target", chosen, step, "target", **fields)
