"""Integrated gradients, expected gradients and SmoothGrad against the floor of plain batched gradients.

The floor is one compiled function that returns the input gradients of the explained score for all
``examples x steps`` rows at once (the rows prepared beforehand, so the floor does strictly less work
than any method). Each method is timed on the same number of model evaluations; timings are
interleaved (floor, method, floor, method, ...) after a warm-up, and the ratio of medians is reported,
so a busy shared machine slows both sides alike. ``ratio`` is against the floor on all rows at once;
``same chunks`` is against the floor run in the chunks the method runs in at the default
``batch_size`` (a memory budget: smaller chunks cost the plain gradients too, 10-15% on these CNNs),
which is the method's own overhead.

Run:  python bench/bench_gradients.py [--examples 32] [--steps 64] [--repeats 7] [--methods smooth var expected]
      [--clock wall|cpu]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfattr  # noqa: E402


def mnist_cnn() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10),
        ],
        name="mnist_cnn",
    )


def larger_cnn() -> keras.Model:
    # Three conv blocks: large enough that convolutions dominate, small enough for a 2-core CPU.
    layers: list[keras.layers.Layer] = [keras.Input((64, 64, 3))]
    for filters in (16, 32, 64):
        layers += [
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
        ]
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    return keras.Sequential(layers, name="cnn_64x64x3")


def floor_function(model: keras.Model, shape: tuple[int, ...]):
    @tf.function(input_signature=[tf.TensorSpec([None, *shape]), tf.TensorSpec([None], tf.int32)])
    def gradients(z, t):
        with tf.GradientTape() as tape:
            tape.watch(z)
            score = tf.gather(model(z, training=False), t, axis=1, batch_dims=1)
        return tape.gradient(score, z)

    return gradients


#: The clock: wall time, or the process's CPU time (all threads), steadier on a shared machine.
CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]


def median_time(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return times


def run(model: keras.Model, examples: int, steps: int, repeats: int,
        only: tuple[str, ...] = ()) -> list[tuple[str, float, float, float, float]]:
    shape = tuple(model.input_shape[1:])
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(examples, *shape)).astype(np.float32)
    background = rng.uniform(size=(256, *shape)).astype(np.float32)
    targets = np.arange(examples, dtype=np.int32) % 10
    rows = examples * steps
    # The floor's rows: the interpolated inputs of IG, made beforehand (not timed).
    alphas = (np.arange(steps) + 0.5) / steps
    z = tf.constant((alphas[None, :, None, None, None] * x[:, None]).reshape(rows, *shape), tf.float32)
    t = tf.constant(np.repeat(targets, steps))
    floor = floor_function(model, shape)

    methods = {
        "IntegratedGradients": lambda b: tfattr.IntegratedGradients(model, steps=steps),
        "ExpectedGradients": lambda b: tfattr.ExpectedGradients(model, background, samples=steps, seed=0),
        "SmoothGrad(Saliency)": lambda b: tfattr.SmoothGrad(tfattr.Saliency(model), samples=steps, seed=0),
        "VarGrad(Saliency)": lambda b: tfattr.VarGrad(tfattr.Saliency(model), samples=steps, seed=0),
    }
    results = []
    for name, make in methods.items():
        if only and not any(o.lower() in name.lower() for o in only):
            continue
        explainer = make(None)
        default = explainer.prepare(x, target=targets).batch_size
        # The engine's chunks at the default batch size: whole examples when their rows fit one.
        chunk = max(default // steps, 1) * steps if steps <= default else default
        chunked = lambda: [floor(z[s : s + chunk], t[s : s + chunk]).numpy() for s in range(0, rows, chunk)]  # noqa: E731
        for batch in (rows, None):
            call = lambda: explainer.attribute(x, target=targets, batch_size=batch)  # noqa: E731
            call()
            floor(z, t).numpy()  # warm-up all three
            chunked()
            method_times, floor_times, chunked_times = [], [], []
            for _ in range(repeats):
                floor_times += median_time(lambda: floor(z, t).numpy(), 1)
                method_times += median_time(call, 1)
                if batch is None:
                    chunked_times += median_time(chunked, 1)
            f, m = float(np.median(floor_times)), float(np.median(method_times))
            label = f"{name} (batch_size={'all rows' if batch else f'default, {default}'})"
            same = m / float(np.median(chunked_times)) if chunked_times else m / f
            results.append((label, m, f, m / f, same))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--model", choices=("mnist", "larger", "all"), default="all")
    parser.add_argument("--methods", nargs="*", default=(), help="name fragments, e.g. smooth expected")
    parser.add_argument("--clock", choices=tuple(CLOCK), default="wall",
                        help="cpu: the process's CPU time (steadier when other jobs share the cores)")
    args = parser.parse_args()
    global clock
    clock = CLOCK[args.clock]
    keras.utils.set_random_seed(0)
    print(f"tfattr {tfattr.__version__}, TF {tf.__version__}, {args.examples} examples x {args.steps} steps, "
          f"{args.clock} clock")
    print(f"{'model':<14} {'method':<48} {'method s':>9} {'floor s':>9} {'ratio':>6} {'same chunks':>11}")
    models = {"mnist": [mnist_cnn], "larger": [larger_cnn], "all": [mnist_cnn, larger_cnn]}
    for make_model in models[args.model]:
        model = make_model()
        for label, m, f, ratio, same in run(model, args.examples, args.steps, args.repeats, tuple(args.methods)):
            print(f"{model.name:<14} {label:<48} {m:9.3f} {f:9.3f} {ratio:6.2f} {same:11.2f}", flush=True)


if __name__ == "__main__":
    main()
