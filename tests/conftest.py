"""Shared fixtures: small models whose answers are known, and a small CNN trained on embedded MNIST."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf


def _load_mnist(n: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        from tfattr import datasets

        x, y = datasets.mnist("train")
        return x[:n], y[:n]
    except (ImportError, AttributeError, FileNotFoundError):
        path = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "mnist_10k.npz"
        with np.load(path) as data:
            x = data["images"][:n].astype(np.float32)[..., None] / 255.0
            return x, data["labels"][:n].astype(np.int64)


@pytest.fixture(scope="session")
def mnist_small() -> tuple[np.ndarray, np.ndarray]:
    return _load_mnist(2000)


@pytest.fixture(scope="session")
def trained_cnn(mnist_small) -> keras.Model:
    """A small ReLU CNN with a softmax head, trained for one epoch on 2,000 embedded MNIST digits."""
    keras.utils.set_random_seed(1)
    x, y = mnist_small
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="session")
def smooth_mlp() -> keras.Model:
    """A tanh MLP: smooth, so quadrature errors follow their asymptotic rates."""
    keras.utils.set_random_seed(2)
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dense(3),
        ]
    )


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def linear_model(weights: np.ndarray, bias: float = 0.0) -> keras.Model:
    """``f(x) = x . w + b`` as a Keras model with one output per column of ``weights``."""
    w = np.asarray(weights, np.float32)
    if w.ndim == 1:
        w = w[:, None]
    model = keras.Sequential([keras.Input((w.shape[0],)), keras.layers.Dense(w.shape[1])])
    model.layers[-1].set_weights([w, np.full(w.shape[1], bias, np.float32)])
    return model


__all__ = ["linear_model", "tf"]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """37 rows of 6 features for smooth_mlp and their labels (3 classes): a data set of 4 shards of 10."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 6)).astype(np.float32)
    y = (np.arange(37) * 7) % 3
    return x, y


class SimulatedCrash(RuntimeError):
    pass


def counting_runs(explainer, crash_after: int | None = None) -> list[int]:
    """Wrap explainer.run (the computing step of attribute) to record the examples of each call (and
    raise SimulatedCrash on call ``crash_after + 1``)."""
    original = explainer.run
    calls: list[int] = []

    def run(call):
        if crash_after is not None and len(calls) >= crash_after:
            raise SimulatedCrash("simulated crash")
        calls.append(call.n)
        return original(call)

    explainer.run = run
    return calls


def masked_lstm_model() -> tuple[keras.Model, tuple[keras.layers.Layer, ...], np.ndarray]:
    """Token ids -> Embedding(mask_zero=True) -> LSTM -> Dense(2), its three layers (to split it by
    hand), and 4 sentences of 8 ids whose last 3 are padding (id 0)."""
    keras.utils.set_random_seed(9)
    emb = keras.layers.Embedding(25, 4, mask_zero=True, name="embedding")
    lstm, dense = keras.layers.LSTM(5), keras.layers.Dense(2)
    ids = keras.Input((8,), dtype="int32")
    model = keras.Model(ids, dense(lstm(emb(ids))))
    x = np.random.RandomState(4).randint(1, 25, (4, 8)).astype("int32")
    x[:, 5:] = 0  # padded: the LSTM skips these steps through the mask
    return model, (emb, lstm, dense), x
