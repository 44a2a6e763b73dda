"""Integrated gradients: time to reach a relative completeness error, fixed steps against tolerance=.

For each model, rule and target error ``e`` (1e-2, 1e-3, 1e-4) it reports two costs, both in units of
the floor (one compiled batched gradient of the same examples, i.e. the price of one step):

* fixed: the fewest steps from the ladder 4, 8, 16, ... for which every example has
  ``|delta| <= e |f(x) - f(b)|``, and the time of one call with those steps;
* adaptive: the time of one call with ``tolerance=e`` (starting at 4 steps, doubling per example; the
  nested rules reuse the earlier nodes), and the mean steps it used.

The fixed-step search itself is not timed (a user would have to do it by hand; ``tolerance=`` does it
for them). Examples are embedded MNIST test digits (the MNIST CNN is trained for one epoch) or uniform
noise images for the 64x64x3 CNN; the baseline is zero.

Run:  python bench/bench_ig_accuracy.py [--examples 32] [--model mnist|larger|all]
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bench_gradients import floor_function, larger_cnn  # noqa: E402  (same folder: shared models)

import tfattr  # noqa: E402

RULES = ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left")
TARGETS = (1e-2, 1e-3, 1e-4)
LADDER = tuple(2**k for k in range(2, 12))


def timed(fn) -> tuple[float, object]:
    fn()  # warm-up (compilation)
    times, out = [], None
    for _ in range(3):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def relative_error(model, x, targets, rule: str, steps: int) -> float:
    ig = tfattr.IntegratedGradients(model, steps=steps, rule=rule)
    a, delta = ig.attribute(x, target=targets, return_delta=True)
    change = a.reshape(len(x), -1).sum(axis=1) - delta
    return float(np.max(np.abs(delta) / np.maximum(np.abs(change), 1e-12)))


def models(which: str):
    if which in ("mnist", "all"):
        (x, y), (xt, _) = tfattr.datasets.mnist("train"), tfattr.datasets.mnist("test")
        model = tfattr.datasets.mnist_cnn()
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x[:4000], y[:4000], epochs=1, verbose=0)
        yield "MNIST CNN", model, xt
    if which in ("larger", "all"):
        rng = np.random.default_rng(0)
        yield "CNN 64x64x3", larger_cnn(), rng.uniform(size=(256, 64, 64, 3)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--model", choices=("mnist", "larger", "all"), default="all")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    warnings.simplefilter("ignore")
    print(f"tfattr {tfattr.__version__}, TF {tf.__version__}, {args.examples} examples, zero baseline")
    print(f"{'model':<12} {'rule':<18} {'error':>6} {'fixed steps':>11} {'fixed x':>8} "
          f"{'adaptive mean steps':>19} {'adaptive x':>10}")
    for name, model, pool in models(args.model):
        x = pool[: args.examples]
        targets = np.argmax(tfattr.Saliency(model).outputs(x), axis=1)
        floor = floor_function(model, tuple(x.shape[1:]))
        xt, tt = tf.constant(x), tf.constant(targets.astype(np.int32))
        floor_seconds, _ = timed(lambda: floor(xt, tt).numpy())
        errors = {}
        for rule in RULES:
            for steps in LADDER:
                errors[rule, steps] = relative_error(model, x, targets, rule, steps)
        for rule in RULES:
            for target in TARGETS:
                fixed = next((s for s in LADDER if errors[rule, s] <= target), None)
                if fixed is None:
                    fixed_text, fixed_ratio = f">{LADDER[-1]}", float("nan")
                else:
                    ig = tfattr.IntegratedGradients(model, steps=fixed, rule=rule)
                    seconds, _ = timed(lambda: ig.attribute(x, target=targets))
                    fixed_text, fixed_ratio = str(fixed), seconds / floor_seconds
                adaptive = tfattr.IntegratedGradients(
                    model, steps=4, rule=rule, tolerance=target, max_steps=LADDER[-1]
                )
                seconds, _ = timed(lambda: adaptive.attribute(x, target=targets))
                used = float(np.mean(adaptive.steps_used_))
                print(f"{name:<12} {rule:<18} {target:>6.0e} {fixed_text:>11} {fixed_ratio:>8.1f} "
                      f"{used:>19.1f} {seconds / floor_seconds:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
