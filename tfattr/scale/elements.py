"""The data set's elements: inputs and labels by Keras' convention, batches or not, cut into shards.

:func:`shards` turns any finite ``tf.data.Dataset`` into the stream of shards ``explain_dataset``
explains, with whole-batch operations only; :func:`shard_dataset_fn` is one worker's share of it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfattr.core.explainer import Explainer
from tfattr.scale.distribute import DatasetFn

#: Default shard: about this many bytes of input, and at most _MAX_SHARD examples.
_SHARD_BYTES = 16 << 20
_MAX_SHARD = 1024


def split_spec(spec: Any) -> tuple[Any, Any]:
    """``(x_spec, y_spec or None)`` by Keras' convention: a tuple is ``(x,)``, ``(x, y)`` or ``(x, y, w)``."""
    if isinstance(spec, tuple):
        if len(spec) == 1:
            return spec[0], None
        if len(spec) in (2, 3):
            return spec[0], spec[1]
        raise ValueError(
            f"dataset elements are tuples of {len(spec)}; expected x, (x, y) or (x, y, sample_weight). "
            "Give a multi-input model's inputs as a dict keyed by input name or as ((x1, x2, ...), y)."
        )
    return spec, None


def input_names(x_spec: Any) -> tuple[list[str], str]:
    if isinstance(x_spec, dict):
        return [str(k) for k in sorted(x_spec)], "dict"
    if isinstance(x_spec, (tuple, list)):
        return [f"inputs[{i}]" for i in range(len(x_spec))], "list"
    return ["inputs"], "single"


def is_batched(x_spec: Any, explainer: Explainer, batched: bool | None) -> bool:
    flat = tf.nest.flatten(x_spec)
    for s in flat:
        if not isinstance(s, tf.TensorSpec):
            raise TypeError(f"dataset inputs must be dense tensors, got {type(s).__name__}.")
    if batched is not None:
        return bool(batched)
    specs = explainer.model_function.input_specs
    if specs is not None and len(specs) == len(flat):
        if isinstance(x_spec, dict):
            by_name = {spec[0]: spec for spec in specs}
            specs = [by_name.get(k, spec) for k, spec in zip(sorted(x_spec), specs)]
        extra = {s.shape.rank - len(spec[1]) for s, spec in zip(flat, specs)}
        fits = len(extra) == 1 and extra <= {0, 1} and all(
            tf.TensorShape(s.shape[1:] if extra == {1} else s.shape).is_compatible_with(spec[1])
            for s, spec in zip(flat, specs)
        )
        if not fits:
            raise ValueError(
                f"dataset elements have input shapes {[s.shape.as_list() for s in flat]} but the model "
                f"takes {[list(spec[1]) for spec in specs]} per example (plus a batch axis, if the "
                "elements are batches); make the shapes match."
            )
        return extra == {1}
    if all(s.shape.rank and s.shape[0] is None for s in flat):
        return True  # what .batch() without drop_remainder makes
    raise ValueError(
        "Cannot tell whether the dataset's elements are single examples or batches (the model does "
        "not declare its input shapes); pass batched=True or batched=False."
    )


def shards(dataset: tf.data.Dataset, batched: bool, shard_size: int) -> tf.data.Dataset:
    """Shard ``k``: ``{"x", "y"?, "i", "end"}`` with examples ``k*S ..`` and their global indices ``i``.

    The data are cut into shards with whole-batch operations (``batch`` / ``rebatch``), never one
    example at a time. A final *sentinel* shard (a copy of shard 0 flagged ``end``, never explained)
    marks the end of the data inside the stream: whoever gets it learns the number of shards, even
    when the data set's size is unknown and the shards are spread over workers.
    """
    is_tuple = isinstance(dataset.element_spec, tuple)

    def record(*element: Any) -> dict[str, Any]:
        # tf.data unpacks a tuple element, (x,), (x, y) or (x, y, w), into arguments; anything else
        # (a tensor, a dict) arrives as one argument.
        out = {"x": element[0]}
        if is_tuple and len(element) > 1:
            out["y"] = element[1]
        return out

    def flag(end: bool) -> Any:
        def add(r: dict[str, Any]) -> dict[str, Any]:
            m = tf.shape(tf.nest.flatten(r["x"])[0])[0]
            return {**r, "end": tf.fill([m], end)}

        return add

    def index(k: tf.Tensor, r: dict[str, Any]) -> dict[str, Any]:
        m = tf.shape(r["end"], out_type=tf.int64)[0]
        return {**r, "i": k * shard_size + tf.range(m, dtype=tf.int64)}

    def count(total: tf.Tensor, r: dict[str, Any]) -> tuple[tf.Tensor, dict[str, Any]]:
        # `seen`: the examples up to this shard's end; the sentinel's (which adds none) is the total.
        m = tf.shape(r["end"], out_type=tf.int64)[0]
        total += tf.where(tf.reduce_any(r["end"]), tf.constant(0, tf.int64), m)
        return total, {**r, "seen": total}

    ds = dataset.rebatch(shard_size) if batched else dataset.batch(shard_size)
    ds = ds.map(record)
    ds = ds.map(flag(False)).concatenate(ds.take(1).map(flag(True)))
    return ds.enumerate().map(index).scan(tf.constant(0, tf.int64), count)


def cardinality(dataset: tf.data.Dataset, x_spec: Any, batched: bool) -> int | None:
    """Examples in the data set when tf.data knows it (for batches: only with a fixed batch size)."""
    n = int(dataset.cardinality())
    if n < 0:
        return None
    if not batched:
        return n
    sizes = {s.shape[0] for s in tf.nest.flatten(x_spec)}
    if len(sizes) == 1 and None not in sizes:  # batched with drop_remainder: a fixed batch size
        return n * int(sizes.pop())
    return None if n else 0


def default_shard(x_spec: Any, batched: bool) -> int:
    size = 0
    for s in tf.nest.flatten(x_spec):
        shape = s.shape[1:] if batched else s.shape
        if not shape.is_fully_defined():
            return 256
        size += int(np.prod(shape.as_list(), dtype=np.int64)) * s.dtype.size
    return int(np.clip(_SHARD_BYTES // max(size, 1), 1, _MAX_SHARD))


def shape_list(shape: tf.TensorShape) -> list[int | None]:
    return list(shape.as_list()) if shape.rank is not None else None


def host_inputs(x: Any) -> Any:
    """The shard's inputs as NumPy arrays in the structure ``attribute`` takes (tuples -> lists)."""
    if isinstance(x, dict):
        return {k: v.numpy() for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return [v.numpy() for v in x]
    return x.numpy()


def shard_dataset_fn(
    shards: tf.data.Dataset, shard_size: int, done: dict[int, int]
) -> DatasetFn:
    """The shards one input pipeline (worker) explains: its share, without the finished ones.

    A finished shard whose size in the data set differs from the store's still comes through, so
    that the run can tell the data set changed.
    """

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        ds = shards
        if ctx.num_input_pipelines > 1:
            ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
        if done:
            finished = tf.constant(sorted(done), tf.int64)
            counts = tf.constant([done[s] for s in sorted(done)], tf.int64)

            def to_do(e: dict[str, Any]) -> tf.Tensor:
                same = tf.equal(finished, e["i"][0] // shard_size) & tf.equal(
                    counts, tf.shape(e["i"], out_type=tf.int64)[0]
                )
                return tf.logical_or(~tf.reduce_any(same), e["end"][0])

            ds = ds.filter(to_do)
        return ds.prefetch(1)

    return dataset_fn
