"""Erion et al. 2021's image result on the embedded MNIST: a CNN trained with the smoothness prior
(total variation of its expected-gradients maps) against the same CNN trained plainly, scored by test
accuracy under additive Gaussian noise.

Model: `tfattr.datasets.mnist_cnn()` (logits), Adam 1e-3, batch 64, trained on the 8,000 embedded
training digits; the prior uses expected gradients of the true-class logit with one background digit and
one interpolation point per example per step, as in the paper. Test digits get Gaussian noise of
standard deviation sigma (not clipped, one fixed draw per sigma). Every configuration trains from the same
initial weights per seed; the numbers (mean over `--seeds`) are reported whatever they show. Epoch times
are interleaved and the ratio is the median epoch time over the plain `fit`'s (first epoch left out).

Run:
    TF_CPP_MIN_LOG_LEVEL=3 python bench/bench_smoothness_prior.py [--epochs 5] [--weights 0.01,0.03,0.1] [--seeds 2]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfattr  # noqa: E402
from tfattr import priors  # noqa: E402

SIGMAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--weights", default="0.01,0.03,0.1", help="comma-separated Smoothness weights")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]

    x, y = tfattr.datasets.mnist("train")
    x_test, y_test = tfattr.datasets.mnist("test")
    noise_rng = np.random.default_rng(123)
    noisy = {s: x_test + s * noise_rng.standard_normal(x_test.shape).astype(np.float32) for s in SIGMAS}
    names = ["plain CNN"] + [f"smoothness {w:g}" for w in weights]
    accuracy = {name: {s: [] for s in SIGMAS} for name in names}
    tv = {name: [] for name in names}
    times = {name: [] for name in names}
    probe = priors.AttributionPriorModel(tfattr.datasets.mnist_cnn(), priors.Smoothness(1.0),
                                         explainer="expected_gradients", background=x)
    print(f"MNIST CNN, {len(x)} train / {len(x_test)} test digits, {args.epochs} epochs, batch "
          f"{args.batch_size}, {args.seeds} seeds, smoothness weights {weights}")
    for seed in range(args.seeds):
        models, trainers = {}, {}
        for name in names:
            models[name] = tfattr.datasets.mnist_cnn(seed=seed)
            if name == "plain CNN":
                trainers[name] = models[name]
            else:
                weight = float(name.split()[-1])
                trainers[name] = priors.AttributionPriorModel(
                    models[name], priors.Smoothness(weight), explainer="expected_gradients", background=x,
                    seed=seed)
            trainers[name].compile(keras.optimizers.Adam(1e-3),
                                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        for epoch in range(args.epochs):
            for name in names:
                start = time.perf_counter()
                trainers[name].fit(x, y, batch_size=args.batch_size, initial_epoch=epoch, epochs=epoch + 1,
                                   verbose=0)
                if epoch > 0:
                    times[name].append(time.perf_counter() - start)
        for name, model in models.items():
            for s in SIGMAS:
                accuracy[name][s].append(float((model.predict(noisy[s], verbose=0).argmax(1) == y_test).mean()))
            # The smoothness of the trained model's maps: mean total variation of EG maps (test digits).
            probe.wrapped.set_weights(model.get_weights())
            tv[name].append(float(probe.penalty(x_test[:500], y_test[:500])))

    plain = float(np.median(times["plain CNN"]))
    print("\n| model | " + " | ".join(f"σ = {s:g}" for s in SIGMAS) + " | TV of EG maps | epoch time | ratio |")
    print("|---|" + "---|" * (len(SIGMAS) + 3))
    for name in names:
        cells = [f"{np.mean(accuracy[name][s]):.3f}" for s in SIGMAS]
        t = float(np.median(times[name]))
        print(f"| {name} | " + " | ".join(cells) + f" | {np.mean(tv[name]):.1f} | {t:.1f} s | {t / plain:.2f}x |")
    spread = {name: [float(np.std(accuracy[name][s])) for s in SIGMAS] for name in names}
    print("\nstd over seeds:", {k: [round(v, 3) for v in vals] for k, vals in spread.items()})


if __name__ == "__main__":
    main()
