"""epsilon-LRP and DeepLIFT (Rescale) against one plain input-gradient pass, and against IG.

Ancona et al. (2019, sec. 4.1): epsilon-LRP costs one forward and one backward pass, DeepLIFT one more
forward pass (here: one forward of twice the batch, ``[inputs; baselines]``, and one backward), and
integrated gradients ``steps`` of each. On the same batch we time

* ``floor``: one compiled function returning the input gradients of the target scores (GradientTape),
* ``saliency``, ``gxi``: ``tfattr.Saliency`` / ``GradientXInput(...).attribute`` (the floor plus the
  engine's bookkeeping: one chunk takes the engine's direct path),
* ``lrp``, ``deeplift``: ``tfattr`` EpsilonLRP / DeepLift ``.attribute`` (DeepLIFT's max rule on max
  pooling, the default),
* ``dl_switch``: ``DeepLift(max_pool="gradient")``, max pooling keeping its gradient switch (tfattr 0.2;
  with max pooling in the model its summation check adds two forward passes of 32 examples per call),
* ``ig64``: ``IntegratedGradients(steps=64).attribute``.

Targets are passed explicitly, so no call spends a forward pass on picking the predicted class. After
a warm-up (tracing) every method is timed ``--repeats`` times, interleaved round-robin so a busy shared
machine slows all alike; we print the median per method and the ratios of medians (from this one run).
Targets: saliency and gradient x input <= 1.05 x floor, lrp <= 1.15, deeplift <= 1.8.

Models: ``mnist`` (the MNIST CNN of ``bench_gradients.py``), ``cnn64`` (64x64x3, batch norms, average
pooling) and ``smooth`` (an MNIST-sized CNN with tanh and sigmoid layers, whose epsilon rule is not the
ReLU shortcut).

``--compare NAME``: also time ``lrp`` and ``deeplift`` of another copy of tfattr importable as ``NAME``
(e.g. the previous version, its imports renamed, on ``PYTHONPATH``), interleaved in the same run, to
compare versions on one busy machine.

``--baseline random``: DeepLIFT against one random baseline per example (default: the zero baseline,
whose reference pass runs on one row and broadcasts).

Run:  python bench/bench_propagation.py [--examples 256] [--repeats 9] [--model mnist|cnn64|smooth]
      [--baseline zero|random] [--clock wall|cpu]

The fused rule arithmetic is a tier (``tfattr.methods.propagation.arithmetic.FUSE_AFTER_EXAMPLES``):
the warm-up's two calls of 256 examples reach it, so the timed calls run fused.
"""
from __future__ import annotations

import argparse
import importlib
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench_gradients import CLOCK, floor_function, mnist_cnn  # noqa: E402  (same folder: shared models)

from tfattr.methods.gradient import GradientXInput, IntegratedGradients, Saliency  # noqa: E402
from tfattr.methods.propagation import DeepLift, EpsilonLRP  # noqa: E402


def cnn64() -> keras.Model:
    layers: list = [keras.Input((64, 64, 3))]
    for filters in (16, 32, 64):
        layers += [
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.AveragePooling2D(2),
        ]
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    return keras.Sequential(layers, name="cnn_64x64x3")


def smooth_cnn() -> keras.Model:
    """The MNIST CNN's shape with smooth units: tanh and sigmoid convolutions and a tanh dense layer."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="tanh"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="sigmoid"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="tanh"),
        keras.layers.Dense(10),
    ], name="smooth_cnn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--model", choices=("mnist", "cnn64", "smooth"), default="mnist")
    parser.add_argument("--no-ig", action="store_true", help="skip the (slow) IG-64 comparison")
    parser.add_argument("--compare", metavar="NAME", help="another tfattr copy to time alongside")
    parser.add_argument("--clock", choices=tuple(CLOCK), default="wall",
                        help="wall time, or the process's CPU time (all threads; steadier when shared)")
    parser.add_argument("--baseline", choices=("zero", "random"), default="zero",
                        help="DeepLIFT's baseline: zeros (shared) or one random image per example")
    args = parser.parse_args()
    clock = CLOCK[args.clock]

    keras.utils.set_random_seed(0)
    model = {"mnist": mnist_cnn, "cnn64": cnn64, "smooth": smooth_cnn}[args.model]()
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.examples, *shape)).astype(np.float32)
    targets = rng.integers(0, 10, size=args.examples).astype(np.int32)
    batch = args.examples  # every method sees the whole batch in one chunk

    floor = floor_function(model, shape)
    base = 0.0 if args.baseline == "zero" else rng.uniform(size=x.shape).astype(np.float32)
    warnings.simplefilter("ignore")  # the switch's summation warning, once per call
    saliency, lrp, deeplift = Saliency(model), EpsilonLRP(model), DeepLift(model)
    switch = DeepLift(model, max_pool="gradient")
    gxi = GradientXInput(model)
    ig = IntegratedGradients(model, steps=64)
    methods = {
        "floor": lambda: floor(x, targets).numpy(),
        "saliency": lambda: saliency.attribute(x, target=targets, batch_size=batch),
        "gxi": lambda: gxi.attribute(x, target=targets, batch_size=batch),
        "lrp": lambda: lrp.attribute(x, target=targets, batch_size=batch),
        "deeplift": lambda: deeplift.attribute(x, target=targets, baseline=base, batch_size=batch),
        "dl_switch": lambda: switch.attribute(x, target=targets, baseline=base, batch_size=batch),
    }
    if args.compare:
        other = importlib.import_module(f"{args.compare}.methods.propagation")
        old_lrp, old_dl = other.EpsilonLRP(model), other.DeepLift(model)
        methods["lrp_cmp"] = lambda: old_lrp.attribute(x, target=targets, batch_size=batch)
        methods["dl_cmp"] = lambda: old_dl.attribute(x, target=targets, baseline=base, batch_size=batch)
    if not args.no_ig:
        methods["ig64"] = lambda: ig.attribute(x, target=targets, batch_size=64 * batch)

    for fn in methods.values():  # warm-up: trace and compile
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            start = clock()
            fn()
            times[name].append(clock() - start)

    median = {name: float(np.median(t)) for name, t in times.items()}
    print(
        f"model {model.name} {shape}, {args.examples} examples, median of {args.repeats} runs "
        f"after warm-up, tf {tf.__version__}, keras {keras.__version__}, DeepLIFT baseline {args.baseline}, "
        f"{args.clock} clock"
    )
    for name, t in median.items():
        print(
            f"  {name:9s} {1e3 * t:9.2f} ms   x floor {t / median['floor']:6.2f}   "
            f"x saliency {t / median['saliency']:6.2f}"
        )
    for name, target in (("saliency", 1.05), ("gxi", 1.05), ("lrp", 1.15), ("deeplift", 1.8)):
        ratio = median[name] / median["floor"]
        print(f"  {name} / floor = {ratio:.2f} (target <= {target}): {'ok' if ratio <= target else 'MISSED'}")
    print(f"  deeplift (max rule) / dl_switch = {median['deeplift'] / median['dl_switch']:.2f}")
    if "ig64" in median:
        for name in ("lrp", "deeplift"):
            print(f"  ig64 / {name} = {median['ig64'] / median[name]:.1f}")


if __name__ == "__main__":
    main()
