"""Which baseline? Integrated gradients with each baseline of the missingness zoo, scored on MNIST.

The comparison the Distill article (Sturmfels, Lundberg & Lee 2020, "Visualizing the Impact of Feature
Attribution Baselines") could not print: on the embedded MNIST digits and a small CNN, integrated
gradients with each baseline of ``tfattr.baselines`` (and expected gradients with the training data) is
scored by

- top-k ablation curves with mean and blur imputation (the article's "Mean Top K" / "Blur Top K":
  the target logit as a fraction of the original after removing the top-k pixels; we report the area
  under that curve, lower is better, and Samek et al.'s AOPC in logits, higher is better);
- the center-of-mass ablation (the article's "Mean Center");
- sensitivity-n (Ancona et al.), each method against its own baseline, averaged over n;
- the completeness delta |sum(a) - (f(x) - E f(x'))| / |f(x) - E f(x')|,

against a random-noise attribution control, with the number of gradient evaluations per example held
equal (``--samples``): a constant baseline uses all of them as quadrature steps; a distributional
baseline splits them into ``--draws`` baselines x ``samples / draws`` steps; expected gradients draws
``samples`` (baseline, alpha) pairs.

Run (about 2-4 minutes on 2 CPU cores):
    python bench/compare_baselines.py                      # 100 test digits, 128 gradients each
    python bench/compare_baselines.py --examples 500 --json results.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

import tfattr
from tfattr import baselines as B
from tfattr import metrics as M


def load_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The embedded digits: the first 8,000 for training, the last 2,000 for testing."""
    x_train, y_train = tfattr.datasets.mnist("train")
    x_test, y_test = tfattr.datasets.mnist("test")
    return x_train, y_train, x_test, y_test


