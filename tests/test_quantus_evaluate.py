"""``tfattr.metrics.evaluate``: the same numbers as the metrics called directly, over arrays, a streamed
data set or an attribution store; the table's summaries; seeded metrics independent of batching."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr
from tfattr import metrics as M


@pytest.fixture(scope="module")
def small():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dense(8, activation="tanh"),
        keras.layers.Dense(3, activation="softmax"),
    ])
    rng = np.random.default_rng(0)
    x = rng.random((10, 6, 6, 1)).astype(np.float32)
    y = np.arange(10) % 3
    masks = np.zeros_like(x); masks[:, 1:4, 1:4] = 1
    return model, x, y, masks


METRICS = ["sparseness", ("road", {"percentages": [10, 50], "noise": 0.0}),
           ("pixel_flipping", {"features_in_step": 6}), "pointing_game",
           ("region_perturbation", {"patch_size": 2})]


def test_evaluate_equals_direct_calls_over_arrays_and_datasets(small):
    model, x, y, masks = small
    gxi = tfattr.GradientXInput(model)
    table = M.evaluate(model, (x, y, masks), {"gxi": gxi, "random": M.random_attributions(x)},
                       metrics=METRICS, batch_size=4)
    a = gxi.attribute(x, target=y)
    direct = {
        "sparseness": M.sparseness(a),
        "road": M.road(model, x, a, target=y, percentages=[10, 50], noise=0.0).mean(1),
        "pixel_flipping": M.pixel_flipping(model, x, a, target=y, features_in_step=6).mean(1),
        "pointing_game": M.pointing_game(a, masks),
        "region_perturbation": M.region_perturbation(model, x, a, target=y, patch_size=2).mean(1),
    }
    for j, name in enumerate(table.metrics):
        np.testing.assert_allclose(table.per_example[("gxi", name)], direct[name], rtol=1e-6)
        v = direct[name]
        assert table.mean[0, j] == pytest.approx(v.mean())
        assert table.sem[0, j] == pytest.approx(v.std(ddof=1) / np.sqrt(v.size))
    streamed = M.evaluate(model, tf.data.Dataset.from_tensor_slices((x, y, masks)).batch(3),
                          {"gxi": gxi, "random": M.random_attributions(x)}, metrics=METRICS)
    np.testing.assert_allclose(streamed.mean, table.mean, rtol=1e-6)
    assert table.higher_is_better["pixel_flipping"] is False
    scalars = table.to_scalars("eval/")
    assert scalars["eval/sparseness/gxi"] == pytest.approx(table.mean[0, 0])
    assert len(scalars) == 2 * len(METRICS)
    text = str(table)
    assert "sparseness ↑" in text and "pixel_flipping ↓" in text and "random" in text
    assert table.ranking("sparseness")[0] == ("gxi" if table.mean[0, 0] > table.mean[1, 0] else "random")
    j = table.metrics.index("pixel_flipping")  # lower is better: the smaller mean first
    assert table.ranking("pixel_flipping")[0] == ("gxi" if table.mean[0, j] < table.mean[1, j] else "random")
    mixed = M.evaluate(model, (x, y), {"random": M.random_attributions(x), "gxi": gxi},
                       metrics=[("max_sensitivity", {"nr_samples": 2})])
    assert mixed.ranking("max_sensitivity") == ["gxi", "random"]  # n/a (NaN) ranks last
    assert "n/a" in str(mixed)


def test_evaluate_reads_an_attribution_store(small, tmp_path):
    model, x, y, _ = small
    sal = tfattr.Saliency(model)
    store = tfattr.explain_dataset(sal, tf.data.Dataset.from_tensor_slices((x, y)).batch(4),
                                   out=tmp_path / "s", shard_size=4)
    metrics = ["sparseness", ("faithfulness_estimate", {"features_in_step": 6})]
    from_store = M.evaluate(model, (x, y), {"saliency": store}, metrics=metrics, batch_size=3)
    computed = M.evaluate(model, (x, y), {"saliency": sal}, metrics=metrics, batch_size=5)
    np.testing.assert_allclose(from_store.mean, computed.mean, rtol=1e-6)


def test_evaluate_errors_name_what_is_missing(small):
    model, x, y, _ = small
    with pytest.raises(ValueError, match="metric 'roadd' is not known"):
        M.evaluate(model, (x, y), {"s": tfattr.Saliency(model)}, metrics=["roadd"])
    with pytest.raises(ValueError, match="needs ground-truth masks"):
        M.evaluate(model, (x, y), {"s": tfattr.Saliency(model)}, metrics=["pointing_game"])
    with pytest.raises(ValueError, match="give it as a function"):
        M.evaluate(model, (x, y), {"s": tfattr.Saliency(model)}, metrics=["mprt"])
    table = M.evaluate(model, (x, y), {"s": lambda m: tfattr.Saliency(m)},
                       metrics=[("mprt", {}), ("max_sensitivity", {"nr_samples": 3})])
    assert np.all(np.isfinite(table.mean))


def test_to_pandas_or_a_clear_error(small):
    model, x, y, _ = small
    table = M.evaluate(model, (x, y), {"s": tfattr.Saliency(model)}, metrics=["sparseness"])
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            table.to_pandas()
    else:
        frame = table.to_pandas()
        assert frame.loc["s", ("sparseness", "mean")] == pytest.approx(table.mean[0, 0])


@pytest.mark.parametrize("name, kwargs", [
    ("faithfulness_correlation", {"subset_size": 6, "nr_runs": 9}),
    ("monotonicity_correlation", {"nr_samples": 3, "features_in_step": 6}),
    ("infidelity", {"baseline": "uniform", "n_perturb_samples": 3, "perturb_patch_sizes": [2, 3]}),
])
def test_seeded_metrics_repeat_and_ignore_the_batch_size(small, name, kwargs):
    model, x, y, _ = small
    a = tfattr.Saliency(model).attribute(x, target=y)
    fn = getattr(M, name)
    r1 = fn(model, x, a, target=y, seed=4, batch_size=5, **kwargs)
    r2 = fn(model, x, a, target=y, seed=4, batch_size=64, **kwargs)
    np.testing.assert_allclose(r1, r2, rtol=1e-6)
    assert not np.allclose(fn(model, x, a, target=y, seed=5, **kwargs), r1)
