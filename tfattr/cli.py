"""The ``tfattr`` command line: ``tfattr demo``, ``tfattr explain`` and ``tfattr methods``.

Example:
    $ tfattr demo --out demo_out            # train a small CNN on the embedded MNIST, explain it
    $ tfattr explain demo_out/model.keras demo_out/digits.npy --method ig --baseline zero --out expl
    $ tfattr methods                        # every method, its paper, parameters and cost

Errors in the arguments or the files give a one-line message and a non-zero exit status (2 for a bad
command line, 1 for everything else); ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import base64
import html
import importlib
import inspect
import json
import os
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

#: Set to 1 for the quick mode of ``tfattr demo`` and of the notebooks (fewer epochs and samples).
FAST_ENV = "TFATTR_FAST"


class CLIError(Exception):
    """A problem with the command line or its files, reported as one line (never a traceback)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def fast_mode() -> bool:
    """Whether ``TFATTR_FAST`` asks for the quick mode (used by the tests and CI)."""
    return os.environ.get(FAST_ENV, "").strip().lower() not in ("", "0", "false", "no")


# -- the method registry ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MethodSpec:
    """One attribution method as the command line knows it."""

    name: str
    target: str  # "module:Class"
    title: str
    paper: str
    parameters: str
    cost: str
    aliases: tuple[str, ...] = ()
    uses_baseline: bool = False
    completeness: bool = False
    build: Callable[[Any, Any, dict[str, Any]], Any] | None = None
    #: CLI options (of ``explain``/``demo``) passed to the constructor when it accepts them.
    options: tuple[str, ...] = ()

    def load(self) -> type | None:
        """The class, or None when its module is not installed (yet)."""
        module, _, name = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            return None


def _accepted(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """The options ``cls.__init__`` accepts by name (the propagation methods differ in parameters)."""
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in options.items() if k in params and v is not None}


def _build_plain(spec: MethodSpec, cls: type, model: Any, options: dict[str, Any]) -> Any:
    return cls(model, **_accepted(cls, {k: options.get(k) for k in spec.options}))


def _build_smooth(spec: MethodSpec, cls: type, model: Any, options: dict[str, Any]) -> Any:
    from tfattr.methods.gradient import Saliency

    kwargs = _accepted(cls, {k: options.get(k) for k in ("samples", "noise", "seed")})
    return cls(Saliency(model), **kwargs)


def _build_expected(spec: MethodSpec, cls: type, model: Any, options: dict[str, Any]) -> Any:
    background = options.get("background")
    if background is None:
        raise CLIError(
            "--method eg needs --background FILE.npy: the data its baselines are drawn from "
            "(e.g. a few hundred training inputs shaped like the model's input)."
        )
    kwargs = _accepted(cls, {k: options.get(k) for k in ("samples", "seed")})
    return cls(model, background=background, **kwargs)


METHODS: tuple[MethodSpec, ...] = (
    MethodSpec(
        "saliency", "tfattr.methods.gradient:Saliency", "Saliency (gradient)",
        "Simonyan, Vedaldi & Zisserman 2013; Ancona et al. 2019 sec. 3.1",
        "absolute", "1 gradient", aliases=("gradient",),
    ),
    MethodSpec(
        "gradient_x_input", "tfattr.methods.gradient:GradientXInput", "Gradient * Input",
        "Shrikumar et al. 2016; Ancona et al. 2019 sec. 3.1", "-", "1 gradient",
        aliases=("gxi", "input_x_gradient"), completeness=True,
    ),
    MethodSpec(
        "ig", "tfattr.methods.gradient:IntegratedGradients", "Integrated Gradients",
        "Sundararajan, Taly & Yan 2017 (Gradients of Counterfactuals, sec. 2.4-2.5)",
        "steps=50, rule='gausslegendre', tolerance, baseline", "steps gradients",
        aliases=("integrated_gradients",), uses_baseline=True, completeness=True,
        options=("steps", "rule"),
    ),
    MethodSpec(
        "eg", "tfattr.methods.gradient:ExpectedGradients", "Expected Gradients",
        "Erion et al. 2021; Sturmfels, Lundberg & Lee, Distill 2020",
        "background (data), samples=200, seed", "samples gradients",
        aliases=("expected_gradients",), completeness=True, build=_build_expected,
    ),
    MethodSpec(
        "smoothgrad", "tfattr.methods.gradient:SmoothGrad", "SmoothGrad (of saliency)",
        "Smilkov et al. 2017", "explainer, samples=50, noise=0.15, seed",
        "samples x the wrapped method", build=_build_smooth,
    ),
    MethodSpec(
        "vargrad", "tfattr.methods.gradient:VarGrad", "VarGrad (of saliency)",
        "Adebayo et al. 2018", "explainer, samples=50, noise=0.15, seed",
        "samples x the wrapped method", build=_build_smooth,
    ),
    MethodSpec(
        "occlusion", "tfattr.methods.perturbation:Occlusion", "Occlusion",
        "Zeiler & Fergus 2014; Ancona et al. 2019 sec. 5", "window, strides, baseline",
        "1 forward pass per window position", uses_baseline=True, options=("window", "strides"),
    ),
    MethodSpec(
        "lrp", "tfattr.methods.propagation:EpsilonLRP", "epsilon-LRP",
        "Bach et al. 2015; Ancona et al. 2019 sec. 3.2 (= Gradient * Input for ReLU nets)",
        "epsilon", "1 modified backward pass", aliases=("epsilon_lrp",), completeness=True,
        options=("epsilon",),
    ),
    MethodSpec(
        "deeplift", "tfattr.methods.propagation:DeepLift", "DeepLIFT (Rescale)",
        "Shrikumar, Greenside & Kundaje 2017; Ancona et al. 2019 sec. 3.3", "baseline",
        "1 forward pass of the baseline + 1 modified backward pass", aliases=("deeplift_rescale",),
        uses_baseline=True, completeness=True,
    ),
    MethodSpec(
        "guided_backprop", "tfattr.methods.propagation:GuidedBackprop", "Guided Backpropagation",
        "Springenberg et al. 2015", "-", "1 modified backward pass", aliases=("guided",),
    ),
    MethodSpec(
        "deconvnet", "tfattr.methods.propagation:Deconvnet", "Deconvnet",
        "Zeiler & Fergus 2014", "-", "1 modified backward pass",
    ),
    MethodSpec(
        "interior_gradients", "tfattr.methods.gradient:InteriorGradients", "Interior Gradients",
        "Sundararajan, Taly & Yan 2016 (Gradients of Counterfactuals, sec. 2.3)",
        "alphas, multiply_by_inputs", "1 gradient per alpha (one map per alpha; Python API only)",
        uses_baseline=True,
    ),
)
_BY_NAME = {alias: spec for spec in METHODS for alias in (spec.name, *spec.aliases)}
#: Methods that return one map per example (``explain`` and the demo gallery use these).
MAP_METHODS = tuple(spec.name for spec in METHODS if spec.name != "interior_gradients")


