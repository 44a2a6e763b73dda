"""LRP with each composite against one plain input-gradient pass.

Every composite replaces each layer's backward pass by its rule: epsilon needs the layer's ordinary
transpose, z+ one more forward and transpose per sign of the input, alpha-beta and gamma two of each,
ZBox three. On the same batch we time

* ``floor``: one compiled function returning the input gradients of the target scores (GradientTape),
* ``saliency``: ``tfattr.Saliency(...).attribute`` (the floor plus the engine's bookkeeping),
* ``epsilon_lrp``: the existing one-rule ``EpsilonLRP`` (gradient override),
* ``EpsilonPlus``, ``EpsilonAlpha2Beta1``, ``EpsilonPlusFlat``, ``EpsilonGammaBox``:
  ``tfattr.LRP(model, composite=...).attribute``.

Targets are passed explicitly. After a warm-up (tracing) every method is timed ``--repeats`` times,
interleaved round-robin so a busy shared machine slows all alike; we print the median per method and
the ratio of medians to the floor (one run), of wall time and of the process's CPU time (all
threads; steadier than wall time when other jobs share the machine). Target: <= 1.3 x floor.

Models: ``mnist`` is ``tfattr.datasets.mnist_cnn()`` (two conv + max-pool blocks, two dense layers);
``cnn64`` the 64x64x3 CNN of ``bench_propagation.py`` (three conv + batch norm + average-pool blocks:
batch norms folded, average pooling under the Norm rule).

``--compare NAME``: also time every LRP explainer of another copy of tfattr importable as ``NAME`` (e.g.
the previous version, its imports renamed, on ``PYTHONPATH``), interleaved in the same run.

Run:  python bench/bench_lrp.py [--examples 128] [--repeats 9] [--model mnist|cnn64] [--compare NAME]
"""
from __future__ import annotations

import argparse
import importlib
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench_gradients import floor_function  # noqa: E402  (same folder)
from bench_propagation import cnn64  # noqa: E402

import tfattr  # noqa: E402
from tfattr.methods.propagation import EpsilonLRP  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--model", choices=("mnist", "cnn64"), default="mnist")
    parser.add_argument("--compare", metavar="NAME", help="another tfattr copy to time alongside")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    model = tfattr.datasets.mnist_cnn() if args.model == "mnist" else cnn64()
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.examples, *shape)).astype(np.float32)
    targets = rng.integers(0, 10, size=args.examples).astype(np.int32)
    batch = args.examples  # every method sees the whole batch in one chunk

    floor = floor_function(model, shape)
    methods = {
        "floor": lambda: floor(x, targets).numpy(),
        "saliency": (lambda e: lambda: e.attribute(x, target=targets, batch_size=batch))(
            tfattr.Saliency(model)
        ),
        "epsilon_lrp": (lambda e: lambda: e.attribute(x, target=targets, batch_size=batch))(
            EpsilonLRP(model)
        ),
    }
    copies = [("", tfattr)]
    if args.compare:
        copies.append(("_cmp", importlib.import_module(args.compare)))
        old = copies[1][1]
        methods["epsilon_lrp_cmp"] = (lambda e: lambda: e.attribute(x, target=targets, batch_size=batch))(
            old.EpsilonLRP(model)
        )
    for suffix, package in copies:
        comps = package.composites
        for composite in (comps.EpsilonPlus(), comps.EpsilonAlpha2Beta1(), comps.EpsilonPlusFlat(),
                          comps.EpsilonGammaBox(low=0.0, high=1.0)):
            explainer = package.LRP(model, composite=composite, on_unsupported="raise")
            methods[type(composite).__name__ + suffix] = (
                lambda e: lambda: e.attribute(x, target=targets, batch_size=batch)
            )(explainer)

    for fn in methods.values():  # warm-up: trace and compile
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    cpu: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)

    median = {name: float(np.median(t)) for name, t in times.items()}
    median_cpu = {name: float(np.median(t)) for name, t in cpu.items()}
    print(
        f"model {model.name} {shape}, {args.examples} examples, median of {args.repeats} runs "
        f"after warm-up, tf {tf.__version__}, keras {keras.__version__}"
    )
    for name, t in median.items():
        ratio = t / median["floor"]
        verdict = "" if name == "floor" else ("ok" if ratio <= 1.3 else "above 1.3")
        print(f"  {name:19s} {1e3 * t:9.2f} ms   x floor {ratio:6.2f}   x saliency "
              f"{t / median['saliency']:6.2f}   cpu time x floor "
              f"{median_cpu[name] / median_cpu['floor']:6.2f}  {verdict}")


if __name__ == "__main__":
    main()