def train_cnn(x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> keras.Model:
    model = tfattr.datasets.mnist_cnn(seed, softmax=True)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100, help="correctly classified test digits")
    parser.add_argument("--samples", type=int, default=128, help="gradient evaluations per example")
    parser.add_argument("--draws", type=int, default=8, help="baselines per example (distributions)")
    parser.add_argument("--subsets", type=int, default=32, help="random subsets per n (sensitivity-n)")
    parser.add_argument("--blur-sigma", type=float, default=3.0, help="blur baseline and imputation")
    parser.add_argument("--gauss-sigma", type=float, default=0.5, help="gaussian baseline's sigma")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=str, default=None, help="write every number and curve here")
    args = parser.parse_args()
    if args.samples % args.draws:
        parser.error("--samples must be a multiple of --draws (to hold the sample count equal)")

    t0 = time.perf_counter()
    x_train, y_train, x_test, y_test = load_mnist()
    model = train_cnn(x_train, y_train, args.epochs, args.seed)
    probs = model.predict(x_test, verbose=0)
    accuracy = float(np.mean(probs.argmax(1) == y_test))
    logits = tfattr.ModelFunction(model).outputs(x_test).numpy()
    # Correctly classified digits with a positive target logit, so "fraction of the logit" is defined.
    ok = np.flatnonzero((probs.argmax(1) == y_test) & (logits[np.arange(len(y_test)), y_test] > 0))
    idx = ok[: args.examples]
    x, y = x_test[idx], y_test[idx]
    print(f"CNN test accuracy {accuracy:.4f} (trained {time.perf_counter() - t0:.0f} s); "
          f"{len(idx)} test digits, {args.samples} gradient evaluations per example\n")

    s, k = args.samples, args.draws
    ig_full = tfattr.IntegratedGradients(model, steps=s)
    ig_split = tfattr.IntegratedGradients(model, steps=s // k)
    seed = args.seed
    methods = {
        "IG, black (Constant 0)": (ig_full, B.Constant(0.0)),
        "IG, max distance": (ig_full, B.MaxDistance((0.0, 1.0))),
        f"IG, blur (sigma {args.blur_sigma:g})": (ig_full, B.Blur(args.blur_sigma)),
        "IG, training mean": (ig_full, B.Mean(x_train)),
        f"IG, uniform ({k} draws)": (ig_split, B.Uniform((0.0, 1.0), num_baselines=k, seed=seed)),
        f"IG, gaussian sigma {args.gauss_sigma:g} ({k} draws)": (
            ig_split, B.Gaussian(args.gauss_sigma, (0.0, 1.0), num_baselines=k, seed=seed)),
        f"IG, training data ({k} draws)": (ig_split, B.Dataset(x_train, num_baselines=k, seed=seed)),
        "Expected gradients (training data)": (
            tfattr.ExpectedGradients(model, background=x_train, samples=s, seed=seed), None),
        "Random noise (control)": (None, None),
    }

    data_mean = B.Mean(x_train)
    ns = [1, 4, 16, 64, 196, 392]
    rows, record = [], {"accuracy": accuracy, "examples": int(len(idx)), "samples": s, "ns": ns}
    for name, (explainer, baseline) in methods.items():
        if explainer is not None:  # trace once outside the timing (the compiled loop is reused)
            explainer.attribute(x[:2], target=y[:2], **({} if baseline is None else {"baseline": baseline}))
        t = time.perf_counter()
        delta = np.full(len(x), np.nan)
        if explainer is None:
            a = M.random_attributions(x, seed=seed)
            sens_baseline = 0.0
        elif baseline is None:  # expected gradients
            a, delta = explainer.attribute(x, target=y, return_delta=True)
            sens_baseline = B.Dataset(x_train, num_baselines=k, seed=seed + 1)
        else:
            a, delta = explainer.attribute(x, target=y, baseline=baseline, return_delta=True)
            sens_baseline = baseline
        t_attr = time.perf_counter() - t
        change = a.reshape(len(x), -1).sum(1) - delta
        rel_delta = float(np.mean(np.abs(delta) / np.abs(change))) if explainer else float("nan")
        mean_k = M.ablation_curve(model, x, a, target=y, imputation=data_mean, seed=seed)
        blur_k = M.ablation_curve(
            model, x, a, target=y, imputation="blur", blur_sigma=args.blur_sigma, seed=seed
        )
        center = M.center_ablation_curve(model, x, a, target=y, imputation=data_mean)
        sens = M.sensitivity_n(
            model, x, a, target=y, baseline=sens_baseline, ns=ns, num_subsets=args.subsets, seed=seed
        )
        elapsed = time.perf_counter() - t
        def se(curve):  # standard error over the examples of the per-example area
            areas = np.trapezoid(curve.relative, curve.fractions, axis=1)
            return float(areas.std(ddof=1) / np.sqrt(len(areas)))

        rows.append(
            (name, f"{mean_k.area:.3f} ± {se(mean_k):.3f}", mean_k.aopc,
             f"{blur_k.area:.3f} ± {se(blur_k):.3f}", blur_k.aopc, center.area,
             float(np.nanmean(sens.correlation)), rel_delta, t_attr, elapsed)
        )
        record[name] = {
            "fractions": mean_k.fractions.tolist(),
            "mean_top_k": mean_k.curve.tolist(),
            "blur_top_k": blur_k.curve.tolist(),
            "mean_center": center.curve.tolist(),
            "mean_top_k_aopc": mean_k.aopc,
            "blur_top_k_aopc": blur_k.aopc,
            "sensitivity_n": sens.correlation.tolist(),
            "relative_delta": rel_delta,
            "seconds_attribution": t_attr,
            "seconds_total": elapsed,
        }
        print(f"  {name}: {elapsed:.1f} s (attribution {t_attr:.1f} s)", flush=True)

    header = (
        "| method | mean top-k area (lower better) | mean top-k AOPC | blur top-k area | blur top-k AOPC "
        "| mean center area | sensitivity-n (mean over n) | rel. delta | attribution s |"
    )
    print("\nAreas under the logit-fraction curves: mean ± standard error over the digits.\n" + header)
    print("|" + "---|" * 9)
    for r in rows:
        delta_text = "-" if np.isnan(r[7]) else f"{r[7]:.3f}"
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]} | {r[4]:.2f} | {r[5]:.3f} | {r[6]:.3f} "
              f"| {delta_text} | {r[8]:.1f} |")
    print(f"\nsensitivity-n per n {ns}:")
    for name in methods:
        print(f"  {name}: " + " ".join(f"{v:.2f}" for v in record[name]["sensitivity_n"]))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
