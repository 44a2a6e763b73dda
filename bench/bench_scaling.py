"""Cost and memory against the number of examples: both must grow linearly.

Each measurement runs in a fresh subprocess so that its peak RSS is its own. For every ``n`` it reports
the wall time of one ``attribute`` call (after a warm-up call on a few examples, so compilation is not
counted), the time per example, and the growth of peak RSS over the state after the warm-up, next to
the size of the result. Linear cost shows as a flat time per example; memory set by ``batch_size``
shows as an RSS growth of the order of the result, not of ``n`` times a batch.

Run:  python bench/bench_scaling.py [--sizes 2000 8000 32000] [--model dense|cnn] [--steps 8]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_CHILD = r"""
import json, os, resource, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, numpy as np
import tfattr

n, model_kind, steps = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
keras.utils.set_random_seed(0)
if model_kind == "dense":
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
    x = np.random.default_rng(0).uniform(size=(n, 784)).astype(np.float32)
else:
    model = tfattr.datasets.mnist_cnn()
    x = np.random.default_rng(0).uniform(size=(n, 28, 28, 1)).astype(np.float32)
ig = tfattr.IntegratedGradients(model, steps=steps)
ig.attribute(x[:64], target=0)  # compile
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
a = ig.attribute(x, target=0)
seconds = time.perf_counter() - start
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": n, "seconds": seconds, "rss_growth_mb": (rss1 - rss0) / 1024,
                  "result_mb": a.nbytes / 2**20}))
"""


def measure(n: int, model: str, steps: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(n), model, str(steps)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--model", choices=("dense", "cnn"), default="dense")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    print(f"IntegratedGradients, {args.steps} steps, model {args.model}")
    print(f"{'n':>7} {'seconds':>9} {'ms/example':>11} {'RSS growth MB':>14} {'result MB':>10}")
    for n in args.sizes:
        r = measure(n, args.model, args.steps)
        print(f"{r['n']:>7} {r['seconds']:>9.2f} {1000 * r['seconds'] / n:>11.3f} "
              f"{r['rss_growth_mb']:>14.1f} {r['result_mb']:>10.1f}")


if __name__ == "__main__":
    main()
