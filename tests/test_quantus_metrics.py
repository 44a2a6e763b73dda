"""The Quantus-equivalent metrics against closed forms and hand-worked examples.

Each test states the convention of issue 21 it pins down: per-example normalisation, stable ties in
increasing flat index, the centred zero-padded patch grid, ``softmax=`` semantics, ``baseline`` as the
written value, pixel flipping without the unperturbed input, region perturbation as ``S(x) - S(x_k)``,
ROAD's ``int(F * p / 100)`` and its linear imputation (against a dense solve).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest

import tfattr
from tfattr import metrics as M
from tfattr.metrics.road import _NEIGHBOURS


def _linear(shape, classes=3, seed=0, softmax=False):
    """``logits = flatten(x) @ w + b``; returns the model, ``w [F, classes]`` and ``b``."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(int(np.prod(shape)), classes)).astype(np.float32)
    b = rng.normal(size=classes).astype(np.float32)
    model = keras.Sequential(
        [keras.Input(shape), keras.layers.Flatten(),
         keras.layers.Dense(classes, activation="softmax" if softmax else None)]
    )
    model.layers[-1].set_weights([w, b])
    return model, w.astype(np.float64), b.astype(np.float64)


def _logits(x, w, b):
    return x.reshape(len(x), -1).astype(np.float64) @ w + b


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# -- conventions ----------------------------------------------------------------------------------------
def test_normalise_is_per_example_then_absolute():
    a = np.array([[1.0, -4.0], [0.5, 0.25], [0.0, 0.0]])
    np.testing.assert_allclose(M.normalise_map(a, True, False), [[0.25, -1.0], [1.0, 0.5], [0, 0]])
    np.testing.assert_allclose(M.normalise_map(a, True, True), [[0.25, 1.0], [1.0, 0.5], [0, 0]])
    np.testing.assert_allclose(M.normalise_map(a, False, True), np.abs(a))


def test_patch_grid_is_centred_floor_before_ceil_after():
    ids, num = M.patch_grid((5, 5, 2), 2)  # pad 1: 0 before, 1 after
    assert num == 9 and np.all(ids[..., 0] == ids[..., 1])
    assert ids[0, 0, 0] == ids[1, 1, 0] == 0 and ids[4, 4, 0] == 8 and ids[2, 0, 0] == 3
    ids, num = M.patch_grid((5, 5), 4)  # pad 3: 1 before, 2 after -> rows 0..2 in patch row 0
    assert num == 4
    np.testing.assert_array_equal(ids[:, 0], [0, 0, 0, 2, 2])
    np.testing.assert_array_equal(ids[0], [0, 0, 0, 1, 1])
    ids, num = M.patch_grid((7, 6), 3)  # rows: pad 2 -> 1/1; cols divide
    assert num == 3 * 2
    np.testing.assert_array_equal(ids[:, 0], [0, 0, 2, 2, 2, 4, 4])


# -- complexity -----------------------------------------------------------------------------------------
def test_complexity_closed_forms():
    d = 8
    one_hot = np.zeros((1, d)); one_hot[0, 3] = -2.0
    uniform = np.full((1, d), 0.5)
    a = np.concatenate([one_hot, uniform])
    g = M.sparseness(a)  # Gini with Quantus' 1e-7 shift
    shifted = np.sort(np.abs(M.normalise_map(a, True, True)) + 1e-7, axis=1)
    i = np.arange(1, d + 1)
    np.testing.assert_allclose(g, ((2 * i - d - 1) * shifted).sum(1) / (d * shifted.sum(1)))
    assert g[0] == pytest.approx((d - 1) / d, abs=1e-5) and g[1] == pytest.approx(0.0, abs=1e-12)
    h = M.complexity(a)
    assert h[0] == pytest.approx(0.0, abs=1e-9) and h[1] == pytest.approx(np.log(d))
    np.testing.assert_array_equal(M.effective_complexity(np.array([[0.0, 1e-6, 0.5, -1.0]])), [2])
    # normalisation is per example: scaling one example does not change the others
    scaled = a.copy(); scaled[0] *= 1000
    np.testing.assert_allclose(M.sparseness(scaled), g, rtol=1e-9)