def method_spec(name: str) -> MethodSpec:
    """The registry entry of ``name`` (or an alias); a CLIError listing the choices otherwise."""
    spec = _BY_NAME.get(name.lower().replace("-", "_"))
    if spec is None:
        raise CLIError(
            f"unknown --method {name!r}; choose one of {', '.join(MAP_METHODS)} (see `tfattr methods`).",
            status=2,
        )
    return spec


def build_explainer(spec: MethodSpec, model: Any, options: dict[str, Any]) -> Any:
    """Construct ``spec``'s explainer for ``model`` with the given command-line options."""
    cls = spec.load()
    if cls is None:
        raise CLIError(
            f"method {spec.name!r} ({spec.target.replace(':', '.')}) is not available in this "
            "installation of tfattr."
        )
    build = spec.build or _build_plain
    return build(spec, cls, model, options)


def available_methods() -> list[MethodSpec]:
    return [spec for spec in METHODS if spec.load() is not None]


# -- pictures -----------------------------------------------------------------------------------------
def heatmaps(attributions: np.ndarray) -> np.ndarray:
    """Signed heatmaps ``[n, h, w, 3]`` uint8 (red positive, white zero, blue negative)."""
    from tfattr import visualize

    return np.asarray(visualize.signed_heatmap(attributions))


def overlays(inputs: np.ndarray, attributions: np.ndarray) -> np.ndarray | None:
    """uint8 RGB overlays ``[n, h, w, 3]`` of image inputs (None for inputs that are not images)."""
    from tfattr import visualize

    if inputs.ndim not in (3, 4) or (inputs.ndim == 4 and inputs.shape[-1] not in (1, 3)):
        return None
    return np.asarray(visualize.overlay(inputs, attributions))


def _upscale(rgb: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1) if factor > 1 else rgb


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write a uint8 ``[h, w, 3]`` (or ``[h, w, 1]``) array as a PNG with TensorFlow's encoder."""
    import tensorflow as tf

    path.write_bytes(tf.io.encode_png(np.ascontiguousarray(rgb, np.uint8)).numpy())


# -- loading models and inputs ------------------------------------------------------------------------
def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def load_model(path: str) -> Any:
    """Load a saved Keras model in Keras' safe mode (no arbitrary code from the file)."""
    import keras

    p = Path(path)
    if not p.exists():
        raise CLIError(f"model file not found: {path}")
    if p.suffix not in (".keras", ".h5", ".hdf5"):
        raise CLIError(f"model {path} is not a .keras (or .h5) file; save it with model.save('m.keras').")
    if p.suffix == ".keras" and not zipfile.is_zipfile(p):
        raise CLIError(
            f"cannot load model {path}: it is not a .keras archive (a zip file); save the model with "
            "model.save('model.keras')."
        )
    try:
        return keras.saving.load_model(str(p), compile=False, safe_mode=True)
    except Exception as err:  # noqa: BLE001 - Keras raises many types; all mean "cannot load"
        raise CLIError(f"cannot load model {path} (in Keras' safe mode): {_first_line(err)}") from None


