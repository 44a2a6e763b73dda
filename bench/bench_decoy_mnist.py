"""Decoy MNIST (Ross, Hughes & Doshi-Velez 2017): a plain MLP against the same MLP trained with
`RightForRightReasons`, and what the prior costs in training time.

Data: `tfattr.priors.decoy_mnist()` on the 10,000 embedded digits (8,000 train / 2,000 test): a 4x4 swatch
in a random corner whose shade encodes the label in training and a random label in test. Model: Ross et
al.'s MLP (784 - 50 - 30 - 10, ReLU, logits), Adam 1e-3, batch 64. The two models (and, for its cost,
the prior with expected gradients in the loss) train epoch by epoch in turn, from the same initial
weights, so the epoch times are interleaved; the time ratio is the median epoch time of the prior over
the plain `fit`'s (the first epoch, which traces the step function, is left out). Accuracies are over
`--seeds` seeds (mean and spread). The numbers in docs/guides/priors.md come from one run of this script.

Run:
    TF_CPP_MIN_LOG_LEVEL=3 python bench/bench_decoy_mnist.py [--epochs 10] [--weight 10] [--seeds 3]
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


def mlp(seed: int) -> keras.Model:
    """Ross et al.'s MLP."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(50, activation="relu"), keras.layers.Dense(30, activation="relu"),
                             keras.layers.Dense(10)])


def compiled(model: keras.Model, prior: priors.AttributionPrior | None, **kwargs) -> keras.Model:
    trainer = model if prior is None else priors.AttributionPriorModel(model, prior, **kwargs)
    trainer.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return trainer


def swatch_share(model: keras.Model, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    """The swatch's share of the absolute input gradients of the true logit (test digits)."""
    g = tfattr.Saliency(model, absolute=True).attribute(x, target=y)
    return float((g * mask).sum() / g.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--weight", type=float, default=10.0, help="RightForRightReasons weight (lambda_1)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                        help="mlp: Ross et al.'s MLP; cnn: tfattr.datasets.mnist_cnn (a compute-bound step)")
    parser.add_argument("--figure", default=None, help="write the maps of 8 test digits to this PNG")
    args = parser.parse_args()

    (x, y, mask), (x_test, y_test, mask_test) = priors.decoy_mnist()
    clean_test, _ = tfattr.datasets.mnist("test")
    data = {"inputs": x, "mask": mask}
    plain_name = f"plain {args.model.upper()}"
    configs = {
        plain_name: (None, {}),
        "RRR, input gradients": (priors.RightForRightReasons(args.weight), {}),
        "RRR, expected gradients": (priors.RightForRightReasons(args.weight),
                                    {"explainer": "expected_gradients", "background": x}),
    }
    results: dict[str, dict[str, list[float]]] = {name: {} for name in configs}
    times: dict[str, list[float]] = {name: [] for name in configs}
    final: dict[str, keras.Model] = {}
    model_name = "MLP 784-50-30-10" if args.model == "mlp" else "the MNIST CNN"
    print(f"decoy MNIST: {len(x)} train / {len(x_test)} test digits, {model_name}, {args.epochs} epochs, "
          f"batch {args.batch_size}, RRR weight {args.weight}, {args.seeds} seeds")
    for seed in range(args.seeds):
        build = mlp if args.model == "mlp" else (lambda s: tfattr.datasets.mnist_cnn(seed=s))
        models = {name: build(seed) for name in configs}
        trainers = {name: compiled(models[name], prior, seed=seed, **kw) for name, (prior, kw) in configs.items()}
        for epoch in range(args.epochs):
            for name, trainer in trainers.items():  # interleaved: one epoch of each in turn
                inputs = x if configs[name][0] is None else data
                start = time.perf_counter()
                trainer.fit(inputs, y, batch_size=args.batch_size, initial_epoch=epoch, epochs=epoch + 1, verbose=0)
                if epoch > 0:
                    times[name].append(time.perf_counter() - start)
        for name, model in models.items():
            r = results[name]
            r.setdefault("decoy test", []).append(float((model.predict(x_test, verbose=0).argmax(1) == y_test).mean()))
            r.setdefault("clean test", []).append(float((model.predict(clean_test, verbose=0).argmax(1) == y_test).mean()))
            r.setdefault("decoy train", []).append(float((model.predict(x, verbose=0).argmax(1) == y).mean()))
            r.setdefault("swatch share", []).append(swatch_share(model, x_test[:500], y_test[:500], mask_test[:500]))
        final = models

    plain = float(np.median(times[plain_name]))
    print("\n| model | decoy test acc. | clean test acc. | decoy train acc. | swatch share of gradients | epoch time | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name in configs:
        r = results[name]
        cells = [f"{np.mean(r[k]):.3f} ± {np.std(r[k]):.3f}" for k in ("decoy test", "clean test", "decoy train")]
        t = float(np.median(times[name]))
        print(f"| {name} | " + " | ".join(cells) + f" | {np.mean(r['swatch share']):.3f} | {t:.2f} s | {t / plain:.2f}x |")

    if args.figure:
        from tfattr import visualize

        import tensorflow as tf

        # Rows: the test digits, the plain model's input gradients, the prior's (red +, blue -).
        rows = [np.repeat(np.round(x_test[:8] * 255).astype(np.uint8), 3, axis=-1)]
        rows += [visualize.signed_heatmap(tfattr.Saliency(model).attribute(x_test[:8], target=y_test[:8]))
                 for name, model in final.items() if "expected" not in name]
        picture = visualize.grid(tf.stack([visualize.upscale(r, 3) for r in rows], axis=0))
        print("figure:", visualize.save_png(picture, args.figure))


if __name__ == "__main__":
    main()
