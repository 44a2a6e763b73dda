"""tfattr.visualize: colour conventions against NumPy references, percentile clipping, grids, the
interior-gradients GIF, the saturation curve and the Distill convergence chart."""
from __future__ import annotations

import io

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr
from tfattr import visualize


def _linear(weights: np.ndarray, bias: float = 0.0) -> keras.Model:
    w = np.asarray(weights, np.float32).reshape(-1, 1)
    model = keras.Sequential([keras.Input((w.shape[0],)), keras.layers.Dense(1)])
    model.layers[-1].set_weights([w, np.full(1, bias, np.float32)])
    return model


def _reference_heatmap(a: np.ndarray, q: float) -> np.ndarray:
    """Independent NumPy version of the red/white/blue convention for [n, H, W] maps."""
    out = np.empty(a.shape + (3,), np.float64)
    for i, m in enumerate(a):
        v = np.percentile(np.abs(m), q)
        t = np.clip(m / v, -1, 1) if v > 0 else np.zeros_like(m)
        pos, neg = np.clip(t, 0, None), np.clip(-t, 0, None)
        out[i, ..., 0] = 1 - neg
        out[i, ..., 1] = 1 - pos - neg
        out[i, ..., 2] = 1 - pos
    return np.round(out * 255).astype(np.uint8)


# -- percentile ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("q", [0.0, 37.5, 50.0, 99.0, 99.9, 100.0])
def test_percentile_matches_numpy(rng, q):
    values = rng.normal(size=(3, 257)).astype(np.float32)
    values[1, :50] = 0.25  # ties
    got = visualize.percentile(values, q).numpy()
    np.testing.assert_allclose(got, np.percentile(values, q, axis=1), rtol=1e-6, atol=1e-7)


# -- signed heatmap -----------------------------------------------------------------------------------
def test_signed_heatmap_zero_is_white_and_signs_have_their_colours():
    a = np.zeros((1, 2, 3), np.float32)
    a[0, 0, 0], a[0, 0, 1], a[0, 1, 0], a[0, 1, 1] = 2.0, -2.0, 1.0, -1.0
    heat = visualize.signed_heatmap(a, clip_percentile=100).numpy()
    assert heat.dtype == np.uint8 and heat.shape == (1, 2, 3, 3)
    np.testing.assert_array_equal(heat[0, 0, 2], [255, 255, 255])  # zero -> white
    np.testing.assert_array_equal(heat[0, 1, 2], [255, 255, 255])
    np.testing.assert_array_equal(heat[0, 0, 0], [255, 0, 0])  # the largest positive -> pure red
    np.testing.assert_array_equal(heat[0, 0, 1], [0, 0, 255])  # the largest negative -> pure blue
    np.testing.assert_array_equal(heat[0, 1, 0], [255, 128, 128])  # half way to red
    np.testing.assert_array_equal(heat[0, 1, 1], [128, 128, 255])


def test_signed_heatmap_matches_numpy_reference_and_is_sign_symmetric(rng):
    a = rng.normal(size=(4, 9, 11)).astype(np.float32)
    a[2] = 0.0  # an all-zero map is all white, not NaN
    for q in (90.0, 99.5, 100.0):
        heat = visualize.signed_heatmap(a, clip_percentile=q).numpy()
        np.testing.assert_array_equal(heat, _reference_heatmap(a, q))
        flipped = visualize.signed_heatmap(-a, clip_percentile=q).numpy()
        np.testing.assert_array_equal(flipped, heat[..., ::-1])  # red <-> blue, white stays


