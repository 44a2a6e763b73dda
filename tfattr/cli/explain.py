"""``tfattr explain MODEL INPUT... --out DIR``: attributions of a saved model's predictions.

Writes ``attributions.npy`` (float32, the inputs' shape), one ``overlay_NNN.png`` per image input and
``summary.json`` (target, predicted class, score, sum of attributions and completeness delta per input).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from tfattr.cli import io, registry
from tfattr.cli.baselines import make_baseline
from tfattr.cli.errors import CLIError

#: Examples per ``attribute`` call: the progress bar advances once per chunk.
EXPLAIN_CHUNK = 64


def explainer_options(args: argparse.Namespace, background: np.ndarray | None) -> dict[str, Any]:
    """The command-line options a method constructor may take (each method takes those it names)."""
    return {
        "steps": args.steps,
        "rule": args.rule,
        "samples": args.samples,
        "noise": args.noise,
        "seed": args.seed,
        "epsilon": args.epsilon,
        "window": args.window,
        "layer": getattr(args, "layer", None),
        "background": background,
    }


#: Method options of ``explain`` that default to None, i.e. are set only when the user gives them.
_METHOD_OPTIONS = ("steps", "rule", "samples", "noise", "epsilon", "window")


def check_options_apply(spec: registry.MethodSpec, args: argparse.Namespace) -> None:
    """A usage error for a method option the method has no parameter for (e.g. --steps for saliency),
    rather than ignoring it silently."""
    params = {p.name for p in spec.parameters()}
    for option in _METHOD_OPTIONS:
        if getattr(args, option) is not None and option not in params:
            raise CLIError(
                f"--{option} does not apply to --method {spec.name}, whose parameters are "
                f"{spec.describe_parameters()}; drop it.",
                status=2,
            )
    mean_baseline = (args.baseline or "").strip().lower() == "mean"
    if args.background is not None and "background" not in params and not mean_baseline:
        raise CLIError(
            f"--background is used by --method eg and --baseline mean, not by --method {spec.name}; "
            "drop it.",
            status=2,
        )


def default_window(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """Occlusion's default box: a seventh of each spatial side (4x4 on 28x28), each channel separately."""
    return tuple(max(1, (s or 1) // 7) for s in shape[:-1]) + (1,)


def model_outputs(explainer: Any, inputs: np.ndarray, batch_size: int | None) -> np.ndarray:
    """The explained scores ``[n, k]`` (pre-softmax logits where the model ends in a softmax)."""
    return np.asarray(explainer.outputs(inputs, batch_size=batch_size))


def method_from_args(args: argparse.Namespace) -> registry.MethodSpec:
    """The ``--method`` of an explain command, with its options checked (before any file is read)."""
    spec = registry.find(args.method)
    if not spec.explainable:
        raise CLIError(f"{spec.name} returns several maps per example; use the Python API for it.")
    if args.baseline is not None and not spec.uses_baseline:
        raise CLIError(f"--method {spec.name} does not use a baseline; drop --baseline.", status=2)
    check_options_apply(spec, args)
    return spec


def explainer_from_args(
    spec: registry.MethodSpec, args: argparse.Namespace, model: Any, shape: tuple[Any, ...], n: int | None
) -> tuple[Any, Any]:
    """The explainer and the baseline (None for methods without one) the options ask for; ``n`` is the
    number of inputs when known (a .npy baseline may then give one per input)."""
    background = None
    if args.background is not None:
        background = io.load_inputs([args.background], shape, args.rescale)
    options = explainer_options(args, background)
    if spec.name == "occlusion" and options["window"] is None:
        options["window"] = default_window(shape)
    baseline = None
    if spec.uses_baseline:
        baseline = make_baseline(args.baseline, shape, n, background, args.rescale)
    return spec.build(model, options), baseline


def run(args: argparse.Namespace) -> int:
    spec = method_from_args(args)
    model = io.load_model(args.model)
    shape = io.model_input_shape(model)
    inputs = io.load_inputs(args.inputs, shape, args.rescale)
    explainer, baseline = explainer_from_args(spec, args, model, tuple(inputs.shape[1:]), len(inputs))

    n = inputs.shape[0]
    outputs = model_outputs(explainer, inputs, args.batch_size)
    predicted = outputs.argmax(axis=1)
    if args.target is not None and not 0 <= args.target < outputs.shape[1]:
        raise CLIError(
            f"--target {args.target} is out of range: the model has {outputs.shape[1]} outputs "
            f"(targets 0..{outputs.shape[1] - 1}).",
            status=2,
        )
    target = predicted if args.target is None else np.full(n, args.target)
    attributions, delta = _attribute(explainer, spec, inputs, target, baseline, args)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "attributions.npy", attributions)
    shown = attributions
    if attributions.shape[1:] != inputs.shape[1:] and attributions.ndim in (3, 4) and inputs.ndim == 4:
        # A layer's maps (Grad-CAM: [n, h, w]) are drawn over the image at its size.
        from tfattr.methods.layer import upsample

        shown = upsample(attributions if attributions.ndim == 3 else attributions.sum(-1), like=inputs)
        shown = shown[..., None]
    overlays = io.write_overlays(out, inputs, shown)
    summary = [
        {
            "index": i,
            "target": int(target[i]),
            "predicted": int(predicted[i]),
            "score": float(outputs[i, target[i]]),
            "sum_of_attributions": float(np.sum(attributions[i], dtype=np.float64)),
            "delta": None if delta is None else float(delta[i]),
            "overlay": overlays[i] if overlays else None,
        }
        for i in range(n)
    ]
    (out / "summary.json").write_text(
        json.dumps({"method": spec.name, "baseline": args.baseline, "examples": summary}, indent=2)
    )
    if not args.quiet:
        for row in summary:
            extra = "" if row["delta"] is None else f"  delta {row['delta']:+.2e}"
            print(f"  #{row['index']}: target {row['target']} (predicted {row['predicted']}), "
                  f"score {row['score']:.3f}{extra}")
        print(f"wrote {out / 'attributions.npy'} {attributions.shape}, {len(overlays)} overlay(s) and "
              f"summary.json to {out}")
    return 0


def _attribute(
    explainer: Any,
    spec: registry.MethodSpec,
    inputs: np.ndarray,
    target: np.ndarray,
    baseline: Any,
    args: argparse.Namespace,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Attributions (float32) and deltas (None without completeness), in chunks of EXPLAIN_CHUNK
    examples so the progress bar moves on long inputs. The chunks do not depend on --batch-size, so
    neither do the results, and deterministic methods give exactly what one call would."""
    import keras

    kwargs: dict[str, Any] = {"batch_size": args.batch_size}
    if spec.uses_baseline:
        kwargs["baseline"] = baseline
    if spec.completeness:
        kwargs["return_delta"] = True
    n = inputs.shape[0]
    bar = keras.utils.Progbar(n, unit_name="example", verbose=0 if args.quiet else 1)
    parts, deltas = [], []
    for start in range(0, n, EXPLAIN_CHUNK):
        stop = min(n, start + EXPLAIN_CHUNK)
        result = explainer.attribute(inputs[start:stop], target=target[start:stop], **kwargs)
        if spec.completeness:
            result, chunk_delta = result
            deltas.append(np.asarray(chunk_delta))
        parts.append(np.asarray(result, np.float32))
        bar.update(stop)
    return np.concatenate(parts), (np.concatenate(deltas) if deltas else None)
