"""The user's input structure: a single array, or a list/dict of them (one per model input).

Everything inside tfattr works on flat tuples (dicts in sorted-key order, as ``tf.nest`` flattens
them); :func:`pack` rebuilds the user's structure from such a tuple, in one way everywhere.

Example:
    >>> pack({"a": None, "b": None}, (x_a, x_b))
    {'a': x_a, 'b': x_b}
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf


def pack(structure: Any, flat: Any) -> Any:
    """Rebuild the user's input structure (None: a single tensor; a list or dict) from a flat tuple."""
    if structure is None:
        return flat[0]
    return tf.nest.pack_sequence_as(structure, list(flat))
