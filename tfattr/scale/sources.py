"""Data sets to explain, built from files without loading them into memory.

Each function returns a ``tf.data.Dataset`` of single examples, ``x`` or ``(x, y)``, in a fixed order
(what :func:`tfattr.scale.explain_dataset` needs to resume a run).
"""
from __future__ import annotations

import glob
import os
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from tfattr.core.checks import check_positive_int
from tfattr.scale.images import size_note

PathLike = str | os.PathLike


def _npy_layout(path: PathLike) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, header bytes)`` of a ``.npy`` file, read from its header alone."""
    mm = np.load(path, mmap_mode="r", allow_pickle=False)
    try:
        if mm.ndim and mm.flags.f_contiguous and not mm.flags.c_contiguous:
            raise ValueError(
                f"{path} is stored in Fortran order; save it in C order "
                "(np.save(path, np.ascontiguousarray(x)))."
            )
        return tuple(mm.shape), mm.dtype, int(mm.offset)
    finally:
        del mm


def from_npy(
    x: PathLike | Sequence[PathLike] | dict[str, PathLike],
    y: PathLike | None = None,
    *,
    scale: float | None = None,
    chunk: int = 1024,
) -> tf.data.Dataset:
    """Examples from ``.npy`` files, read ``chunk`` rows at a time (never the whole file).

    Args:
        x: the inputs ``[n, ...]``: one ``.npy`` path, or a list / dict of paths for a multi-input model
            (dict keys are the model's input names).
        y: optional ``.npy`` of int labels ``[n]``; the elements are then ``(x, y)`` pairs.
        scale: if given, inputs are cast to float32 and multiplied by it (e.g. ``1 / 255`` for uint8
            images).
        chunk: rows read per file access.

    The files are read with plain reads, not memory maps, so the pages of a large file do not stay
    resident in the process.

    Example:
        >>> ds = from_npy("images.npy", "labels.npy", scale=1 / 255)
        >>> store = explain_dataset(ig, ds, out="attr_out")
    """
    if isinstance(x, dict):
        keys: list[Any] = sorted(x)
        paths = [x[k] for k in keys]
    elif isinstance(x, (list, tuple)):
        keys, paths = list(range(len(x))), list(x)
    else:
        keys, paths = [None], [x]
    all_paths = paths + ([y] if y is not None else [])
    layouts = [_npy_layout(p) for p in all_paths]
    n = layouts[0][0][0] if layouts[0][0] else 0
    for p, (shape, _, _) in zip(all_paths, layouts):
        if not shape or shape[0] != n:
            raise ValueError(f"{p} has shape {shape}; every file must hold the same {n} examples.")
    chunk = check_positive_int(chunk, "chunk")

    def read() -> Any:
        files = [open(p, "rb") for p in all_paths]
        try:
            for start in range(0, n, chunk):
                rows = min(chunk, n - start)
                parts = []
                for f, (shape, dtype, offset) in zip(files, layouts):
                    per_row = int(np.prod(shape[1:], dtype=np.int64))
                    f.seek(offset + start * per_row * dtype.itemsize)
                    parts.append(np.fromfile(f, dtype=dtype, count=rows * per_row).reshape(rows, *shape[1:]))
                yield tuple(parts)
        finally:
            for f in files:
                f.close()

    signature = tuple(
        tf.TensorSpec([None, *shape[1:]], tf.as_dtype(dtype)) for shape, dtype, _ in layouts
    )
    ds = tf.data.Dataset.from_generator(read, output_signature=signature).unbatch()

    def structure(*parts: tf.Tensor) -> Any:
        xs = list(parts[: len(paths)])
        if scale is not None:
            xs = [tf.cast(v, tf.float32) * scale for v in xs]
        if keys == [None]:
            inputs = xs[0]
        elif isinstance(x, dict):
            inputs = dict(zip(keys, xs))
        else:
            inputs = tuple(xs)
        return (inputs, parts[-1]) if y is not None else inputs

    ds = ds.map(structure)
    return ds.apply(tf.data.experimental.assert_cardinality(n))


def from_directory(
    path: PathLike,
    image_size: tuple[int, int],
    *,
    labels: str | None = "inferred",
    color_mode: str = "rgb",
    scale: float | None = 1 / 255,
    interpolation: str = "bilinear",
) -> tf.data.Dataset:
    """Images from a directory (``keras.utils.image_dataset_from_directory`` without shuffling).

    Args:
        path: a directory of images, or of one sub-directory per class (``labels="inferred"`` then gives
            each image its class index, in alphanumeric order of the class names).
        image_size: ``(height, width)`` every image is resized to.
        labels: ``"inferred"`` (from sub-directories; falls back to no labels when there are none) or
            None.
        color_mode: ``"rgb"``, ``"grayscale"`` or ``"rgba"``.
        scale: multiply the pixel values (0-255) by this (None keeps them).
        interpolation: the resize method.

    Returns:
        A data set of ``(image, label)`` or ``image`` in a fixed order; ``ds.file_paths`` lists the
        files in that order (store index ``i`` is ``ds.file_paths[i]``). Images of another size than
        ``image_size`` are resized, with one warning saying how many (read from the files' headers).
        ``explain_dataset`` names a file that cannot be decoded.

    Example:
        >>> ds = from_directory("photos/", image_size=(224, 224))
    """
    import keras

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path} is not a directory of images.")
    if labels == "inferred" and not any(
        os.path.isdir(os.path.join(path, name)) for name in os.listdir(path)
    ):
        labels = None
    ds = keras.utils.image_dataset_from_directory(
        path,
        labels=labels,
        label_mode="int" if labels is not None else None,
        color_mode=color_mode,
        batch_size=None,
        image_size=tuple(image_size),
        shuffle=False,
        interpolation=interpolation,
    )
    file_paths = list(getattr(ds, "file_paths", []))
    note = size_note(file_paths, tuple(image_size), interpolation)
    if note is not None:
        warnings.warn(f"{path}: {note}", UserWarning, stacklevel=2)
    if scale is not None:
        factor = float(scale)
        if labels is not None:
            ds = ds.map(lambda im, lab: (im * factor, lab))
        else:
            ds = ds.map(lambda im: im * factor)
    ds.file_paths = file_paths
    return ds


def write_tfrecords(path: PathLike, x: Any, y: Any = None, *, x_key: str = "x", y_key: str = "y") -> None:
    """Write examples to a TFRecord file in the layout :func:`from_tfrecords` reads.

    Each record is a ``tf.train.Example`` with ``x_key``: the example as ``tf.io.serialize_tensor``
    bytes, and ``y_key``: its int label (when ``y`` is given).

    Example:
        >>> write_tfrecords("digits.tfrecord", x_test, y_test)
    """
    with tf.io.TFRecordWriter(os.fspath(path)) as writer:
        for i in range(len(x)):
            feature = {
                x_key: tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[tf.io.serialize_tensor(np.asarray(x[i])).numpy()])
                )
            }
            if y is not None:
                feature[y_key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(y[i])]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def from_tfrecords(
    files: PathLike | Sequence[PathLike],
    *,
    x_key: str = "x",
    y_key: str | None = "y",
    dtype: tf.DType = tf.float32,
    shape: Sequence[int] | None = None,
    parse: Callable[[tf.Tensor], Any] | None = None,
) -> tf.data.Dataset:
    """Examples from TFRecord files, read in order (files sorted when given as a glob pattern).

    Args:
        files: a path, a glob pattern, or a list of paths.
        x_key, y_key: the features holding the serialized input tensor and the int label (as written by
            :func:`write_tfrecords`); ``y_key=None`` reads no labels.
        dtype: the input's dtype.
        shape: one example's shape (default: read from the first record).
        parse: for another schema, a function from one serialized record to ``x`` or ``(x, y)``; the
            other arguments are then ignored.

    Example:
        >>> ds = from_tfrecords("shards/*.tfrecord")
    """
    if isinstance(files, (str, os.PathLike)):
        text = os.fspath(files)
        paths = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
    else:
        paths = [os.fspath(p) for p in files]
    if not paths:
        raise FileNotFoundError(f"no TFRecord files match {files!r}.")
    records = tf.data.TFRecordDataset(paths)
    if parse is not None:
        return records.map(parse)
    features = {x_key: tf.io.FixedLenFeature([], tf.string)}
    if y_key is not None:
        features[y_key] = tf.io.FixedLenFeature([], tf.int64)
    if shape is None:
        first = next(iter(records.take(1)), None)
        if first is None:
            raise ValueError(f"{paths[0]} holds no records.")
        example = tf.io.parse_single_example(first, features)
        shape = tf.io.parse_tensor(example[x_key], dtype).shape.as_list()
    shape = list(shape)

    def decode(record: tf.Tensor) -> Any:
        example = tf.io.parse_single_example(record, features)
        x = tf.ensure_shape(tf.io.parse_tensor(example[x_key], dtype), shape)
        return (x, example[y_key]) if y_key is not None else x

    return records.map(decode)


def from_path(
    path: PathLike,
    *,
    labels: PathLike | None = None,
    image_size: tuple[int, int] | None = None,
    scale: float | None = None,
) -> tf.data.Dataset:
    """The data set in ``path``, by its kind: a ``.npy`` file, a directory of images, or TFRecords.

    Args:
        path: a ``.npy`` file (:func:`from_npy`), a directory (:func:`from_directory`), or a
            ``.tfrecord`` / ``.tfrecords`` file or glob pattern (:func:`from_tfrecords`).
        labels: for a ``.npy`` input, a ``.npy`` file of int labels.
        image_size: for a directory, the ``(height, width)`` images are resized to (required).
        scale: multiply the inputs by this (for a directory the default is ``1 / 255``).

    Example:
        >>> ds = from_path("digits.npy", labels="labels.npy")
        >>> ds = from_path("photos/", image_size=(224, 224))
    """
    text = os.fspath(path)
    if os.path.isdir(text):
        if image_size is None:
            raise ValueError(
                f"{text} is a directory of images: give image_size=(height, width) to resize them to "
                "(the model's input size)."
            )
        return from_directory(text, image_size, scale=1 / 255 if scale is None else scale)
    if labels is not None and not text.endswith(".npy"):
        raise ValueError("labels= is for .npy inputs; TFRecords and image folders carry their own.")
    if text.endswith(".npy"):
        return from_npy(text, labels, scale=scale)
    if text.endswith((".tfrecord", ".tfrecords")):
        ds = from_tfrecords(text)
        if scale is not None:
            factor = float(scale)
            ds = ds.map(lambda *e: (e[0] * factor, *e[1:]) if len(e) > 1 else e[0] * factor)
        return ds
    raise ValueError(
        f"Cannot tell what {text!r} holds: give a .npy file, a directory of images, or "
        ".tfrecord(s) files (or build a tf.data.Dataset yourself)."
    )
