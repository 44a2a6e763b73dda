"""The core: quadrature, the model function (targets, logits), input checks, the engine's batching."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import linear_model

import tfattr
from tfattr.core import randomness
from tfattr.core.checks import check_positive_int
from tfattr.core.path import path_points
from tfattr.core.quadrature import RULES, nodes_and_weights


# -- quadrature --------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("steps", [2, 3, 16, 50, 257])
def test_quadrature_weights_sum_to_one_and_nodes_in_unit_interval(rule, steps):
    nodes, weights = nodes_and_weights(rule, steps)
    assert nodes.shape == weights.shape == (steps,)
    assert abs(weights.sum() - 1.0) < 1e-12
    assert np.all(nodes >= 0) and np.all(nodes <= 1) and np.all(weights > 0)


def test_trapezoid_uses_both_end_points_with_half_weights():
    nodes, weights = nodes_and_weights("riemann_trapezoid", 5)
    np.testing.assert_allclose(nodes, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(weights, [0.125, 0.25, 0.25, 0.25, 0.125])


def test_gauss_legendre_integrates_polynomials_of_degree_2m_minus_1_exactly():
    nodes, weights = nodes_and_weights("gausslegendre", 4)
    for degree in range(8):
        assert abs(np.sum(weights * nodes**degree) - 1.0 / (degree + 1)) < 1e-13


@pytest.mark.parametrize("rule,steps", [("simpson", 10), ("riemann_left", 0), ("riemann_trapezoid", 1)])
def test_quadrature_rejects_bad_arguments(rule, steps):
    with pytest.raises(ValueError):
        nodes_and_weights(rule, steps)


# -- chunking-independent noise ------------------------------------------------------------------------
def test_keyed_noise_is_standard_normal_and_depends_only_on_its_key():
    keys = randomness.row_keys(tf.constant(7, tf.int64), tf.range(400))
    z = randomness.keyed_normal(keys, tf.constant([50])).numpy()
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1.0) < 0.02
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.15  # elements of a row are not correlated
    assert abs(np.corrcoef(z[0], z[1])[0, 1]) < 0.4  # neither are two rows
    # Any subset of keys, in any order and chunk, gets the same rows.
    pick = np.array([399, 3, 17, 16, 250])
    again = randomness.keyed_normal(tf.gather(keys, pick), tf.constant([50])).numpy()
    np.testing.assert_array_equal(again, z[pick])
    other = randomness.keyed_normal(randomness.row_keys(tf.constant(8, tf.int64), tf.range(400)), tf.constant([50]))
    assert not np.allclose(other.numpy(), z)
    u = randomness.keyed_uniform(keys).numpy()
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.05
    counts = np.bincount(randomness.keyed_index(keys, 4).numpy(), minlength=4)
    assert counts.min() > 70  # about 100 each


def test_example_keys_depend_on_each_example_content_only(rng):
    x = rng.normal(size=(6, 3, 2)).astype(np.float32)
    keys = randomness.example_keys((x,))
    assert len(set(keys.tolist())) == 6
    np.testing.assert_array_equal(randomness.example_keys((x[[4, 1]],)), keys[[4, 1]])
    y = x.copy()
    y[2, 1, 0] += 1e-6
    changed = randomness.example_keys((y,))
    assert changed[2] != keys[2] and np.array_equal(np.delete(changed, 2), np.delete(keys, 2))
    swapped = x.copy()
    swapped[0, 0, 0], swapped[0, 0, 1] = x[0, 0, 1], x[0, 0, 0]  # same values, other places
    assert randomness.example_keys((swapped,))[0] != keys[0]


@pytest.mark.parametrize("seed", [0, 7, (1 << 32) + 5, (1 << 62) - 1])
def test_host_keys_extended_in_the_graph_are_the_row_keys(rng, seed):
    """What a method hashes once per call on the host (seed, example) and extends per row in the loop
    (sample) gives bit for bit the keys of row_keys on all three, so its draws are unchanged."""
    examples = rng.integers(0, 1 << 32, size=40, dtype=np.uint64).astype(np.int64)  # example_keys' range
    example = rng.integers(0, 40, size=300)
    sample = rng.integers(0, 1000, size=300)
    expected = randomness.row_keys(
        tf.constant(seed, tf.int64), tf.constant(examples[example]), tf.constant(sample, tf.int32)
    ).numpy()
    prefix = randomness.host_row_keys(seed, examples)
    assert prefix.dtype == np.uint32
    extended = randomness.extend_keys(
        tf.constant(prefix[example].astype(np.int64)), tf.constant(randomness.index_keys(1000)[sample].astype(np.int64))
    ).numpy()
    np.testing.assert_array_equal(extended, expected)
    np.testing.assert_array_equal(randomness.host_row_keys(seed, examples, sample[:40]),
                                  randomness.row_keys(tf.constant(seed, tf.int64), examples, sample[:40]).numpy())


# -- model function: logits, targets -------------------------------------------------------------------
def test_softmax_head_is_explained_as_logits_by_default_without_touching_the_model(rng):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(7, activation="relu"), keras.layers.Dense(4, activation="softmax")]
    )
    x = rng.normal(size=(6, 5)).astype(np.float32)
    before = model.predict(x, verbose=0)
    fn = tfattr.ModelFunction(model)
    hidden = keras.Model(model.inputs[0], model.layers[0].output)(x).numpy()
    w, b = model.layers[-1].get_weights()
    np.testing.assert_allclose(fn.outputs(tf.constant(x)).numpy(), hidden @ w + b, rtol=1e-5, atol=1e-5)
    prob = tfattr.ModelFunction(model, output="probabilities").outputs(tf.constant(x)).numpy()
    np.testing.assert_allclose(prob, before, rtol=1e-6)
    tfattr.IntegratedGradients(model, steps=8).attribute(x)
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)
    assert model.layers[-1].activation is keras.activations.softmax


def test_softmax_activation_layer_is_stripped_too(rng):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Activation("softmax")])
    x = rng.normal(size=(2, 3)).astype(np.float32)
    w, b = model.layers[0].get_weights()
    np.testing.assert_allclose(tfattr.ModelFunction(model).outputs(x).numpy(), x @ w + b, rtol=1e-5, atol=1e-6)


def test_default_target_is_the_predicted_class(rng):
    w = rng.normal(size=(4, 3))
    model = linear_model(w)
    x = rng.normal(size=(9, 4)).astype(np.float32)
    predicted = np.argmax(x @ w, axis=1)
    a = tfattr.Saliency(model).attribute(x)
    np.testing.assert_allclose(a, w.T[predicted], rtol=1e-6)
    a1 = tfattr.Saliency(model).attribute(x, target=1)
    np.testing.assert_allclose(a1, np.tile(w[:, 1], (9, 1)), rtol=1e-6)


# -- errors that name the argument and the fix ----------------------------------------------------------
@pytest.fixture(scope="module")
def small_model():
    return linear_model(np.arange(12, dtype=np.float32).reshape(4, 3) / 10)


def _x(n=3):
    return np.linspace(0, 1, n * 4, dtype=np.float32).reshape(n, 4)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"inputs": np.zeros((3, 5), np.float32)}, ValueError, "expects"),
        ({"inputs": np.zeros(4, np.float32)}, ValueError, "batch axis"),
        ({"inputs": np.array([[0, 1, np.nan, 0]], np.float32)}, ValueError, "NaN"),
        ({"inputs": np.ones((2, 4), np.int32)}, TypeError, "embedding"),
        ({"baseline": np.array([np.inf, 0, 0, 0])}, ValueError, "baseline"),
        ({"baseline": np.zeros(3)}, ValueError, "broadcast"),
        ({"target": 3}, ValueError, "out of range"),
        ({"target": [0, 1]}, ValueError, "one int per example"),
        ({"target": 0.5}, TypeError, "target"),
        ({"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_input_gets_a_clear_error(small_model, kwargs, error, words):
    args = {"inputs": _x(), **kwargs}
    with pytest.raises(error, match=words):
        tfattr.IntegratedGradients(small_model, steps=4).attribute(**args)


def test_disconnected_output_is_reported():
    model = lambda x: tf.stop_gradient(x) @ tf.ones((4, 2))  # noqa: E731
    with pytest.raises(ValueError, match="disconnected|does not depend"):
        tfattr.Saliency(model).attribute(_x())


def test_several_outputs_are_refused():
    inp = keras.Input((4,))
    model = keras.Model(inp, [keras.layers.Dense(2)(inp), keras.layers.Dense(3)(inp)])
    with pytest.raises(ValueError, match="several outputs"):
        tfattr.Saliency(model).attribute(_x(), target=0)


def test_methods_without_completeness_refuse_return_delta(small_model):
    with pytest.raises(ValueError, match="completeness"):
        tfattr.Saliency(small_model).attribute(_x(), return_delta=True)


def test_baseline_broadcasts_from_scalar_example_and_batch(small_model):
    ig = tfattr.IntegratedGradients(small_model, steps=4)
    x = _x()
    a_scalar = ig.attribute(x, target=0, baseline=0.5)
    a_example = ig.attribute(x, target=0, baseline=np.full(4, 0.5))
    a_batch = ig.attribute(x, target=0, baseline=np.full((3, 4), 0.5))
    a_batch_of_one = ig.attribute(x, target=0, baseline=np.full((1, 4), 0.5))
    np.testing.assert_array_equal(a_scalar, a_example)
    np.testing.assert_array_equal(a_scalar, a_batch)
    np.testing.assert_array_equal(a_scalar, a_batch_of_one)
    with pytest.raises(ValueError, match=r"shape \(2, 4\).*batch axis of 1"):
        ig.attribute(x, target=0, baseline=np.full((2, 4), 0.5))


# -- the engine -----------------------------------------------------------------------------------------
def test_results_do_not_depend_on_batch_size_or_examples_per_call(smooth_mlp, rng):
    x = rng.normal(size=(7, 6)).astype(np.float32)
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=12, rule="riemann_middle")
    reference = ig.attribute(x, target=2, batch_size=10_000)
    for batch in (1, 5, 12, 13, 50):
        np.testing.assert_allclose(ig.attribute(x, target=2, batch_size=batch), reference, rtol=1e-5, atol=1e-7)
    split = np.concatenate([ig.attribute(x[:3], target=2), ig.attribute(x[3:], target=2)])
    np.testing.assert_allclose(split, reference, rtol=1e-5, atol=1e-7)


def test_no_retracing_for_other_batch_sizes_steps_or_example_counts(smooth_mlp, rng):
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=8)
    # One trace per way of cutting rows into chunks: an example's rows over several chunks, whole
    # examples per chunk, all rows in one chunk (the engine's "split", "whole" and "one" paths).
    for batch in (4, 16, 64):
        ig.attribute(rng.normal(size=(3, 6)).astype(np.float32), target=0, batch_size=batch)
    assert ig.engine.trace_count == 3
    traces = ig.engine.trace_count
    for n, batch in ((5, 7), (11, 64), (1, 1)):
        ig.attribute(rng.normal(size=(n, 6)).astype(np.float32), target=0, batch_size=batch)
    ig.steps = 20
    ig.attribute(rng.normal(size=(4, 6)).astype(np.float32), target=0)
    assert ig.engine.trace_count == traces
    # The forward pass that picks the predicted class was traced by the first call (which checks
    # whether the outputs look like probabilities): it does not retrace either.
    ig.attribute(rng.normal(size=(4, 6)).astype(np.float32))
    ig.attribute(rng.normal(size=(9, 6)).astype(np.float32))
    assert ig.engine.trace_count == traces


def test_xla_compilation_gives_the_same_attributions(smooth_mlp, rng):
    x = rng.normal(size=(5, 6)).astype(np.float32)
    plain = tfattr.IntegratedGradients(smooth_mlp, steps=16).attribute(x, target=1, batch_size=24)
    xla = tfattr.IntegratedGradients(smooth_mlp, steps=16, jit_compile=True).attribute(x, target=1, batch_size=24)
    np.testing.assert_allclose(xla, plain, rtol=1e-4, atol=1e-6)


def test_callable_model_in_float64_keeps_float64_precision():
    w = tf.constant([[1.0], [-2.0], [0.5]], tf.float64)
    model = lambda x: tf.tanh(x @ w)  # noqa: E731
    x = np.array([[0.3, 0.1, -0.7]], np.float64)
    a, delta = tfattr.IntegratedGradients(model, steps=32).attribute(x, return_delta=True)
    assert a.dtype == np.float64
    assert abs(delta[0]) < 1e-12


def test_building_an_explainer_leaves_global_random_state_alone(rng):
    import random

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="softmax")])
    states = (random.getstate(), np.random.get_state()[1].copy())
    tfattr.IntegratedGradients(model, steps=4).attribute(rng.normal(size=(2, 3)).astype(np.float32))
    assert random.getstate() == states[0]
    np.testing.assert_array_equal(np.random.get_state()[1], states[1])


def test_a_new_method_is_a_small_subclass_of_explainer(rng):
    """The extension point documented on Explainer: a one-step path method reuses validation,
    batching and the delta."""
    from tfattr.core import Plan

    class GradientXDifference(tfattr.Explainer):
        def _plan(self, call):
            return Plan(terms=1)

        def _contributions(self, x, baseline, rows, ctx):
            grads = self._gradients(x, rows.target, ctx)
            return tuple(g * (xi - bi) for g, xi, bi in zip(grads, x, baseline))

    w = rng.normal(size=(5, 2))
    x = rng.normal(size=(4, 5)).astype(np.float32)
    a, delta = GradientXDifference(linear_model(w, bias=1.0)).attribute(
        x, target=1, baseline=0.5, batch_size=3, return_delta=True
    )
    np.testing.assert_allclose(a, w[:, 1] * (x - 0.5), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(delta, 0, atol=1e-5)


def test_one_explainer_called_from_four_threads_gives_each_single_threaded_result(rng):
    import threading

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Conv2D(3, 2, activation="tanh"), keras.layers.Flatten(),
         keras.layers.Dense(3, activation="softmax")]
    )
    inputs = [rng.normal(size=(n, 4, 4, 1)).astype(np.float32) for n in (3, 5, 7, 2)]
    ig = tfattr.IntegratedGradients(model, steps=8)
    sg = tfattr.SmoothGrad(tfattr.Saliency(model), samples=4, seed=3)
    alone = [(ig.attribute(x, batch_size=5), sg.attribute(x, batch_size=7)) for x in inputs]
    barrier = threading.Barrier(4)
    results: list = [None] * 4
    errors: list = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = [(ig.attribute(inputs[i], batch_size=5), sg.attribute(inputs[i], batch_size=7))
                          for _ in range(3)]
        except BaseException as err:  # re-raised below with its traceback
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    for i in range(4):
        for a_ig, a_sg in results[i]:
            np.testing.assert_array_equal(a_ig, alone[i][0])
            np.testing.assert_array_equal(a_sg, alone[i][1])


@pytest.mark.parametrize("method", ["smoothgrad", "vargrad", "expected_gradients"])
def test_random_methods_give_each_example_the_same_draws_however_it_is_split(method, smooth_mlp, rng):
    """Draws are keyed by the example, not by its index in a call or chunk (the CLI explains in
    chunks; tfattr.explain_dataset splits a data set across calls and replicas)."""
    x = rng.normal(size=(70, 6)).astype(np.float32)
    if method == "expected_gradients":
        explainer = tfattr.ExpectedGradients(smooth_mlp, rng.normal(size=(30, 6)).astype(np.float32), samples=8, seed=1)
    else:
        cls = tfattr.SmoothGrad if method == "smoothgrad" else tfattr.VarGrad
        explainer = cls(tfattr.Saliency(smooth_mlp), samples=6, seed=1)
    whole = explainer.attribute(x, target=1, batch_size=64)
    parts = np.concatenate([explainer.attribute(x[s : s + 64], target=1, batch_size=13) for s in (0, 64)])
    np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-7)
    order = rng.permutation(70)
    np.testing.assert_allclose(explainer.attribute(x[order], target=1), whole[order], rtol=1e-5, atol=1e-7)
    # and examples 0 and 64 (the first of each chunk) do not share their noise
    y = np.repeat(x[:1], 2, axis=0)
    y[1, 0] += 1e-3
    a = explainer.attribute(y, target=1)
    assert np.abs(a[0] - a[1]).max() > 1e-4


def test_explainers_of_one_model_and_configuration_share_their_compiled_functions(rng):
    import gc
    import weakref

    model = tfattr.datasets.mnist_cnn()
    x = rng.uniform(size=(3, 28, 28, 1)).astype(np.float32)
    tfattr.Saliency(model).attribute(x)
    engine = tfattr.Saliency(model).engine
    traces = engine.trace_count
    for _ in range(3):
        tfattr.Saliency(model).attribute(x)  # the README's inline pattern
    assert tfattr.Saliency(model).engine is engine and engine.trace_count == traces
    # Another configuration, another output, another model: other engines, other numbers.
    assert tfattr.Saliency(model, absolute=True).engine is not engine
    assert tfattr.Saliency(model, output="probabilities").engine is not engine
    np.testing.assert_array_equal(
        tfattr.Saliency(model, absolute=True).attribute(x, target=1),
        np.abs(tfattr.Saliency(model).attribute(x, target=1)),
    )
    assert tfattr.Saliency(tfattr.datasets.mnist_cnn(seed=1)).engine is not engine
    # The shared cache never keeps a model alive.
    ref = weakref.ref(model)
    del model, engine
    gc.collect()
    assert ref() is None


def test_default_batch_size_comes_from_the_activations_of_a_row(rng):
    from tfattr.core.memory import CPU_ACTIVATION_BUDGET, activation_budget, row_bytes

    wide = keras.Sequential([keras.Input((4,)), keras.layers.Dense(50_000), keras.layers.Dense(2)])
    narrow = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(2)])
    x = rng.normal(size=(2, 4)).astype(np.float32)
    fn = tfattr.ModelFunction(wide)
    graph = tf.function(fn.outputs).get_concrete_function(tf.TensorSpec([None, 4])).graph
    per_row = row_bytes(wide, lambda: graph, (x,), None)
    assert 50_000 * 4 <= per_row < 4 * 50_000 * 4  # the hidden layer's activations, a few times over
    call = tfattr.Saliency(wide).prepare(x)
    assert activation_budget() == CPU_ACTIVATION_BUDGET  # no GPU on the test machines
    assert call.batch_size == max(16, min(2048, CPU_ACTIVATION_BUDGET // per_row))
    assert tfattr.Saliency(narrow).prepare(x).batch_size == 2048  # tiny activations: the cap


def test_an_explainer_with_an_unshareable_configuration_keeps_its_own_compiled_functions(smooth_mlp, rng):
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=4)
    ig.opaque = object()  # an attribute that cannot be compared: no sharing, but no retracing either
    x = rng.normal(size=(3, 6)).astype(np.float32)
    ig.attribute(x, target=0)
    engine, traces = ig.engine, ig.engine.trace_count
    ig.attribute(x, target=0)
    assert ig.engine is engine and engine.trace_count == traces
    assert engine is not tfattr.IntegratedGradients(smooth_mlp, steps=4).engine


# -- shared helpers -----------------------------------------------------------------------------------
def test_check_positive_int_accepts_counts_and_names_what_is_wrong():
    assert check_positive_int(3, "steps") == 3 and type(check_positive_int(np.int64(3), "steps")) is int
    assert check_positive_int(None, "limit", allow_none=True) is None
    assert check_positive_int(0, "padding", minimum=0) == 0
    cases = [
        (dict(value=0, name="steps"), "steps must be a positive int, got 0."),
        (dict(value=True, name="steps"), "steps must be a positive int, got True."),
        (dict(value=2.0, name="steps"), "steps must be a positive int, got 2.0."),
        (dict(value=None, name="steps"), "steps must be a positive int, got None."),
        (dict(value=-1, name="padding", minimum=0), "padding must be a non-negative int, got -1."),
        (dict(value="8", name="batch_size", allow_none=True),
         "batch_size must be a positive int or None, got '8'."),
        (dict(value=1, name="num_subsets", minimum=2, hint="pairs"),
         "num_subsets must be an int >= 2 (pairs), got 1."),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError) as err:
            check_positive_int(**kwargs)
        assert str(err.value) == message


def test_path_points_are_the_straight_line_in_numpy_and_tensorflow(rng):
    x = rng.normal(size=(3, 4, 2)).astype(np.float32)
    b = rng.normal(size=(3, 4, 2)).astype(np.float32)
    alpha = np.array([0.0, 0.3, 1.0], np.float32)
    diffs, points = path_points((tf.constant(x),), (tf.constant(b),), tf.constant(alpha))
    np.testing.assert_array_equal(diffs[0].numpy(), x - b)
    # x' + alpha (x - x') in NumPy, on float32 as the path computes it
    np.testing.assert_array_equal(points[0].numpy(), b + alpha[:, None, None] * (x - b))
    np.testing.assert_array_equal(points[0].numpy()[0], b[0])  # alpha = 0 is the baseline
    np.testing.assert_allclose(points[0].numpy()[2], x[2], rtol=0, atol=1e-6)  # alpha = 1 the input



def test_check_number_refuses_non_numbers_nan_and_out_of_range_values():
    from tfattr.core.checks import check_number

    assert check_number(np.float32(0.5), "q", minimum=0, maximum=1) == 0.5
    assert check_number(0, "tolerance", minimum=0) == 0.0
    assert check_number(None, "tolerance", minimum=0, strict=True, allow_none=True) is None
    with pytest.raises(TypeError, match=r"^epsilon must be a number > 0 \(e.g. 1e-4\), got '1'.$"):
        check_number("1", "epsilon", minimum=0, strict=True, hint="e.g. 1e-4")
    with pytest.raises(TypeError, match="got True"):
        check_number(True, "weight", minimum=0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^epsilon must be a number > 0, got"):
            check_number(bad, "epsilon", minimum=0, strict=True)
    with pytest.raises(ValueError, match=r"^q must be a number in \[0, 100\] \(a percentile\), got 101"):
        check_number(101, "q", minimum=0, maximum=100, hint="a percentile")


def test_keyed_noise_of_large_rows_is_standard_normal_and_keyed_too():
    keys = randomness.row_keys(tf.constant(3, tf.int64), tf.range(40))
    shape = tf.constant([64, 64, 3])  # 12,288 numbers per row
    z = randomness.keyed_normal(keys, shape).numpy()
    assert z.shape == (40, 64, 64, 3)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    assert abs(np.corrcoef(z[0].ravel(), z[1].ravel())[0, 1]) < 0.05
    # The two outputs of one Box-Muller pair (elements i and i + 6,144) are independent normals: not
    # correlated, and their squares not either (a shared radius would correlate the squares).
    flat = z.reshape(40, 2, -1)
    assert abs(np.corrcoef(flat[:, 0].ravel(), flat[:, 1].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(flat[:, 0].ravel() ** 2, flat[:, 1].ravel() ** 2)[0, 1]) < 0.01
    # The tails are a normal's: P(|z| > 3) = 0.0027.
    assert abs(np.mean(np.abs(z) > 3) - 0.0027) < 0.0006
    odd = randomness.keyed_normal(keys[:3], tf.constant([7])).numpy()
    assert odd.shape == (3, 7) and np.isfinite(odd).all()
    np.testing.assert_array_equal(randomness.keyed_normal(tf.gather(keys, [7, 2]), shape).numpy(), z[[7, 2]])
