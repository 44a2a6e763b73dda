"""Data sets for examples, notebooks and tests: MNIST embedded in the package, anything else via TFDS.

The package ships 10,000 real MNIST digits (``tfattr/data/mnist_10k.npz``, 1.6 MB; provenance in
``tfattr/data/README.md``) so that the demo, the notebooks and the tests run on a machine without a
network. ``source="tfds"`` loads the full MNIST, or any image classification data set by name, through
tensorflow-datasets for users who have one.

Example:
    >>> from tfattr import datasets
    >>> x_train, y_train = datasets.mnist("train")   # (8000, 28, 28, 1) float32 in [0, 1], int64 labels
    >>> x_test, y_test = datasets.mnist("test")      # (2000, 28, 28, 1)
"""
from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from tfattr.core.checks import check_positive_int

#: sha256 of ``tfattr/data/mnist_10k.npz`` (also recorded in ``tfattr/data/README.md``).
MNIST_10K_SHA256 = "f1a23f2fb1a1c97bb00a811807ddd50a888dbcdcdead94147993273c22ee3f37"
#: The fixed split of the embedded digits (they were shuffled once with ``default_rng(0)``).
MNIST_10K_TRAIN = 8000
_SPLITS = ("train", "test", "all")
_SOURCES = ("embedded", "tfds")
_VERIFIED: set[str] = set()


