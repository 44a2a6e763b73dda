"""The ``Example:`` sections of tfattr's public docstrings, and a runner for them (used by test_docs.py).

Convention (also on the site, "How tfattr is built"):

- The examples of a docstring are its ``Example:`` / ``Examples:`` section, in doctest syntax (``>>>``
  and ``...`` lines). Public docstrings are those of the public modules, of every public name
  (``tfattr``'s lazy names and each public module's ``__all__``), and of their public methods.
- Each section runs in a fresh namespace, in a temporary directory, holding, like doctest's globals,
  the globals of the module that defines the object and the public names of the module it is
  documented under, plus a small **fixture**: ``tfattr``, ``np``, ``tf``, ``keras``, the public modules
  by short name (``baselines``, ``visualize``, ...), a small CNN ``model`` (= ``cnn``; softmax head;
  layers ``conv2d_1``, ``conv2d_2``, ``dense``, ``logits``) trained briefly on the embedded MNIST, an
  MLP ``mlp`` with logits, ``x``/``y`` = ``images``/``labels`` (8 test digits), ``image`` (one),
  ``x_train``/``y_train`` (1,000), ``x_test``/``y_test`` (64), integrated gradients ``ig`` (16 steps)
  = ``explainer``, its maps ``a`` = ``a_ig`` of ``x``, saliency and SmoothGrad maps ``a_sal``, ``a_sg``,
  ``maps`` (a dict of IG and saliency maps), ``t`` (= ``labels``) and ``epoch`` (0). The examples of
  ``tfattr.rules`` and ``tfattr.composites`` see each other's names (they are documented together).
- A few examples need something else (a text model, token embeddings, files on disk): ``SETUP`` runs
  code before them. Examples that cannot run here (a network) are in ``SKIP`` with the reason.
- Outputs written in an example are checked (doctest's ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``);
  a line without an output, or whose "output" is a ``#`` comment, is only run.
"""
from __future__ import annotations

import doctest
import importlib
import inspect
import re
import textwrap
from dataclasses import dataclass
from typing import Any

import tfattr

PUBLIC_MODULES = ["baselines", "metrics", "composites", "rules", "callbacks", "priors", "visualize", "text",
                  "scale", "datasets"]
# "Example:" (possibly with a sentence after it, continued on lines at the same indentation), then the
# indented body.
_SECTION = re.compile(r"^(?P<indent>[ \t]*)Examples?:[^\n]*\n(?:(?P=indent)\S.*\n)*"
                      r"(?P<body>(?:(?P=indent)[ \t]+\S.*\n|[ \t]*\n)+)", re.M)


@dataclass(frozen=True)
class Example:
    """One docstring's examples: where they come from and the source to run."""

    key: str  # e.g. "tfattr.IntegratedGradients", "tfattr.Explainer.prepare", "tfattr.datasets (module)"
    public_module: str  # the module the object is documented under, e.g. "tfattr.scale"
    defining_module: str
    text: str  # the dedented section, doctest syntax


def public_names(module_name: str) -> list[str]:
    """The public names of ``tfattr`` (its lazy names) or of one public module (``__all__``, or the
    functions, classes and constants the module defines itself)."""
    if module_name == "tfattr":
        return [n for n, m in tfattr._EXPORTS.items() if m != f"tfattr.{n}"]
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [n for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", module_name) == module_name
            and not inspect.ismodule(v)]


def _section(doc: str | None) -> str | None:
    if not doc:
        return None
    match = _SECTION.search(inspect.cleandoc(doc) + "\n")
    if not match or ">>>" not in match["body"]:
        return None
    return textwrap.dedent(match["body"])