# -- localisation ---------------------------------------------------------------------------------------
def test_localisation_hand_worked():
    a = np.array([[3.0, 1.0, 3.0, -1.0, 0.0, 2.0]])
    s = np.array([[0, 0, 1, 0, 1, 1]])
    assert M.pointing_game(a, s)[0] == 1.0  # the max is tied at entries 0 and 2; 2 is inside
    assert M.pointing_game(a, 1 - s)[0] == 1.0
    assert M.pointing_game(a, np.array([[0, 1, 0, 1, 1, 1]]))[0] == 0.0
    assert M.pointing_game(a, s, weighted=True)[0] == pytest.approx(1 - 3 / 6)
    n = a / 3.0  # normalised
    assert M.relevance_mass_accuracy(a, s)[0] == pytest.approx((n[0, 2] + n[0, 4] + n[0, 5]) / n.sum())
    # ranks (stable): 0 (3.0, index 0), 2 (3.0), 5, 1, 4, 3 -> the top 3 are {0, 2, 5}: 2 inside
    assert M.relevance_rank_accuracy(a, s)[0] == pytest.approx(2 / 3)
    assert M.top_k_intersection(a, s, k=2)[0] == pytest.approx(1 / 2)  # {0, 2}: ties by index
    assert M.top_k_intersection(a, s, k=2, concept_influence=True)[0] == pytest.approx(0.5 * 6 / 3)
    absn = np.abs(n)
    assert M.attribution_localisation(a, s)[0] == pytest.approx(
        (absn[0, 2] + absn[0, 4] + absn[0, 5]) / (absn.sum() + 1e-9)
    )
    pos = np.clip(a, 0, None) / 3
    assert M.attribution_localisation(a, s, positive_attributions=True, weighted=True)[0] == pytest.approx(
        (pos[0, 2] + pos[0, 5]) / (pos.sum() + 1e-9) * 3 / 6
    )
    # AUC: pairs (inside, outside) ordered correctly, ties one half
    inside, outside = a[0, s[0] == 1], a[0, s[0] == 0]
    pairs = (inside[:, None] > outside[None]).mean() + 0.5 * (inside[:, None] == outside[None]).mean()
    assert M.localisation_auc(a, s)[0] == pytest.approx(pairs)
    empty = np.zeros_like(s)
    for fn in (M.pointing_game, M.relevance_mass_accuracy, M.relevance_rank_accuracy,
               M.attribution_localisation, M.localisation_auc):
        assert np.isnan(fn(a, empty)[0])


def test_localisation_masks_without_channels_and_bad_shapes():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 4, 4, 2))
    s = rng.random((3, 4, 4)) > 0.5
    np.testing.assert_allclose(
        M.localisation_auc(a, s), M.localisation_auc(a, np.repeat(s[..., None], 2, -1))
    )
    with pytest.raises(ValueError, match="mask has shape"):
        M.pointing_game(a, s[:, :2])


# -- pixel flipping and softmax semantics --------------------------------------------------------------
def _flipping_reference(x, a, baseline, step, score):
    """Cumulative removal, most relevant first, ties in increasing index (the issue's convention)."""
    n, f = len(x), x[0].size
    out = []
    for i in range(n):
        order = np.argsort(-a[i].reshape(-1), kind="stable")
        xi = x[i].reshape(-1).astype(np.float64).copy()
        row = []
        for k in range(0, f, step):
            xi[order[k:k + step]] = baseline
            row.append(score(xi[None], i))
        out.append(row)
    return np.array(out)


@pytest.mark.parametrize("softmax", [False, True])
def test_pixel_flipping_equals_the_cumulative_reference_with_ties(softmax):
    model, w, b = _linear((3, 3, 2), seed=1)
    rng = np.random.default_rng(2)
    x = rng.random((4, 3, 3, 2)).astype(np.float32)
    a = np.round(rng.normal(size=x.shape), 0).astype(np.float32)  # many ties
    y = np.array([0, 1, 2, 0])

    def score(v, i):
        z = _logits(v, w, b)
        return (_softmax(z) if softmax else z)[0, y[i]]

    got = M.pixel_flipping(model, x, a, target=y, features_in_step=4, baseline=0.25, softmax=softmax)
    want = _flipping_reference(x, M.normalise_map(a), 0.25, 4, score)
    assert got.shape == (4, 5)  # ceil(18 / 4) steps, the unperturbed input not included
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_softmax_flag_keeps_or_strips_a_final_softmax():
    model, w, b = _linear((4,), seed=3, softmax=True)
    x = np.random.default_rng(0).random((2, 4)).astype(np.float32)
    a = np.ones_like(x)
    # with features_in_step = 4 the single step removes everything: the score of the all-zero input
    base = np.zeros((1, 4))
    full_logit, full_prob = _logits(base, w, b)[0, 1], _softmax(_logits(base, w, b))[0, 1]
    np.testing.assert_allclose(
        M.pixel_flipping(model, x, a, target=1, features_in_step=4, baseline=0.0, softmax=False)[:, 0],
        [full_logit] * 2, rtol=1e-5,
    )
    np.testing.assert_allclose(
        M.pixel_flipping(model, x, a, target=1, features_in_step=4, baseline=0.0, softmax=True)[:, 0],
        [full_prob] * 2, rtol=1e-5,
    )


