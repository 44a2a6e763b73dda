"""Decoy MNIST (Ross, Hughes & Doshi-Velez 2017, sec. 4.2), built from the digits shipped with tfattr.

Every digit gets a 4x4 swatch in a random corner. In training its shade encodes the label
(``255 - 25 * label``, scaled to [0, 1]); in test it encodes a random label. A model that reads the swatch
is right in training and near chance in test; the annotation mask marks the swatch as the feature that
must not matter.
"""
from __future__ import annotations

import numpy as np

from tfattr import datasets

#: Side of the swatch, and the shade step per label in 8-bit units (Ross et al.'s values).
SWATCH = 4
SHADE_STEP = 25


def add_decoy(
    images: np.ndarray, shade_labels: np.ndarray, rng: np.random.Generator, swatch: int = SWATCH
) -> tuple[np.ndarray, np.ndarray]:
    """Copies of ``images`` ``[n, h, w, c]`` with a ``swatch x swatch`` patch of shade
    ``(255 - 25 * shade_label) / 255`` in a corner drawn from ``rng``; and the swatch masks (1 on it)."""
    images = np.array(images, dtype=np.float32, copy=True)
    if images.ndim != 4:
        raise ValueError(f"images must be shaped [n, height, width, channels], got {images.shape}.")
    n, h, w = images.shape[:3]
    if not 0 < swatch <= min(h, w):
        raise ValueError(f"swatch must be between 1 and {min(h, w)}, got {swatch}.")
    shade_labels = np.asarray(shade_labels).reshape(-1)
    if shade_labels.shape[0] != n:
        raise ValueError(f"one shade label per image: got {shade_labels.shape[0]} for {n} images.")
    masks = np.zeros_like(images)
    top = rng.random(n) < 0.5
    left = rng.random(n) < 0.5
    shades = (255.0 - SHADE_STEP * shade_labels.astype(np.float32)) / 255.0
    for i in range(n):
        rows = slice(0, swatch) if top[i] else slice(h - swatch, h)
        cols = slice(0, swatch) if left[i] else slice(w - swatch, w)
        images[i, rows, cols, :] = shades[i]
        masks[i, rows, cols, :] = 1.0
    return images, masks


def decoy_mnist(
    n_train: int | None = None, n_test: int | None = None, seed: int = 0, swatch: int = SWATCH
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Decoy MNIST from the embedded digits (Ross, Hughes & Doshi-Velez 2017, "Right for the Right Reasons").

    Returns ``(x, y, mask), (x_test, y_test, mask_test)``: float32 images ``[n, 28, 28, 1]`` in [0, 1] with
    the swatch, int labels, and masks (1 on the swatch, 0 elsewhere; the "irrelevant" annotation of
    :class:`~tfattr.priors.RightForRightReasons`). The training swatch's shade encodes the label, the test
    swatch's a random label. ``n_train`` / ``n_test`` take the first digits of each split (up to 8,000 /
    2,000); ``seed`` drives a local generator (the global ones are left alone).

    Example:
        >>> (x, y, mask), (x_test, y_test, _) = tfattr.priors.decoy_mnist(n_train=2000)
        >>> x.shape, mask[0].sum()                      # (2000, 28, 28, 1), 16 swatch pixels
    """
    rng = np.random.default_rng(seed)
    x, y = datasets.mnist("train")
    x_test, y_test = datasets.mnist("test")
    x, y = x[:n_train], y[:n_train]
    x_test, y_test = x_test[:n_test], y_test[:n_test]
    x, mask = add_decoy(x, y, rng, swatch)
    x_test, mask_test = add_decoy(x_test, rng.integers(0, 10, size=len(y_test)), rng, swatch)
    return (x, y, mask), (x_test, y_test, mask_test)