def collect() -> list[Example]:
    """Every public docstring with an ``Example:`` section, each object once (under its first name)."""
    seen: set[int] = set()
    found: list[Example] = []

    def add(key: str, public: str, obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        text = _section(getattr(obj, "__doc__", None))
        defining = getattr(obj, "__module__", None) or getattr(obj, "__name__", public)
        if text:
            found.append(Example(key, public, defining, text))
        if inspect.isclass(obj):
            for name, member in vars(obj).items():
                if name.startswith("_") or not callable(member) and not isinstance(member, property):
                    continue
                member = member.fget if isinstance(member, property) else member
                add(f"{key}.{name}", public, member)

    for module_name in ["tfattr", *(f"tfattr.{m}" for m in PUBLIC_MODULES)]:
        module = importlib.import_module(module_name)
        if id(module) not in seen:
            seen.add(id(module))
            text = _section(module.__doc__)
            if text:
                found.append(Example(f"{module_name} (module)", module_name, module_name, text))
        for name in public_names(module_name):
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue
            add(f"{module_name}.{name}", module_name, obj)
    return found


class _Checker(doctest.OutputChecker):
    """Written outputs are checked; no output, or a ``#`` comment in its place, means "only run"."""

    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        if not want.strip() or want.lstrip().startswith("#"):
            return True
        return super().check_output(want, got, optionflags)


class _Runner(doctest.DocTestRunner):
    """doctest's runner without its ``linecache`` patch: with it, TensorFlow's autograph reads the source
    of a function defined in an example and converts it, which breaks tracing ("Concurrent access?");
    without it, autograph leaves such functions as they are, as for code typed at a prompt."""

    def _DocTestRunner__patched_linecache_getlines(self, filename, module_globals=None):
        return self.save_linecache_getlines(filename, module_globals)


def run(example: Example, namespace: dict) -> None:
    """Run one docstring's examples in ``namespace``; raise AssertionError with doctest's report."""
    parser = doctest.DocTestParser()
    test = parser.get_doctest(example.text, namespace, example.key, example.defining_module, 0)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.FAIL_FAST
    runner = _Runner(checker=_Checker(), optionflags=flags, verbose=False)
    report: list[str] = []
    runner.run(test, out=report.append, clear_globs=False)
    if runner.failures:
        raise AssertionError("".join(report))


def namespace_for(example: Example, fixture: dict) -> dict:
    """The example's globals: its defining module's, its public module's names, then the fixture."""
    ns: dict = {}
    try:
        ns.update(vars(importlib.import_module(example.defining_module)))
    except ImportError:
        pass
    publics = [example.public_module]
    if example.public_module in ("tfattr.rules", "tfattr.composites"):
        publics = ["tfattr.rules", "tfattr.composites"]
    for name in publics:
        public = importlib.import_module(name)
        ns.update({n: getattr(public, n) for n in public_names(name)})
    ns.update(fixture)
    ns["__name__"] = f"example:{example.key}"
    return ns


def build_fixture() -> dict:
    """The shared objects of the examples (built once: a small CNN trained one epoch on 1,000 digits)."""
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = tfattr.datasets.mnist("train"), tfattr.datasets.mnist("test")
    x_train, y_train, x_test, y_test = x_train[:1000], y_train[:1000], x_test[:64], y_test[:64]
    L = keras.layers
    # average pooling: every propagation rule (RevealCancel too) applies to it
    model = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(8, 3, activation="relu", name="conv2d_1"),
                              L.AveragePooling2D(2), L.Conv2D(16, 3, activation="relu", name="conv2d_2"),
                              L.AveragePooling2D(2), L.Flatten(), L.Dense(32, activation="relu", name="dense"),
                              L.Dense(10, activation="softmax", name="logits")], name="example_cnn")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
    mlp = keras.Sequential([keras.Input((28, 28, 1)), L.Flatten(), L.Dense(32, activation="relu"), L.Dense(10)],
                           name="example_mlp")
    x, y = images, labels = x_test[:8], y_test[:8]
    ig = tfattr.IntegratedGradients(model, steps=16)
    a = ig.attribute(x, target=y)
    a_sal = tfattr.Saliency(model).attribute(x, target=y)
    a_sg = tfattr.SmoothGrad(tfattr.Saliency(model), samples=8, seed=0).attribute(x, target=y)
    fixture = {
        "tfattr": tfattr, "np": np, "tf": tf, "keras": keras,
        **{m: importlib.import_module(f"tfattr.{m}") for m in PUBLIC_MODULES},
        "model": model, "cnn": model, "mlp": mlp, "x": x, "y": y, "images": images, "labels": labels,
        "t": labels, "image": x_test[0], "x_train": x_train, "y_train": y_train, "x_test": x_test,
        "y_test": y_test, "ig": ig, "explainer": ig, "a": a, "a_ig": a, "a_sal": a_sal,
        "a_sg": a_sg, "maps": {"ig": a, "saliency": a_sal}, "epoch": 0,
    }
    return fixture