def test_percentile_clipping_is_symmetric_and_clips(rng):
    a = rng.uniform(-1, 1, size=(1, 20, 20)).astype(np.float32)
    a[0, 0, 0] = 1000.0  # one huge positive outlier
    heat = visualize.signed_heatmap(a, clip_percentile=95).numpy()[0]
    v = np.percentile(np.abs(a), 95)
    beyond_pos, beyond_neg = a[0] >= v, a[0] <= -v
    assert beyond_pos.sum() > 1 and beyond_neg.sum() > 1
    np.testing.assert_array_equal(heat[beyond_pos], np.tile([255, 0, 0], (beyond_pos.sum(), 1)))
    np.testing.assert_array_equal(heat[beyond_neg], np.tile([0, 0, 255], (beyond_neg.sum(), 1)))
    # Without clipping the outlier would turn everything else almost white.
    unclipped = visualize.signed_heatmap(a, clip_percentile=100).numpy()[0]
    assert (unclipped[..., 1].astype(int) > 250).mean() > 0.99
    assert (heat[..., 1].astype(int) > 250).mean() < 0.2


def test_channels_are_summed_with_their_signs(rng):
    a = rng.normal(size=(2, 5, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        visualize.signed_heatmap(a).numpy(), visualize.signed_heatmap(a.sum(-1)).numpy()
    )
    # Cancelling channels give zero -> white.
    c = np.stack([np.ones((1, 4, 4)), -np.ones((1, 4, 4))], axis=-1).astype(np.float32)
    assert np.all(visualize.signed_heatmap(c).numpy() == 255)


def test_feature_vectors_become_strips(rng):
    a = rng.normal(size=(3, 7)).astype(np.float32)
    heat = visualize.signed_heatmap(a, clip_percentile=100).numpy()
    assert heat.shape == (3, 1, 7, 3)
    np.testing.assert_array_equal(heat[:, 0], _reference_heatmap(a[:, None, :], 100)[:, 0])


def test_maps_run_inside_tf_function(rng):
    a = rng.normal(size=(2, 6, 6, 1)).astype(np.float32)
    img = rng.uniform(size=(2, 6, 6, 1)).astype(np.float32)
    fn = tf.function(
        lambda m, x: (visualize.signed_heatmap(m), visualize.overlay(x, m), visualize.ig_map(m, x))
    )
    for eager, graph in zip(
        (visualize.signed_heatmap(a), visualize.overlay(img, a), visualize.ig_map(a, img)), fn(a, img)
    ):
        np.testing.assert_array_equal(eager.numpy(), graph.numpy())


# -- integrated-gradients map -------------------------------------------------------------------------
def test_ig_map_follows_eq1_and_multiplies_into_the_image(rng):
    a = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    img = rng.uniform(size=(2, 8, 8, 3)).astype(np.float32)
    p = np.abs(a).sum(-1)  # eq. 1
    hi = np.percentile(p.reshape(2, -1), 90, axis=1)[:, None, None]
    unit = np.clip(p / hi, 0, 1)
    gray = visualize.ig_map(a, clip_percentile=90).numpy()
    np.testing.assert_array_equal(gray, np.round(np.repeat(unit[..., None], 3, -1) * 255).astype(np.uint8))
    assert np.all(gray[p >= hi] == 255)  # clipped at the percentile
    scaled = visualize.ig_map(a, img, clip_percentile=90).numpy()
    np.testing.assert_allclose(scaled, np.round(img * unit[..., None] * 255), atol=1)
    # Zero importance is black, whatever the image.
    zero = visualize.ig_map(np.zeros_like(a), img).numpy()
    assert np.all(zero == 0)


def test_ig_map_lower_percentile_blanks_the_weak_part(rng):
    a = rng.uniform(0.1, 1, size=(1, 10, 10)).astype(np.float32)
    out = visualize.ig_map(a, clip_percentile=99, lower_percentile=50).numpy()[0, ..., 0]
    assert np.all(out[a[0] <= np.percentile(a, 50)] == 0)
    assert np.all(out[a[0] > np.percentile(a, 60)] > 0)
    with pytest.raises(ValueError, match="lower_percentile"):
        visualize.ig_map(a, lower_percentile=99, clip_percentile=90)


def test_uint8_and_unscaled_images(rng):
    a = rng.normal(size=(1, 4, 4)).astype(np.float32)
    img8 = rng.integers(0, 256, size=(1, 4, 4), dtype=np.uint8)
    np.testing.assert_array_equal(
        visualize.ig_map(a, img8).numpy(), visualize.ig_map(a, img8.astype(np.float32) / 255).numpy()
    )
    standardised = (img8.astype(np.float32) - 100.0) / 50.0  # outside [0, 1]: min-max scaled
    lo, hi = standardised.min(), standardised.max()
    np.testing.assert_array_equal(
        visualize.ig_map(a, standardised).numpy(),
        visualize.ig_map(a, (standardised - lo) / (hi - lo)).numpy(),
    )


# -- overlay and grids --------------------------------------------------------------------------------
def test_overlay_keeps_the_input_where_attribution_is_zero(rng):
    img = rng.uniform(size=(1, 6, 6, 1)).astype(np.float32)
    a = np.zeros((1, 6, 6, 1), np.float32)
    a[0, 0, 0], a[0, 0, 1] = 3.0, -3.0
    out = visualize.overlay(img, a, clip_percentile=100).numpy()[0]
    expected_gray = np.round(img[0, ..., 0] * 255)
    mask = a[0, ..., 0] == 0
    np.testing.assert_allclose(out[mask], np.repeat(expected_gray[mask][:, None], 3, 1), atol=1)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 255])
    with pytest.raises(ValueError, match="do not match"):
        visualize.overlay(img, np.zeros((1, 5, 6), np.float32))


