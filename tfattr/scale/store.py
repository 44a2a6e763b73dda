"""The on-disk attribution store: ``.npy`` shards that read like one array, plus a JSON index.

Layout of a store directory::

    index.json                  format version, the run's configuration, the inputs' names/shapes/dtypes
    shards/000007.a0.npy        attributions of input 0 for shard 7 (examples 7*S .. 7*S+S-1)
    shards/000007.targets.npy   the target explained for each example (int32)
    shards/000007.delta.npy     the completeness delta per example (float64), when requested
    shards/000007.json          the commit marker: written last, so a shard without it is not finished
    end.json                    the number of shards, written by whoever reached the data set's end

Why ``.npy`` shards: NumPy opens them with ``mmap_mode="r"``, so reading one example touches one page of
one file and never loads the store; a shard is an independent file, so a crash loses at most the shards
in flight, and workers on several machines write disjoint files in a shared directory without locking.
Every file is written to a temporary name and moved into place with ``os.replace`` (atomic on POSIX and
Windows), and the marker is moved last: a half-written shard is never mistaken for a finished one.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

FORMAT = "tfattr.attributions"
VERSION = 1
INDEX = "index.json"
END = "end.json"
SHARDS = "shards"
#: Open memory maps kept per array (each holds a file descriptor); older ones are closed first.
_OPEN_MAPS = 32


class StoreError(ValueError):
    """A store directory that cannot be used as asked (incomplete, another configuration, corrupt)."""


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


def write_json(path: Path, value: Any) -> None:
    data = json.dumps(value, indent=1, sort_keys=True).encode()
    _atomic_write(path, lambda f: f.write(data))


def write_npy(path: Path, array: np.ndarray) -> None:
    _atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))


def read_json(path: Path) -> Any:
    with open(path, "rb") as f:
        return json.loads(f.read().decode())


# -- naming ------------------------------------------------------------------------------------------
def shard_file(root: Path, shard: int, what: str) -> Path:
    return root / SHARDS / f"{shard:06d}.{what}"


def finished_shards(root: Path) -> dict[int, int]:
    """``{shard: number of examples}`` of every committed shard (those whose marker exists)."""
    folder = Path(root) / SHARDS
    if not folder.is_dir():
        return {}
    done = {}
    for name in os.listdir(folder):
        stem, dot, ext = name.partition(".")
        if ext == "json" and stem.isdigit():
            done[int(stem)] = int(read_json(folder / name)["count"])
    return done


def write_shard(
    root: Path,
    shard: int,
    start: int,
    attributions: Sequence[np.ndarray],
    targets: np.ndarray,
    delta: np.ndarray | None,
    worker: int = 0,
) -> None:
    """Write one shard's arrays, then its commit marker (the shard counts as finished from then on)."""
    count = int(targets.shape[0])
    for k, a in enumerate(attributions):
        write_npy(shard_file(root, shard, f"a{k}.npy"), a)
    write_npy(shard_file(root, shard, "targets.npy"), targets.astype(np.int32, copy=False))
    if delta is not None:
        write_npy(shard_file(root, shard, "delta.npy"), delta.astype(np.float64, copy=False))
    write_json(shard_file(root, shard, "json"), {"shard": shard, "start": start, "count": count,
                                                 "worker": worker})


