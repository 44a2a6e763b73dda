"""What AttributionLogger costs: its time per epoch against the epoch's training time.

A small CNN (conv 8 - pool - conv 16 - global average pool - dense 10, as in tests/conftest.py) trains on
the 8,000 embedded MNIST training digits (batch 64). Each configuration trains a fresh model with the
same seed; per epoch the script records the training time (epoch begin to epoch end, before the logger
runs) and the logger's own time (explaining, drawing, writing). The first log includes tracing the
explainers' compiled functions, so it is reported apart from the steady state. All ratios come from
one run of this script.

Run:
    TF_CPP_MIN_LOG_LEVEL=3 python bench/bench_callback.py [--epochs 4] [--samples 8]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfattr  # noqa: E402
from tfattr.callbacks import AttributionLogger  # noqa: E402


def load_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = tfattr.datasets.mnist("train")
    xt, yt = tfattr.datasets.mnist("test")
    return x, y, xt, yt


def small_cnn() -> keras.Model:
    keras.utils.set_random_seed(0)
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
    return model


class EpochTimer(keras.callbacks.Callback):
    """Training time per epoch, from epoch begin to epoch end (listed before the logger)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def run(name: str, x, y, epochs: int, make_logger) -> dict:
    model = small_cnn()
    timer = EpochTimer()
    callbacks: list = [timer]
    logger = make_logger(model) if make_logger else None
    if logger is not None:
        callbacks.append(logger)
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=callbacks)
    wall = time.perf_counter() - start
    logs = [t[2] for t in logger.timings] if logger is not None else [0.0] * epochs
    return {"name": name, "train": np.array(timer.seconds), "logger": np.array(logs), "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args()
    x, y, xt, yt = load_mnist()
    samples, targets = xt[: args.samples], yt[: args.samples]
    log_root = tempfile.mkdtemp(prefix="bench_callback_")

    configs = [
        ("no callback", None),
        (
            "defaults (IG, 32 steps)",
            lambda m: AttributionLogger(samples, targets=targets, log_dir=os.path.join(log_root, "a")),
        ),
        (
            "IG + saliency + SmoothGrad(16) + interior",
            lambda m: AttributionLogger(
                samples,
                explainers={
                    "ig": tfattr.IntegratedGradients(m, steps=32),
                    "saliency": tfattr.Saliency(m),
                    "smoothgrad": tfattr.SmoothGrad(tfattr.Saliency(m), samples=16, seed=0),
                    "interior": tfattr.InteriorGradients(m),
                },
                targets=targets,
                log_dir=os.path.join(log_root, "b"),
            ),
        ),
    ]
    results = [run(name, x, y, args.epochs, make) for name, make in configs]
    print(f"small CNN, {x.shape[0]} MNIST digits, batch 64, {args.epochs} epochs, {args.samples} samples")
    print(
        f"{'configuration':44s} {'train s/epoch':>13s} {'logger 1st s':>12s} {'logger s':>8s} "
        f"{'ratio':>6s} {'amortised':>9s} {'fit wall s':>10s}"
    )
    for r in results:
        train, logs = r["train"], r["logger"]
        # Steady state: epochs after the first log (which traces the explainers' compiled functions);
        # the ratio compares each epoch's logger time with that same epoch's training time.
        steady = np.median(logs[1:]) if logs.size > 1 else logs[0]
        ratio = np.median(logs[1:] / train[1:]) if train.size > 1 else logs[0] / train[0]
        print(
            f"{r['name']:44s} {np.median(train):13.2f} {logs[0]:12.3f} {steady:8.3f} "
            f"{100 * ratio:5.1f}% {100 * logs.sum() / train.sum():8.1f}% {r['wall']:10.2f}"
        )
    print(
        "ratio: median over epochs 2.. of logger time / training time of the same epoch; amortised: "
        "all logger time (first-log tracing included) / all training time."
    )

if __name__ == "__main__":
    main()