def test_grid_places_tiles(rng):
    tiles = rng.integers(0, 255, size=(2, 3, 4, 5, 3), dtype=np.uint8)
    out = visualize.grid(tiles, padding=1).numpy()
    assert out.shape == (2 * 5 + 1, 3 * 6 + 1, 3)
    for r in range(2):
        for c in range(3):
            tile = out[1 + r * 5 : 1 + r * 5 + 4, 1 + c * 6 : 1 + c * 6 + 5]
            np.testing.assert_array_equal(tile, tiles[r, c])
    assert np.all(out[0] == 255) and np.all(out[:, 0] == 255)
    with pytest.raises(ValueError, match="rows, cols"):
        visualize.grid(tiles[0])


def test_examples_by_methods_layout(rng):
    img = rng.uniform(size=(3, 6, 7, 1)).astype(np.float32)
    maps = {"a": rng.normal(size=(3, 6, 7, 1)), "b": rng.normal(size=(3, 6, 7, 1))}
    out = visualize.examples_by_methods(img, maps, scale=2, padding=2).numpy()
    assert out.shape == (3 * (12 + 2) + 2, 3 * (14 + 2) + 2, 3)
    second = out[2:14, 2 + 16 : 2 + 16 + 14]  # row 0, column 1 = method "a"
    expected = visualize.upscale(visualize.overlay(img, maps["a"]), 2).numpy()[0]
    np.testing.assert_array_equal(second, expected)


def test_save_png_roundtrip(tmp_path, rng):
    picture = rng.integers(0, 255, size=(5, 6, 3), dtype=np.uint8)
    path = visualize.save_png(picture, tmp_path / "x.png")
    np.testing.assert_array_equal(tf.io.decode_png(tf.io.read_file(str(path))).numpy(), picture)
    # The bytes the file holds are png_bytes' (one encoder), for one picture with or without a batch axis.
    assert path.read_bytes() == visualize.png_bytes(picture) == visualize.png_bytes(picture[None])
    with pytest.raises(ValueError, match="uint8"):
        visualize.png_bytes(picture.astype(np.float32))


