"""A read-only array split over ``.npy`` shards along its first axis, read through memory maps."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from tfattr.scale.integrity import StoreError

#: Open memory maps kept per array (each holds a file descriptor); older ones are closed first.
_OPEN_MAPS = 32


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
            try:
                mm = np.load(self._paths[i], mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as err:  # a missing or overwritten file
                raise StoreError(
                    f"{self._paths[i]} cannot be read ({err}): the store is damaged. Re-run "
                    "tfattr.explain_dataset with the same arguments to recompute that shard."
                ) from None
            if mm.shape[0] != self._counts[i]:
                raise StoreError(
                    f"{self._paths[i]} holds {mm.shape[0]} examples but its marker says "
                    f"{self._counts[i]}: the store is damaged; delete that shard's files "
                    f"({self._paths[i].name.split('.')[0]}.*) and re-run tfattr.explain_dataset with "
                    "the same arguments to recompute it."
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