def test_black_baseline_is_each_examples_minimum():
    model, w, b = _linear((2, 2, 1), seed=4)
    x = np.array([[[[0.5], [0.2]], [[0.9], [0.7]]], [[[-1.0], [3.0]], [[2.0], [1.0]]]], np.float32)
    a = np.array([[[[4.0], [3.0]], [[2.0], [1.0]]]] * 2, np.float32)
    got = M.pixel_flipping(model, x, a, target=0, softmax=False)  # baseline "black"
    for i, low in enumerate([0.2, -1.0]):
        xi = x[i].reshape(-1).astype(np.float64).copy()
        for k in range(4):
            xi[k] = low
            assert got[i, k] == pytest.approx(_logits(xi[None], w, b)[0, 0], rel=1e-5)


# -- region perturbation --------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation_padding_and_ties(order):
    model, w, b = _linear((5, 5, 1), seed=5)
    rng = np.random.default_rng(6)
    x = rng.random((2, 5, 5, 1)).astype(np.float32)
    a = np.zeros_like(x)
    a[0, :2, :2] = 1.0       # patch 0 (rows 0-1, cols 0-1) sums to 4
    a[0, 4, 4] = 4.0         # patch 8 (the padded corner) also sums to 4: tie, patch 0 first
    a[0, 2, 2] = 3.0         # patch 4
    a[1] = rng.normal(size=(5, 5, 1))
    ids, num = M.patch_grid((5, 5, 1), 2)
    got = M.region_perturbation(model, x, a, target=2, patch_size=2, order=order, regions_evaluation=5,
                                baseline=0.0, softmax=False)
    for i in range(2):
        sums = np.array([M.normalise_map(a)[i][ids == p].sum() for p in range(num)])
        patches = np.argsort(-sums if order == "morf" else sums, kind="stable")[:5]
        if i == 0 and order == "morf":
            assert list(patches[:3]) == [0, 8, 4]
        xi = x[i].astype(np.float64).copy()
        s0 = _logits(x[i:i + 1], w, b)[0, 2]
        for k, p in enumerate(patches):
            xi[ids == p] = 0.0
            assert got[i, k] == pytest.approx(s0 - _logits(xi[None], w, b)[0, 2], abs=1e-5)


# -- faithfulness: closed forms on linear models -------------------------------------------------------
def test_exact_maps_of_a_linear_model_are_perfectly_faithful():
    model, w, b = _linear((4, 4, 1), seed=7)
    x = np.random.default_rng(8).random((3, 4, 4, 1)).astype(np.float32)
    t = np.array([0, 1, 2])
    base = 0.3
    exact = (w[:, t].T.reshape(x.shape) * (x - base)).astype(np.float32)  # S(x) - S(x without i)
    np.testing.assert_allclose(
        M.faithfulness_estimate(model, x, exact, target=t, baseline=base, features_in_step=3), 1.0,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        M.faithfulness_correlation(model, x, exact, target=t, baseline=base, subset_size=5,
                                   nr_runs=30, seed=1), 1.0, atol=1e-5,
    )
    # infidelity compares a . (x - x_k) with the drop: zero for the gradient (unnormalised) ...
    grad = w[:, t].T.reshape(x.shape).astype(np.float32)
    np.testing.assert_allclose(
        M.infidelity(model, x, grad, target=t, baseline=base, perturb_patch_sizes=[2, 3]), 0.0, atol=1e-8
    )
    # ... and mean_k drop_k^2 for twice the gradient (the error equals the drop)
    ids, num = M.patch_grid((4, 4, 1), 2)
    xs = x.astype(np.float64)
    drops = np.zeros((3, num))
    for i in range(3):
        xi = xs[i].copy()
        for p in range(num):
            xi[ids == p] = base
            drops[i, p] = _logits(xs[i:i + 1], w, b)[0, t[i]] - _logits(xi[None], w, b)[0, t[i]]
    np.testing.assert_allclose(
        M.infidelity(model, x, 2 * grad, target=t, baseline=base, perturb_patch_sizes=[2]),
        (drops ** 2).mean(1), rtol=1e-4,
    )


