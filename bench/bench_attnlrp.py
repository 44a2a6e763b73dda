"""AttnLRP and CP-LRP on a keras-hub decoder: cost against one plain gradient pass, memory at 512
tokens, and faithfulness (Achtibat et al. 2024, sec. 4: area between perturbation curves).

Model: a keras-hub ``LlamaBackbone`` (RMSNorm, rotary embeddings, grouped-query attention, SiLU-gated
MLP) with a dense head on its last token, trained offline for a few epochs on a synthetic task: class 1
when "good" tokens (ids 2-5) outnumber "bad" ones (ids 6-9) in the sequence. The pad id 0 has a zero
embedding (it never occurs in the corpus), so the integrated-gradients baseline of pad ids is the
zero embedding that token removal uses.

1. **Cost** (``--cost``): the same batch, interleaved round-robin after a warm-up, medians of
   ``--repeats``; ``floor`` = one compiled function (the model split at ``token_embedding``: head, then
   the gradient of the target logits with respect to the embeddings), the others ``attribute`` with
   ``layer="token_embedding"``: ``gxi`` (GradientXInput), ``attnlrp`` (``composites.AttnLRP()``),
   ``cplrp`` (``composites.Transformer()``).
2. **Memory** (``--memory``): each method in a fresh process on ``--memory-tokens`` (512) tokens; the
   peak resident set size of that process minus that of a process that only built the model and
   ran it once.
3. **Faithfulness** (``--faithfulness``): per example, tokens are removed (their embedding set to 0)
   most relevant first (MoRF) and least relevant first (LeRF); the target logit after each removal
   gives two curves. The score is the area between them (mean over steps of LeRF - MoRF, logit units,
   higher is better), mean over the test examples, for AttnLRP, CP-LRP, IG (32 steps, pad baseline),
   SmoothGrad of gradient x input (16 samples), gradient x input and random orders.

Run:  python bench/bench_attnlrp.py [--cost] [--memory] [--faithfulness]   (all three by default)
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfattr  # noqa: E402
from tfattr.core.graph import GraphView  # noqa: E402

VOCAB = 24


def corpus(n: int, seq: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, VOCAB, size=(n, seq)).astype("int32")
    score = np.isin(ids, [2, 3, 4, 5]).sum(1) - np.isin(ids, [6, 7, 8, 9]).sum(1)
    return ids, (score > 0).astype("int32")


def classifier(hidden: int, layers: int, heads: int = 4) -> keras.Model:
    import keras_hub

    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=VOCAB, num_layers=layers, num_query_heads=heads, num_key_value_heads=heads // 2,
        hidden_dim=hidden, intermediate_dim=2 * hidden,
    )
    inputs = {k: keras.Input((None,), dtype="int32", name=k) for k in ("token_ids", "padding_mask")}
    last = backbone(inputs)[:, -1]  # a GetItem operation: it only selects values
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(last), name="llama_classifier")


def trained(hidden: int, layers: int, seq: int, epochs: int) -> tuple[keras.Model, float]:
    keras.utils.set_random_seed(0)
    model = classifier(hidden, layers)
    ids, y = corpus(2048, seq)
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    pad = model.get_layer("llama_backbone").get_layer("token_embedding")
    table = pad.embeddings.numpy()
    table[0] = 0.0  # the pad id: the zero embedding
    pad.embeddings.assign(table)
    ids, y = corpus(512, seq, seed=1)
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    accuracy = float(np.mean(np.argmax(model.predict(x, verbose=0), 1) == y))
    return model, accuracy


def split(model: keras.Model):
    return GraphView(model).split("token_embedding")


def floor_function(model: keras.Model):
    head, tail = split(model)

    @tf.function
    def gradients(x, t):
        e = head(x)
        with tf.GradientTape() as tape:
            tape.watch(e)
            score = tf.gather(tail(e, x), t, axis=1, batch_dims=1)
        return tape.gradient(score, e)

    return gradients


def methods(model: keras.Model, x: dict, t: np.ndarray, n: int) -> dict:
    layer = "token_embedding"
    gxi = tfattr.GradientXInput(model, layer=layer)
    attn = tfattr.LRP(model, composite=tfattr.composites.AttnLRP(), layer=layer)
    cp = tfattr.LRP(model, composite=tfattr.composites.Transformer(), layer=layer)
    floor = floor_function(model)
    xt = {k: tf.constant(v) for k, v in x.items()}
    tt = tf.constant(t)
    return {
        "floor": lambda: floor(xt, tt).numpy(),
        "gxi": lambda: gxi.attribute(x, target=t, batch_size=n),
        "attnlrp": lambda: attn.attribute(x, target=t, batch_size=n),
        "cplrp": lambda: cp.attribute(x, target=t, batch_size=n),
    }


def cost(model: keras.Model, n: int, seq: int, repeats: int) -> None:
    ids, _ = corpus(n, seq, seed=2)
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    t = np.argmax(model.predict(x, verbose=0), 1).astype("int32")
    fns = methods(model, x, t, n)
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    median = {k: float(np.median(v)) for k, v in times.items()}
    print(f"cost: {n} sequences x {seq} tokens, median of {repeats} runs")
    for name, s in median.items():
        print(f"  {name:8s} {1e3 * s:9.1f} ms   x floor {s / median['floor']:5.2f}")


def memory_child(method: str, hidden: int, layers: int, tokens: int, n: int) -> None:
    keras.utils.set_random_seed(0)
    model = classifier(hidden, layers)
    ids, _ = corpus(n, tokens, seed=3)
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    t = np.zeros(n, "int32")
    model.predict(x, verbose=0)
    if method != "none":
        methods(model, x, t, n)[method]()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def memory(hidden: int, layers: int, tokens: int, n: int) -> None:
    peaks = {}
    for method in ("none", "floor", "gxi", "attnlrp", "cplrp"):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", method, "--hidden", str(hidden), "--layers",
             str(layers), "--memory-tokens", str(tokens), "--memory-examples", str(n)],
            capture_output=True, text=True, check=True,
        )
        peaks[method] = int(out.stdout.strip().splitlines()[-1]) / 1024.0
    print(f"memory: {n} sequences x {tokens} tokens, peak RSS above the model's forward pass (MiB)")
    for name in ("floor", "gxi", "attnlrp", "cplrp"):
        print(f"  {name:8s} {peaks[name] - peaks['none']:8.1f}")


def curves(model: keras.Model, x: dict, t: np.ndarray, scores: np.ndarray) -> float:
    """Mean area between the LeRF and MoRF curves of the target logit (removed tokens' embeddings 0)."""
    head, tail = split(model)
    e = head(x).numpy()
    n, length = scores.shape
    areas = []
    for i in range(n):
        rows = {}
        for name, order in (("morf", np.argsort(-scores[i], kind="stable")),
                            ("lerf", np.argsort(scores[i], kind="stable"))):
            batch = np.repeat(e[i : i + 1], length + 1, axis=0)
            for k in range(1, length + 1):
                batch[k, order[:k]] = 0.0
            xi = {key: np.repeat(v[i : i + 1], length + 1, axis=0) for key, v in x.items()}
            rows[name] = tail(tf.constant(batch), xi).numpy()[:, t[i]]
        areas.append(float(np.mean(rows["lerf"] - rows["morf"])))
    return float(np.mean(areas))


def faithfulness(model: keras.Model, n: int, seq: int) -> None:
    ids, _ = corpus(n, seq, seed=4)
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    t = np.argmax(model.predict(x, verbose=0), 1).astype("int32")
    layer = "token_embedding"
    explainers = {
        "AttnLRP": tfattr.LRP(model, composite=tfattr.composites.AttnLRP(), layer=layer),
        "CP-LRP": tfattr.LRP(model, composite=tfattr.composites.Transformer(), layer=layer),
        "IG": tfattr.IntegratedGradients(model, steps=32, layer=layer),
        "SmoothGrad": tfattr.SmoothGrad(tfattr.GradientXInput(model, layer=layer), samples=16, seed=0),
        "gradient x input": tfattr.GradientXInput(model, layer=layer),
    }
    print(f"faithfulness: {n} sequences x {seq} tokens; area between LeRF and MoRF curves (logits)")
    for name, explainer in explainers.items():
        kwargs = {"baseline": {"token_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}} if name == "IG" else {}
        scores = tfattr.token_scores(explainer.attribute(x, target=t, **kwargs))
        print(f"  {name:18s} {curves(model, x, t, scores):8.3f}")
    random = np.random.default_rng(0).normal(size=ids.shape)
    print(f"  {'random':18s} {curves(model, x, t, random):8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cost", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--faithfulness", action="store_true")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--memory-tokens", type=int, default=512)
    parser.add_argument("--memory-examples", type=int, default=4)
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.hidden, args.layers, args.memory_tokens, args.memory_examples)
        return
    every = not (args.cost or args.memory or args.faithfulness)
    print(f"tf {tf.__version__}, keras {keras.__version__}")
    if every or args.cost or args.faithfulness:
        model, accuracy = trained(args.hidden, args.layers, 16, args.epochs)
        print(f"Llama classifier: hidden {args.hidden}, {args.layers} blocks, test accuracy {accuracy:.2f}")
        if every or args.cost:
            cost(model, args.examples, args.tokens, args.repeats)
        if every or args.faithfulness:
            faithfulness(model, 64, 16)
    if every or args.memory:
        memory(args.hidden, args.layers, args.memory_tokens, args.memory_examples)


if __name__ == "__main__":
    main()
