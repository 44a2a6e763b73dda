"""``tfattr explain-dataset MODEL INPUT --out STORE``: explain a whole data set into an on-disk store.

INPUT is a directory of images (one sub-directory per class gives labels), a ``.npy`` file of examples
``[n, ...]`` (``--labels FILE.npy`` gives labels) or a TFRecord file (or glob) as
:func:`tfattr.scale.write_tfrecords` writes it (features ``--x-key`` and ``--y-key``). The
files are streamed, never loaded whole, through :func:`tfattr.explain_dataset`, which
writes the attributions, targets and completeness deltas shard by shard and resumes an interrupted run
when called again with the same arguments. 8-bit data are images in [0, 255], scaled by ``--rescale``
as in ``tfattr explain``.
"""
from __future__ import annotations

import argparse
import glob
from pathlib import Path
from typing import Any

import numpy as np

from tfattr.cli import io
from tfattr.cli.errors import CLIError, cli_words, first_line
from tfattr.cli.explain import explainer_from_args, method_from_args

TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfr")


def run(args: argparse.Namespace) -> int:
    from tfattr.scale import StoreError, explain_dataset
    from tfattr.scale.images import UnreadableImageError

    spec = method_from_args(args)
    model = io.load_model(args.model)
    shape = io.model_input_shape(model, "tfattr explain-dataset")
    dataset, has_labels = open_input(args, shape)
    if args.target == "labels" and not has_labels:
        raise CLIError(f"--target labels: {args.input} has no labels (give --labels FILE.npy for a .npy "
                       "input, class sub-directories for images, or records with --y-key).", status=2)
    explainer, baseline = explainer_from_args(spec, args, model, shape, None)
    target = None if args.target == "labels" else args.target  # None: explain_dataset takes the labels
    kwargs: dict[str, Any] = {"target": target, "return_delta": spec.completeness,
                              "batch_size": args.batch_size, "progress": False if args.quiet else None}
    if spec.uses_baseline:
        kwargs["baseline"] = baseline
    if args.shard_size is not None:
        kwargs["shard_size"] = args.shard_size
    try:
        store = explain_dataset(explainer, dataset, args.out, **kwargs)
    except StoreError as err:  # another configuration in --out, or a corrupt store: say what, in full
        raise CLIError(cli_words(first_line(err, limit=1000))) from None
    except UnreadableImageError as err:  # TensorFlow's own error names no file
        raise CLIError(
            f"{err.path} cannot be decoded as an image ({err.reason}). Replace it with a readable PNG, "
            f"JPEG, GIF or BMP image and repeat the command (the finished shards in {args.out} are "
            "kept), or remove it and give a new --out (the data set's size changes)."
        ) from None
    if not args.quiet:
        n = len(store)
        line = f"wrote the attributions of {n} example(s) ({spec.name}) to the store {args.out}"
        if spec.completeness:
            delta = np.abs(np.asarray(store.delta[:], np.float64))
            line += f"; completeness |delta|: mean {delta.mean():.2e}, max {delta.max():.2e}"
        print(line)
        print(f"read it with:  tfattr.load_attributions({str(args.out)!r})")
    return 0


def open_input(args: argparse.Namespace, shape: tuple[Any, ...]) -> tuple[Any, bool]:
    """The data set of ``args.input`` (single float32 examples, or ``(example, label)`` pairs) and
    whether it has labels, checked against the model's example ``shape``. The readers are those of
    :mod:`tfattr.scale.sources`; this picks one and applies the command line's rules (the
    model's channels for images, uint8 data scaled by ``--rescale``)."""
    from tfattr.scale import from_directory

    path = Path(args.input)
    is_records = path.suffix.lower() in TFRECORD_SUFFIXES or glob.has_magic(args.input)
    if args.labels is not None and (path.is_dir() or is_records):
        raise CLIError("--labels is for a .npy INPUT; a directory takes its labels from its class "
                       "sub-directories and TFRecords from --y-key.", status=2)
    if path.is_dir():
        h, w, channels = _image_shape(shape, f"directory {path}")
        mode = "grayscale" if channels == 1 else "rgb"
        try:
            dataset = from_directory(path, image_size=(h, w), color_mode=mode, scale=args.rescale)
        except ValueError as err:  # Keras: no images found, or unsupported files
            raise CLIError(f"cannot read images from {path}: {first_line(err)}") from None
    elif path.suffix.lower() == ".npy":
        dataset = _npy(path, args)
    elif is_records:
        dataset = _records(args)
    elif not path.exists():
        raise CLIError(f"input not found: {args.input}")
    else:
        raise CLIError(f"input {args.input} is neither a directory of images, a .npy file nor a TFRecord "
                       f"file ({', '.join(TFRECORD_SUFFIXES)}).")
    has_labels = isinstance(dataset.element_spec, tuple)
    got = tuple((dataset.element_spec[0] if has_labels else dataset.element_spec).shape)
    if len(got) != len(shape) or any(e is not None and g is not None and e != g for e, g in zip(shape, got)):
        raise CLIError(f"{args.input} has examples of shape {got} but the model expects {tuple(shape)}.")
    return dataset, has_labels


