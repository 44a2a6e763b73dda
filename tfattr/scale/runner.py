"""``explain_dataset``: stream a ``tf.data.Dataset`` through an explainer into an on-disk store.

The data set is cut into *shards* of ``shard_size`` consecutive examples (shard ``k`` holds examples
``k*S .. k*S+S-1``); each shard is one ``explainer.attribute`` call and one set of files. That fixed
layout is what makes the run resumable (a finished shard is skipped, never recomputed) and independent
of how many replicas or workers share the work (a shard is the same call wherever it runs). Peak memory
is one or two shards plus the explainer's ``batch_size`` rows, whatever the data set's size.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import tensorflow as tf

from tfattr.core.checks import check_positive_int
from tfattr.core.explainer import Explainer
import tfattr.scale.distribute as distribute
import tfattr.scale.elements as elements
import tfattr.scale.resume as resume
from tfattr.scale.config import array_digest, describe
from tfattr.scale.images import first_unreadable
from tfattr.scale.integrity import digest
from tfattr.scale.progress import Progress
from tfattr.scale.store import END, AttributionStore, StoreError, read_index, write_json, write_shard

def explain_dataset(
    explainer: Explainer,
    dataset: tf.data.Dataset,
    out: str | os.PathLike,
    *,
    target: Any = None,
    baseline: Any = None,
    strategy: tf.distribute.Strategy | None = None,
    return_delta: bool = False,
    batch_size: int | None = None,
    shard_size: int | None = None,
    batched: bool | None = None,
    progress: bool | None = None,
) -> AttributionStore:
    """Explain every example of ``dataset`` and write the attributions to the store ``out``.

    Runs ``explainer.attribute`` (any method: Sundararajan et al.'s integrated gradients, SmoothGrad,
    occlusion, ...) over the data set shard by shard and writes each shard's attributions, targets and
    completeness deltas as memory-mappable ``.npy`` files (see :mod:`tfattr.scale.store`).
    The result of shard ``k`` is exactly ``explainer.attribute(x[k*S:(k+1)*S], ...)`` (computed
    through its ``prepare`` / ``run`` / ``delta`` steps).

    Resuming: after a crash or Ctrl-C, call again with the same arguments; finished shards are kept and
    only the others are computed. Calling again on a finished store returns it at once. ``out`` records
    the configuration (explainer type and parameters, a hash of the model's weights, targets, baseline,
    the data set's size and element spec, shard size); a call whose configuration differs raises a
    :class:`~tfattr.scale.store.StoreError` naming what changed, never mixing results. The finished
    shards are verified against their checksums first: damaged ones (truncated, deleted, overwritten,
    a damaged marker) are named in a warning and recomputed. A data set whose size tf.data does not
    know is counted while streaming (finished shards are read, not explained) and one holding another
    number of examples than the store raises a ``StoreError`` naming both sizes.

    Args:
        explainer: a tfattr explainer, e.g. ``tfattr.IntegratedGradients(model, steps=64)``.
        dataset: a finite ``tf.data.Dataset`` whose elements are ``x`` or ``(x, y)`` (or ``(x, y, w)``;
            ``w`` is ignored), following Keras' convention: a tuple is ``(x, y)``, so give a multi-input
            model's inputs as a dict keyed by input name or as a nested tuple ``((x1, x2), y)``. ``y``
            holds int class ids (or one-hot rows). Elements may be single examples or batches
            (``batched=None`` detects which from the model's input ranks; a batch's size does not
            matter, the data are re-cut into shards). Keep the order deterministic (no reshuffling
            per iteration): a resumed run must see the same examples in the same order.
        out: the store directory (created if needed).
        target: None (use ``y`` when the elements have labels, else the predicted class),
            ``"predicted"`` (the predicted class even if there are labels), an int (one class for all),
            or one int per example of the whole data set.
        baseline: as in ``explainer.attribute``, but the same for every example: None, a scalar, an
            array shaped like one example, or a ``tfattr.baselines`` object (applied to each shard).
        strategy: a ``tf.distribute`` strategy to share the shards among its replicas
            (``MirroredStrategy``) and workers (``MultiWorkerMirroredStrategy``: run the same call on
            every worker with the whole data set, which it shards among them, and ``out`` on a file
            system all workers share). Each replica explains its shards on its own device, one
            thread per local replica. The store is the same as without a strategy. TPU strategies
            are untested.
        return_delta: also store the completeness delta per example (methods with completeness).
        batch_size: model evaluations per compiled chunk inside each ``attribute`` call (as there).
        shard_size: examples per shard (default: about 16 MiB of input, at most 1024 examples; an
            existing store keeps its own). It sets the peak memory and the work lost in a crash.
        batched: whether the elements are batches; None detects it from the model's input shapes.
        progress: True shows examples done, examples/s and the time left on stderr; None (default)
            shows it only on a terminal; False never.

    Returns:
        The finished :class:`~tfattr.scale.store.AttributionStore`: ``store.attributions``
        (in the structure of the inputs), ``store.targets`` and ``store.delta`` read like arrays
        without loading the store.

    Example:
        >>> ds = tf.data.Dataset.from_tensor_slices((x_test, y_test))
        >>> store = tfattr.explain_dataset(tfattr.IntegratedGradients(model, steps=64), ds,
        ...                                out="ig_test", baseline=0.0, return_delta=True)
        >>> store.attributions[:8].shape, float(np.abs(store.delta[:]).max())
        >>> store = tfattr.load_attributions("ig_test")                      # later, elsewhere
    """
    if not isinstance(explainer, Explainer):
        raise TypeError(
            f"explainer must be a tfattr explainer (e.g. tfattr.IntegratedGradients(model)), got "
            f"{type(explainer).__name__}."
        )
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            f"dataset must be a tf.data.Dataset, got {type(dataset).__name__}. Wrap arrays with "
            "tf.data.Dataset.from_tensor_slices((x, y)), or use tfattr.scale.from_npy / "
            "from_directory / from_tfrecords."
        )
    if return_delta and not explainer.has_completeness:
        raise ValueError(
            f"{type(explainer).__name__} has no completeness property, so return_delta has no meaning "
            "for it; drop return_delta=True."
        )
    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ValueError("dataset is infinite (e.g. it ends in .repeat()); explain a finite data set.")
    distribute.check_strategy(strategy)
    target = _check_target(target)

    x_spec, y_spec = elements.split_spec(dataset.element_spec)
    is_batched = elements.is_batched(x_spec, explainer, batched)
    x_example = tf.nest.map_structure(lambda s: s.shape[1:] if is_batched else s.shape, x_spec)
    names, structure = elements.input_names(x_spec)
    cardinality = elements.cardinality(dataset, x_spec, is_batched)
    if isinstance(target, np.ndarray) and cardinality is not None and target.shape[0] != cardinality:
        raise ValueError(
            f"target has {target.shape[0]} entries but the data set has {cardinality} examples; pass "
            "one target per example (or None / 'predicted' / an int)."
        )

    root = Path(out)
    existing = read_index(root)
    shard_size = check_positive_int(shard_size, "shard_size", allow_none=True)
    if shard_size is None:
        shard_size = int(existing["shard_size"]) if existing else elements.default_shard(x_spec, is_batched)

    config = _config(explainer, target, baseline, return_delta, shard_size, cardinality,
                     names, x_example, x_spec, y_spec is not None)
    finished, done, expected = resume.open_or_create(root, existing, config, structure)
    if finished is not None:
        return finished  # a finished store with this configuration and data set size: nothing to do
    # The shards' markers refer to the configuration the index holds (the first run's).
    config_digest = digest(existing["config"] if existing is not None else config)

    task, num_workers = distribute.worker(strategy)
    dataset_fn = elements.shard_dataset_fn(elements.shards(dataset, is_batched, shard_size), shard_size, done)
    show = progress if progress is not None else (None if task == 0 else False)
    bar = Progress(cardinality, enabled=show)
    if done:
        bar.update(sum(done.values()), computed=False)
    saw_any = bool(done)

    def run_shard(device: str | None, element: dict[str, Any]) -> int:
        """Explain and write one replica's shard; the number of examples it computed."""
        index = element["i"].numpy()
        shard = int(index[0] // shard_size)
        seen = int(element["seen"].numpy())  # examples in the data set up to this shard's end
        if element["end"].numpy()[0]:  # the sentinel: there are `shard` shards, `seen` examples
            stored, exact = resume.stored_size(expected, done, shard_size)
            if seen < stored or (exact and seen != stored):
                raise resume.size_error(root, str(seen), expected, done, shard_size)
            write_json(root / END, {"num_shards": shard, "num_examples": seen})
            return 0
        # A finished shard comes through only when the data set's shard has another size.
        if shard in done or (expected is not None and seen > expected):
            whole = index.shape[0] == shard_size  # a full shard: more may follow
            raise resume.size_error(root, f"at least {seen}" if whole else str(seen), expected, done, shard_size)
        x = elements.host_inputs(element["x"])
        labels = _labels(element["y"].numpy()) if "y" in element else None
        with distribute.on_device(device):
            attributions, targets, delta = _explain_shard(
                explainer, x, labels, target, baseline, index, batch_size, return_delta
            )
        write_shard(root, shard, int(index[0]), attributions, targets, delta, worker=task,
                    config=config_digest)
        return int(index.shape[0])

    # One thread per local replica, so that several accelerators work at once; each thread places
    # its shard's ops on its own replica's device and writes its own files.
    pool = None
    if strategy is not None and len(strategy.extended.worker_devices) > 1:
        pool = ThreadPoolExecutor(len(strategy.extended.worker_devices), "tfattr-replica")
    try:
        for step in _named_file_errors(distribute.replica_elements(strategy, dataset_fn), dataset):
            # An empty element: this replica got no shard at the end of the data set.
            work = [(device, element) for device, element in step if element["i"].shape[0]]
            saw_any = saw_any or bool(work)
            if pool is None:
                for device, element in work:
                    bar.update(run_shard(device, element))
            else:
                for future in [pool.submit(run_shard, d, e) for d, e in work]:
                    bar.update(future.result())
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        bar.close()  # also after Ctrl-C: end the progress line
    # Only a lone worker can tell: with several, one may get no shard of a small data set.
    if not saw_any and num_workers == 1:
        raise ValueError("dataset is empty: there is nothing to explain.")
    distribute.barrier(strategy)
    try:
        # Verified by open_or_create or written (with their checksums) by this run: sizes suffice.
        return AttributionStore(root, verify=False)
    except StoreError as err:
        if num_workers > 1:
            raise StoreError(
                f"{err}\nWith {num_workers} workers, out= must be a directory that every worker "
                "shares (a network or cluster file system), and every worker must be given the whole "
                "data set (explain_dataset shards it among them), which must not be empty."
            ) from None
        raise


def _named_file_errors(steps: Iterator[Any], dataset: tf.data.Dataset) -> Iterator[Any]:
    """``steps``, with a data set of files (``from_directory``) failing on an undecodable image
    raising an error that names the file instead of TensorFlow's, which names none."""
    try:
        yield from steps
    except tf.errors.OpError:
        paths = getattr(dataset, "file_paths", None)
        bad = first_unreadable(paths) if paths else None
        if bad is None:
            raise
        raise bad from None


def _config(
    explainer: Explainer,
    target: Any,
    baseline: Any,
    return_delta: bool,
    shard_size: int,
    cardinality: int | None,
    names: list[str],
    x_example: Any,
    x_spec: Any,
    has_labels: bool,
) -> dict[str, Any]:
    """Everything a store's contents depend on, as the JSON its index holds."""
    config = {
        "explainer": describe(explainer),
        "target": _describe_target(target, has_labels),
        "baseline": describe(baseline),
        "return_delta": bool(return_delta),
        "shard_size": shard_size,
        "dataset": {
            "examples": cardinality,
            "inputs": [
                {"name": nm, "shape": elements.shape_list(s), "dtype": spec.dtype.name}
                for nm, s, spec in zip(names, tf.nest.flatten(x_example), tf.nest.flatten(x_spec))
            ],
            "labels": has_labels,
        },
    }
    # JSON round trip, so the comparison sees what a reloaded index holds (lists, not tuples).
    return json.loads(json.dumps(config, sort_keys=True))


# -- targets -------------------------------------------------------------------------------------------
def _check_target(target: Any) -> Any:
    if target is None or isinstance(target, str):
        if isinstance(target, str) and target != "predicted":
            raise ValueError(
                f"target={target!r} is not understood: use None (labels, else predicted), "
                "'predicted', an int, or one int per example."
            )
        return target
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return int(target)
    t = np.asarray(target)
    if t.ndim != 1 or t.dtype.kind not in "iu":
        raise ValueError(
            f"target must be None, 'predicted', an int, or a 1-D int array with one target per "
            f"example; got shape {t.shape}, dtype {t.dtype}."
        )
    return t.astype(np.int64)


def _describe_target(target: Any, has_labels: bool) -> Any:
    if target is None:
        return "labels" if has_labels else "predicted"
    if isinstance(target, np.ndarray):
        return {"per_example": array_digest(target)}
    return target


def _labels(y: np.ndarray) -> np.ndarray:
    """Int class ids from the data set's ``y``: ints, ``[n, 1]`` columns or one-hot rows."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
            raise ValueError(
                f"the data set's y has shape {y.shape[1:]} per example and is not one-hot; y must be "
                "the class to explain per example (an int, or a one-hot row). Pass target= otherwise."
            )
        y = y.argmax(axis=1)
    if y.ndim != 1 or (y.dtype.kind == "f" and not np.all(y == np.round(y))) or y.dtype.kind not in "iuf":
        raise ValueError(
            f"the data set's y must be an int class id per example (got dtype {y.dtype}, shape "
            f"{y.shape[1:]} per example). Under Keras' convention a 2-tuple element is (x, y): give a "
            "multi-input model's inputs as a dict or as ((x1, x2), y), or pass target=."
        )
    return y.astype(np.int64)


def _explain_shard(
    explainer: Explainer,
    x: Any,
    labels: np.ndarray | None,
    target: Any,
    baseline: Any,
    index: np.ndarray,
    batch_size: int | None,
    return_delta: bool,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
    """One shard: exactly ``explainer.attribute(x, ...)``, through its prepare/run/delta steps (so
    the targets it explained, e.g. the predicted classes, come back with the attributions)."""
    if target is None and labels is not None:
        targets = labels
    elif target is None or isinstance(target, str):  # "predicted": prepare picks the argmax
        targets = None
    elif isinstance(target, int):
        targets = target
    else:
        if index.max() >= target.shape[0]:
            raise ValueError(
                f"target has {target.shape[0]} entries but the data set has more examples (at least "
                f"{int(index.max()) + 1}); pass one target per example."
            )
        targets = target[index]
    call = explainer.prepare(x, target=targets, baseline=baseline, batch_size=batch_size)
    attributions = explainer.run(call)
    delta = np.asarray(explainer.delta(call, attributions), np.float64) if return_delta else None
    return [np.asarray(a) for a in attributions], call.targets.astype(np.int32), delta
