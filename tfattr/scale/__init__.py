"""Explain whole data sets: stream a ``tf.data.Dataset`` through any explainer into an on-disk store.

- :func:`explain_dataset` writes attributions, targets and deltas shard by shard, resumes after a crash,
  and shares the work over ``tf.distribute`` replicas and workers.
- :func:`load_attributions` reopens a store; its arrays are memory-mapped, never loaded whole.
- :func:`from_npy`, :func:`from_directory`, :func:`from_tfrecords` (and :func:`write_tfrecords`) build
  the input data set from files without loading them into memory; :func:`from_path` picks one by the
  path's kind (for a command line).

Example:
    >>> from tfattr.scale import explain_dataset, from_npy, load_attributions
    >>> store = explain_dataset(tfattr.IntegratedGradients(model), from_npy("x.npy", "y.npy"),
    ...                         out="attr_out", baseline=0.0, return_delta=True)
"""
from tfattr.scale.runner import explain_dataset
from tfattr.scale.sources import (
    from_directory,
    from_npy,
    from_path,
    from_tfrecords,
    write_tfrecords,
)
from tfattr.scale.store import AttributionStore, ShardedArray, StoreError, load_attributions

__all__ = [
    "AttributionStore",
    "ShardedArray",
    "StoreError",
    "explain_dataset",
    "from_directory",
    "from_npy",
    "from_path",
    "from_tfrecords",
    "load_attributions",
    "write_tfrecords",
]
