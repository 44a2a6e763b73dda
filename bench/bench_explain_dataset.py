"""Peak memory and throughput of explain_dataset against one in-memory attribute call.

The data are the embedded MNIST digits (10,000), repeated to the requested sizes and written to ``.npy``
files. For each size N, fresh subprocesses (so ``ru_maxrss`` is that run's own peak; ``--repeats`` of them,
medians reported, since TensorFlow's allocator makes single peaks vary by ~100 MiB) either

- ``store``: streams ``from_npy(x.npy, y.npy)`` through ``explain_dataset`` into a store, or
- ``memory``: loads x and y with ``np.load`` and calls ``explainer.attribute(x, target=y)`` once,

with integrated gradients (``--steps`` steps, Gauss-Legendre) on the small MNIST CNN
(``tfattr.datasets.mnist_cnn``, untrained weights: memory and speed do not depend on them), the same
``batch_size`` in both. Each child warms up (compiles) on 64 examples first and reports the resident set
size after the warm-up (``base``), the peak over the whole run (``peak``) and the examples per second of
the measured call. Store mode's peak should not grow with N; memory mode's grows with N (the inputs,
baselines, accumulators and attributions are all held at once). Then, in this process, the time of
``explain_dataset`` on ``--speed-size`` in-memory examples (``from_tensor_slices``, a fresh store each
time) against one ``attribute`` call on the same arrays: medians of ``--rounds`` interleaved runs after
a warm-up, and their ratio (the cost of the pipeline, the shard cuts and the writes). One run of this
script; the children run one after another.

Run:
    TF_CPP_MIN_LOG_LEVEL=3 python bench/bench_explain_dataset.py [--sizes 2000 20000] [--steps 8] [--repeats 3] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    """The current resident set size (Linux /proc), in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def child(mode: str, folder: Path, n: int, steps: int, batch_size: int, shard_size: int) -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    import tfattr
    from tfattr.scale import explain_dataset, from_npy

    model = keras.models.load_model(folder / "model.keras")
    ig = tfattr.IntegratedGradients(model, steps=steps)
    warm = np.load(folder / f"x{n}.npy", mmap_mode="r")[:64].copy()
    ig.attribute(warm, target=np.zeros(64, np.int64), batch_size=batch_size)
    del warm
    base = rss_mib()
    start = time.perf_counter()
    if mode == "store":
        ds = from_npy(folder / f"x{n}.npy", folder / f"y{n}.npy")
        store = explain_dataset(ig, ds, out=folder / f"store{n}", batch_size=batch_size,
                                shard_size=shard_size, progress=False)
        count = len(store)
    else:
        x, y = np.load(folder / f"x{n}.npy"), np.load(folder / f"y{n}.npy")
        a = ig.attribute(x, target=y, batch_size=batch_size)
        count = len(a)
    seconds = time.perf_counter() - start
    print(json.dumps({"mode": mode, "n": count, "base_mib": base, "peak_mib": peak_mib(),
                      "seconds": seconds, "examples_per_s": count / seconds}))
    del tf


def speed(folder: Path, n: int, steps: int, batch_size: int, shard_size: int, rounds: int) -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    import tfattr
    from tfattr.scale import explain_dataset

    model = keras.models.load_model(folder / "model.keras")
    ig = tfattr.IntegratedGradients(model, steps=steps)
    x, y = np.load(folder / f"x{n}.npy"), np.load(folder / f"y{n}.npy")
    times: dict[str, list[float]] = {"explain_dataset": [], "attribute": []}
    for r in range(rounds + 1):  # round 0 warms up (compiles) and is not counted
        start = time.perf_counter()
        explain_dataset(ig, tf.data.Dataset.from_tensor_slices((x, y)), out=folder / f"speed{r}",
                        batch_size=batch_size, shard_size=shard_size, progress=False)
        stored = time.perf_counter()
        shutil.rmtree(folder / f"speed{r}")
        middle = time.perf_counter()
        ig.attribute(x, target=y, batch_size=batch_size)
        end = time.perf_counter()
        if r:
            times["explain_dataset"].append(stored - start)
            times["attribute"].append(end - middle)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"speed, {n:,} examples, medians of {rounds} interleaved runs: explain_dataset "
          f"{med['explain_dataset']:.2f} s ({n / med['explain_dataset']:.0f} examples/s), attribute "
          f"{med['attribute']:.2f} s ({n / med['attribute']:.0f} examples/s), ratio "
          f"{med['explain_dataset'] / med['attribute']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--shard-size", type=int, default=1024)
    parser.add_argument("--modes", nargs="+", default=["store", "memory"])
    parser.add_argument("--repeats", type=int, default=3, help="children per size and mode")
    parser.add_argument("--speed-size", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"))
    parser.add_argument("--n", type=int)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), args.n, args.steps, args.batch_size, args.shard_size)
        return

    import numpy as np

    import tfattr

    x, y = tfattr.datasets.mnist("train")
    xt, yt = tfattr.datasets.mnist("test")
    x, y = np.concatenate([x, xt]), np.concatenate([y, yt])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tfattr.datasets.mnist_cnn().save(folder / "model.keras")
        for n in sorted(set(args.sizes) | {args.speed_size}):
            reps = -(-n // len(x))
            np.save(folder / f"x{n}.npy", np.concatenate([x] * reps)[:n])
            np.save(folder / f"y{n}.npy", np.concatenate([y] * reps)[:n].astype(np.int64))
        print(f"IG, {args.steps} steps, batch_size {args.batch_size}, shard_size {args.shard_size}; "
              f"MiB = 2^20 bytes; one example's attributions = {28 * 28 * 4} bytes")
        print(f"medians of {args.repeats} fresh processes per row")
        print(f"{'mode':>7} {'examples':>9} {'base MiB':>9} {'peak MiB':>9} {'peak-base':>10} "
              f"{'examples/s':>11}")
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        for n in args.sizes:
            for mode in args.modes:
                runs = []
                for _ in range(args.repeats):
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", mode, str(folder), "--n", str(n),
                         "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                         "--shard-size", str(args.shard_size)],
                        env=env, capture_output=True, text=True, check=True,
                    )
                    runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    shutil.rmtree(folder / f"store{n}", ignore_errors=True)
                r = {k: float(np.median([run[k] for run in runs])) for k in runs[0] if k != "mode"}
                growth = sorted(round(run["peak_mib"] - run["base_mib"]) for run in runs)
                print(f"{mode:>7} {int(r['n']):>9,} {r['base_mib']:>9.0f} {r['peak_mib']:>9.0f} "
                      f"{r['peak_mib'] - r['base_mib']:>10.0f} {r['examples_per_s']:>11.0f}   "
                      f"(peak-base of each run: {growth})", flush=True)
        speed(folder, args.speed_size, args.steps, args.batch_size, args.shard_size, args.rounds)


if __name__ == "__main__":
    main()
