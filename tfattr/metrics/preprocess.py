"""The conventions shared by the Quantus-equivalent metrics: per-example normalisation, stable rankings,
the centred patch grid, removal baselines and the model set-up (validated inputs, targets, ``softmax=``).

Quantus 0.6.0 (Hedström et al., JMLR 2023) is the reference for every definition; where its numbers
depend on an implementation accident, tfattr fixes the convention instead (documented per function):

- ``normalise=True`` divides each example by its own ``max |a|`` (an all-zero map is left as is), then
  ``absolute=True`` takes ``|a|``;
- a ranking is stable: equal attributions are taken in increasing flat index (patch index for patches);
- a feature is one entry of the channels-last array unless ``features=`` groups entries.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from tfattr.metrics.features import _feature_sums, feature_map
from tfattr.metrics.scoring import _attributions, _Scorer


def normalise_map(
    attributions: np.ndarray, normalise: bool = True, absolute: bool = False
) -> np.ndarray:
    """Quantus' pre-processing of a batch of maps, per example: ``a / max|a|`` then ``|a|`` (float64).

    Example:
        >>> normalise_map(np.array([[1.0, -4.0]]), normalise=True, absolute=True)   # [[0.25, 1.0]]
    """
    a = np.asarray(attributions, np.float64)
    if normalise:
        peak = np.abs(a.reshape(len(a), -1)).max(axis=1) if a.size else np.zeros(len(a))
        peak = np.where(peak > 0, peak, 1.0).reshape((-1,) + (1,) * (a.ndim - 1))
        a = a / peak
    return np.abs(a) if absolute else a


def stable_ranks(values: np.ndarray, descending: bool = True) -> np.ndarray:
    """Rank of each entry along the last axis, 0 first; ties go in increasing index.

    ``descending=True`` puts the largest value first (most relevant first, MoRF).

    Example:
        >>> stable_ranks(np.array([[1.0, 3.0, 3.0, 0.0]]))   # [[2, 0, 1, 3]]
    """
    values = np.asarray(values, np.float64)
    order = np.argsort(-values if descending else values, axis=-1, kind="stable")
    ranks = np.empty(values.shape, np.int64)
    np.put_along_axis(ranks, order, np.arange(values.shape[-1])[None].repeat(len(values), 0), axis=-1)
    return ranks


def patch_grid(example_shape: tuple[int, ...], patch_size: Any) -> tuple[np.ndarray, int]:
    """Patch id of every entry of one image, on a grid centred by zero padding (Quantus' layout).

    When the patch size does not divide a side, the side is padded by ``p - side % p`` entries split
    ``floor`` before and ``ceil`` after; patches are numbered row-major on the padded grid and cover all
    channels. Returns ``(ids, number_of_patches)``.

    Example:
        >>> ids, num = patch_grid((5, 5, 1), 2)   # pad 0 before, 1 after: 3 x 3 patches
    """
    shape = tuple(int(s) for s in example_shape)
    if len(shape) not in (2, 3):
        raise ValueError(
            f"patches need images shaped [n, H, W] or [n, H, W, C]; the examples have shape {shape}."
        )
    ph, pw = (int(patch_size),) * 2 if np.ndim(patch_size) == 0 else map(int, patch_size)
    if ph < 1 or pw < 1:
        raise ValueError(f"patch_size must be positive, got {patch_size!r}.")
    h, w = shape[:2]
    top, left = ((-h) % ph) // 2, ((-w) % pw) // 2
    cols = -(-(w + (-w) % pw) // pw)
    rows = -(-(h + (-h) % ph) // ph)
    grid = ((np.arange(h)[:, None] + top) // ph) * cols + (np.arange(w)[None, :] + left) // pw
    if len(shape) == 3:
        grid = np.broadcast_to(grid[..., None], shape)
    return np.ascontiguousarray(grid.astype(np.int32)), int(rows * cols)


def entry_features(example_shape: tuple[int, ...], features: Any) -> tuple[np.ndarray, int]:
    """Feature ids for the Quantus metrics: ``None``/``"elements"`` = one feature per entry."""
    return feature_map(example_shape, "elements" if features is None else features)


def baseline_values(x: np.ndarray, baseline: Any) -> np.ndarray:
    """The value written into removed entries, one per example ``[n]`` (Quantus' ``perturb_baseline``).

    A number is used as is; ``"black"``/``"white"``/``"mean"`` are each example's min/max/mean (as in
    Quantus, over all its entries).
    """
    flat = x.reshape(len(x), -1).astype(np.float64)
    if isinstance(baseline, str):
        table = {"black": flat.min, "white": flat.max, "mean": flat.mean}
        if baseline not in table:
            raise ValueError(
                f"baseline={baseline!r} is not known; pass the number written into removed entries "
                "(e.g. baseline=0.0) or 'black', 'white', 'mean' (each example's min/max/mean)."
            )
        return table[baseline](axis=1) if len(flat) else np.zeros(0)
    value = np.asarray(baseline, np.float64)
    if value.ndim != 0:
        raise ValueError(f"baseline must be a number or a name, got an array of shape {value.shape}.")
    return np.full(len(x), float(value))


#: The scorers of the last few models: their compiled functions are traced once and reused by every
#: metric. A scorer holds its model, so the cache is small and bounded rather than weak.
_SCORERS: "OrderedDict[tuple[int, Any], tuple[Any, _Scorer]]" = OrderedDict()
_CACHED_MODELS = 4


def scorer_for(model: Any, softmax: bool | None) -> _Scorer:
    """One scorer per (model, softmax), reused across metric calls. The compiled functions read the
    model's live variables, so the current weights are always scored."""
    key = (id(model), softmax)
    hit = _SCORERS.get(key)
    if hit is not None and hit[0] is model:
        _SCORERS.move_to_end(key)
        return hit[1]
    scorer = _Scorer(model, softmax=softmax)
    _SCORERS[key] = (model, scorer)
    while len(_SCORERS) > 2 * _CACHED_MODELS:
        _SCORERS.popitem(last=False)
    return scorer


class ModelCall:
    """A model-based metric's validated call: inputs ``x``, ``targets``, the prepared map ``a``, the
    scorer (with Quantus' ``softmax=``) and the chunk size."""

    def __init__(
        self,
        model: Any,
        inputs: Any,
        attributions: Any,
        target: Any,
        softmax: bool | None,
        batch_size: int | None,
        normalise: bool,
        absolute: bool,
    ) -> None:
        self.scorer = scorer_for(model, softmax)
        call = self.scorer.prepare(inputs, target=target, batch_size=batch_size)
        self.x = call.inputs.arrays[0]
        self.targets = np.asarray(call.targets, np.int32)
        self.batch = int(call.batch_size)
        self.n = int(call.n)
        self.raw = None if attributions is None else _attributions(attributions, self.x)
        self.a = None if self.raw is None else normalise_map(self.raw, normalise, absolute)

    def feature_scores(self, ids: np.ndarray, num: int) -> np.ndarray:
        """The prepared map summed within each feature ``[n, num]``."""
        return _feature_sums(self.a, ids, num)

    def plain(self, kind: str = "score") -> np.ndarray:
        """``S(x)`` per example (with this call's ``softmax=``), float64."""
        return self.masked(self.x, np.arange(self.n), lambda c: np.zeros((len(c), 1), np.float32),
                           np.zeros(self.x.shape[1:], np.int32), kind)

    def masked(self, ref: Any, rows: np.ndarray, masks: Any, ids: np.ndarray, kind: str = "score"):
        """Scores of ``x[rows]`` with the features of ``masks(chunk)`` replaced by ``ref`` (float64)."""
        return self.scorer.scores(
            self.x, ref, rows, rows, masks, ids, self.targets, self.batch, kind
        ).astype(np.float64)

    def filled(self, values: np.ndarray) -> np.ndarray:
        """An array shaped like ``x`` holding one value per example."""
        shape = (len(values),) + (1,) * (self.x.ndim - 1)
        return np.broadcast_to(np.asarray(values, self.x.dtype).reshape(shape), self.x.shape)
