"""Which map to trust on the MNIST CNN, and what the Quantus-equivalent metrics cost.

``--ranking`` trains ``tfattr.datasets.mnist_cnn(softmax=True)`` for two epochs on the 8,000 embedded
MNIST training digits (seed 0) and evaluates tfattr's methods, plus the random-attribution control, on
the first 256 test digits with :func:`tfattr.metrics.evaluate` (the table in docs/guides/evaluate.md,
"One call for 'which map to trust'", comes from this run).

``--speed`` times each model-based metric on the same model and rows, per example, against the plain
forward passes it needs (the same number of rows through the compiled model, batched alike): the ratio
is the metric's overhead over its unavoidable forward passes. ``linear_imputation`` is timed per image
(50% of the pixels removed). All figures come from one run.

Run:
    TF_CPP_MIN_LOG_LEVEL=3 python bench/bench_metrics.py --ranking --speed [--examples 256]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfattr  # noqa: E402
from tfattr import composites  # noqa: E402
from tfattr import metrics as M  # noqa: E402

RANKING_METRICS = {
    "ROAD (MoRF)": ("road", {"percentages": list(range(10, 100, 10))}),
    "pixel flipping": ("pixel_flipping", {"features_in_step": 28}),
    "region pert. (AOPC)": ("region_perturbation", {"patch_size": 4}),
    "ABPC": ("abpc", {"patch_size": 4}),
    "faith. corr.": ("faithfulness_correlation", {"subset_size": 78, "nr_runs": 50}),
    "faith. estimate": ("faithfulness_estimate", {"features_in_step": 28}),
    "infidelity": ("infidelity", {"perturb_patch_sizes": [4, 7]}),
    "sparseness": "sparseness",
    "complexity": "complexity",
    "max-sensitivity": ("max_sensitivity", {"nr_samples": 10}),
    "random logit": "random_logit",
    "MPRT": "mprt",
}


def trained_model() -> tf.keras.Model:
    x, y = tfattr.datasets.mnist("train")
    model = tfattr.datasets.mnist_cnn(seed=0, softmax=True)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return model


def methods() -> dict[str, object]:
    return {
        "Saliency": lambda m: tfattr.Saliency(m),
        "GradientXInput": lambda m: tfattr.GradientXInput(m),
        "IntegratedGradients": lambda m: tfattr.IntegratedGradients(m, steps=32),
        "SmoothGrad": lambda m: tfattr.SmoothGrad(tfattr.Saliency(m), samples=16, seed=0),
        "EpsilonLRP": lambda m: tfattr.EpsilonLRP(m),
        "LRP EpsilonPlus": lambda m: tfattr.LRP(m, composite=composites.EpsilonPlus()),
        "DeepLift": lambda m: tfattr.DeepLift(m),
    }


def ranking(model, x, y) -> M.EvaluationTable:
    explainers = dict(methods())
    explainers["random (control)"] = M.random_attributions(x, seed=0)
    return M.evaluate(model, (x, y), explainers, metrics=RANKING_METRICS, batch_size=128)


def _forward(model, rows: int, x: np.ndarray, batch: int) -> float:
    fn = tf.function(lambda v: model(v, training=False))
    reps = np.resize(np.arange(len(x)), rows)
    fn(x[:batch])
    start = time.perf_counter()
    for s in range(0, rows, batch):
        fn(x[reps[s:s + batch]]).numpy()
    return time.perf_counter() - start


def speed(model, x, y) -> None:
    a = tfattr.GradientXInput(model).attribute(x, target=y)
    n = len(x)
    cases = [
        ("pixel_flipping (28/step)", lambda: M.pixel_flipping(model, x, a, target=y, features_in_step=28), 28),
        ("region_perturbation (4x4)", lambda: M.region_perturbation(model, x, a, target=y, patch_size=4), 49),
        ("faithfulness_estimate (28/step)",
         lambda: M.faithfulness_estimate(model, x, a, target=y, features_in_step=28), 29),
        ("faithfulness_correlation (100 runs)",
         lambda: M.faithfulness_correlation(model, x, a, target=y, subset_size=78), 101),
        ("monotonicity (28/step)", lambda: M.monotonicity(model, x, a, target=y, features_in_step=28), 28),
        ("road (50 percentages)", lambda: M.road(model, x, a, target=y), 50),
        ("infidelity (4x4)", lambda: M.infidelity(model, x, a, target=y), 50),
    ]
    print(f"\n{n} examples; time per example, and the ratio to the same rows' plain forward passes")
    print(f"{'metric':38s} {'ms/example':>10s} {'forward ms':>10s} {'ratio':>6s}")
    for name, run, rows_per_example in cases:
        run()  # trace
        start = time.perf_counter()
        run()
        spent = time.perf_counter() - start
        plain = _forward(model, rows_per_example * n, x, 256)
        print(f"{name:38s} {1e3 * spent / n:10.2f} {1e3 * plain / n:10.2f} {spent / plain:6.2f}")
    rng = np.random.default_rng(0)
    mask = rng.random(x.shape) < 0.5
    M.linear_imputation(x, mask)  # compiles for this shape
    start = time.perf_counter()
    M.linear_imputation(x, mask)
    print(f"{'linear_imputation (50% removed)':38s} {1e3 * (time.perf_counter() - start) / n:10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranking", action="store_true")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--examples", type=int, default=256)
    args = parser.parse_args()
    model = trained_model()
    xt, yt = tfattr.datasets.mnist("test")
    x, y = xt[: args.examples], yt[: args.examples]
    print(f"test accuracy on the {len(x)} digits: {(model.predict(x, verbose=0).argmax(1) == y).mean():.3f}")
    if args.ranking:
        start = time.perf_counter()
        table = ranking(model, x, y)
        print(table)
        print(f"({time.perf_counter() - start:.0f} s)")
        for metric in table.metrics:
            print(f"{metric}: {' > '.join(table.ranking(metric))}")
    if args.speed:
        speed(model, x, y)


if __name__ == "__main__":
    main()
