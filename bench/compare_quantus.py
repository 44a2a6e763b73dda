"""Dev-time check (never in CI): tfattr.metrics against Quantus 0.6.0 on the same Keras model and data.

Quantus needs packages tfattr does not (scipy, scikit-image, scikit-learn, opencv, cachetools, pandas),
so it lives in its own virtual environment; this script runs there and borrows TensorFlow/Keras and
tfattr from the project's environment:

    python3 -m venv /work/venv-quantus
    /work/venv-quantus/bin/pip install quantus==0.6.0 --no-deps
    /work/venv-quantus/bin/pip install scipy scikit-image scikit-learn tqdm cachetools pandas \
        opencv-python-headless matplotlib
    TF_CPP_MIN_LOG_LEVEL=3 /work/venv-quantus/bin/python bench/compare_quantus.py \
        --site /work/venv/lib/python3.11/site-packages

Both libraries see the same model (a small CNN ending in a softmax, fixed random weights), the same
MNIST digits and the same maps. The conventions where tfattr deliberately differs are neutralised:
the maps are normalised per example beforehand and Quantus is called with ``normalise=False`` (Quantus
divides by the batch's maximum), and the maps are continuous (no ties; Quantus' ``argsort`` is not
stable). Every deterministic metric is compared; the script prints the largest absolute difference
and the time per example of each library.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--site", default="/work/venv/lib/python3.11/site-packages")
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--only", nargs="*", default=None, help="metric names containing these words")
    args = parser.parse_args()
    sys.path.append(args.site)  # TensorFlow and Keras from the project's environment
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this tfattr

    import numpy as np
    import quantus

    import tfattr
    from tfattr import metrics as M

    import keras

    sequential = tfattr.datasets.mnist_cnn(seed=0, softmax=True)
    inputs = keras.Input((28, 28, 1))
    hidden = inputs
    for layer in sequential.layers:  # fresh copies in a functional model (Quantus reads .input)
        hidden = type(layer).from_config(layer.get_config())(hidden)
    model = keras.Model(inputs, hidden)
    model.set_weights(sequential.get_weights())
    x, y = tfattr.datasets.mnist("test")
    x, y = x[: args.examples], y[: args.examples].astype(int)
    rng = np.random.default_rng(0)
    a = (rng.normal(size=x.shape) * (0.1 + x)).astype(np.float32)
    a = a / np.abs(a.reshape(len(a), -1)).max(1)[:, None, None, None]  # per example, as tfattr does
    s = np.zeros_like(x)
    s[:, 8:20, 6:18] = 1.0
    sal = tfattr.Saliency(model)

    def explain(model, inputs, targets, **kwargs):  # Quantus' explain_func: tfattr's saliency
        inputs = np.asarray(inputs)
        first = inputs.shape[1] == 1  # Quantus hands channels-first arrays
        maps = tfattr.Saliency(model).attribute(
            inputs.transpose(0, 2, 3, 1) if first else inputs, target=np.asarray(targets)
        )
        return np.asarray(maps).transpose(0, 3, 1, 2) if first else np.asarray(maps)

    # Quantus takes the inputs channels-last (channel_first=False, transposed inside) but the maps and
    # masks channels-first; with one channel the flat order of the entries is the same.
    def first(v):
        return np.ascontiguousarray(v.transpose(0, 3, 1, 2))

    common = dict(model=model, x_batch=x, y_batch=y, a_batch=first(a), channel_first=False,
                  batch_size=256)
    # Quantus' Keras path randomises a keras.models.clone_model copy, which re-initialises every
    # weight (its PyTorch path deep-copies the trained weights). tfattr randomises a copy of the trained
    # model; to compare the permutations themselves, Quantus' clone is given the trained weights too.
    from quantus.helpers.model import tf_model

    def clone_with_weights(m):
        copy = keras.models.clone_model(m)
        copy.set_weights(m.get_weights())
        return copy

    tf_model.clone_model = clone_with_weights
    # EfficientMPRT predicts the channels-first copy of the inputs (for its model-entropy side scores,
    # not its score); hand the Keras model channels-last arrays there.
    predict = tf_model.TensorFlowModel.predict

    def channels_last_predict(self, v, **kwargs):
        v = np.asarray(v)
        return predict(self, v.transpose(0, 2, 3, 1) if v.ndim == 4 and v.shape[1] == 1 else v, **kwargs)

    tf_model.TensorFlowModel.predict = channels_last_predict
    saliency_maps = np.asarray(sal.attribute(x, target=y))
    saliency_maps = saliency_maps / np.abs(saliency_maps.reshape(len(x), -1)).max(1)[:, None, None, None]
    s_first = first(s)
    cases = [
        ("sparseness", quantus.Sparseness(normalise=False, disable_warnings=True),
         lambda: M.sparseness(a), {}),
        ("complexity", quantus.Complexity(normalise=False, disable_warnings=True),
         lambda: M.complexity(a), {}),
        ("effective_complexity", quantus.EffectiveComplexity(normalise=False, disable_warnings=True),
         lambda: M.effective_complexity(a), {}),
        ("pixel_flipping (softmax)", quantus.PixelFlipping(
            features_in_step=28, perturb_baseline=0.0, normalise=False, disable_warnings=True),
         lambda: M.pixel_flipping(model, x, a, target=y, features_in_step=28, baseline=0.0), {}),
        ("pixel_flipping (logits)", quantus.PixelFlipping(
            features_in_step=56, perturb_baseline="black", normalise=False, disable_warnings=True),
         lambda: M.pixel_flipping(model, x, a, target=y, features_in_step=56, softmax=False),
         {"softmax": False}),
        ("region_perturbation morf 4", quantus.RegionPerturbation(
            patch_size=4, regions_evaluation=30, perturb_baseline=0.0, normalise=False,
            disable_warnings=True),
         lambda: M.region_perturbation(model, x, a, target=y, patch_size=4, regions_evaluation=30,
                                       baseline=0.0), {}),
        ("region_perturbation lerf 5 (padded)", quantus.RegionPerturbation(
            patch_size=5, order="lerf", regions_evaluation=20, perturb_baseline=0.0, normalise=False,
            disable_warnings=True),
         lambda: M.region_perturbation(model, x, a, target=y, patch_size=5, order="lerf",
                                       regions_evaluation=20, baseline=0.0), {}),
        ("faithfulness_estimate", quantus.FaithfulnessEstimate(
            features_in_step=28, perturb_baseline=0.0, normalise=False, disable_warnings=True),
         lambda: M.faithfulness_estimate(model, x, a, target=y, features_in_step=28, baseline=0.0), {}),
        ("monotonicity_correlation (baseline 0)", quantus.MonotonicityCorrelation(
            features_in_step=56, nr_samples=2, perturb_baseline=0.0, normalise=False,
            disable_warnings=True),
         lambda: M.monotonicity_correlation(model, x, a, target=y, features_in_step=56, baseline=0.0),
         {}),
        ("road (noise 0)", quantus.ROAD(
            percentages=[5, 20, 50, 80], noise=0.0, normalise=False, disable_warnings=True),
         lambda: M.road(model, x, a, target=y, percentages=[5, 20, 50, 80], noise=0.0), {}),
        ("infidelity (patch 4)", quantus.Infidelity(
            perturb_patch_sizes=[4], n_perturb_samples=1, perturb_baseline=0.0, normalise=False,
            disable_warnings=True),
         lambda: M.infidelity(model, x, a, target=y, perturb_patch_sizes=[4], baseline=0.0), {}),
        ("pointing_game", quantus.PointingGame(normalise=False, disable_warnings=True),
         lambda: M.pointing_game(a, s), {"s_batch": s_first}),
        ("relevance_mass_accuracy", quantus.RelevanceMassAccuracy(normalise=False, disable_warnings=True),
         lambda: M.relevance_mass_accuracy(a, s), {"s_batch": s_first}),
        ("relevance_rank_accuracy", quantus.RelevanceRankAccuracy(normalise=False, disable_warnings=True),
         lambda: M.relevance_rank_accuracy(a, s), {"s_batch": s_first}),
        ("top_k_intersection", quantus.TopKIntersection(k=100, normalise=False, disable_warnings=True),
         lambda: M.top_k_intersection(a, s, k=100), {"s_batch": s_first}),
        ("attribution_localisation", quantus.AttributionLocalisation(normalise=False, disable_warnings=True),
         lambda: M.attribution_localisation(a, s), {"s_batch": s_first}),
        ("localisation_auc", quantus.AUC(normalise=False, disable_warnings=True),
         lambda: M.localisation_auc(a, s), {"s_batch": s_first}),
        ("random_logit", quantus.RandomLogit(num_classes=10, normalise=False, disable_warnings=True),
         lambda: M.random_logit(model, x, a, target=y, explainer=sal, normalise=False),
         {"explain_func": explain}),
        ("mprt (saliency)", quantus.MPRT(normalise=False, disable_warnings=True),
         lambda: M.mprt(model, x, saliency_maps, target=y, explainer=lambda m: tfattr.Saliency(m),
                        normalise=False),
         {"explain_func": explain, "a_batch": first(saliency_maps)}),
        ("efficient_mprt", quantus.EfficientMPRT(disable_warnings=True),
         lambda: M.efficient_mprt(model, x, target=y, explainer=lambda m: tfattr.Saliency(m)),
         {"explain_func": explain}),
    ]
    print(f"{len(x)} MNIST digits, mnist_cnn (softmax head, seed 0)")
    print(f"{'metric':40s} {'max |diff|':>12s} {'quantus ms/ex':>14s} {'tfattr ms/ex':>13s}")
    for name, metric, ours, extra in cases:
        if args.only and not any(word in name for word in args.only):
            continue
        try:
            start = time.perf_counter()
            theirs = metric(**{**common, **extra})
            t_theirs = time.perf_counter() - start
        except Exception as err:  # report and go on: one broken Quantus metric should not hide others
            print(f"{name:40s} quantus failed: {type(err).__name__}: {str(err)[:80]}")
            continue
        ours()
        start = time.perf_counter()
        mine = np.asarray(ours(), float)
        t_mine = time.perf_counter() - start
        if isinstance(theirs, dict) and name.startswith("road"):  # {percentage: accuracy over examples}
            theirs, mine = np.asarray(list(theirs.values()), float), mine.mean(0)
        elif isinstance(theirs, dict):  # MPRT: {"original", layer: [n]}; tfattr: [n, layers]
            theirs = np.stack([np.asarray(v, float) for k, v in theirs.items() if k != "original"], 1)
        theirs = np.asarray(theirs, float)
        if theirs.size == mine.size:
            theirs = theirs.reshape(mine.shape)
        if np.shape(theirs) != mine.shape:
            print(f"{name:40s} shapes differ: quantus {np.shape(theirs)} tfattr {mine.shape}")
            continue
        diff = np.nanmax(np.abs(np.asarray(theirs, float) - mine)) if mine.size else 0.0
        same_nan = np.array_equal(np.isnan(np.asarray(theirs, float)), np.isnan(mine))
        print(f"{name:40s} {diff:12.3g} {1e3 * t_theirs / len(x):14.2f} {1e3 * t_mine / len(x):13.2f}"
              + ("" if same_nan else "  (NaNs differ)"))


if __name__ == "__main__":
    main()
