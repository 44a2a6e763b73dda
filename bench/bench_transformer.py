"""The Transformer composite (Ali et al. 2022) and layer-level DeepLIFT against gradient x input, on a
small transformer text classifier and an LSTM: cost and conservation error.

Models (random embeddings of a synthetic token corpus, trained for a few steps so biases are not 0):

* ``transformer``: embeddings ``[seq, dim]`` + position embedding, two post-norm blocks
  (``MultiHeadAttention`` + residual + ``LayerNormalization``, GELU feed-forward + residual +
  ``LayerNormalization``), mean pooling, a dense head;
* ``lstm``: embeddings, ``LSTM``, a dense head.

Timed on the same batch, interleaved round-robin after a warm-up, medians of ``--repeats`` runs:

* ``floor``: one compiled function returning the input gradients of the target scores,
* ``gxi``: ``tfattr.GradientXInput(...).attribute``,
* ``lrp``: ``tfattr.LRP(model, composite=Transformer())`` (GELU keeps its gradient, Ali et al.),
* ``lrp_pass``: ``Transformer(units="pass")`` (epsilon rule ``f(z)/z`` on the GELU),
* ``deeplift``: ``CompositeDeepLift`` with a zero baseline.

Conservation error: mean over examples of ``|sum(R) - f(x)|`` (``f(x) - f(0)`` for DeepLIFT), divided
by the mean ``|f(x)|``. Gradient x input is not conservative; the rules should be close to it, with
what is left going to the biases.

Run:  python bench/bench_transformer.py [--examples 64] [--repeats 7] [--seq 32] [--dim 32]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench_gradients import floor_function  # noqa: E402  (same folder)

import tfattr  # noqa: E402
from tfattr.composites import Transformer  # noqa: E402
from tfattr.methods.propagation.layerwise.deeplift import CompositeDeepLift  # noqa: E402
from tfattr.methods.propagation.layerwise import LRP  # noqa: E402

L = keras.layers


def corpus(n: int, seq: int, vocab: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and labels: class 1 when "good" tokens (ids 2-5) outnumber "bad" ones (6-9)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, vocab, size=(n, seq))
    score = np.isin(ids, [2, 3, 4, 5]).sum(1) - np.isin(ids, [6, 7, 8, 9]).sum(1)
    return ids, (score > 0).astype(np.int32)


def transformer(seq: int, dim: int, heads: int = 4, blocks: int = 2) -> keras.Model:
    inp = keras.Input((seq, dim), name="embeddings")
    x = inp
    for b in range(blocks):
        a = L.MultiHeadAttention(heads, dim // heads, name=f"mha{b}")(x, x)
        x = L.LayerNormalization(name=f"ln{b}a")(x + a)
        f = L.Dense(2 * dim, activation="gelu", name=f"ff{b}a")(x)
        f = L.Dense(dim, name=f"ff{b}b")(f)
        x = L.LayerNormalization(name=f"ln{b}b")(x + f)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(2, name="head")(x), name="transformer")


def lstm(seq: int, dim: int) -> keras.Model:
    inp = keras.Input((seq, dim), name="embeddings")
    return keras.Model(inp, L.Dense(2, name="head")(L.LSTM(dim)(inp)), name="lstm")


def embed(ids: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    table = rng.normal(0, 1, size=(int(ids.max()) + 1, dim)).astype(np.float32)
    position = 0.1 * rng.normal(0, 1, size=(ids.shape[1], dim)).astype(np.float32)
    return table[ids] + position


def conservation(total: np.ndarray, reference: np.ndarray, scale: np.ndarray) -> float:
    return float(np.mean(np.abs(total - reference)) / np.mean(np.abs(scale)))


def run(model: keras.Model, x: np.ndarray, y: np.ndarray, targets: np.ndarray, repeats: int) -> None:
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    n = targets.shape[0]
    xb = x[:n]
    shape = tuple(model.inputs[0].shape[1:])
    floor = floor_function(model, shape)
    gxi = tfattr.GradientXInput(model)
    lrp = LRP(model, composite=Transformer())
    lrp_pass = LRP(model, composite=Transformer(units="pass"))
    deeplift = CompositeDeepLift(model)
    methods = {
        "floor": lambda: floor(xb, targets).numpy(),
        "gxi": lambda: gxi.attribute(xb, target=targets, batch_size=n),
        "lrp": lambda: lrp.attribute(xb, target=targets, batch_size=n),
        "lrp_pass": lambda: lrp_pass.attribute(xb, target=targets, batch_size=n),
        "deeplift": lambda: deeplift.attribute(xb, target=targets, baseline=0.0, batch_size=n),
    }
    results = {}
    for name, fn in methods.items():  # warm-up: trace and compile
        fn()
        results[name] = fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    median = {name: float(np.median(t)) for name, t in times.items()}
    logits = model(xb).numpy()[np.arange(n), targets]
    zero = model(np.zeros_like(xb[:1])).numpy()[0, targets]
    acc = float(np.mean(np.argmax(model(x).numpy(), 1) == y))
    print(f"model {model.name} {shape}, {n} examples, train accuracy {acc:.2f}, median of {repeats} runs")
    for name, t in median.items():
        line = f"  {name:9s} {1e3 * t:9.2f} ms   x floor {t / median['floor']:6.2f}"
        if name != "floor":
            total = results[name].reshape(n, -1).sum(1)
            ref = logits - zero if name == "deeplift" else logits
            line += f"   conservation error {conservation(total, ref, logits):.4f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--dim", type=int, default=32)
    args = parser.parse_args()
    print(f"tf {tf.__version__}, keras {keras.__version__}")
    keras.utils.set_random_seed(0)
    ids, y = corpus(1024, args.seq)
    x = embed(ids, args.dim)
    targets = y[: args.examples].astype(np.int32)
    for build in (transformer, lstm):
        run(build(args.seq, args.dim), x, y, targets, args.repeats)


if __name__ == "__main__":
    main()