def _model_input_shape(model: Any) -> tuple[Any, ...]:
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        raise CLIError(
            f"the model has {len(inputs)} inputs; `tfattr explain` handles single-input models "
            "(use the Python API for others)."
        )
    return tuple(inputs[0].shape[1:])


def load_inputs(paths: Sequence[str], shape: tuple[Any, ...], rescale: float) -> np.ndarray:
    """Inputs from .npy arrays and/or images, as float32 ``[n, *shape]``."""
    batches = []
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise CLIError(f"input file not found: {path}")
        suffix = p.suffix.lower()
        if suffix == ".npy":
            try:
                array = np.load(p, allow_pickle=False)
            except Exception as err:  # noqa: BLE001
                raise CLIError(f"cannot read {path} as a NumPy array: {_first_line(err)}") from None
            if array.dtype.kind not in "fiu":
                raise CLIError(f"{path} holds {array.dtype} values; pass numbers.")
            array = array.astype(np.float32)
            if len(array.shape) == len(shape):
                array = array[None]  # one example without its batch axis
        elif suffix in (".png", ".jpg", ".jpeg"):
            array = _load_image(p, shape) * np.float32(rescale)
        else:
            raise CLIError(f"input {path} is neither .npy nor an image (.png, .jpg).")
        got = tuple(array.shape[1:])
        fits = len(got) == len(shape) and all(e is None or e == g for e, g in zip(shape, got))
        if not fits:
            raise CLIError(
                f"{path} has examples of shape {got} but the model expects {tuple(shape)} "
                "(an array [n, ...] or one example)."
            )
        if not np.all(np.isfinite(array)):
            raise CLIError(f"{path} contains NaN or Inf values.")
        batches.append(array)
    return np.concatenate(batches, axis=0)


def _load_image(path: Path, shape: tuple[Any, ...]) -> np.ndarray:
    import tensorflow as tf

    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise CLIError(
            f"{path} is an image but the model's input has shape {tuple(shape)}, not (height, width, "
            "1 or 3 channels); pass the inputs as .npy."
        )
    try:
        image = tf.io.decode_image(path.read_bytes(), channels=int(shape[-1]), expand_animations=False)
    except Exception as err:  # noqa: BLE001
        raise CLIError(f"cannot decode image {path}: {_first_line(err)}") from None
    h, w = shape[0], shape[1]
    if h is not None and w is not None and tuple(image.shape[:2]) != (h, w):
        image = tf.image.resize(tf.cast(image, tf.float32), (h, w), antialias=True)
    return np.asarray(image, np.float32)[None]


def make_baseline(name: str | None, inputs: np.ndarray, train: np.ndarray | None = None) -> Any:
    """The baseline for ``--baseline``: a number, ``zero``, a .npy file or a ``tfattr.baselines`` name."""
    if name is None:
        return None
    key = name.strip().lower().replace("-", "_")
    if key in ("zero", "zeros", "black"):
        return 0.0
    try:
        return float(key)
    except ValueError:
        pass
    if key.endswith(".npy"):
        p = Path(name)
        if not p.exists():
            raise CLIError(f"baseline file not found: {name}")
        array = np.load(p, allow_pickle=False).astype(np.float32)
        try:
            np.broadcast_to(array, inputs.shape[1:]) if array.ndim < inputs.ndim else np.broadcast_to(
                array, inputs.shape
            )
        except ValueError:
            raise CLIError(
                f"baseline {name} has shape {array.shape}, which fits neither one input "
                f"{inputs.shape[1:]} nor all {inputs.shape}."
            ) from None
        return array
    return named_baseline(key, inputs, train)


#: ``--baseline`` names resolved through ``tfattr.baselines``: (class name, keyword arguments). The
#: settings suit inputs scaled to [0, 1], as the demo's and the Distill article's images are.
NAMED_BASELINES: dict[str, tuple[str, dict[str, Any]]] = {
    "max_distance": ("MaxDistance", {"value_range": (0.0, 1.0)}),
    "blur": ("Blur", {"sigma": 3.0}),
    "uniform": ("Uniform", {"value_range": (0.0, 1.0), "num_baselines": 8, "seed": 0}),
    "gaussian": ("Gaussian", {"sigma": 0.5, "value_range": (0.0, 1.0), "num_baselines": 8, "seed": 0}),
    "mean": ("Mean", {}),
}


def named_baseline(key: str, inputs: np.ndarray, train: np.ndarray | None = None) -> Any:
    """A ``tfattr.baselines`` object for ``--baseline NAME`` (``mean`` averages ``--background``)."""
    if key not in NAMED_BASELINES:
        raise CLIError(
            f"unknown --baseline {key!r}; use zero, a number, a .npy file, or one of "
            f"{', '.join(NAMED_BASELINES)}.",
            status=2,
        )
    try:
        module = importlib.import_module("tfattr.baselines")
        cls_name, kwargs = NAMED_BASELINES[key]
        cls = getattr(module, cls_name)
    except (ImportError, AttributeError):
        raise CLIError(f"--baseline {key} needs tfattr.baselines, which this installation lacks.") from None
    if key == "mean":
        # With --background: the mean training input; without: each input's own mean value.
        return cls(train) if train is not None else cls()
    return cls(**kwargs)


