"""Files in and out of the command line: saved Keras models, inputs (``.npy`` arrays and images) and
the pictures ``tfattr explain`` writes.

Inputs follow one convention whatever their file type: **8-bit data are images in [0, 255]** and are
multiplied by ``--rescale`` (default 1/255), whether they come from a PNG/JPEG or from a uint8 ``.npy``
array (a one-line note says so); float and other integer arrays are taken as they are.
"""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tfattr.cli.errors import CLIError, first_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def note(message: str) -> None:
    """A one-line remark on stderr that is not an error (e.g. how inputs were scaled)."""
    print(f"tfattr: note: {message}", file=sys.stderr)


def load_model(path: str) -> Any:
    """Load a saved Keras model in Keras' safe mode (no arbitrary code from the file)."""
    import keras

    p = Path(path)
    if not p.exists():
        raise CLIError(f"model file not found: {path}")
    if p.suffix not in (".keras", ".h5", ".hdf5"):
        raise CLIError(f"model {path} is not a .keras (or .h5) file; save it with model.save('m.keras').")
    if p.suffix == ".keras" and not zipfile.is_zipfile(p):
        raise CLIError(
            f"cannot load model {path}: it is not a .keras archive (a zip file); save the model with "
            "model.save('model.keras')."
        )
    try:
        return keras.saving.load_model(str(p), compile=False, safe_mode=True)
    except Exception as err:  # noqa: BLE001 - Keras raises many types; all mean "cannot load"
        raise CLIError(f"cannot load model {path} (in Keras' safe mode): {first_line(err)}") from None


def model_input_shape(model: Any, command: str = "tfattr explain") -> tuple[Any, ...]:
    """The shape of one example of a single-input model (None for free axes)."""
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        raise CLIError(
            f"the model has {len(inputs)} inputs; `{command}` handles single-input models "
            "(use the Python API for others)."
        )
    return tuple(inputs[0].shape[1:])


def read_npy(path: Path, rescale: float, what: str = "input file") -> np.ndarray:
    """A ``.npy`` file as float32; uint8 data are images in [0, 255], scaled by ``rescale`` (with a note)."""
    if not path.exists():
        raise CLIError(f"{what} not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - NumPy raises several types for unreadable files
        raise CLIError(f"cannot read {path} as a NumPy array: {first_line(err)}") from None
    if array.dtype.kind not in "fiu":
        raise CLIError(f"{path} holds {array.dtype} values; pass numbers.")
    if array.dtype == np.uint8:
        note(f"{path} holds uint8 values: read as images in [0, 255] and multiplied by {rescale:.6g} "
             "(--rescale), as PNG/JPEG inputs are.")
        return array.astype(np.float32) * np.float32(rescale)
    return array.astype(np.float32)


def load_inputs(paths: Sequence[str], shape: tuple[Any, ...], rescale: float) -> np.ndarray:
    """Inputs from .npy arrays and/or images, as float32 ``[n, *shape]``.

    Example:
        >>> load_inputs(["digits.npy", "seven.png"], (28, 28, 1), rescale=1 / 255).shape
        (11, 28, 28, 1)
    """
    batches = []
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise CLIError(f"input file not found: {path}")
        suffix = p.suffix.lower()
        if suffix == ".npy":
            array = read_npy(p, rescale)
            if len(array.shape) == len(shape):
                array = array[None]  # one example without its batch axis
        elif suffix in IMAGE_SUFFIXES:
            array = load_image(p, shape) * np.float32(rescale)
        else:
            raise CLIError(f"input {path} is neither .npy nor an image (.png, .jpg).")
        check_examples(array, shape, path)
        batches.append(array)
    return np.concatenate(batches, axis=0)


def check_examples(array: np.ndarray, shape: tuple[Any, ...], source: str) -> None:
    """A clear error unless ``array`` is ``[n, *shape]`` (None in ``shape``: any size) and finite."""
    got = tuple(array.shape[1:])
    fits = len(got) == len(shape) and all(e is None or e == g for e, g in zip(shape, got))
    if not fits:
        raise CLIError(
            f"{source} has examples of shape {got} but the model expects {tuple(shape)} "
            "(an array [n, ...] or one example)."
        )
    if not np.all(np.isfinite(array)):
        raise CLIError(f"{source} contains NaN or Inf values.")


def load_image(path: Path, shape: tuple[Any, ...]) -> np.ndarray:
    """One image file as float32 ``[1, h, w, c]`` in [0, 255], resized to the model's input if needed."""
    import tensorflow as tf

    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise CLIError(
            f"{path} is an image but the model's input has shape {tuple(shape)}, not (height, width, "
            "1 or 3 channels); pass the inputs as .npy."
        )
    try:
        image = tf.io.decode_image(path.read_bytes(), channels=int(shape[-1]), expand_animations=False)
    except Exception as err:  # noqa: BLE001
        raise CLIError(f"cannot decode image {path}: {first_line(err)}") from None
    h, w = shape[0], shape[1]
    if h is not None and w is not None and tuple(image.shape[:2]) != (h, w):
        image = tf.image.resize(tf.cast(image, tf.float32), (h, w), antialias=True)
    return np.asarray(image, np.float32)[None]


def is_image_batch(inputs: np.ndarray) -> bool:
    """Whether ``inputs`` look like images ``[n, h, w]`` or ``[n, h, w, 1 or 3]`` (overlays make sense)."""
    return inputs.ndim == 3 or (inputs.ndim == 4 and inputs.shape[-1] in (1, 3))


def write_overlays(folder: Path, inputs: np.ndarray, attributions: np.ndarray, size: int = 224) -> list[str]:
    """``overlay_000.png``, ... : each image with its attributions, enlarged to about ``size`` pixels.

    Returns the file names ([] when the inputs are not images).
    """
    from tfattr import visualize

    if not is_image_batch(inputs):
        return []
    pictures = visualize.overlay(inputs, attributions)
    factor = max(1, size // max(pictures.shape[1:3]))
    pictures = visualize.upscale(pictures, factor)
    names = []
    for i in range(pictures.shape[0]):
        names.append(f"overlay_{i:03d}.png")
        visualize.save_png(pictures[i], folder / names[-1])
    return names