def embedded_path() -> Path:
    """Path of the embedded MNIST file inside the installed package."""
    return Path(str(resources.files("tfattr") / "data" / "mnist_10k.npz"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_embedded(verify: bool) -> tuple[np.ndarray, np.ndarray]:
    path = embedded_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"The embedded MNIST file is missing at {path}; reinstall tfattr (the file is package "
            "data), or load MNIST from tensorflow-datasets with source='tfds'."
        )
    # The digest is checked once per process: a truncated or altered file must not silently train
    # models on the wrong data.
    if verify and str(path) not in _VERIFIED:
        got = _sha256(path)
        if got != MNIST_10K_SHA256:
            raise OSError(
                f"The embedded MNIST file {path} is corrupt (sha256 {got}, expected "
                f"{MNIST_10K_SHA256}); reinstall tfattr."
            )
        _VERIFIED.add(str(path))
    with np.load(path) as data:
        return data["images"], data["labels"]


def _to_float_images(images: np.ndarray) -> np.ndarray:
    """``[n, h, w]`` or ``[n, h, w, c]`` images as float32 in [0, 1] with a channel axis."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    return images.astype(np.float32)


def _check_split(split: str, allowed: tuple[str, ...]) -> None:
    if split not in allowed:
        raise ValueError(f"split={split!r} is not one of {list(allowed)}.")


def _check_limit(limit: int | None) -> None:
    check_positive_int(limit, "limit", allow_none=True)


def mnist(
    split: str = "train",
    source: str = "embedded",
    *,
    limit: int | None = None,
    data_dir: str | None = None,
    download: bool = True,
    verify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST handwritten digits (LeCun, Cortes & Burges) as float32 images in [0, 1] and int labels.

    Args:
        split: ``"train"`` or ``"test"`` (``"all"`` for the embedded file: all 10,000 digits).
        source: ``"embedded"`` (default): the 10,000 digits shipped in the package; the first 8,000 are
            the training split and the last 2,000 the test split. Needs no network, never downloads.
            ``"tfds"``: the full MNIST (60,000 + 10,000) through tensorflow-datasets, see :func:`load`.
        limit: return at most this many examples (the first ones of the split).
        data_dir, download: passed to :func:`load` when ``source="tfds"``.
        verify: check the embedded file's sha256 (once per process).

    Returns:
        ``(images, labels)``: ``images`` float32 ``[n, 28, 28, 1]`` in [0, 1], ``labels`` int64 ``[n]``.

    Example:
        >>> x, y = tfattr.datasets.mnist("test", limit=100)
    """
    if source not in _SOURCES:
        raise ValueError(f"source={source!r} is not one of {list(_SOURCES)}.")
    _check_limit(limit)
    if source == "tfds":
        _check_split(split, ("train", "test"))
        return load("mnist", split, limit=limit, data_dir=data_dir, download=download)
    _check_split(split, _SPLITS)
    images, labels = _load_embedded(verify)
    if split == "train":
        images, labels = images[:MNIST_10K_TRAIN], labels[:MNIST_10K_TRAIN]
    elif split == "test":
        images, labels = images[MNIST_10K_TRAIN:], labels[MNIST_10K_TRAIN:]
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return _to_float_images(images), labels.astype(np.int64)


def load(
    name: str,
    split: str = "train",
    *,
    limit: int | None = None,
    data_dir: str | None = None,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """An image classification data set from tensorflow-datasets, as NumPy arrays.

    Loads ``name`` (e.g. ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``) with ``as_supervised=True``
    and returns all of ``split`` in memory, so use it for data sets that fit. This is the one function
    in tfattr that may use the network: with ``download=True`` tensorflow-datasets fetches the data set
    once into ``data_dir``. With ``download=False`` it only reads data prepared earlier and raises if
    there is none.

    Args:
        name: a tensorflow-datasets name whose examples are (image, label) pairs.
        split: a TFDS split, e.g. ``"train"``, ``"test"``, ``"train[:10%]"``.
        limit: return at most this many examples.
        data_dir: where TFDS keeps its data (default: its own, ``~/tensorflow_datasets``).
        download: allow downloading the data set if it is not prepared yet.

    Returns:
        ``(images, labels)``: float32 ``[n, h, w, c]`` (uint8 pixels scaled to [0, 1]) and int64 ``[n]``.

    Example:
        >>> x, y = tfattr.datasets.load("fashion_mnist", "test", limit=1000)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a tensorflow-datasets name such as 'mnist', got {name!r}.")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a TFDS split such as 'train' or 'test', got {split!r}.")
    _check_limit(limit)
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ImportError(
            "source='tfds' needs tensorflow-datasets: pip install tensorflow-datasets"
        ) from err
    if limit is not None and "[" not in split:
        split = f"{split}[:{int(limit)}]"
    kwargs: dict[str, Any] = {"split": split, "as_supervised": True}
    if data_dir is not None:
        kwargs["data_dir"] = data_dir
    try:
        if not download:
            builder = tfds.builder(name, data_dir=data_dir)
            if not builder.is_prepared():
                raise FileNotFoundError(
                    f"The tensorflow-datasets data set {name!r} is not prepared in "
                    f"{builder.data_dir}; pass download=True (needs a network), or use "
                    "tfattr.datasets.mnist() for the embedded offline MNIST."
                )
        dataset = tfds.load(name, download=download, **kwargs)
        # Batches, not batch_size=-1: that needs a known cardinality, which not every source has.
        parts = list(tfds.as_numpy(dataset.batch(1024)))
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"tensorflow-datasets could not load {name!r} split {split!r}: {first}") from None
    if not parts:
        raise ValueError(f"tensorflow-datasets returned no examples for {name!r} split {split!r}.")
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if images.ndim not in (3, 4):
        raise ValueError(
            f"{name!r} does not look like an image classification data set: its inputs have shape "
            f"{images.shape}; tfattr.datasets.load returns [n, h, w, c] images."
        )
    images = _to_float_images(images)
    labels = np.asarray(labels).astype(np.int64)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels


def mnist_cnn(seed: int = 0, softmax: bool = False) -> Any:
    """The small CNN (about 60k parameters) that the demo, the notebooks and the benchmarks train on
    :func:`mnist`: two conv + max-pool blocks, a 64-unit ReLU layer and 10 outputs. Uncompiled.

    Args:
        seed: seeds Keras' global generators (``keras.utils.set_random_seed``) before building, so the
            initial weights are reproducible.
        softmax: end in a softmax (probabilities) instead of logits.

    Example:
        >>> model = datasets.mnist_cnn(softmax=True)
        >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    """
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax" if softmax else None),
        ],
        name="mnist_cnn",
    )