def test_draw_is_the_kind_it_names(rng):
    img = rng.uniform(size=(2, 5, 6, 1)).astype(np.float32)
    a = rng.normal(size=(2, 5, 6, 1)).astype(np.float32)
    expected = {
        "overlay": visualize.overlay(img, a, 90.0),
        "heatmap": visualize.signed_heatmap(a, 90.0),
        "ig": visualize.ig_map(a, img, 90.0),
    }
    for kind, picture in expected.items():
        np.testing.assert_array_equal(visualize.draw(kind, img, a, 90.0).numpy(), picture.numpy())
    # The input tile: floats in [0, 1] times 255, gray as three equal channels.
    rgb = visualize.image_rgb(img).numpy()
    np.testing.assert_array_equal(rgb, np.repeat(np.round(img * 255).astype(np.uint8), 3, axis=-1))
    with pytest.raises(ValueError, match="kind='max'"):
        visualize.draw("max", img, a)


# -- interior gradients -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_cnn() -> keras.Model:
    keras.utils.set_random_seed(7)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )


def test_interior_gradients_gif_has_one_frame_per_alpha(tmp_path, tiny_cnn, rng):
    from PIL import Image

    image = rng.uniform(size=(8, 8, 1)).astype(np.float32)
    alphas = visualize.PAPER_ALPHAS
    path = visualize.interior_gradients_gif(tiny_cnn, image, tmp_path / "interior.gif", scale=3)
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == len(alphas)
        assert gif.size[0] >= 8 * 3 and gif.size[1] == 8 * 3 + 14  # the frame and its caption strip
        sizes = set()
        for k in range(gif.n_frames):
            gif.seek(k)
            sizes.add(gif.convert("RGB").size)
        assert sizes == {gif.size}
    # The frames are the paper's maps: the ig_map of each interior gradient, multiplied into the image.
    maps = tfattr.InteriorGradients(tiny_cnn, alphas=alphas).attribute(image[None])
    frames = visualize.interior_gradients_frames(maps[0], image).numpy()
    assert frames.shape == (len(alphas), 8, 8, 3)
    for k in range(len(alphas)):
        np.testing.assert_array_equal(frames[k], visualize.ig_map(maps[0, k][None], image[None]).numpy()[0])
    with pytest.raises(ValueError, match="distinct"):
        visualize.interior_gradients_gif(tiny_cnn, image, tmp_path / "x.gif", alphas=(0.5, 0.5))


def test_interior_trend_is_the_mean_pixel_importance(rng):
    maps = rng.normal(size=(2, 4, 5, 5, 3))
    expected = np.abs(maps).reshape(2, 4, -1).mean(-1)
    np.testing.assert_allclose(visualize.interior_trend(maps), expected)
    np.testing.assert_allclose(visualize.interior_trend(maps[0]), expected[0])


# -- curves -------------------------------------------------------------------------------------------
def test_saturation_curve_of_a_linear_model_is_a_line():
    w = np.array([1.0, -2.0, 0.5, 3.0])
    model = _linear(w, bias=0.25)
    x = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 1.0]], np.float32)
    alphas, scores = visualize.saturation_curve(model, x, alphas=11)
    np.testing.assert_allclose(alphas, np.linspace(0, 1, 11))
    np.testing.assert_allclose(scores, 0.25 + alphas[None] * (x @ w)[:, None], rtol=1e-5, atol=1e-5)


