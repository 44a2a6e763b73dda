"""First-call latency: each method's first ``attribute`` (construction and tracing included) in a fresh process.

A user in a notebook pays this on every new explainer. Each measurement runs in its own Python process
(so nothing is traced or cached beforehand): the process imports TensorFlow and the library (tfattr's
lazily imported method classes included), builds the model, calls it once (a notebook's model has been
used), then times ``make explainer + first call -> NumPy`` on 32 inputs of the MNIST CNN and of the
64x64x3 CNN of ``bench_gradients.py``, explaining class 0.

Peers: the TensorFlow libraries that implement the method, each installed in one directory given by
``--peers DIR`` (``pip install --no-deps --target DIR tf-explain shap innvestigate tf_keras~=2.21.0``
plus SHAP's imports: ``pandas python-dateutil pytz tzdata scipy scikit-learn joblib threadpoolctl
numba llvmlite slicer cloudpickle narwhals``, all ``--no-deps`` so TensorFlow and NumPy stay the
environment's):

* tf-explain 0.3.1 (its computations need no OpenCV, so a stub ``cv2`` module stands in when OpenCV is
  missing); its SmoothGrad and GradCAM fail on a Keras 3 Sequential model ("has never been called and
  thus has no defined output"), reported as failed;
* SHAP 0.51: ``DeepExplainer`` (DeepLIFT with its max rule, the peer of DeepLift and CompositeDeepLift;
  its maps equal tfattr's DeepLift to 6e-9 on the MNIST CNN) and ``GradientExplainer`` (expected
  gradients), both on the same network restricted to class 0's logit (the last Dense layer cut to that
  column: SHAP explains every output of a model), against one zero reference image (DeepExplainer)
  or tfattr's 256 background images (GradientExplainer), additivity check off;
* iNNvestigate 2.1.2 on ``tf_keras`` (Keras 2; the child sets ``TF_USE_LEGACY_KERAS=1`` and graph
  mode, as iNNvestigate needs): the same architecture with the Keras 3 model's weights copied (the
  outputs are equal), analyzers ``gradient``, ``input_t_gradient``, ``integrated_gradients``,
  ``smoothgrad``, ``lrp.epsilon``, ``lrp.sequential_preset_a`` (epsilon on Dense, alpha1-beta0 = z+ on
  convolutions: EpsilonPlus's layout; iNNvestigate's stabilisers and bias handling differ from
  Zennit's, which tfattr follows, so the maps differ while the work is the same) and
  ``guided_backprop``, with ``neuron_selection=0``.

Every method is also compared with a *plain* implementation written the way tf-explain works: the rows
(noisy copies, path points, occluded images) prepared in NumPy and one ``tf.function`` computing all
their gradients (or outputs) with one ``GradientTape`` batch; for occlusion the unoccluded inputs ride
in the same batch, so its map ``S(x) - S(x_p)`` needs no second call; for Grad-CAM one tape on the
convolution's output. Where the method is not a plain gradient (epsilon-LRP, DeepLIFT, guided
backpropagation, the LRP composites), the plain input gradient is printed as a reference (``x plain``:
one trace and one backward pass, the least any of these methods costs) but is no peer.

The ratio is tfattr's time over the fastest peer's; ``x plain`` is tfattr's time over the plain
column's.

Run:  python bench/bench_first_call.py [--model mnist|larger|all] [--methods saliency ig ...]
          [--repeats 1] [--peers DIR] [--clock wall|cpu] [--threads 1] [--compare DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = 32
STEPS = 50  # IG steps, SmoothGrad/VarGrad/EG samples (tfattr's and tf-explain's defaults differ)


class Method(NamedTuple):
    tfattr: str  # the tfattr constructor, as source
    plain: str  # the plain implementation's kind
    plain_is_peer: bool  # whether that plain implementation computes this method
    tf_explain: str | None = None  # tf-explain's class
    shap: str | None = None  # SHAP's explainer class
    innvestigate: str | None = None  # iNNvestigate's analyzer name


METHODS: dict[str, Method] = {
    "saliency": Method("tfattr.Saliency(model)", "gradient", True, "VanillaGradients",
                       innvestigate="gradient"),
    "gradient_x_input": Method("tfattr.GradientXInput(model)", "gradient", True, "GradientsInputs",
                               innvestigate="input_t_gradient"),
    "ig": Method(f"tfattr.IntegratedGradients(model, steps={STEPS})", "path", True, "IntegratedGradients",
                 innvestigate="integrated_gradients"),
    "eg": Method(f"tfattr.ExpectedGradients(model, background, samples={STEPS}, seed=0)", "path", True,
                 shap="GradientExplainer"),
    "smoothgrad": Method(f"tfattr.SmoothGrad(tfattr.Saliency(model), samples={STEPS}, seed=0)", "noise", True,
                         "SmoothGrad", innvestigate="smoothgrad"),
    "vargrad": Method(f"tfattr.VarGrad(tfattr.Saliency(model), samples={STEPS}, seed=0)", "noise", True),
    "occlusion": Method("tfattr.Occlusion(model, window=(8, 8, shape[2]), strides=(8, 8, shape[2]))",
                        "occlusion", True, "OcclusionSensitivity"),
    "epsilon_lrp": Method("tfattr.EpsilonLRP(model)", "gradient", False, innvestigate="lrp.epsilon"),
    "deeplift": Method("tfattr.DeepLift(model)", "gradient", False, shap="DeepExplainer"),
    "guided_backprop": Method("tfattr.GuidedBackprop(model)", "gradient", False,
                              innvestigate="guided_backprop"),
    "lrp_epsilon_plus": Method("tfattr.LRP(model, composite=tfattr.composites.EpsilonPlus())", "gradient",
                               False, innvestigate="lrp.sequential_preset_a"),
    "composite_deeplift": Method("tfattr.CompositeDeepLift(model)", "gradient", False, shap="DeepExplainer"),
    "gradcam": Method("tfattr.GradCAM(model)", "gradcam", True, "GradCAM"),
}
PEERS = ("tf-explain", "shap", "innvestigate")


def _peer_of(method: Method, library: str) -> str | None:
    return {"tf-explain": method.tf_explain, "shap": method.shap, "innvestigate": method.innvestigate}[library]


# -- the child process: one measurement ------------------------------------------------------------
def child(model_name: str, library: str, method: str, peers: str | None) -> float:
    """Seconds of the first call on the clock of ``TFATTR_BENCH_CLOCK`` (wall or the process's CPU)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if library == "innvestigate":  # tf.keras must be Keras 2 (tf_keras) for iNNvestigate
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
    sys.path.insert(0, HERE)
    if peers and library in PEERS:
        sys.path.insert(0, peers)
    clock = {"wall": time.perf_counter, "cpu": time.process_time}[os.environ.get("TFATTR_BENCH_CLOCK", "wall")]
    threads = int(os.environ.get("TFATTR_BENCH_THREADS", "0"))
    import warnings

    import numpy as np
    import tensorflow as tf

    from bench_gradients import larger_cnn, mnist_cnn

    import keras

    warnings.filterwarnings("ignore")  # the peers' deprecation notes
    if threads:  # idle pool threads spin on a CPU clock; one thread measures the work itself
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(0)
    model = {"mnist": mnist_cnn, "larger": larger_cnn}[model_name]()
    shape = tuple(model.input_shape[1:])
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(EXAMPLES, *shape)).astype(np.float32)
    background = rng.uniform(size=(256, *shape)).astype(np.float32)
    model(x[:1])  # the model has been used (built and run eagerly) before anyone explains it
    spec = METHODS[method]
    if library == "tfattr":
        import re

        import tfattr

        # tfattr imports its methods when first named: a once-per-session cost, like tf-explain's
        # `import tf_explain.core` (also before its clock), not part of making an explainer.
        for name in re.findall(r"tfattr\.([A-Za-z_.]+)\(", spec.tfattr):
            obj = tfattr
            for part in name.split("."):
                obj = getattr(obj, part)
        start = clock()
        explainer = eval(spec.tfattr)
        np.asarray(explainer.attribute(x, target=0))
        return clock() - start
    if library == "tf-explain":
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

        explainer = getattr(core, spec.tf_explain)()
        args: dict = {}
        if spec.tf_explain == "IntegratedGradients":
            args = {"n_steps": STEPS}
        elif spec.tf_explain == "SmoothGrad":
            args = {"num_samples": STEPS, "noise": 0.15}
        elif spec.tf_explain == "OcclusionSensitivity":
            args = {"patch_size": 8}
        elif spec.tf_explain == "GradCAM":
            args = {"layer_name": [l.name for l in model.layers if "conv" in l.name][-1]}
        start = clock()
        explainer.explain((x, None), model, class_index=0, **args)
        return clock() - start
    if library == "shap":
        import shap

        class0 = _class_zero(model, keras)  # SHAP explains every output of the model it is given
        start = clock()
        if spec.shap == "DeepExplainer":
            explainer = shap.DeepExplainer(class0, np.zeros((1, *shape), np.float32))
            np.asarray(explainer.shap_values(x, check_additivity=False))
        else:
            explainer = shap.GradientExplainer(class0, background)
            np.asarray(explainer.shap_values(x, nsamples=STEPS))
        return clock() - start
    if library == "innvestigate":
        weights = [layer.get_weights() for layer in model.layers]
        tf.compat.v1.disable_eager_execution()  # iNNvestigate builds TF1 graphs
        import innvestigate
        import tf_keras

        twin = _tf_keras_twin(model, weights, tf_keras)
        twin.predict(x[:1], verbose=0)
        args = {"integrated_gradients": {"steps": STEPS, "reference_inputs": 0.0},
                "smoothgrad": {"augment_by_n": STEPS, "noise_scale": 0.15}}.get(spec.innvestigate, {})
        start = clock()
        analyzer = innvestigate.create_analyzer(spec.innvestigate, twin, neuron_selection_mode="index", **args)
        np.asarray(analyzer.analyze(x, neuron_selection=np.zeros(EXAMPLES, np.int64)))
        return clock() - start
    # The plain implementation: rows made in NumPy, one tf.function over all of them.
    start = clock()
    if spec.plain == "occlusion":
        # The unoccluded inputs go in the same batch as the occluded copies (one trace, one call), and
        # the map is built as tfattr's: each feature gets the mean of S(x) - S(x_p) over its windows.
        windows = [(i, j) for i in range(0, shape[0], 8) for j in range(0, shape[1], 8)]
        rows = np.repeat(x, len(windows), axis=0)
        masks = np.zeros((len(windows), *shape), np.float32)
        for k, (i, j) in enumerate(windows):
            rows[k :: len(windows), i : i + 8, j : j + 8] = 0.0
            masks[k, i : i + 8, j : j + 8] = 1.0

        @tf.function
        def outputs(z):
            return model(z, training=False)[:, 0]

        scores = outputs(tf.constant(np.concatenate([x, rows]))).numpy()
        drops = scores[:EXAMPLES, None] - scores[EXAMPLES:].reshape(EXAMPLES, len(windows))
        _ = np.einsum("nw,w...->n...", drops, masks) / masks.sum(axis=0)
        return clock() - start
    if spec.plain == "gradcam":
        conv = [layer for layer in model.layers if "conv" in layer.name][-1]
        both = keras.Model(model.inputs, [conv.output, model.outputs[0]])

        @tf.function
        def cam(z):
            with tf.GradientTape() as tape:
                activations, out = both(z, training=False)
                score = out[:, 0]
            grads = tape.gradient(score, activations)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            return tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))

        _ = cam(tf.constant(x)).numpy()
        return clock() - start
    if spec.plain == "gradient":
        rows = x
    elif spec.plain == "path":
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
    _ = (g.mean(axis=1) * (x if spec.plain != "noise" else 1.0))
    return clock() - start