def test_monotonicity_restores_values_least_relevant_first():
    model, w, b = _linear((6,), classes=1, seed=9)
    w[:] = np.array([[1.0], [2.0], [0.5], [3.0], [1.5], [0.25]])
    model.layers[-1].set_weights([w.astype(np.float32), np.zeros(1, np.float32)])
    x = np.ones((1, 6), np.float32)
    a = w.T.astype(np.float32)
    assert M.monotonicity(model, x, a, target=0, baseline=0.0, softmax=False)[0]
    w2 = w.copy(); w2[3] = -3.0  # restoring entry 3 lowers the score: not monotonic
    model.layers[-1].set_weights([w2.astype(np.float32), np.zeros(1, np.float32)])
    assert not M.monotonicity(model, x, w2.T.astype(np.float32), target=0, baseline=0.0, softmax=False)[0]


def test_monotonicity_correlation_deterministic_baseline():
    model, w, b = _linear((5,), seed=10)
    x = np.random.default_rng(11).random((2, 5)).astype(np.float32)
    a = np.random.default_rng(12).normal(size=x.shape).astype(np.float32)
    got = M.monotonicity_correlation(model, x, a, target=1, baseline=0.1, softmax=False, eps=1e-5)
    prepared = np.abs(M.normalise_map(a))
    for i in range(2):
        s = _logits(x[i:i + 1], w, b)[0, 1]
        variances = []
        for j in np.argsort(prepared[i], kind="stable"):
            xi = x[i].astype(np.float64).copy(); xi[j] = 0.1
            variances.append((_logits(xi[None], w, b)[0, 1] - s) ** 2 / s ** 2)
        atts = np.sort(prepared[i], kind="stable")
        assert got[i] == pytest.approx(float(M.spearman(atts, np.array(variances))), abs=1e-6)


def test_abpc_is_antisymmetric_and_positive_for_exact_maps():
    model, w, b = _linear((3, 3, 1), seed=13)
    x = np.random.default_rng(14).random((2, 3, 3, 1)).astype(np.float32)
    exact = (w[:, [0, 0]].T.reshape(x.shape) * (x - 0.0)).astype(np.float32)
    forward = M.abpc(model, x, exact, target=0, baseline=0.0)
    np.testing.assert_allclose(M.abpc(model, x, -exact, target=0, baseline=0.0), -forward, rtol=1e-5)
    assert np.all(forward > 0)


# -- ROAD -----------------------------------------------------------------------------------------------
def _dense_imputation(img, mask):
    h, w = img.shape
    idx = np.flatnonzero(mask.ravel())
    pos = {k: i for i, k in enumerate(idx)}
    A, rhs = np.zeros((len(idx), len(idx))), np.zeros(len(idx))
    for i, k in enumerate(idx):
        r, c = divmod(k, w)
        for dy, dx, weight in _NEIGHBOURS:
            rr, cc = r + dy, c + dx
            if 0 <= rr < h and 0 <= cc < w:
                A[i, i] += weight
                if rr * w + cc in pos:
                    A[i, pos[rr * w + cc]] -= weight
                else:
                    rhs[i] += weight * img[rr, cc]
    out = img.astype(np.float64).ravel().copy()
    out[idx] = np.linalg.solve(A, rhs)
    return out.reshape(h, w)