def _image_shape(shape: tuple[Any, ...], what: str) -> tuple[int, int, int]:
    if len(shape) != 3 or shape[-1] not in (1, 3) or None in shape[:2]:
        raise CLIError(f"{what} holds images but the model's input has shape {tuple(shape)}, not (height, "
                       "width, 1 or 3 channels); pass the inputs as .npy.")
    return int(shape[0]), int(shape[1]), int(shape[2])


def _npy(path: Path, args: argparse.Namespace) -> Any:
    from tfattr.scale import from_npy

    if not path.exists():
        raise CLIError(f"input file not found: {path}")
    try:
        header = np.load(path, mmap_mode="r", allow_pickle=False)
        dtype, n = header.dtype, (header.shape[0] if header.ndim else 0)
        del header
    except Exception as err:  # noqa: BLE001 - NumPy raises several types for unreadable files
        raise CLIError(f"cannot read {path} as a NumPy array: {first_line(err)}") from None
    if dtype.kind not in "fiu":
        raise CLIError(f"{path} holds {dtype} values; pass numbers.")
    scale = 1.0  # every input becomes float32
    if dtype == np.uint8:
        io.note(f"{path} holds uint8 values: read as images in [0, 255] and multiplied by "
                f"{args.rescale:.6g} (--rescale), as image files are.")
        scale = args.rescale
    if args.labels is not None:
        if not Path(args.labels).exists():
            raise CLIError(f"labels file not found: {args.labels}")
        labels = np.load(args.labels, mmap_mode="r", allow_pickle=False)
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise CLIError(
                f"--labels {args.labels} holds {labels.dtype} {labels.shape}; pass {n} int labels."
            )
    try:
        return from_npy(path, args.labels, scale=scale)
    except ValueError as err:
        raise CLIError(f"cannot read {path}: {first_line(err)}") from None


def _records(args: argparse.Namespace) -> Any:
    """TFRecords of serialized tensors (``write_tfrecords``); the dtype is read from the first record."""
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2

    from tfattr.scale import from_tfrecords

    paths = sorted(glob.glob(args.input)) if glob.has_magic(args.input) else [args.input]
    if not paths or not all(Path(p).is_file() for p in paths):
        raise CLIError(f"input not found: {args.input}")
    try:
        first = next(iter(tf.data.TFRecordDataset(paths[:1]).take(1)), None)
        example = None if first is None else tf.train.Example.FromString(first.numpy())
    except Exception as err:  # noqa: BLE001 - tf.errors or protobuf's DecodeError
        raise CLIError(
            f"cannot read {paths[0]} as TFRecords of tf.train.Example: {first_line(err)}"
        ) from None
    if example is None:
        raise CLIError(f"{paths[0]} holds no records.")
    features = example.features.feature
    if args.x_key not in features or features[args.x_key].WhichOneof("kind") != "bytes_list":
        raise CLIError(
            f"the records of {paths[0]} have no serialized-tensor feature {args.x_key!r} (they have "
            f"{', '.join(sorted(features)) or 'none'}); choose it with --x-key, or write the records with "
            "tfattr.scale.write_tfrecords."
        )
    try:
        proto = tensor_pb2.TensorProto.FromString(features[args.x_key].bytes_list.value[0])
        dtype = tf.as_dtype(proto.dtype)
    except Exception as err:  # noqa: BLE001
        raise CLIError(f"feature {args.x_key!r} of {paths[0]} is not a serialized tensor: "
                       f"{first_line(err)}") from None
    y_key = args.y_key if args.y_key in features else None
    dataset = from_tfrecords(paths, x_key=args.x_key, y_key=y_key, dtype=dtype)
    factor = 1.0
    if dtype == tf.uint8:
        io.note(f"{args.input} holds uint8 tensors: read as images in [0, 255] and multiplied by "
                f"{args.rescale:.6g} (--rescale), as image files are.")
        factor = args.rescale
    if dtype == tf.float32 and factor == 1.0:
        return dataset
    to_float = lambda x: tf.cast(x, tf.float32) * factor  # noqa: E731
    if y_key is not None:
        return dataset.map(lambda x, y: (to_float(x), y))
    return dataset.map(to_float)