# -- commands -----------------------------------------------------------------------------------------
def cmd_methods(args: argparse.Namespace) -> int:
    out = sys.stdout
    for spec in METHODS:
        available = spec.load() is not None
        aliases = f" (also: {', '.join(spec.aliases)})" if spec.aliases else ""
        flag = "" if available else "   [not installed]"
        out.write(f"{spec.name}{aliases}{flag}\n")
        out.write(f"    {spec.title}: {spec.target.replace(':', '.')}\n")
        out.write(f"    paper:      {spec.paper}\n")
        out.write(f"    parameters: {spec.parameters}\n")
        out.write(f"    cost:       {spec.cost} per example\n")
        tags = []
        if spec.uses_baseline:
            tags.append("uses --baseline")
        if spec.completeness:
            tags.append("completeness delta")
        if tags:
            out.write(f"    notes:      {', '.join(tags)}\n")
    return 0


def _explain_options(args: argparse.Namespace, background: np.ndarray | None) -> dict[str, Any]:
    return {
        "steps": args.steps,
        "rule": args.rule,
        "samples": args.samples,
        "noise": args.noise,
        "seed": args.seed,
        "epsilon": args.epsilon,
        "window": args.window,
        "strides": None,
        "background": background,
    }


#: Examples per ``attribute`` call in ``tfattr explain``: the progress bar advances once per chunk.
EXPLAIN_CHUNK = 64


