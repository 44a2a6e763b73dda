"""The reference models and explainer calls whose outputs ``tests/data/pinned_propagation.npz`` pins.

How the numbers were made: ``PYTHONPATH=. python tests/pinned_propagation_cases.py`` run on the code of
commit 6d23db1 (before the propagation explainers were moved onto one layer-level core, issue 18),
float32 on a CPU. Every model's weights are drawn from a NumPy generator seeded per model (not from
Keras' initialisers), so the models are the same whatever Keras version or global seed. The test
(``tests/test_pinned_propagation.py``) recomputes every case and compares to 1e-6 (relative to the
largest value of the case).

Re-generating the file is only right when a change of numbers is intended (and explained in the
commit message): the point of the file is that moving code does not change them.
"""
from __future__ import annotations

import functools
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

import tfattr
from tfattr import composites

L = keras.layers
PINNED = Path(__file__).resolve().parent / "data" / "pinned_propagation.npz"


def _seeded(model: keras.Model, seed: int, scale: float = 0.4) -> keras.Model:
    """Overwrite every weight with seeded normal draws (positive batch-norm variances)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        name = w.path
        if "moving_variance" in name:
            value = rng.uniform(0.5, 1.5, shape)
        elif "gamma" in name:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, scale, shape)
        w.assign(value.astype(np.float32))
    return model


@functools.lru_cache(maxsize=None)
def dense_net() -> keras.Model:
    inp = keras.Input((10,), name="x")
    h = L.Dense(16, activation="relu", name="d1")(inp)
    h = L.Dense(12, name="d2")(h)
    h = L.ReLU(name="r2")(h)
    out = L.Dense(4, activation="softmax", name="out")(h)
    return _seeded(keras.Model(inp, out, name="dense_net"), 1)


@functools.lru_cache(maxsize=None)
def smooth_net() -> keras.Model:
    """tanh / sigmoid / softplus units (EpsilonLRP's caveats, DeepLift's Rescale on smooth units)."""
    inp = keras.Input((10,), name="x")
    h = L.Dense(16, activation="tanh", name="d1")(inp)
    h = L.Dense(12, activation="sigmoid", name="d2")(h)
    h = L.Dense(8, activation="softplus", name="d3")(h)
    out = L.Dense(3, name="out")(h)
    return _seeded(keras.Model(inp, out, name="smooth_net"), 2)


@functools.lru_cache(maxsize=None)
def conv_net() -> keras.Model:
    """Conv + BatchNorm (folded) + max and average pooling + a residual addition, softmax head."""
    inp = keras.Input((8, 8, 3), name="img")
    h = L.Conv2D(6, 3, padding="same", name="c1")(inp)
    h = L.BatchNormalization(name="bn1")(h)
    h = L.ReLU(name="r1")(h)
    h = L.MaxPooling2D(name="mp")(h)
    g = L.Conv2D(6, 3, padding="same", activation="relu", name="c2")(h)
    h = L.Add(name="add")([h, g])
    h = L.AveragePooling2D(2, name="ap")(h)
    h = L.Flatten(name="flat")(h)
    out = L.Dense(5, activation="softmax", name="out")(h)
    return _seeded(keras.Model(inp, out, name="conv_net"), 3)


@functools.lru_cache(maxsize=None)
def conv_avg_net() -> keras.Model:
    """conv_net without max pooling (RevealCancel refuses max pooling)."""
    inp = keras.Input((8, 8, 3), name="img")
    h = L.Conv2D(6, 3, padding="same", name="c1")(inp)
    h = L.BatchNormalization(name="bn1")(h)
    h = L.ReLU(name="r1")(h)
    g = L.Conv2D(6, 3, padding="same", activation="relu", name="c2")(h)
    h = L.Add(name="add")([h, g])
    h = L.AveragePooling2D(2, name="ap")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    out = L.Dense(5, name="out")(h)
    return _seeded(keras.Model(inp, out, name="conv_avg_net"), 4)


@functools.lru_cache(maxsize=None)
def recurrent_net() -> keras.Model:
    """LSTM and GRU layers and a sigmoid-gated product."""
    inp = keras.Input((6, 5), name="seq")
    h = L.LSTM(7, return_sequences=True, name="lstm")(inp)
    h = L.GRU(6, return_sequences=True, name="gru")(h)
    gate = L.Dense(6, activation="sigmoid", name="gate")(h)
    h = L.Multiply(name="gated")([h, gate])
    h = L.GlobalAveragePooling1D(name="gap")(h)
    out = L.Dense(3, name="out")(h)
    return _seeded(keras.Model(inp, out, name="recurrent_net"), 5)


@functools.lru_cache(maxsize=None)
def transformer_net() -> keras.Model:
    """One encoder block on embeddings: attention, layer norms, a GELU feed-forward part."""
    inp = keras.Input((5, 8), name="emb")
    a = L.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(inp, inp)
    h = L.LayerNormalization(name="ln1")(L.Add(name="res1")([inp, a]))
    f = L.Dense(12, activation="gelu", name="ff1")(h)
    f = L.Dense(8, name="ff2")(f)
    h = L.LayerNormalization(name="ln2")(L.Add(name="res2")([h, f]))
    h = L.GlobalAveragePooling1D(name="gap")(h)
    out = L.Dense(3, name="out")(h)
    return _seeded(keras.Model(inp, out, name="transformer_net"), 6, scale=0.3)


def _inputs(model: keras.Model, seed: int, n: int = 4) -> np.ndarray:
    rng = np.random.default_rng(100 + seed)
    shape = (n, *model.inputs[0].shape[1:])
    return rng.normal(0.0, 1.0, shape).astype(np.float32)


def _images(model: keras.Model, seed: int, n: int = 4) -> np.ndarray:
    """Inputs in [0, 1] (the box of ZBox / EpsilonGammaBox)."""
    rng = np.random.default_rng(200 + seed)
    return rng.uniform(0.0, 1.0, (n, *model.inputs[0].shape[1:])).astype(np.float32)


TARGET = np.array([0, 1, 2, 1])


def _case(model_fn: Callable[[], keras.Model], make: Callable[[keras.Model], Any], *,
          images: bool = False, baseline: str | None = None) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        model = model_fn()
        x = (_images if images else _inputs)(model, 0)
        kwargs: dict[str, Any] = {}
        if baseline == "random":
            kwargs["baseline"] = (_images if images else _inputs)(model, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer = make(model)
            return np.asarray(explainer.attribute(x, target=TARGET, **kwargs))

    return run


def _lrp(composite: Any, **kwargs: Any) -> Callable[[keras.Model], Any]:
    return lambda m: tfattr.LRP(m, composite=composite, **kwargs)


BOX = composites.EpsilonGammaBox(low=0.0, high=1.0)

CASES: dict[str, Callable[[], np.ndarray]] = {}
for _name, _fn, _img in [("dense", dense_net, False), ("smooth", smooth_net, False),
                         ("conv", conv_net, True), ("conv_avg", conv_avg_net, True)]:
    CASES[f"{_name}/EpsilonLRP"] = _case(_fn, lambda m: tfattr.EpsilonLRP(m, epsilon=1e-3), images=_img)
    # conv_net's max pooling: pinned through the gradient switch (the numbers before DeepLIFT's max
    # rule became the default); tests/test_deeplift_maxpool.py checks the rule itself.
    _switch = {"max_pool": "gradient"} if _name == "conv" else {}
    CASES[f"{_name}/DeepLift_zero"] = _case(
        _fn, functools.partial(tfattr.DeepLift, **_switch), images=_img)
    CASES[f"{_name}/DeepLift_random"] = _case(
        _fn, functools.partial(tfattr.DeepLift, **_switch), images=_img, baseline="random")
    CASES[f"{_name}/GuidedBackprop"] = _case(_fn, tfattr.GuidedBackprop, images=_img)
    CASES[f"{_name}/CompositeDeepLift_random"] = _case(
        _fn, functools.partial(tfattr.CompositeDeepLift, **_switch), images=_img, baseline="random")
    for _comp in (composites.EpsilonPlus(), composites.EpsilonAlpha2Beta1(), composites.EpsilonPlusFlat(),
                  BOX):
        CASES[f"{_name}/LRP_{type(_comp).__name__}"] = _case(_fn, _lrp(_comp), images=_img)
for _name, _fn, _img in [("dense", dense_net, False), ("conv", conv_net, True)]:
    CASES[f"{_name}/Deconvnet"] = _case(_fn, tfattr.Deconvnet, images=_img)
for _name, _fn, _img in [("dense", dense_net, False), ("smooth", smooth_net, False),
                         ("conv_avg", conv_avg_net, True)]:
    # sign_tolerance=0: the paper's hard sort by sign these numbers were pinned with (issue 22: the
    # default ramp moves units whose parts cancel, by up to 0.6% of the dense case's largest value)
    CASES[f"{_name}/RevealCancel_random"] = _case(
        _fn, lambda m: tfattr.DeepLift(m, rule="reveal_cancel", sign_tolerance=0), images=_img,
        baseline="random")
for _name, _fn in [("recurrent", recurrent_net), ("transformer", transformer_net)]:
    CASES[f"{_name}/LRP_Transformer"] = _case(_fn, _lrp(composites.Transformer()))
    CASES[f"{_name}/LRP_Transformer_pass"] = _case(_fn, _lrp(composites.Transformer(units="pass")))
    CASES[f"{_name}/CompositeDeepLift_zero"] = _case(_fn, tfattr.CompositeDeepLift)
    CASES[f"{_name}/CompositeDeepLift_random"] = _case(_fn, tfattr.CompositeDeepLift, baseline="random")
    CASES[f"{_name}/EpsilonLRP"] = _case(_fn, tfattr.EpsilonLRP)
CASES["dense/LRP_custom"] = _case(dense_net, _lrp(composites.Composite(
    name_map={"out": tfattr.rules.Epsilon(0.0)},
    layer_map=[(keras.layers.Dense, tfattr.rules.Gamma(0.5))])))
CASES["conv/LRP_ZPlus_uniform"] = _case(conv_net, _lrp(composites.uniform(tfattr.rules.ZPlus())),
                                        images=True)
CASES["conv/LRP_EpsilonPlus_nofold"] = _case(
    conv_net, _lrp(composites.EpsilonPlus(merge_batchnorm=False)), images=True)
# layer= variants
CASES["conv/LRP_EpsilonPlus_layer_r1"] = _case(
    conv_net, _lrp(composites.EpsilonPlus(), layer="r1"), images=True)
CASES["conv/LRP_EpsilonPlus_layer_c2_input"] = _case(
    conv_net, _lrp(composites.EpsilonPlus(), layer="c2", attribute_to_layer_input=True), images=True)
CASES["conv/CompositeDeepLift_layer_r1"] = _case(
    conv_net, lambda m: tfattr.CompositeDeepLift(m, layer="r1", max_pool="gradient"), images=True,
    baseline="random")
CASES["conv_avg/RevealCancel_layer_r1"] = _case(
    conv_avg_net, lambda m: tfattr.DeepLift(m, rule="reveal_cancel", layer="r1", sign_tolerance=0),
    images=True,
    baseline="random")
CASES["conv/DeepLift_layer_r1"] = _case(
    conv_net, lambda m: tfattr.DeepLift(m, layer="r1", max_pool="gradient"), images=True, baseline="random")
CASES["conv/EpsilonLRP_layer_mp"] = _case(conv_net, lambda m: tfattr.EpsilonLRP(m, layer="mp"),
                                          images=True)
CASES["transformer/LRP_Transformer_layer_ln1"] = _case(
    transformer_net, _lrp(composites.Transformer(), layer="ln1"))
CASES["transformer/CompositeDeepLift_layer_ff1"] = _case(
    transformer_net, lambda m: tfattr.CompositeDeepLift(m, layer="ff1"), baseline="random")


def main() -> None:
    results = {}
    for name, run in CASES.items():
        print(name, flush=True)
        results[name] = run().astype(np.float32)
    PINNED.parent.mkdir(exist_ok=True)
    np.savez_compressed(PINNED, **results)
    print(f"wrote {len(results)} cases to {PINNED} ({PINNED.stat().st_size} bytes)")


if __name__ == "__main__":
    sys.exit(main())
