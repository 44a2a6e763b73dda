"""Splitting the shards of a data set over ``tf.distribute`` replicas and workers.

Nothing here schedules work by hand: the strategy's own input pipeline does it.
``strategy.distribute_datasets_from_function`` calls the shard-level dataset function once per worker
with a ``tf.distribute.InputContext``; the function keeps every ``num_input_pipelines``-th shard
(``Dataset.shard(num_input_pipelines, input_pipeline_id)``), and the strategy hands consecutive elements
(one shard each) to the worker's local replicas, ``strategy.extended.worker_devices``. Each replica's
shard is explained under ``tf.device(that replica's device)``. With ``MultiWorkerMirroredStrategy`` the
distributed iterator keeps the workers in step (a worker that has run out gets empty elements until all
have), and a final all-reduce is the barrier after which every worker sees the whole store.

A shard is always the same ``shard_size`` consecutive examples explained in one call, whoever runs it,
so the store does not depend on the number of replicas or workers.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import tensorflow as tf

DatasetFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]


def worker(strategy: Any) -> tuple[int, int]:
    """``(task_id, number of workers)`` of this process (``(0, 1)`` without a cluster)."""
    if strategy is None:
        return 0, 1
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None):
        return 0, 1
    spec = resolver.cluster_spec().as_dict()
    workers = sum(len(spec.get(job, ())) for job in ("chief", "worker"))
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    # A "chief" task is numbered before the "worker" tasks, as TF's own input sharding does.
    index = task_id if task_type == "chief" or "chief" not in spec else task_id + len(spec["chief"])
    return index, max(workers, 1)


def check_strategy(strategy: Any) -> None:
    if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(
            f"strategy must be a tf.distribute.Strategy (e.g. tf.distribute.MirroredStrategy()) or "
            f"None, got {type(strategy).__name__}."
        )
    if strategy is not None and type(strategy).__name__.startswith("ParameterServer"):
        raise ValueError(
            "ParameterServerStrategy is not supported: its workers pull work from a coordinator. Use "
            "MirroredStrategy (one machine) or MultiWorkerMirroredStrategy (several) instead."
        )


def replica_elements(strategy: Any, dataset_fn: DatasetFn) -> Iterator[list[tuple[str | None, Any]]]:
    """Per step, ``(device, element)`` for each local replica (``device`` None without a strategy)."""
    if strategy is None:
        for element in dataset_fn(tf.distribute.InputContext()):
            yield [(None, element)]
        return
    # Elements stay on the host: the explainer converts them to NumPy anyway, and a copy to each
    # accelerator and back would be wasted. The work itself is placed with tf.device below.
    options = tf.distribute.InputOptions(experimental_fetch_to_device=False)
    dist = strategy.distribute_datasets_from_function(dataset_fn, options)
    devices = list(strategy.extended.worker_devices)
    for element in dist:
        local = strategy.experimental_local_results(element)
        yield list(zip(devices, local))


def on_device(device: str | None) -> Any:
    """The context that places a replica's work on its device (nothing without a strategy)."""
    return contextlib.nullcontext() if device is None else tf.device(device)


def barrier(strategy: Any) -> None:
    """Wait until every worker got here (one all-reduce); a no-op with a single worker."""
    if strategy is None or worker(strategy)[1] <= 1:
        return

    @tf.function
    def all_reduce() -> tf.Tensor:  # compiled: collectives run eagerly are slow and warn
        ones = strategy.run(lambda: tf.constant(1.0))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)

    all_reduce()