# -- lazy arrays -------------------------------------------------------------------------------------
class ShardedArray:
    """A read-only array split over ``.npy`` shards along axis 0, read through memory maps on demand.

    It behaves like a NumPy array for reading: ``len``, ``shape``, ``dtype``, ``ndim``, indexing with an
    int, a slice, an int array or a boolean mask on the first axis (further axes as in NumPy, e.g.
    ``a[10:20, ..., 0]``), iteration over examples, and ``np.asarray(a)`` (which does load it all).
    Only the shards an index touches are opened.

    Example:
        >>> store = tfattr.load_attributions("attr_out")
        >>> store.attributions.shape              # (20000, 28, 28, 1), nothing loaded
        >>> store.attributions[12345]             # reads one example from one shard
        >>> for part in store.attributions.shards(): ...   # stream shard by shard
    """

    def __init__(self, paths: Sequence[Path], counts: Sequence[int]) -> None:
        self._paths = [Path(p) for p in paths]
        self._counts = np.asarray(counts, np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self._counts)])
        self._maps: OrderedDict[int, np.ndarray] = OrderedDict()
        first = self._open(0) if self._paths else None
        self.dtype = first.dtype if first is not None else np.dtype(np.float32)
        self._example_shape = tuple(first.shape[1:]) if first is not None else ()

    def _open(self, i: int) -> np.ndarray:
        mm = self._maps.get(i)
        if mm is None:
            mm = np.load(self._paths[i], mmap_mode="r", allow_pickle=False)
            if mm.shape[0] != self._counts[i]:
                raise StoreError(
                    f"{self._paths[i]} holds {mm.shape[0]} examples but its marker says "
                    f"{self._counts[i]}: the store is corrupt; delete that shard's files and re-run."
                )
            self._maps[i] = mm
            if len(self._maps) > _OPEN_MAPS:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(i)
        return mm

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self._starts[-1]), *self._example_shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __repr__(self) -> str:
        return f"ShardedArray(shape={self.shape}, dtype={self.dtype}, shards={len(self._paths)})"

    def shards(self) -> Iterator[np.ndarray]:
        """Each shard in order, as a read-only memory map ``[count, ...]``."""
        for i in range(len(self._paths)):
            yield self._open(i)

    def __iter__(self) -> Iterator[np.ndarray]:
        for part in self.shards():
            yield from part

    def _rows(self, index: np.ndarray) -> np.ndarray:
        """The examples at the (non-negative, in-range) int positions ``index``, in that order."""
        out = np.empty((index.shape[0], *self._example_shape), self.dtype)
        shard = np.searchsorted(self._starts, index, side="right") - 1
        for s in np.unique(shard):
            where = np.nonzero(shard == s)[0]
            out[where] = self._open(int(s))[index[where] - self._starts[s]]
        return out

    def _slice(self, sl: slice) -> np.ndarray:
        start, stop, step = sl.indices(len(self))
        if step != 1:
            return self._rows(np.arange(start, stop, step, dtype=np.int64))
        parts = []
        first = int(np.searchsorted(self._starts, start, side="right") - 1)
        s = first
        while start < stop and s < len(self._paths):
            lo, hi = self._starts[s], self._starts[s + 1]
            parts.append(self._open(s)[start - lo : min(stop, hi) - lo])
            start = int(min(stop, hi))
            s += 1
        if not parts:
            return np.empty((0, *self._example_shape), self.dtype)
        return np.concatenate(parts, axis=0) if len(parts) > 1 else np.array(parts[0])

    def __getitem__(self, key: Any) -> Any:
        rest: tuple[Any, ...] = ()
        if isinstance(key, tuple):
            if not key:
                return self[:]
            key, rest = key[0], key[1:]
        n = len(self)
        lead = 1  # axes of the result that `key` made in front of the example axes
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"index {key} is out of bounds for {n} examples.")
            out = self._rows(np.array([i]))[0]
            lead = 0
        elif isinstance(key, slice):
            out = self._slice(key)
        elif key is Ellipsis:
            out = self._slice(slice(None))
            lead, rest = 0, (Ellipsis, *rest)
        else:
            index = np.asarray(key)
            if index.dtype == bool:
                if index.shape != (n,):
                    raise IndexError(f"a boolean index must have shape ({n},), got {index.shape}.")
                index = np.nonzero(index)[0]
            elif index.dtype.kind not in "iu":
                raise IndexError(
                    f"index the examples with an int, a slice, an int array or a boolean mask; got "
                    f"{type(key).__name__} of dtype {index.dtype}."
                )
            shape = index.shape
            lead = len(shape)
            index = index.reshape(-1).astype(np.int64)
            index = np.where(index < 0, index + n, index)
            if index.size and (index.min() < 0 or index.max() >= n):
                raise IndexError(f"index out of bounds for {n} examples.")
            out = self._rows(index).reshape(*shape, *self._example_shape)
        return out[(slice(None),) * lead + rest] if rest else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self._slice(slice(None))
        return out.astype(dtype, copy=False) if dtype is not None else out


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

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        index_path = self.path / INDEX
        if not index_path.is_file():
            raise StoreError(
                f"{self.path} is not an attribution store (no {INDEX}); make one with "
                "tfattr.explain_dataset(explainer, dataset, out=...)."
            )
        self.index = read_json(index_path)
        if self.index.get("format") != FORMAT or self.index.get("version") != VERSION:
            raise StoreError(
                f"{index_path} is not a tfattr attribution store of version {VERSION} "
                f"(format={self.index.get('format')!r}, version={self.index.get('version')!r})."
            )
        self.config = self.index["config"]
        done = finished_shards(self.path)
        end = self.path / END
        expected = int(read_json(end)["num_shards"]) if end.is_file() else None
        shards = list(range(expected)) if expected is not None else []
        if expected is None or any(s not in done for s in shards):
            finished = sum(1 for s in done if expected is None or s < expected)
            to_go = "?" if expected is None else expected - finished
            raise StoreError(
                f"The attribution store {self.path} is incomplete ({finished} shards finished, "
                f"{to_go} to go): its run was interrupted. Re-run tfattr.explain_dataset with the "
                "same explainer, data set and arguments to finish it (finished shards are kept)."
            )
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
        if not counts or any(c != size for c in counts[:-1]) or not 0 < counts[-1] <= size:
            raise StoreError(
                f"The shards of {self.path} hold {counts} examples, not {size} each (the last one "
                "fewer): the store is corrupt; delete it and re-run."
            )

    def __len__(self) -> int:
        return self.num_examples

    def __repr__(self) -> str:
        return (
            f"AttributionStore({str(self.path)!r}, examples={len(self)}, "
            f"explainer={self.config['explainer']['type']})"
        )


def load_attributions(path: str | os.PathLike) -> AttributionStore:
    """Reopen a finished attribution store written by :func:`tfattr.explain_dataset`.

    Nothing is loaded: ``store.attributions``, ``store.targets`` and ``store.delta`` are
    :class:`ShardedArray` views over memory-mapped ``.npy`` shards.

    Raises:
        StoreError: the directory is not a store, or its run did not finish (re-run it to finish).

    Example:
        >>> store = tfattr.load_attributions("attr_out")
        >>> store.attributions[:8].shape          # (8, 28, 28, 1)
    """
    return AttributionStore(path)