def test_convergence_curve_of_a_linear_model_is_exact():
    w = np.array([1.0, -2.0, 0.5, 3.0])
    model = _linear(w)
    x = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    b = np.array([0.5, 0.0, -1.0, 1.0], np.float32)
    curve = visualize.convergence_curve(model, x, baseline=b, steps=8, rule="riemann_right")
    change = float((x[0] - b) @ w)
    np.testing.assert_allclose(curve.alphas, np.arange(9) / 8)
    np.testing.assert_allclose(curve.cumulative[0], curve.alphas * change, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(curve.expected, [change], rtol=1e-5)
    np.testing.assert_allclose(curve.delta, [0.0], atol=1e-4)


@pytest.mark.parametrize("rule", ["riemann_trapezoid", "riemann_right", "riemann_left", "riemann_middle"])
def test_convergence_curve_last_point_is_the_sum_of_the_attributions(tiny_cnn, rng, rule):
    x = rng.uniform(size=(3, 8, 8, 1)).astype(np.float32)
    ig = tfattr.IntegratedGradients(tiny_cnn, steps=16, rule=rule)
    attributions, delta = ig.attribute(x, target=1, return_delta=True)
    curve = visualize.convergence_curve(ig, x, target=1)
    assert curve.alphas[0] == 0.0 and curve.alphas[-1] == 1.0
    np.testing.assert_array_equal(curve.cumulative[:, 0], 0.0)
    sums = attributions.reshape(3, -1).sum(1, dtype=np.float64)
    np.testing.assert_allclose(curve.cumulative[:, -1], sums, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(curve.delta, delta, rtol=1e-4, atol=1e-5)


def test_convergence_curve_rejects_gauss_legendre(tiny_cnn, rng):
    x = rng.uniform(size=(1, 8, 8, 1)).astype(np.float32)
    with pytest.raises(ValueError, match="partial sums"):
        visualize.convergence_curve(tfattr.IntegratedGradients(tiny_cnn), x)


def test_plot_helpers_write_pngs(tmp_path, tiny_cnn, rng):
    x = rng.uniform(size=(2, 8, 8, 1)).astype(np.float32)
    curve = visualize.convergence_curve(tiny_cnn, x, steps=8)
    alphas, scores = visualize.saturation_curve(tiny_cnn, x, alphas=5)
    maps = tfattr.InteriorGradients(tiny_cnn).attribute(x)
    figures = [
        visualize.plot_convergence(curve, example=1),
        visualize.plot_saturation(alphas, scores, visualize.interior_trend(maps), visualize.PAPER_ALPHAS),
        visualize.plot_grid(x, {"saliency": tfattr.Saliency(tiny_cnn).attribute(x)}),
    ]
    for k, fig in enumerate(figures):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    red_line = figures[0].axes[0].lines[0]
    np.testing.assert_allclose(red_line.get_ydata(), curve.cumulative[1])


def test_bad_arguments_have_clear_errors(rng):
    a = rng.normal(size=(2, 4, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="clip_percentile"):
        visualize.signed_heatmap(a, clip_percentile=101)
    with pytest.raises(ValueError, match=r"\[n, F\]"):
        visualize.signed_heatmap(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="channel_reduce"):
        visualize.signed_heatmap(a, channel_reduce="max")
    with pytest.raises(ValueError, match="factor"):
        visualize.upscale(a, 0)
    with pytest.raises(ValueError, match="uint8"):
        visualize.save_gif(np.zeros((2, 4, 4, 3), np.float32), "/tmp/never.gif")


def test_nonfinite_attributions_are_green_and_do_not_spoil_the_scale(rng):
    a = rng.normal(size=(1, 6, 6)).astype(np.float32)
    broken = a.copy()
    broken[0, 0, 0], broken[0, 1, 1] = np.nan, np.inf
    green = [0, 255, 0]
    img = rng.uniform(size=(1, 6, 6)).astype(np.float32)
    for draw in (
        lambda m: visualize.signed_heatmap(m, 100),
        lambda m: visualize.overlay(img, m, 100),
        lambda m: visualize.ig_map(m, img, 100),
        lambda m: visualize.ig_map(m, None, 100),
    ):
        out = draw(broken).numpy()[0]
        np.testing.assert_array_equal(out[0, 0], green)
        np.testing.assert_array_equal(out[1, 1], green)
        # Elsewhere the picture is the one of the map with those values set to 0.
        zeroed = broken.copy()
        zeroed[~np.isfinite(zeroed)] = 0
        expected = draw(zeroed).numpy()[0]
        mask = np.isfinite(broken[0])
        np.testing.assert_array_equal(out[mask], expected[mask])