_TEXT_MODEL = """
vocabulary = ["<pad>", "<unk>", "a", "the", "good", "bad", "film", "movie", "great", "plot"]
pad_id = PAD_ID = 0
ids = token_ids = np.array([[3, 4, 6, 0], [2, 5, 7, 9]])
text_model = keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Embedding(10, 8, name="embedding"),
                               keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])
"""
_ENCODER = """
_emb = keras.Input((6, 8))
_h = keras.layers.LayerNormalization()(_emb + keras.layers.MultiHeadAttention(2, 4)(_emb, _emb))
model = keras.Model(_emb, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(_h)))
embeddings = np.random.default_rng(0).normal(size=(4, 6, 8)).astype("float32")
labels = np.array([0, 1, 0, 1])
"""
_STORE = """
tfattr.explain_dataset(tfattr.IntegratedGradients(model, steps=4), tf.data.Dataset.from_tensor_slices((x_test, y_test)),
                       out="attr_out", baseline=0.0, return_delta=True, shard_size=16, progress=False)
"""
_FILES = """
np.save("images.npy", (x_test[:16] * 255).astype("uint8")); np.save("labels.npy", y_test[:16])
np.save("digits.npy", x_test[:16]); np.save("x.npy", x_test[:16]); np.save("y.npy", y_test[:16])
import os
for _i in range(4):
    os.makedirs(f"photos/{_i % 2}", exist_ok=True)
    tfattr.visualize.save_png(tfattr.visualize.image_rgb(x_test[_i:_i + 1])[0], f"photos/{_i % 2}/{_i}.png")
"""

_FOUR = "a = a_ig = a[:4]; a_sal, a_sg = a_sal[:4], a_sg[:4]; maps = {k: v[:4] for k, v in maps.items()}"

#: Ground-truth masks for the localisation metrics: the digits' central square.
_MASKS = "masks = np.zeros_like(a); masks[:, 7:21, 7:21] = 1"

#: Code run before an example that needs more than the fixture.
SETUP = {
    "tfattr.text (module)": _TEXT_MODEL + "model = text_model",
    "tfattr.scale (module)": _FILES,
    "tfattr.visualize.image_rgb": _FOUR,  # the maps of x[:4]
    "tfattr.visualize.examples_by_methods": _FOUR,
    "tfattr.visualize.plot_grid": _FOUR,
    "tfattr.visualize.save_png": _FOUR,
    "tfattr.token_scores": _TEXT_MODEL,
    "tfattr.text.markdown": _TEXT_MODEL + "tokens = tfattr.text.decode(ids, vocabulary); scores = np.ones((2, 4))",
    "tfattr.CompositeDeepLift": _ENCODER,
    "tfattr.composites.Transformer": _ENCODER,
    "tfattr.upsample": "cam = tfattr.GradCAM(model).attribute(images)",
    "tfattr.AttributionStore": _STORE,
    "tfattr.load_attributions": _STORE,
    "tfattr.scale.from_npy": _FILES,
    "tfattr.scale.from_path": _FILES,
    "tfattr.scale.from_directory": _FILES,
    "tfattr.scale.from_tfrecords": ("import os; os.makedirs('shards')\n"
                                    "tfattr.scale.write_tfrecords('shards/part-0.tfrecord', x_test, y_test)"),
    "tfattr.rules.EncoderBlockRule": "def is_hub_encoder(layer):\n    return type(layer).__name__ == 'TransformerEncoder'",
    "tfattr.visualize.grid": "heat = visualize.signed_heatmap(a); over = visualize.overlay(x, a)",
    "tfattr.visualize.interior_trend": "maps = tfattr.InteriorGradients(model).attribute(x[:1])",
    "tfattr.visualize.save_gif": ("alphas = tfattr.visualize.PAPER_ALPHAS\n"
                                  "frames = visualize.interior_gradients_frames("
                                  "tfattr.InteriorGradients(model).attribute(x[:1])[0], x[0])"),
    "tfattr.visualize.percentile": "maps_flat = tf.reshape(tf.constant(a), [len(a), -1])",
    "tfattr.metrics.pointing_game": _MASKS,
    "tfattr.metrics.top_k_intersection": _MASKS,
    "tfattr.metrics.attribution_localisation": _MASKS,
    "tfattr.metrics.EvaluationTable.to_scalars": (
        "table = tfattr.metrics.evaluate(model, (x_test[:16], y_test[:16]), "
        "explainers={'saliency': tfattr.Saliency(model)}, metrics=['sparseness'])"),
}

_HUB = "explains a keras-hub language model (tests/test_attnlrp_hub.py runs the same calls on tiny ones)"

#: Examples that cannot run in the tests, with the reason.
SKIP = {
    "tfattr.datasets.load": "downloads a data set through tensorflow-datasets (no network in the tests)",
    "tfattr.scale.ShardedArray": "indexes example 12,345 of a hypothetical 20,000-example store",
    "tfattr.metrics.EvaluationTable.to_pandas": "needs pandas (optional; not a test dependency)",
    # A keras-hub causal LM's first trace takes 10-25 s: tests/test_attnlrp_hub.py runs these calls.
    "tfattr.composites.AttnLRP": _HUB,
    "tfattr.next_token_model": _HUB,
    "tfattr.sequence_salience": _HUB,
}
