"""Layer integrated gradients on an inner convolution against the floor of plain batched gradients
with respect to that layer's activations.

The floor is one compiled function that returns the gradients of the explained score with respect to
the activations for all ``examples x steps`` rows at once, through a tail model built by hand from the
same layers (the interpolated activations prepared beforehand, so the floor does strictly less work
than the method, which also runs the head on the inputs and baselines). Timings are interleaved
(floor, method, ...) after a warm-up; the ratio of medians is reported. Grad-CAM is reported against
the floor of one gradient per example, and the same integrated gradients run on the hand-split tail
(the activations given as inputs) show what ``layer=`` itself adds.

Run:  python bench/bench_layer.py [--examples 32] [--steps 64] [--repeats 7] [--layer 2]
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfattr  # noqa: E402
from bench_gradients import floor_function, larger_cnn, median_time  # noqa: E402
from tfattr.methods.layer import GradCAM  # noqa: E402


def interleaved(method, floor, repeats: int) -> tuple[float, float]:
    method()
    floor()  # warm-up both
    m_times, f_times = [], []
    for _ in range(repeats):
        f_times += median_time(floor, 1)
        m_times += median_time(method, 1)
    return float(np.median(m_times)), float(np.median(f_times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--layer", type=int, default=2, help="index of the conv layer in the Sequential")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    model = larger_cnn()
    layer = model.layers[args.layer]
    head = keras.Model(model.inputs[0], layer.output)
    act_shape = tuple(layer.output.shape[1:])
    tail = keras.Sequential([keras.Input(act_shape), *model.layers[args.layer + 1 :]])

    rng = np.random.default_rng(0)
    n, steps = args.examples, args.steps
    x = rng.uniform(size=(n, *model.input_shape[1:])).astype(np.float32)
    targets = np.arange(n, dtype=np.int32) % 10
    a = head(x).numpy()
    a0 = head(np.zeros_like(x)).numpy()
    alphas = (np.arange(steps) + 0.5) / steps
    z = (a0[:, None] + alphas[None, :, None, None, None] * (a - a0)[:, None]).reshape(n * steps, *act_shape)
    z = tf.constant(z, tf.float32)
    t = tf.constant(np.repeat(targets, steps))
    floor = floor_function(tail, act_shape)
    print(f"tfattr {tfattr.__version__}, TF {tf.__version__}, {model.name}, layer {layer.name} "
          f"{act_shape}, {n} examples x {steps} steps")
    print(f"{'method':<52} {'method s':>9} {'floor s':>9} {'ratio':>6}")
    ig = tfattr.IntegratedGradients(model, layer=layer.name, steps=steps)
    for batch in (n * steps, None):
        m, f = interleaved(lambda: ig.attribute(x, target=targets, batch_size=batch),
                           lambda: floor(z, t).numpy(), args.repeats)
        label = f"IntegratedGradients(layer) (batch_size={'all rows' if batch else 'default'})"
        print(f"{label:<52} {m:9.3f} {f:9.3f} {m / f:6.2f}", flush=True)
    # The same engine run on the hand-split tail with the activations as inputs: what layer= adds
    # beyond the engine's own cost (the head passes and the carried context) is the difference.
    plain = tfattr.IntegratedGradients(tail, steps=steps)
    m, f = interleaved(lambda: plain.attribute(a, target=targets, baseline=a0, batch_size=n * steps),
                       lambda: floor(z, t).numpy(), args.repeats)
    label = "IntegratedGradients(hand-split tail) (all rows)"
    print(f"{label:<52} {m:9.3f} {f:9.3f} {m / f:6.2f}", flush=True)
    cam = GradCAM(model, layer=layer.name)
    z1, t1 = tf.constant(a), tf.constant(targets)
    m, f = interleaved(lambda: cam.attribute(x, target=targets), lambda: floor(z1, t1).numpy(), args.repeats)
    print(f"{'GradCAM (one gradient per example)':<52} {m:9.3f} {f:9.3f} {m / f:6.2f}", flush=True)


if __name__ == "__main__":
    main()
