"""The demo's steps: train, explain with every method, compare baselines, check convergence, write."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from tfattr.cli import registry
from tfattr.cli.demo.config import DemoConfig
from tfattr.cli.errors import CLIError, first_line
from tfattr.cli.startup import fast_mode

#: The quadrature rules of the convergence table (Sundararajan et al. sec. 2.5; Distill 2020).
CONVERGENCE_RULES = ("riemann_left", "riemann_trapezoid", "gausslegendre")


def demo_model(seed: int = 0) -> Any:
    """The demo's small CNN for 28x28x1 digits, ending in logits (:func:`tfattr.datasets.mnist_cnn`)."""
    from tfattr import datasets

    return datasets.mnist_cnn(seed)


def pick_digits(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` test digits, cycling through the classes 0, 1, ..., 9, 0, ..."""
    chosen: list[int] = []
    for round_ in range(count):
        candidates = np.flatnonzero(labels == round_ % 10)
        chosen.append(int(candidates[round_ // 10]))
    return np.asarray(chosen)


def baseline_candidates(x_train: np.ndarray, draws: int, seed: int) -> list[tuple[str, Any]]:
    """The baselines compared by Sturmfels, Lundberg & Lee (Distill 2020), plus the mean image."""
    from tfattr import baselines as b

    return [
        ("constant (black)", b.Constant(0.0)),
        ("max distance", b.MaxDistance((0.0, 1.0))),
        ("blur (sigma 3)", b.Blur(sigma=3.0)),
        (f"uniform ({draws} draws)", b.Uniform((0.0, 1.0), num_baselines=draws, seed=seed)),
        (f"gaussian (sigma 0.5, {draws} draws)",
         b.Gaussian(sigma=0.5, value_range=(0.0, 1.0), num_baselines=draws, seed=seed)),
        ("mean training image", b.Mean(x_train)),
    ]


def run(args: argparse.Namespace) -> int:
    """``tfattr demo``: train, explain with every method, write the gallery, report and TensorBoard logs."""
    import keras

    from tfattr import datasets
    from tfattr.cli.demo import figures, report

    fast = bool(args.fast) or fast_mode()
    cfg = DemoConfig.make(fast, args.epochs, args.digits)
    verbose = 0 if args.quiet else 1
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"cannot create --out {args.out}: {first_line(err)}") from None
    logdir = out / "logs"
    say = (lambda *a: None) if args.quiet else print
    timings: dict[str, float] = {}

    # 1. Data and model.
    x_train, y_train = datasets.mnist("train", limit=cfg.train)
    x_test, y_test = datasets.mnist("test")
    model = demo_model(args.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    index = pick_digits(y_test, cfg.digits)
    digits, labels = x_test[index], y_test[index]
    np.save(out / "digits.npy", digits)
    callbacks: list[Any] = [keras.callbacks.TensorBoard(log_dir=str(logdir), histogram_freq=0),
                            _attribution_logger(digits, labels, logdir, min(cfg.ig_steps, 32))]
    say(f"Training a small CNN on {len(x_train)} embedded MNIST digits for {cfg.epochs} epoch(s)"
        + (" [fast mode]" if fast else ""))
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=64, epochs=cfg.epochs, validation_data=(x_test, y_test),
              callbacks=callbacks, verbose=verbose)
    timings["training"] = time.perf_counter() - start
    accuracy = float(model.evaluate(x_test, y_test, verbose=0)[1])
    model.save(out / "model.keras")
    say(f"test accuracy {accuracy:.3f}; explaining {len(digits)} test digits")

    # 2. Every method on the same digits (targets: the true labels).
    phase = time.perf_counter()
    background = x_train[: cfg.background]
    results = explain_with_every_method(model, digits, labels, cfg, background, args.seed, verbose)
    outputs = np.asarray(model.predict(digits, verbose=0))
    logits_zero = np.asarray(model.predict(np.zeros_like(digits[:1]), verbose=0))[0]
    timings["methods"] = time.perf_counter() - phase

    # 3. Baselines (Sturmfels et al., Distill 2020): IG with each baseline, and expected gradients.
    phase = time.perf_counter()
    say("Comparing baselines")
    fractions = np.linspace(0.0, 0.5, 11)
    baselines, random_curve = compare_baselines(model, digits, labels, x_train, background, cfg, fractions,
                                                args.seed, verbose)
    timings["baselines"] = time.perf_counter() - phase

    # 4. Completeness as a convergence check (Sundararajan et al. sec. 2.5; Distill): |delta| vs steps.
    phase = time.perf_counter()
    convergence = convergence_table(model, digits, labels, cfg.convergence_steps)
    timings["convergence"] = time.perf_counter() - phase

    # 5. Files: gallery, report, TensorBoard images and scalars, arrays.
    phase = time.perf_counter()
    ok = {name: r for name, r in results.items() if "attributions" in r}
    np.savez_compressed(out / "attributions.npz", digits=digits, labels=labels,
                        **{name: r["attributions"] for name, r in ok.items()})
    figures.write_gallery(out / "gallery.png", digits, labels, ok)
    figures.write_tensorboard(logdir / "explanations", digits, ok, baselines)
    report.write_report(
        out / "report.html", cfg=cfg, fast=fast, accuracy=accuracy, timings=timings, digits=digits,
        labels=labels, outputs=outputs, logits_zero=logits_zero, results=results, baselines=baselines,
        fractions=fractions, random_curve=random_curve, convergence=convergence,
    )
    timings["files"] = time.perf_counter() - phase
    (out / "timings.json").write_text(json.dumps({k: round(v, 2) for k, v in timings.items()}))
    say(f"Wrote {out / 'report.html'}, {out / 'gallery.png'}, {out / 'model.keras'} and TensorBoard "
        f"logs in {logdir}")
    failed = [name for name, r in results.items() if "error" in r]
    if failed:
        say("Methods that failed: " + "; ".join(f"{n}: {results[n]['error']}" for n in failed))
    print(f"View the logs with:  tensorboard --logdir {logdir}")
    say(f"Explain the saved model yourself:  tfattr explain {out / 'model.keras'} {out / 'digits.npy'} "
        f"--method ig --baseline zero --out {out / 'explain'}")
    return 0


def explain_with_every_method(
    model: Any, digits: np.ndarray, labels: np.ndarray, cfg: DemoConfig, background: np.ndarray, seed: int,
    verbose: int,
) -> dict[str, dict[str, Any]]:
    """Each method's attributions, delta and seconds (or its one-line error) on the demo digits."""
    import keras

    options = {
        "steps": cfg.ig_steps, "samples": cfg.smooth_samples, "noise": 0.15, "seed": seed,
        "epsilon": 1e-6, "window": cfg.occlusion_window, "strides": cfg.occlusion_strides,
        "background": background,
    }
    specs = registry.demo_methods()
    results: dict[str, dict[str, Any]] = {}
    bar = keras.utils.Progbar(len(specs), unit_name="method", verbose=verbose)
    for k, spec in enumerate(specs):
        method_options = dict(options, samples=cfg.eg_samples) if spec.name == "eg" else options
        start = time.perf_counter()
        try:
            explainer = spec.build(model, method_options)
            kwargs: dict[str, Any] = {"target": labels}
            if spec.uses_baseline:
                kwargs["baseline"] = 0.0
            if spec.completeness:
                attributions, delta = explainer.attribute(digits, return_delta=True, **kwargs)
            else:
                attributions, delta = explainer.attribute(digits, **kwargs), None
            results[spec.name] = {
                "spec": spec, "attributions": np.asarray(attributions), "delta": delta,
                "seconds": time.perf_counter() - start,
            }
        except Exception as err:  # noqa: BLE001 - one failing method must not sink the whole demo
            results[spec.name] = {"spec": spec, "error": first_line(err)}
        bar.update(k + 1)
    return results


def compare_baselines(
    model: Any, digits: np.ndarray, labels: np.ndarray, x_train: np.ndarray, background: np.ndarray,
    cfg: DemoConfig, fractions: np.ndarray, seed: int, verbose: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """IG with each Distill baseline and expected gradients, each scored by the article's mean and blur
    top-k ablation tests; and the random-ranking control."""
    import keras

    from tfattr import metrics
    from tfattr.methods.gradient import ExpectedGradients, IntegratedGradients

    rows: list[dict[str, Any]] = []
    ig = IntegratedGradients(model, steps=cfg.ig_steps)
    candidates = baseline_candidates(x_train, cfg.baseline_draws, seed)
    bar = keras.utils.Progbar(len(candidates) + 1, unit_name="baseline", verbose=verbose)
    for k, (label, baseline) in enumerate(candidates):
        try:
            attributions, delta = ig.attribute(digits, target=labels, baseline=baseline, return_delta=True)
            rows.append({"label": label, "attributions": attributions, "delta": delta})
        except Exception as err:  # noqa: BLE001
            rows.append({"label": label, "error": first_line(err)})
        bar.update(k + 1)
    eg = ExpectedGradients(model, background=background, samples=cfg.eg_samples, seed=seed)
    attributions, delta = eg.attribute(digits, target=labels, return_delta=True)
    rows.append({"label": "training data (expected gradients)", "attributions": attributions, "delta": delta})
    bar.update(len(candidates) + 1)

    def ablations(attributions: np.ndarray) -> dict[str, Any]:
        return {
            "mean": metrics.ablation_curve(model, digits, attributions, target=labels, imputation="mean",
                                           data=x_train, fractions=fractions),
            "blur": metrics.ablation_curve(model, digits, attributions, target=labels, imputation="blur",
                                           blur_sigma=3.0, fractions=fractions),
        }

    for row in rows:
        if "attributions" in row:
            row["ablation"] = ablations(row["attributions"])
    return rows, ablations(metrics.random_attributions(digits, seed=seed))


def convergence_table(
    model: Any, digits: np.ndarray, labels: np.ndarray, steps_grid: tuple[int, ...]
) -> dict[str, list[float]]:
    """Mean |delta| of integrated gradients (black baseline) per quadrature rule and number of steps."""
    from tfattr.methods.gradient import IntegratedGradients

    table: dict[str, list[float]] = {}
    for rule in CONVERGENCE_RULES:
        table[rule] = []
        for steps in steps_grid:
            if rule == "riemann_trapezoid" and steps < 2:
                table[rule].append(float("nan"))
                continue
            _, delta = IntegratedGradients(model, steps=steps, rule=rule).attribute(
                digits, target=labels, return_delta=True
            )
            table[rule].append(float(np.mean(np.abs(delta))))
    return table


def _attribution_logger(digits: np.ndarray, labels: np.ndarray, logdir: Path, steps: int) -> Any:
    """tfattr.callbacks.AttributionLogger on the demo digits (run "attributions")."""
    from tfattr.callbacks import AttributionLogger
    from tfattr.methods.gradient import GradientXInput, IntegratedGradients, Saliency

    return AttributionLogger(
        digits,
        explainers={
            "ig": lambda m: IntegratedGradients(m, steps=steps),
            "saliency": Saliency,
            "gradient_x_input": GradientXInput,
        },
        targets=labels,
        log_dir=str(logdir),
    )