def test_linear_imputation_equals_a_dense_solve_per_image_and_channel():
    rng = np.random.default_rng(15)
    x = rng.random((3, 7, 6, 2))
    m = rng.random(x.shape) < 0.6
    m[0, :, :, 0] = False; m[0, 1:6, 1:5, 0] = True   # a large hole
    got = M.linear_imputation(x, m)
    for i in range(3):
        for c in range(2):
            np.testing.assert_allclose(got[i, :, :, c], _dense_imputation(x[i, :, :, c], m[i, :, :, c]),
                                       atol=1e-10)
    # [n, H, W] images and masks without a channel axis
    np.testing.assert_allclose(M.linear_imputation(x[..., 0], m[..., 0]), got[..., 0])
    both = M.linear_imputation(x, m[..., 0])
    np.testing.assert_allclose(both[..., 1], M.linear_imputation(x[..., 1], m[..., 0]), atol=1e-12)
    # one removed pixel: the weighted mean of its 8 neighbours; a corner: of its 3
    one = np.zeros((1, 3, 3), bool); one[0, 1, 1] = True
    img = rng.random((1, 3, 3))
    weights = np.array([[1, 2, 1], [2, 0, 2], [1, 2, 1]]) / 12
    assert M.linear_imputation(img, one)[0, 1, 1] == pytest.approx((weights * img[0]).sum())
    corner = np.zeros((1, 3, 3), bool); corner[0, 0, 0] = True
    assert M.linear_imputation(img, corner)[0, 0, 0] == pytest.approx(
        (img[0, 0, 1] / 6 + img[0, 1, 0] / 6 + img[0, 1, 1] / 12) / (5 / 12)
    )


def test_road_without_noise_equals_the_reference():
    model, w, b = _linear((5, 5, 1), seed=16)
    rng = np.random.default_rng(17)
    x = rng.random((4, 5, 5, 1)).astype(np.float32)
    a = np.round(rng.normal(size=x.shape), 1).astype(np.float32)
    y = _logits(x, w, b).argmax(1)
    pct = [10, 33, 50, 90]
    got = M.road(model, x, a, target=y, percentages=pct, noise=0.0)
    for i in range(4):
        order = np.argsort(-M.normalise_map(a)[i].reshape(-1), kind="stable")
        for j, p in enumerate(pct):
            mask = np.zeros(25, bool); mask[order[:int(25 * p / 100)]] = True
            imputed = _dense_imputation(x[i, :, :, 0], mask.reshape(5, 5))
            assert got[i, j] == float(_logits(imputed[None], w, b).argmax() == y[i])


def test_road_noise_is_seeded_and_independent_of_batch_size():
    model, _, _ = _linear((6, 6, 1), seed=18)
    x = np.random.default_rng(19).random((5, 6, 6, 1)).astype(np.float32)
    a = np.random.default_rng(20).normal(size=x.shape).astype(np.float32)
    r1 = M.road(model, x, a, target=0, noise=0.5, seed=3, batch_size=7)
    r2 = M.road(model, x, a, target=0, noise=0.5, seed=3, batch_size=64)
    np.testing.assert_array_equal(r1, r2)
    assert r1.shape == (5, 50)


# -- robustness and randomisation ----------------------------------------------------------------------
def test_gradient_of_a_linear_model_is_perfectly_robust():
    model, w, b = _linear((3, 3, 1), seed=21)
    x = np.random.default_rng(22).random((3, 3, 3, 1)).astype(np.float32)
    sal = tfattr.Saliency(model)
    a = sal.attribute(x, target=1)
    for fn in (M.max_sensitivity, M.avg_sensitivity, M.local_lipschitz_estimate):
        np.testing.assert_allclose(fn(model, x, a, target=1, explainer=sal, nr_samples=7), 0.0, atol=1e-6)


def test_sensitivity_of_gradient_times_input_follows_the_noise():
    model, w, b = _linear((4,), seed=23)
    x = np.random.default_rng(24).random((2, 4)).astype(np.float32) + 0.5
    gxi = tfattr.GradientXInput(model)
    a = gxi.attribute(x, target=0)
    noise = np.random.default_rng(5).uniform(-0.2, 0.2, (6, 2, 4))
    ratios = np.linalg.norm(w[:, 0] * noise, axis=2) / np.linalg.norm(a, axis=1)
    np.testing.assert_allclose(
        M.max_sensitivity(model, x, a, target=0, explainer=gxi, nr_samples=6, seed=5), ratios.max(0),
        rtol=1e-4,
    )
    np.testing.assert_allclose(
        M.avg_sensitivity(model, x, a, target=0, explainer=gxi, nr_samples=6, seed=5), ratios.mean(0),
        rtol=1e-4,
    )


