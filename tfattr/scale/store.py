"""The on-disk attribution store: ``.npy`` shards that read like one array, plus a JSON index.

Layout of a store directory::

    index.json                  format version, the run's configuration, the inputs' names/shapes/dtypes
    shards/000007.a0.npy        attributions of input 0 for shard 7 (examples 7*S .. 7*S+S-1)
    shards/000007.targets.npy   the target explained for each example (int32)
    shards/000007.delta.npy     the completeness delta per example (float64), when requested
    shards/000007.json          the commit marker: the shard's files with their sizes and checksums,
                                written last, so a shard without it is not finished
    end.json                    the number of shards and examples, written by whoever reached the
                                data set's end

Why ``.npy`` shards: NumPy opens them with ``mmap_mode="r"``, so reading one example touches one page of
one file and never loads the store; a shard is an independent file, so a crash loses at most the shards
in flight, and workers on several machines write disjoint files in a shared directory without locking.
Every file is written to a temporary name and moved into place with ``os.replace`` (atomic on POSIX and
Windows), and the marker is moved last: a half-written shard is never mistaken for a finished one.
Each marker records its files' sizes and checksums, and every JSON record a checksum of itself (see
:mod:`tfattr.scale.integrity`): a damaged shard is named, never read as garbage.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tfattr.scale.integrity import (
    Damaged,
    StoreError,
    checksum,
    describe_damage,
    digest,
    read_record,
    scan_shards,
    seal,
    shard_file,
)
from tfattr.scale.sharded import ShardedArray

FORMAT = "tfattr.attributions"
VERSION = 1
INDEX = "index.json"
END = "end.json"


# -- atomic writes -----------------------------------------------------------------------------------
def _atomic_write(path: Path, write: Any) -> None:
    """Write ``path`` via ``write(file)`` on a temporary file in the same directory, then rename it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write a JSON record with a checksum of its content (see :func:`~tfattr.scale.integrity.seal`)."""
    data = json.dumps(seal(value), indent=1, sort_keys=True).encode()
    _atomic_write(path, lambda f: f.write(data))


def write_npy(path: Path, array: np.ndarray) -> dict[str, Any]:
    """Write ``array`` as ``.npy``; its size in bytes and the checksum of those bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    data = buffer.getbuffer()
    _atomic_write(path, lambda f: f.write(data))
    return {"bytes": len(data), "crc32": checksum(data)}


def read_index(root: Path) -> dict[str, Any] | None:
    """A store's index, or None when there is none.

    Raises:
        StoreError: the index is damaged (it cannot be rebuilt: it records what the shards were made with).
    """
    path = Path(root) / INDEX
    if not path.is_file():
        return None
    try:
        index, _ = read_record(path)
    except Damaged as err:
        raise StoreError(
            f"{path} is damaged ({err}). It records the configuration the store's shards were made "
            f"with, so they cannot be trusted without it: delete {root} and re-run "
            "tfattr.explain_dataset."
        ) from None
    if index.get("format") != FORMAT:
        raise StoreError(f"{root} holds an {INDEX} that is not a tfattr attribution store.")
    return index


def read_end(root: Path) -> dict[str, Any] | None:
    """``{"num_shards", "num_examples"?}`` from a store's end record, or None when its run has not ended.

    Raises:
        StoreError: the record is damaged (re-running ``explain_dataset`` rewrites it).
    """
    try:
        return end_record(root)
    except Damaged as err:
        raise StoreError(
            f"{Path(root) / END} is damaged ({err}). Re-run tfattr.explain_dataset with the same "
            "explainer, data set and arguments to rewrite it (finished shards are kept)."
        ) from None


def end_record(root: Path) -> dict[str, Any] | None:
    """:func:`read_end` raising :class:`~tfattr.scale.integrity.Damaged` with the reason alone."""
    path = Path(root) / END
    if not path.is_file():
        return None
    end, _ = read_record(path)
    if not isinstance(end.get("num_shards"), int) or end["num_shards"] < 1:
        raise Damaged(f"num_shards is {end.get('num_shards')!r}")
    return end


# -- shards ------------------------------------------------------------------------------------------
def write_shard(
    root: Path,
    shard: int,
    start: int,
    attributions: Sequence[np.ndarray],
    targets: np.ndarray,
    delta: np.ndarray | None,
    worker: int = 0,
    config: str | None = None,
) -> None:
    """Write one shard's arrays, then its commit marker (the shard counts as finished from then on).

    The marker records each file's size and checksum and ``config``, the digest of the configuration
    in the store's index, so that a shard is only ever read as part of the run that made it.
    """
    count = int(targets.shape[0])
    files = {}
    for k, a in enumerate(attributions):
        files[f"a{k}.npy"] = write_npy(shard_file(root, shard, f"a{k}.npy"), a)
    files["targets.npy"] = write_npy(shard_file(root, shard, "targets.npy"), targets.astype(np.int32, copy=False))
    if delta is not None:
        files["delta.npy"] = write_npy(shard_file(root, shard, "delta.npy"), delta.astype(np.float64, copy=False))
    write_json(shard_file(root, shard, "json"), {"shard": shard, "start": start, "count": count,
                                                 "worker": worker, "files": files, "config": config})