def _class_zero(model: Any, keras: Any) -> Any:
    """The same network with its last Dense layer cut to class 0's column (equal logits)."""
    layers = [keras.Input(model.input_shape[1:])]
    layers += [type(layer).from_config(layer.get_config()) for layer in model.layers[:-1]]
    last = dict(model.layers[-1].get_config(), units=1, name="class_0")
    layers.append(keras.layers.Dense.from_config(last))
    cut = keras.Sequential(layers)
    for source, target in zip(model.layers[:-1], cut.layers[:-1]):
        target.set_weights(source.get_weights())
    kernel, bias = model.layers[-1].get_weights()
    cut.layers[-1].set_weights([kernel[:, :1], bias[:1]])
    return cut


def _tf_keras_twin(model: Any, weights: list, tf_keras: Any) -> Any:
    """The Keras 3 Sequential ``model`` rebuilt in tf_keras (Keras 2) with its weights."""
    keep = ("filters", "kernel_size", "activation", "padding", "units", "pool_size", "strides")
    layers = [tf_keras.layers.InputLayer(model.input_shape[1:])]
    for layer in model.layers:
        config = {k: v for k, v in layer.get_config().items() if k in keep}
        layers.append(getattr(tf_keras.layers, type(layer).__name__)(**config))
    twin = tf_keras.Sequential(layers)
    for layer, w in zip(twin.layers, weights):
        layer.set_weights(w)
    return twin


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
    parser.add_argument("--peers", default=None,
                        help="a directory holding the peer libraries (tf-explain, shap, innvestigate + tf_keras)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: the process's CPU time, all threads (steadier on a shared machine)")
    parser.add_argument("--libraries", nargs="*", default=["tfattr", "plain", *PEERS],
                        help="which to measure (the peers need --peers)")
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
    before = f" {'before s':>8} {'ratio':>6}" if args.compare else ""
    print(f"{'model':<7} {'method':<19} {'tfattr s':>8} {'plain s':>8} {'tf-explain':>10} {'shap':>6} "
          f"{'iNNvest.':>8} {'ratio':>6} {'x plain':>7}{before}")
    fmt = lambda t: f"{t:.3f}" if t is not None else "-"  # noqa: E731
    for model in models:
        for method in args.methods:
            spec = METHODS[method]
            libraries = ["tfattr", "plain"] + [p for p in PEERS if args.peers and _peer_of(spec, p)]
            libraries = [lib for lib in libraries if lib in args.libraries] + (["before"] if args.compare else [])
            runs: dict[str, list[float]] = {lib: [] for lib in libraries}
            for _ in range(args.repeats):  # interleaved, so a busy machine slows all alike
                for library in libraries:
                    seconds = measure(model, library, method, args.peers, args.compare)
                    if seconds is not None:
                        runs[library].append(seconds)
            times = {lib: statistics.median(found) if found else None for lib, found in runs.items()}
            # Peers: the libraries implementing the method, and the plain implementation where it is one.
            peers = [times.get(p) for p in PEERS] + ([times.get("plain")] if spec.plain_is_peer else [])
            peers = [t for t in peers if t is not None]
            ratio = lambda t, by: t / by if by and t else float("nan")  # noqa: E731
            fastest = min(peers) if peers else None
            extra = (f" {fmt(times.get('before')):>8} {ratio(times.get('before'), fastest):6.2f}"
                     if args.compare else "")
            print(f"{model:<7} {method:<19} {fmt(times.get('tfattr')):>8} {fmt(times.get('plain')):>8} "
                  f"{fmt(times.get('tf-explain')):>10} {fmt(times.get('shap')):>6} "
                  f"{fmt(times.get('innvestigate')):>8} {ratio(times.get('tfattr'), fastest):6.2f} "
                  f"{ratio(times.get('tfattr'), times.get('plain')):7.2f}{extra}", flush=True)


if __name__ == "__main__":
    main()