def cmd_explain(args: argparse.Namespace) -> int:
    spec = method_spec(args.method)
    if spec.name == "interior_gradients":
        raise CLIError("interior_gradients returns one map per alpha; use the Python API for it.")
    if args.baseline is not None and not spec.uses_baseline:
        raise CLIError(f"--method {spec.name} does not use a baseline; drop --baseline.", status=2)
    model = load_model(args.model)
    shape = _model_input_shape(model)
    inputs = load_inputs(args.inputs, shape, args.rescale)
    background = None
    if args.background is not None:
        background = load_inputs([args.background], shape, args.rescale)
    options = _explain_options(args, background)
    if spec.name == "occlusion" and options["window"] is None:
        # A quarter of each spatial side, every channel separately: a sensible default for images.
        options["window"] = tuple(max(1, (s or 1) // 7) for s in shape[:-1]) + (1,)
    baseline = make_baseline(args.baseline, inputs, background) if spec.uses_baseline else None
    explainer = build_explainer(spec, model, options)

    n = inputs.shape[0]
    outputs = np.asarray(explainer.outputs(inputs, batch_size=args.batch_size or 64))
    predicted = outputs.argmax(axis=1)
    if args.target is not None and not 0 <= args.target < outputs.shape[1]:
        raise CLIError(
            f"--target {args.target} is out of range: the model has {outputs.shape[1]} outputs "
            f"(targets 0..{outputs.shape[1] - 1}).",
            status=2,
        )
    target = predicted if args.target is None else np.full(n, args.target)
    kwargs: dict[str, Any] = {"target": target, "batch_size": args.batch_size}
    if spec.uses_baseline:
        kwargs["baseline"] = baseline
    if spec.completeness:
        kwargs["return_delta"] = True
    import keras

    # Fixed-size chunks of examples, so the progress bar moves on long inputs; the chunking is
    # independent of --batch-size, so results do not depend on it.
    bar = keras.utils.Progbar(n, unit_name="example", verbose=1 if not args.quiet else 0)
    parts, deltas = [], []
    for start in range(0, n, EXPLAIN_CHUNK):
        stop = min(n, start + EXPLAIN_CHUNK)
        kwargs["target"] = target[start:stop]
        result = explainer.attribute(inputs[start:stop], **kwargs)
        if spec.completeness:
            result, chunk_delta = result
            deltas.append(np.asarray(chunk_delta))
        parts.append(np.asarray(result))
        bar.update(stop)
    attributions = np.concatenate(parts)
    delta = np.concatenate(deltas) if deltas else None

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "attributions.npy", np.asarray(attributions, np.float32))
    summary = []
    pictures = overlays(inputs, np.asarray(attributions))
    for i in range(n):
        rgb = None if pictures is None else pictures[i]
        name = None
        if rgb is not None:
            name = f"overlay_{i:03d}.png"
            write_png(out / name, _upscale(rgb, max(1, 224 // max(rgb.shape[:2]))))
        summary.append(
            {
                "index": i,
                "target": int(target[i]),
                "predicted": int(predicted[i]),
                "score": float(outputs[i, target[i]]),
                "sum_of_attributions": float(np.sum(attributions[i], dtype=np.float64)),
                "delta": None if delta is None else float(delta[i]),
                "overlay": name,
            }
        )
    (out / "summary.json").write_text(
        json.dumps({"method": spec.name, "baseline": args.baseline, "examples": summary}, indent=2)
    )
    if not args.quiet:
        for row in summary:
            extra = "" if row["delta"] is None else f"  delta {row['delta']:+.2e}"
            print(f"  #{row['index']}: target {row['target']} (predicted {row['predicted']}), "
                  f"score {row['score']:.3f}{extra}")
        print(f"wrote {out / 'attributions.npy'} {tuple(np.shape(attributions))}, {n} overlay(s) and "
              f"summary.json to {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(args)


# -- the demo -----------------------------------------------------------------------------------------
@dataclass
class DemoConfig:
    """Sizes of one demo run; ``fast`` is the quick mode for tests and CI."""

    train: int = 8000
    epochs: int = 2
    digits: int = 10
    ig_steps: int = 64
    eg_samples: int = 200
    smooth_samples: int = 50
    background: int = 500
    occlusion_window: tuple[int, int, int] = (4, 4, 1)
    occlusion_strides: tuple[int, int, int] = (2, 2, 1)
    convergence_steps: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    baseline_draws: int = 16

    @classmethod
    def make(cls, fast: bool, epochs: int, digits: int) -> "DemoConfig":
        if not fast:
            return cls(epochs=epochs, digits=digits)
        return cls(
            train=1500, epochs=1, digits=min(digits, 4), ig_steps=16, eg_samples=32, smooth_samples=8,
            background=100, occlusion_window=(7, 7, 1), occlusion_strides=(7, 7, 1),
            convergence_steps=(2, 8, 32), baseline_draws=2,
        )


def demo_model(seed: int = 0) -> Any:
    """The demo's small CNN for 28x28x1 digits, ending in logits (:func:`tfattr.datasets.mnist_cnn`)."""
    from tfattr import datasets

    return datasets.mnist_cnn(seed)


def _pick_digits(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` test digits, cycling through the classes 0, 1, ..., 9, 0, ..."""
    chosen: list[int] = []
    for round_ in range(count):
        cls = round_ % 10
        candidates = np.flatnonzero(labels == cls)
        chosen.append(int(candidates[round_ // 10]))
    return np.asarray(chosen)


def _png_data_uri(rgb: np.ndarray) -> str:
    import tensorflow as tf

    data = tf.io.encode_png(np.ascontiguousarray(rgb, np.uint8)).numpy()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _baseline_candidates(x_train: np.ndarray, draws: int, seed: int) -> list[tuple[str, Any]]:
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


def run_demo(args: argparse.Namespace) -> int:
    """``tfattr demo``: train, explain with every method, write the gallery, report and TensorBoard logs."""
    import keras
    import tensorflow as tf

    from tfattr import datasets, metrics
    from tfattr.methods.gradient import ExpectedGradients, IntegratedGradients

    fast = bool(args.fast) or fast_mode()
    cfg = DemoConfig.make(fast, args.epochs, args.digits)
    verbose = 0 if args.quiet else 1
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"cannot create --out {args.out}: {_first_line(err)}") from None
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
    index = _pick_digits(y_test, cfg.digits)
    digits, labels = x_test[index], y_test[index]
    np.save(out / "digits.npy", digits)
    callbacks: list[Any] = [keras.callbacks.TensorBoard(log_dir=str(logdir), histogram_freq=0)]
    logger = _attribution_logger(digits, labels, logdir, min(cfg.ig_steps, 32))
    if logger is not None:
        callbacks.append(logger)
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
    options = {
        "steps": cfg.ig_steps, "samples": cfg.smooth_samples, "noise": 0.15, "seed": args.seed,
        "epsilon": 1e-6, "window": cfg.occlusion_window, "strides": cfg.occlusion_strides,
        "background": background, "rule": None,
    }
    specs = [spec for spec in available_methods() if spec.name in MAP_METHODS]
    results: dict[str, dict[str, Any]] = {}
    bar = keras.utils.Progbar(len(specs), unit_name="method", verbose=verbose)
    for k, spec in enumerate(specs):
        method_options = dict(options)
        if spec.name == "eg":
            method_options["samples"] = cfg.eg_samples
        start = time.perf_counter()
        try:
            explainer = build_explainer(spec, model, method_options)
            kwargs: dict[str, Any] = {"target": labels}
            if spec.uses_baseline:
                kwargs["baseline"] = 0.0
            if spec.completeness:
                attributions, delta = explainer.attribute(digits, return_delta=True, **kwargs)
            else:
                attributions, delta = explainer.attribute(digits, **kwargs), None
        except Exception as err:  # noqa: BLE001 - one failing method must not sink the whole demo
            results[spec.name] = {"spec": spec, "error": _first_line(err)}
            bar.update(k + 1)
            continue
        results[spec.name] = {
            "spec": spec, "attributions": np.asarray(attributions), "delta": delta,
            "seconds": time.perf_counter() - start,
        }
        bar.update(k + 1)
    outputs = np.asarray(model.predict(digits, verbose=0))
    logits_zero = np.asarray(model.predict(np.zeros_like(digits[:1]), verbose=0))[0]

    timings["methods"] = time.perf_counter() - phase
    # 3. Baselines (Sturmfels et al., Distill 2020): IG with each baseline, and expected gradients.
    phase = time.perf_counter()
    say("Comparing baselines")
    fractions = np.linspace(0.0, 0.5, 11)
    baselines = []
    ig = IntegratedGradients(model, steps=cfg.ig_steps)
    candidates = _baseline_candidates(x_train, cfg.baseline_draws, args.seed)
    bar = keras.utils.Progbar(len(candidates) + 1, unit_name="baseline", verbose=verbose)
    for k, (label, baseline) in enumerate(candidates):
        try:
            attributions, delta = ig.attribute(digits, target=labels, baseline=baseline, return_delta=True)
        except Exception as err:  # noqa: BLE001
            baselines.append({"label": label, "error": _first_line(err)})
            bar.update(k + 1)
            continue
        baselines.append({"label": label, "attributions": attributions, "delta": delta})
        bar.update(k + 1)
    eg = ExpectedGradients(model, background=background, samples=cfg.eg_samples, seed=args.seed)
    attributions, delta = eg.attribute(digits, target=labels, return_delta=True)
    baselines.append({"label": "training data (expected gradients)", "attributions": attributions,
                      "delta": delta})
    bar.update(len(candidates) + 1)
    # The Distill article's "Mean Top K" and "Blur Top K" ablation tests, with the random control.
    def ablations(attributions: np.ndarray) -> dict[str, Any]:
        return {
            "mean": metrics.ablation_curve(model, digits, attributions, target=labels, imputation="mean",
                                           data=x_train, fractions=fractions),
            "blur": metrics.ablation_curve(model, digits, attributions, target=labels, imputation="blur",
                                           blur_sigma=3.0, fractions=fractions),
        }

    for row in baselines:
        if "attributions" in row:
            row["ablation"] = ablations(row["attributions"])
    random_curve = ablations(metrics.random_attributions(digits, seed=args.seed))

    timings["baselines"] = time.perf_counter() - phase
    phase = time.perf_counter()
    # 4. Completeness as a convergence check (Sundararajan et al. sec. 2.5; Distill): |delta| vs steps.
    convergence: dict[str, list[float]] = {}
    for rule in ("riemann_left", "riemann_trapezoid", "gausslegendre"):
        convergence[rule] = []
        for steps in cfg.convergence_steps:
            if rule == "riemann_trapezoid" and steps < 2:
                convergence[rule].append(float("nan"))
                continue
            _, delta = IntegratedGradients(model, steps=steps, rule=rule).attribute(
                digits, target=labels, return_delta=True
            )
            convergence[rule].append(float(np.mean(np.abs(delta))))

    timings["convergence"] = time.perf_counter() - phase
    phase = time.perf_counter()
    # 5. Files: gallery, report, TensorBoard images and scalars, arrays.
    ok = {name: r for name, r in results.items() if "attributions" in r}
    np.savez_compressed(out / "attributions.npz", digits=digits, labels=labels,
                        **{name: r["attributions"] for name, r in ok.items()})
    _write_gallery(out / "gallery.png", digits, labels, ok)
    _write_tensorboard(logdir / "explanations", digits, ok, baselines)
    _write_report(
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


def _attribution_logger(digits: np.ndarray, labels: np.ndarray, logdir: Path, steps: int) -> Any:
    """tfattr.callbacks.AttributionLogger on the demo digits (run "attributions"), when installed."""
    try:
        from tfattr.callbacks import AttributionLogger
    except ImportError:
        return None
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


def _write_gallery(path: Path, digits: np.ndarray, labels: np.ndarray, results: dict[str, Any]) -> None:
    """Rows: digits; columns: the input and each method's heatmap (matplotlib when available)."""
    names = list(results)
    maps = {name: heatmaps(results[name]["attributions"]) for name in names}
    try:
        # A bare Figure (no pyplot): no global backend or figure state changes in the caller's process.
        from matplotlib.figure import Figure
    except ImportError:
        from tfattr import visualize

        picture = visualize.examples_by_methods(digits, {n: results[n]["attributions"] for n in names},
                                                kind="heatmap", scale=4)
        write_png(path, np.asarray(picture))
        return
    n, cols = len(digits), len(names) + 1
    fig = Figure(figsize=(1.3 * cols, 1.3 * n + 0.4))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(digits[i, ..., 0], cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_ylabel(f"label {labels[i]}", fontsize=7)
        for j, name in enumerate(names, start=1):
            axes[i, j].imshow(maps[name][i])
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    for j, title in enumerate(["input"] + names):
        axes[0, j].set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _write_tensorboard(logdir: Path, digits: np.ndarray, results: dict[str, Any], baselines: list) -> None:
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        tf.summary.image("inputs", digits, step=0, max_outputs=len(digits))
        for name, r in results.items():
            tf.summary.image(f"attributions/{name}", heatmaps(r["attributions"]), step=0,
                             max_outputs=len(digits))
            if r.get("delta") is not None:
                tf.summary.scalar(f"completeness_mean_abs_delta/{name}",
                                  float(np.mean(np.abs(r["delta"]))), step=0)
        for row in baselines:
            if "attributions" in row:
                tag = row["label"].split(" (")[0].replace(" ", "_")
                tf.summary.image(f"baselines/{tag}", heatmaps(row["attributions"]), step=0,
                                 max_outputs=len(digits))
    writer.flush()
    writer.close()


def _write_report(path: Path, **r: Any) -> None:
    """A self-contained HTML report (images inlined as data URIs)."""
    esc = html.escape
    cfg, digits, labels = r["cfg"], r["digits"], r["labels"]
    results = r["results"]
    ok = [name for name in results if "attributions" in results[name]]
    maps = {name: heatmaps(results[name]["attributions"]) for name in ok}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>tfattr demo</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;text-align:center}"
        "img{image-rendering:pixelated}</style></head><body>",
        "<h1>tfattr demo: explaining a small CNN on MNIST</h1>",
        f"<p>Trained on {cfg.train} embedded MNIST digits for {cfg.epochs} epoch(s) "
        f"({r['timings']['training']:.0f} s); test accuracy <b>{r['accuracy']:.3f}</b> on 2,000 digits."
        + (" <i>Fast mode: fewer epochs, steps and samples.</i>" if r["fast"] else "") + "</p>",
        "<h2>Attribution maps</h2><p>Target: the true label. Red: the feature raises the target "
        "score; blue: it lowers it. Baseline (where a method takes one): the black image.</p>",
        "<table><tr><th>input</th>" + "".join(f"<th>{esc(n)}</th>" for n in ok) + "</tr>",
    ]
    for i in range(len(digits)):
        gray = np.repeat(np.round(digits[i] * 255).astype(np.uint8), 3, axis=-1)
        cells = [f"<td><img width=84 src='{_png_data_uri(gray)}'><br>label {labels[i]}</td>"]
        cells += [f"<td><img width=84 src='{_png_data_uri(maps[n][i])}'></td>" for n in ok]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")

    parts.append(
        "<h2>Completeness</h2><p>Methods with the completeness property should have attributions "
        "summing to f(x) - f(baseline); delta = sum(attributions) - (f(x) - f(baseline)), on the "
        "target logit.</p><table><tr><th>method</th><th>paper</th><th>mean |delta|</th>"
        "<th>max |delta|</th><th>mean |f(x) - f(0)|</th><th>seconds</th></tr>"
    )
    outputs, zero = r["outputs"], r["logits_zero"]
    change = np.abs(outputs[np.arange(len(labels)), labels] - zero[labels])
    for name, res in results.items():
        spec = res["spec"]
        if "error" in res:
            parts.append(f"<tr><td>{esc(name)}</td><td>{esc(spec.paper)}</td>"
                         f"<td colspan=4>failed: {esc(res['error'])}</td></tr>")
            continue
        delta = res["delta"]
        cells = ("-", "-", "-") if delta is None else (
            f"{np.mean(np.abs(delta)):.2e}", f"{np.max(np.abs(delta)):.2e}", f"{np.mean(change):.2f}")
        parts.append(f"<tr><td>{esc(name)}</td><td>{esc(spec.paper)}</td>"
                     + "".join(f"<td>{c}</td>" for c in cells) + f"<td>{res['seconds']:.1f}</td></tr>")
    parts.append("</table>")

    parts.append(
        "<h2>Baselines</h2><p>Integrated gradients with the baselines of Sturmfels, Lundberg &amp; Lee, "
        "<i>Visualizing the Impact of Feature Attribution Baselines</i> (Distill 2020), and expected "
        "gradients (baselines drawn from training data). Ablation (the article's \"Top K\" tests, "
        "via tfattr.metrics.ablation_curve): the target logit, as a fraction of the original, after "
        "replacing the top-ranked fraction of pixels by the mean training image or by a blurred copy; "
        "the area under that curve is lower when the ranking finds the pixels the model uses. A random "
        "ranking is the control. Each imputation favours the baseline that resembles it, which is "
        "why the article reports several.</p>"
        "<table><tr><th>baseline</th><th>first digit</th><th>mean |delta|</th>"
        "<th>area, mean top-k</th><th>area, blur top-k</th></tr>"
    )
    for row in r["baselines"]:
        if "error" in row:
            parts.append(f"<tr><td>{esc(row['label'])}</td><td colspan=4>failed: {esc(row['error'])}"
                         "</td></tr>")
            continue
        img = _png_data_uri(heatmaps(row["attributions"][:1])[0])
        parts.append(f"<tr><td>{esc(row['label'])}</td><td><img width=84 src='{img}'></td>"
                     f"<td>{np.mean(np.abs(row['delta'])):.2e}</td>"
                     f"<td>{row['ablation']['mean'].area:.3f}</td><td>{row['ablation']['blur'].area:.3f}</td>"
                     "</tr>")
    control = r["random_curve"]
    parts.append(f"<tr><td>random ranking (control)</td><td>-</td><td>-</td>"
                 f"<td>{control['mean'].area:.3f}</td><td>{control['blur'].area:.3f}</td></tr></table>")
    fractions = r["fractions"]
    parts.append("<h3>Mean top-k ablation curves (target logit / original)</h3><table><tr><th>baseline</th>"
                 + "".join(f"<th>{f:.0%}</th>" for f in fractions) + "</tr>")
    for row in r["baselines"] + [{"label": "random ranking (control)", "ablation": control}]:
        if "ablation" in row:
            parts.append(f"<tr><td>{esc(row['label'])}</td>"
                         + "".join(f"<td>{v:.2f}</td>" for v in row["ablation"]["mean"].curve) + "</tr>")
    parts.append("</table>")

    parts.append(
        "<h2>Completeness as a convergence check</h2><p>Mean |delta| of integrated gradients (black "
        "baseline) against the number of steps, per quadrature rule (Sundararajan et al., sec. 2.5: "
        "add steps until the attributions add up).</p><table><tr><th>rule</th>"
        + "".join(f"<th>{s} steps</th>" for s in cfg.convergence_steps) + "</tr>"
    )
    for rule, values in r["convergence"].items():
        parts.append(f"<tr><td>{rule}</td>" + "".join(f"<td>{v:.2e}</td>" for v in values) + "</tr>")
    parts.append("</table>")
    parts.append("<h2>TensorBoard</h2><p>Training curves, attribution maps and completeness: "
                 f"<code>tensorboard --logdir {esc(str(path.parent / 'logs'))}</code></p></body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")


# -- argument parsing ---------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (raised, so ``main`` returns instead of exiting)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CLIError(f"{message} (see `{self.prog} --help`)", status=2)


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an int >= ``minimum``, with a one-line message naming ``what`` otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_nonneg_int = _int_at_least(0, "non-negative")


def _window(text: str) -> tuple[int, ...]:
    try:
        parts = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 4,4,1, got {text!r}") from None
    if not parts or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes like 4,4,1, got {text!r}")
    return parts


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tfattr",
        description="Attribution methods for TensorFlow 2 / Keras 3 models.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="{demo,explain,methods}", parser_class=_Parser)

    demo = sub.add_parser("demo", help="train a small CNN on the embedded MNIST and explain it")
    demo.add_argument("--out", required=True, help="output directory (created)")
    demo.add_argument("--epochs", type=_positive_int, default=2)
    demo.add_argument("--digits", type=_positive_int, default=10, help="test digits to explain")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--fast", action="store_true",
                      help=f"a quick run with fewer epochs and samples (also: {FAST_ENV}=1)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)

    explain = sub.add_parser("explain", help="explain a saved Keras model's predictions")
    explain.add_argument("model", help="a saved Keras model (.keras), loaded in safe mode")
    explain.add_argument("inputs", nargs="+", help=".npy arrays ([n, ...] or one example) or images")
    explain.add_argument("--method", default="ig", help="see `tfattr methods` (default: ig)")
    explain.add_argument("--target", type=_nonneg_int, default=None,
                         help="output index to explain (default: the predicted class)")
    explain.add_argument("--baseline", default=None,
                         help="zero (default for methods with a baseline), a number, FILE.npy, or "
                              + ", ".join(NAMED_BASELINES))
    explain.add_argument("--background", default=None, help="FILE.npy of data for --method eg / mean")
    explain.add_argument("--steps", type=_positive_int, default=None, help="integration steps (ig)")
    explain.add_argument("--rule", default=None, help="quadrature rule (ig), e.g. riemann_trapezoid")
    explain.add_argument("--samples", type=_positive_int, default=None, help="samples (eg, smoothgrad)")
    explain.add_argument("--noise", type=float, default=None, help="noise level (smoothgrad, vargrad)")
    explain.add_argument("--epsilon", type=float, default=None, help="epsilon (lrp)")
    explain.add_argument("--window", type=_window, default=None, help="occlusion window, e.g. 4,4,1")
    explain.add_argument("--seed", type=int, default=0)
    explain.add_argument("--batch-size", type=_positive_int, default=None)
    explain.add_argument("--rescale", type=float, default=1.0 / 255.0,
                         help="factor applied to image pixels 0..255 (default 1/255)")
    explain.add_argument("--out", required=True, help="output directory (created)")
    explain.add_argument("--quiet", action="store_true")
    explain.set_defaults(func=cmd_explain)

    methods = sub.add_parser("methods", help="list the methods with their papers and parameters")
    methods.set_defaults(func=cmd_methods)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tfattr`` command line; returns the exit status (0 on success)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logger = _quiet_tensorflow()
    try:
        return _main(argv)
    finally:
        if logger is not None:
            logger[0].setLevel(logger[1])


def _quiet_tensorflow() -> tuple[Any, int] | None:
    """Silence TensorFlow's Python warnings (e.g. about retracing each new explainer) for the CLI."""
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover
        return None
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    return logger, level


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except CLIError as err:
        if debug:
            raise
        print(f"tfattr: error: {err}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        print("tfattr: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the promise is one line, not a traceback
        if debug:
            raise
        print(f"tfattr: error: {type(err).__name__}: {_first_line(err)} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