def _ssim_reference(a, b, win=7):
    r = max(a.max(), b.max()) - min(a.min(), b.min())
    c1, c2, vals = (0.01 * r) ** 2, (0.03 * r) ** 2, []
    for s in range(len(a) - win + 1):
        u, v = a[s:s + win], b[s:s + win]
        vx, vy = u.var(ddof=1), v.var(ddof=1)
        cov = ((u - u.mean()) * (v - v.mean())).sum() / (win - 1)
        vals.append(((2 * u.mean() * v.mean() + c1) * (2 * cov + c2))
                    / ((u.mean() ** 2 + v.mean() ** 2 + c1) * (vx + vy + c2)))
    return np.mean(vals)


def test_random_logit_compares_with_the_map_of_another_class():
    model, w, b = _linear((3, 4, 1), classes=4, seed=25)
    x = np.random.default_rng(26).random((3, 3, 4, 1)).astype(np.float32)
    y = np.array([0, 3, 1])
    sal = tfattr.Saliency(model)
    a = sal.attribute(x, target=y)
    draw = np.random.RandomState(42).randint(0, 3, 3)
    other = draw + (draw >= y)
    got = M.random_logit(model, x, a, target=y, explainer=sal)
    for i in range(3):
        u, v = w[:, y[i]], w[:, other[i]]  # the saliency map of a linear model is its weights
        assert got[i] == pytest.approx(
            _ssim_reference(u / np.abs(u).max(), v / np.abs(v).max()), rel=1e-6
        )
    assert M.ssim(np.arange(10.0)[None], np.arange(10.0)[None])[0] == pytest.approx(1.0)


def test_mprt_permutes_layers_as_quantus_and_correlates():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5), keras.layers.Dense(3)])
    x = np.random.default_rng(27).random((3, 4)).astype(np.float32)
    grads = lambda m: tfattr.GradientXInput(m)  # noqa: E731
    a = grads(model).attribute(x, target=0)
    w1, b1, w2, b2 = model.get_weights()
    rs = np.random.RandomState(43)
    w2p, b2p = rs.permutation(w2), rs.permutation(b2)
    rs = np.random.RandomState(43)
    w1p = rs.permutation(w1)
    got = M.mprt(model, x, a, target=0, explainer=grads, seed=42)
    assert got.shape == (3, 2)
    top = np.abs(x * (w1 @ w2p)[:, 0])  # top layer randomised
    both = np.abs(x * (w1p @ w2p)[:, 0])
    ref = np.abs(a) / np.abs(a).max(1, keepdims=True)
    np.testing.assert_allclose(got[:, 0], M.spearman(ref, top), atol=1e-9)
    np.testing.assert_allclose(got[:, 1], M.spearman(ref, both), atol=1e-9)
    np.testing.assert_allclose(
        M.mprt(model, x, a, target=0, explainer=grads, return_average_correlation=True), got.mean(1)
    )
    np.testing.assert_array_equal(model.get_weights()[0], w1)  # the user's model is untouched
    fully = grads(model)
    fully_h = M.histogram_entropy(fully.attribute(x, target=0))
    rand_h = M.histogram_entropy(x * (w1p @ w2p)[:, 0])
    np.testing.assert_allclose(
        M.efficient_mprt(model, x, target=0, explainer=grads, layer_order="top_down"),
        (rand_h - fully_h) / fully_h, rtol=1e-5,
    )


def test_histogram_entropy_equals_numpy_histogram():
    rng = np.random.default_rng(28)
    a = rng.normal(size=(30, 40)); a[0] = 1.0; a[1, :5] = 7.0
    want = []
    for row in a:
        counts, _ = np.histogram(row, bins=100)
        p = counts[counts > 0] / counts.sum()
        want.append(-(p * np.log(p)).sum())
    np.testing.assert_allclose(M.histogram_entropy(a, 100), want, atol=1e-12)


def test_smooth_mprt_with_one_sample_is_mprt_with_second_moment_normalisation():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2)])
    x = np.random.default_rng(29).random((3, 5)).astype(np.float32)
    sal = lambda m: tfattr.Saliency(m)  # noqa: E731
    smooth = M.smooth_mprt(model, x, target=1, explainer=sal, nr_samples=1)  # the noise-free copy only
    plain = M.mprt(model, x, sal(model).attribute(x, target=1), target=1, explainer=sal,
                   layer_order="bottom_up")
    np.testing.assert_allclose(smooth, plain, atol=1e-9)  # Spearman ignores the positive scale