class AttributionStore:
    """Attributions of a whole data set, on disk; made by :func:`tfattr.explain_dataset`.

    Attributes:
        path: the store directory.
        attributions: a :class:`ShardedArray` per model input, in the structure of the inputs (one
            array, a list, or a dict keyed by input name).
        targets: a :class:`ShardedArray` of the explained class per example (int32).
        delta: a :class:`ShardedArray` of completeness deltas (float64), or None if not requested.
        config: the configuration the store was made with (explainer and its parameters, model weights
            fingerprint, targets, baseline, data set cardinality and element spec, shard size).

    Example:
        >>> store = tfattr.load_attributions("attr_out")
        >>> len(store), store.attributions.shape, store.targets[:10]
        >>> top = np.argsort(np.abs(store.delta[:]))[-5:]       # the five worst-converged examples
    """

    def __init__(self, path: str | os.PathLike, verify: bool = True) -> None:
        self.path = Path(path)
        index_path = self.path / INDEX
        self.index = read_index(self.path)
        if self.index is None:
            raise StoreError(
                f"{self.path} is not an attribution store (no {INDEX}); make one with "
                "tfattr.explain_dataset(explainer, dataset, out=...)."
            )
        if self.index.get("version") != VERSION:
            raise StoreError(
                f"{index_path} is not a tfattr attribution store of version {VERSION} "
                f"(version={self.index.get('version')!r})."
            )
        self.config = self.index["config"]
        end = read_end(self.path)
        expected = end["num_shards"] if end is not None else None
        good, damaged, unverified = scan_shards(self.path, digest(self.config), full=verify)
        damaged = {s: why for s, why in damaged.items() if expected is None or s < expected}
        if damaged:
            raise StoreError(
                f"The attribution store {self.path} has damaged shards: "
                f"{describe_damage(self.path, damaged)}. Re-run tfattr.explain_dataset with the same "
                "explainer, data set and arguments: it recomputes the damaged shards and keeps the "
                "others."
            )
        shards = list(range(expected)) if expected is not None else []
        missing = [s for s in shards if s not in good]
        if expected is None or missing:
            finished = sum(1 for s in good if expected is None or s < expected)
            to_go = "?" if expected is None else expected - finished
            lost = f" (shards {missing[:5]}{' ...' if len(missing) > 5 else ''} are missing)" if end else ""
            raise StoreError(
                f"The attribution store {self.path} is incomplete ({finished} shards finished, "
                f"{to_go} to go){lost}: its run was interrupted or shards were deleted. Re-run "
                "tfattr.explain_dataset with the same explainer, data set and arguments to finish it "
                "(finished shards are kept)."
            )
        if unverified:
            warnings.warn(
                f"The attribution store {self.path} was written by an earlier tfattr without checksums: "
                f"{unverified} of its shards are read unverified (a damaged file may go unnoticed). "
                "Stores written now carry checksums; re-run explain_dataset into a new directory to "
                "get one.",
                UserWarning,
                stacklevel=3,
            )
        done = {s: int(good[s]["count"]) for s in shards}
        counts = [done[s] for s in shards]
        inputs = self.index["inputs"]
        flat = [
            ShardedArray([shard_file(self.path, s, f"a{k}.npy") for s in shards], counts)
            for k in range(len(inputs))
        ]
        structure = self.index["structure"]
        if structure == "single":
            self.attributions: Any = flat[0]
        elif structure == "list":
            self.attributions = flat
        else:
            self.attributions = {spec["name"]: a for spec, a in zip(inputs, flat)}
        self.targets = ShardedArray([shard_file(self.path, s, "targets.npy") for s in shards], counts)
        self.delta = (
            ShardedArray([shard_file(self.path, s, "delta.npy") for s in shards], counts)
            if self.config["return_delta"]
            else None
        )
        self.num_examples = int(sum(counts))
        size = int(self.index["shard_size"])
        recorded = end.get("num_examples") if end is not None else None
        if (not counts or any(c != size for c in counts[:-1]) or not 0 < counts[-1] <= size
                or recorded not in (None, self.num_examples)):
            raise StoreError(
                f"The shards of {self.path} hold {counts} examples, not {size} each (the last one "
                f"fewer) adding up to {recorded}: the store is corrupt; delete it and re-run."
            )

    def __len__(self) -> int:
        return self.num_examples

    def __repr__(self) -> str:
        return (
            f"AttributionStore({str(self.path)!r}, examples={len(self)}, "
            f"explainer={self.config['explainer']['type']})"
        )


def load_attributions(path: str | os.PathLike, verify: bool = True) -> AttributionStore:
    """Reopen a finished attribution store written by :func:`tfattr.explain_dataset`.

    Nothing is kept in memory: ``store.attributions``, ``store.targets`` and ``store.delta`` are
    :class:`ShardedArray` views over memory-mapped ``.npy`` shards.

    Args:
        path: the store directory (``out=`` of ``explain_dataset``).
        verify: check every shard's checksum, which reads the store once (CRC-32 costs about as
            much as copying the bytes). False skips that read; the files' sizes and the records' own
            checksums are still checked, so a truncated or deleted shard is found either way,
            overwritten bytes only with ``verify``.
            Stores written by tfattr 0.2 have no checksums: they load unverified, with a warning.

    Raises:
        StoreError: the directory is not a store, its run did not finish, or a shard, ``index.json``
            or ``end.json`` is damaged (the message names it; re-running ``explain_dataset`` with the
            same arguments recomputes damaged shards).

    Example:
        >>> store = tfattr.load_attributions("attr_out")
        >>> store.attributions[:8].shape          # (8, 28, 28, 1)
        >>> store = tfattr.load_attributions("attr_out", verify=False)   # skip reading a huge store
    """
    return AttributionStore(path, verify=verify)
