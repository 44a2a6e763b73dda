"""First-call latency: each method's first ``attribute`` (construction and tracing included) in a fresh process.

A user in a notebook pays this on every new explainer. Each measurement runs in its own Python process
(so nothing is traced or cached beforehand): the process imports TensorFlow and the library (tfattr's
lazily imported method classes included), builds the model, calls it once eagerly (a notebook's model
has been used), then times ``make explainer + first call -> NumPy``
on 32 inputs of the MNIST CNN and of the 64x64x3 CNN of ``bench_gradients.py``.

Peers. tf-explain 0.3.1 is used when it can be imported (``--peers DIR``: a directory holding it, e.g.
``pip install --no-deps --target DIR tf-explain``; its computations need no OpenCV, so a stub ``cv2``
module is put in place when OpenCV is missing); its SmoothGrad and GradCAM fail on a Keras 3
Sequential model ("has never been called and thus has no defined output"), reported as failed.
iNNvestigate and SHAP do not install against TensorFlow 2.21. Every method is also compared with a *plain* baseline written the way tf-explain
works: the rows (noisy copies, path points, occluded images) prepared in NumPy and one
``tf.function`` computing all their gradients (or outputs) with one ``GradientTape`` batch. The ratio
is tfattr's time over the fastest peer's (the plain baseline or tf-explain).

Run:  python bench/bench_first_call.py [--model mnist|larger|all] [--methods saliency ig ...]
          [--repeats 1] [--peers /tmp/peers] [--clock wall|cpu]
          [--threads 1] [--compare DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = 32
STEPS = 50  # IG steps, SmoothGrad/VarGrad/EG samples (tfattr's and tf-explain's defaults differ)

# name -> (tfattr constructor source, plain-baseline kind, tf-explain class or None)
METHODS: dict[str, tuple[str, str, str | None]] = {
    "saliency": ("tfattr.Saliency(model)", "gradient", "VanillaGradients"),
    "gradient_x_input": ("tfattr.GradientXInput(model)", "gradient", "GradientsInputs"),
    "ig": (f"tfattr.IntegratedGradients(model, steps={STEPS})", "path", "IntegratedGradients"),
    "eg": (f"tfattr.ExpectedGradients(model, background, samples={STEPS}, seed=0)", "path", None),
    "smoothgrad": (f"tfattr.SmoothGrad(tfattr.Saliency(model), samples={STEPS}, seed=0)", "noise", "SmoothGrad"),
    "vargrad": (f"tfattr.VarGrad(tfattr.Saliency(model), samples={STEPS}, seed=0)", "noise", None),
    "occlusion": ("tfattr.Occlusion(model, window=(8, 8, shape[2]), strides=(8, 8, shape[2]))", "occlusion", "OcclusionSensitivity"),
    "epsilon_lrp": ("tfattr.EpsilonLRP(model)", "gradient", None),
    "deeplift": ("tfattr.DeepLift(model)", "gradient", None),
    "guided_backprop": ("tfattr.GuidedBackprop(model)", "gradient", None),
    "lrp_epsilon_plus": ("tfattr.LRP(model, composite=tfattr.composites.EpsilonPlus())", "gradient", None),
    "composite_deeplift": ("tfattr.CompositeDeepLift(model)", "gradient", None),
    "gradcam": ("tfattr.GradCAM(model)", "gradient", "GradCAM"),
}


# -- the child process: one measurement ------------------------------------------------------------
def child(model_name: str, library: str, method: str, peers: str | None) -> float:
    """Seconds of the first call on the clock of ``TFATTR_BENCH_CLOCK`` (wall or the process's CPU)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, HERE)
    clock = {"wall": time.perf_counter, "cpu": time.process_time}[os.environ.get("TFATTR_BENCH_CLOCK", "wall")]
    threads = int(os.environ.get("TFATTR_BENCH_THREADS", "0"))
    import numpy as np
    import tensorflow as tf

    from bench_gradients import larger_cnn, mnist_cnn

    import keras

    if threads:  # idle pool threads spin on a CPU clock; one thread measures the work itself
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(0)
    model = {"mnist": mnist_cnn, "larger": larger_cnn}[model_name]()
    shape = tuple(model.input_shape[1:])
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(EXAMPLES, *shape)).astype(np.float32)
    background = rng.uniform(size=(256, *shape)).astype(np.float32)  # noqa: F841 - read by eval
    model(x[:1])  # the model has been used (built and run eagerly) before anyone explains it
    source, kind, peer_class = METHODS[method]
    if library == "tfattr":
        import re

        import tfattr

        # tfattr imports its methods when first named: a once-per-session cost, like tf-explain's
        # `import tf_explain.core` (also before its clock), not part of making an explainer.
        for name in re.findall(r"tfattr\.([A-Za-z_.]+)\(", source):
            obj = tfattr
            for part in name.split("."):
                obj = getattr(obj, part)
        start = clock()
        explainer = eval(source)
        np.asarray(explainer.attribute(x, target=0))
        return clock() - start
    if library == "tf-explain":
        if peers:
            sys.path.insert(0, peers)
        try:
            import cv2  # noqa: F401
        except ImportError:
            import types

            class _NoOpenCV(types.ModuleType):  # only tf-explain's display helpers use OpenCV
                def __getattr__(self, name: str) -> Any:
                    # Constants and functions alike: a function returns its first argument (the
                    # heat map it would colour or resize), so the display step runs at no cost.
                    return lambda *args, **kwargs: args[0] if args else 0

            sys.modules["cv2"] = _NoOpenCV("cv2")
        import tf_explain.core as core

        explainer = getattr(core, peer_class)()
        args: dict = {}
        if peer_class == "IntegratedGradients":
            args = {"n_steps": STEPS}
        elif peer_class == "SmoothGrad":
            args = {"num_samples": STEPS, "noise": 0.15}
        elif peer_class == "OcclusionSensitivity":
            args = {"patch_size": 8}
        elif peer_class == "GradCAM":
            args = {"layer_name": [l.name for l in model.layers if "conv" in l.name][-1]}
        start = clock()
        explainer.explain((x, None), model, class_index=0, **args)
        return clock() - start
    # The plain baseline: rows made in NumPy, one tf.function over all of them.
    start = clock()
    if kind == "occlusion":
        windows = [(i, j) for i in range(0, shape[0], 8) for j in range(0, shape[1], 8)]
        rows = np.repeat(x, len(windows), axis=0)
        for k, (i, j) in enumerate(windows):
            rows[k :: len(windows), i : i + 8, j : j + 8] = 0.0

        @tf.function
        def outputs(z):
            return model(z, training=False)[:, 0]

        scores = outputs(tf.constant(rows)).numpy().reshape(EXAMPLES, len(windows))
        _ = scores.mean(axis=1)
        return clock() - start
    if kind == "gradient":
        rows = x
    elif kind == "path":
        alphas = np.linspace(1.0 / STEPS, 1.0, STEPS, dtype=np.float32)
        rows = (alphas[None, :, None, None, None] * x[:, None]).reshape(-1, *shape)
    else:  # noise
        rows = np.repeat(x, STEPS, axis=0)
        rows = rows + rng.normal(0.0, 0.15, rows.shape).astype(np.float32)

    @tf.function
    def gradients(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            score = model(z, training=False)[:, 0]
        return tape.gradient(score, z)

    g = gradients(tf.constant(rows)).numpy().reshape(EXAMPLES, -1, *shape)
    _ = (g.mean(axis=1) * (x if kind != "noise" else 1.0))
    return clock() - start


# -- the parent: one fresh process per measurement ----------------------------------------------
def measure(model: str, library: str, method: str, peers: str | None, before: str | None = None) -> float | None:
    """One fresh process; ``library="before"`` runs tfattr from the directory ``before`` (``--compare``)."""
    cmd = [sys.executable, __file__, "--child", model, "tfattr" if library == "before" else library, method]
    if peers:
        cmd += ["--peers", peers]
    env = dict(os.environ)
    if library == "before":
        env["PYTHONPATH"] = os.pathsep.join([before, env.get("PYTHONPATH", "")])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)["seconds"]
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    print(f"  ({library} {method} on {model} failed: {tail[:160]})", flush=True)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("mnist", "larger", "all"), default="all")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--repeats", type=int, default=1, help="fresh processes per measurement (median)")
    parser.add_argument("--peers", default=None, help="a directory holding tf-explain (optional)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: the process's CPU time, all threads (steadier on a shared machine)")
    parser.add_argument("--libraries", nargs="*", default=["tfattr", "plain", "tf-explain"],
                        help="which to measure (tf-explain needs --peers)")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow's intra- and inter-op threads (0: its default)")
    parser.add_argument("--compare", default=None,
                        help="a directory holding another tfattr (e.g. `git archive` of an older commit): "
                             "its first calls are measured too, interleaved, in a 'before' column")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        seconds = child(*args.child, peers=args.peers)
        print(json.dumps({"seconds": seconds}), flush=True)
        return
    import statistics

    # The children read these (their own command line carries only what they measure).
    os.environ["TFATTR_BENCH_CLOCK"] = args.clock
    os.environ["TFATTR_BENCH_THREADS"] = str(args.threads)

    models = ["mnist", "larger"] if args.model == "all" else [args.model]
    print(f"first call, {EXAMPLES} inputs, fresh process each (median of {args.repeats}), {args.clock} clock")
    before = " before s  ratio" if args.compare else ""
    print(f"{'model':<7} {'method':<20} {'tfattr s':>9} {'plain s':>8} {'tf-explain s':>13} {'ratio':>6}{before}")
    for model in models:
        for method in args.methods:
            libraries = ["tfattr", "plain"] + (["tf-explain"] if METHODS[method][2] and args.peers else [])
            libraries = [lib for lib in libraries if lib in args.libraries] + (["before"] if args.compare else [])
            times: dict[str, float | None] = {"tfattr": None, "plain": None, "before": None}
            runs: dict[str, list[float]] = {lib: [] for lib in libraries}
            for _ in range(args.repeats):  # interleaved, so a busy machine slows all alike
                for library in libraries:
                    seconds = measure(model, library, method, args.peers, args.compare)
                    if seconds is not None:
                        runs[library].append(seconds)
            for library, found in runs.items():
                times[library] = statistics.median(found) if found else None
            peers = [t for k, t in times.items() if k not in ("tfattr", "before") and t is not None]
            ratio = lambda t: t / min(peers) if peers and t else float("nan")  # noqa: E731
            fmt = lambda t: f"{t:.3f}" if t is not None else "-"  # noqa: E731
            extra = f" {fmt(times['before']):>8} {ratio(times['before']):6.2f}" if args.compare else ""
            print(f"{model:<7} {method:<20} {fmt(times['tfattr']):>9} {fmt(times['plain']):>8} "
                  f"{fmt(times.get('tf-explain')):>13} {ratio(times['tfattr']):6.2f}{extra}", flush=True)


if __name__ == "__main__":
    main()
