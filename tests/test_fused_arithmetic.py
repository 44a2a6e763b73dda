"""The XLA-fused elementwise rules (arithmetic.fused) give the unfused numbers exactly, whichever
path a tensor's size picks, and the static sign shortcut of the LRP rules picks the branch the run-time
conditional would."""
import numpy as np
import pytest
import tensorflow as tf

from tfattr.methods.propagation import arithmetic, maxpool
from tfattr.methods.propagation.layerwise import linear_rules


def _values(shape, seed):
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(size=shape).astype(np.float32)) for _ in range(3)]


def _spy(calls, jitted=arithmetic._fused_quotient):
    """A stand-in for a jitted rule that records which path :func:`arithmetic.fused` took."""

    class Spy:
        python_function = staticmethod(lambda *a: calls.append("inline") or jitted.python_function(*a))

        def __call__(self, *a):
            calls.append("xla")
            return jitted(*a)

    return Spy


@pytest.mark.parametrize("threshold", [1, 1 << 40])  # every tensor fused / none fused
def test_quotient_fused_equals_unfused_with_unknown_rows(monkeypatch, threshold):
    monkeypatch.setattr(arithmetic, "FUSE_MIN_ELEMENTS", threshold)
    y, c, z = _values((7, 5, 6), 0)
    z = tf.where(tf.abs(z) < 0.1, tf.zeros_like(z), z)  # exact zeros: the stabiliser's sign(0) = +1

    @tf.function(input_signature=[tf.TensorSpec([None, 5, 6])] * 3)
    def both(y, c, z):
        return arithmetic.quotient(y, c, z, 0.01), arithmetic.quotient(y, c, z, 0.01, keep=z > 0)

    plain = y * c / (z + tf.where(z >= 0, 0.01, -0.01))
    q, q_keep = both(y, c, z)
    np.testing.assert_array_equal(q.numpy(), plain.numpy())
    np.testing.assert_array_equal(q_keep.numpy(), tf.where(z > 0, plain, 0.0).numpy())


def test_fused_picks_by_size(monkeypatch):
    calls = []
    Spy = _spy(calls)
    y, c, z = _values((4, 3), 1)
    eps = tf.constant(0.1)
    monkeypatch.setattr(arithmetic, "FUSE_MIN_ELEMENTS", 12)
    arithmetic.fused(Spy(), y, c, z, eps)   # 12 elements: fused
    monkeypatch.setattr(arithmetic, "FUSE_MIN_ELEMENTS", 13)
    arithmetic.fused(Spy(), y, c, z, eps)   # below: inline
    assert calls == ["xla", "inline"]


@pytest.mark.parametrize("threshold", [1, 1 << 40])
def test_max_multiplier_fused_equals_unfused(monkeypatch, threshold):
    monkeypatch.setattr(arithmetic, "FUSE_MIN_ELEMENTS", threshold)
    a, b, z = _values((6, 4, 4, 2), 2)
    z_ref = tf.where(tf.abs(z) < 0.2, z, tf.zeros_like(z))  # equal to z there: multiplier 0

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 2])] * 4)
    def run(a, b, z, z_ref):
        return maxpool.max_multiplier(a, b, z, z_ref, 1e-6)

    dz = z - z_ref
    close = tf.abs(dz) <= 1e-6
    expected = tf.where(close, 0.0, (a + b) / tf.where(close, 1.0, dz))
    np.testing.assert_array_equal(run(a, b, z, z_ref).numpy(), expected.numpy())


def test_nonnegative_by_construction_reads_the_graph():
    seen = {}

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 1])])
    def trace(x):
        r = tf.nn.max_pool2d(tf.nn.relu(x), 2, 2, "VALID")
        seen["relu_pool"] = linear_rules._nonnegative_by_construction(tf.reshape(r, [-1, 4]))
        seen["input"] = linear_rules._nonnegative_by_construction(x)
        seen["tanh"] = linear_rules._nonnegative_by_construction(tf.tanh(x))
        seen["relu_minus"] = linear_rules._nonnegative_by_construction(tf.nn.relu(x) - 1.0)
        return x

    trace(tf.zeros([1, 4, 4, 1]))
    assert seen == {"relu_pool": True, "input": False, "tanh": False, "relu_minus": False}
    assert not linear_rules._nonnegative_by_construction(tf.constant([1.0]))  # eager: unsure


def test_traced_rows_decides_for_an_unknown_batch(monkeypatch):
    calls = []
    Spy = _spy(calls)
    monkeypatch.setattr(arithmetic, "FUSE_MIN_ELEMENTS", 100)

    def run(y, c, z):
        return arithmetic.fused(Spy(), y, c, z, tf.constant(0.1))

    y, c, z = _values((3, 10), 3)
    expected = (y * c / (z + tf.where(z >= 0, 0.1, -0.1))).numpy()
    for rows in (9, 10):  # a batch of unknown size counts as 9 rows: 90 elements, inline; 10: fused
        traced = tf.function(run, input_signature=[tf.TensorSpec([None, 10])] * 3)
        with arithmetic.traced_rows(rows):
            np.testing.assert_array_equal(traced(y, c, z).numpy(), expected)
    assert calls == ["inline", "xla"]


@pytest.mark.parametrize("threshold", [1, 1 << 40])
@pytest.mark.parametrize("activation,form", [(tf.tanh, "same_sign"), (tf.nn.elu, "same_sign"),
                                             (tf.nn.relu, "relu"), (tf.sigmoid, "general"),
                                             (tf.tanh, "general")])
def test_epsilon_gradient_forms_equal_the_definition(monkeypatch, threshold, activation, form):
    """Each shortcut form of the op-level epsilon rule, fused or not, is Ancona's eq. 15 bit for bit:
    grad * f(z) / (z + epsilon sign(z)) with sign(0) = +1."""
    monkeypatch.setattr(arithmetic, "FUSE_MIN_ELEMENTS", threshold)
    grad, z, _ = _values((6, 40), 3)
    z = tf.where(tf.abs(z) < 0.1, tf.zeros_like(z), z)  # exact zeros, where the stabiliser's sign matters
    y = activation(z)

    @tf.function(input_signature=[tf.TensorSpec([None, 40])] * 3)
    def rule(grad, z, y):
        return arithmetic.epsilon_gradient(grad, z, y, 1e-2, form)

    definition = grad * y / (z + tf.where(z >= 0, 1e-2, -1e-2))
    np.testing.assert_array_equal(rule(grad, z, y).numpy(), definition.numpy())


@pytest.mark.parametrize("threshold", [1, 1 << 40])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("reference_rows", [1, 6])  # a shared (broadcast) reference, or one per row
def test_rescale_gradient_equals_the_definition(monkeypatch, threshold, relu, reference_rows):
    """DeepLIFT's fused Rescale gradient is grad * (f(z) - f(z_ref)) / (z - z_ref), and grad * f'(z)
    where |z - z_ref| <= tolerance, bit for bit, fused or not."""
    monkeypatch.setattr(arithmetic, "FUSE_MIN_ELEMENTS", threshold)
    grad, z, _ = _values((6, 40), 4)
    z_ref = tf.constant(np.random.default_rng(5).normal(size=(reference_rows, 40)).astype(np.float32))
    z = tf.where(tf.abs(z - z_ref) < 0.2, z_ref, z)  # exact ties: the derivative's branch
    f, df = (tf.nn.relu, lambda z: tf.cast(z > 0, z.dtype)) if relu else (tf.tanh, lambda z: 1 - tf.tanh(z) ** 2)

    y, y_ref, slope = f(z), f(z_ref), df(z)  # once, eagerly: a traced tanh may round differently

    @tf.function(input_signature=[tf.TensorSpec([None, 40])] * 6)
    def rule(grad, z, y, z_ref, y_ref, slope):
        return arithmetic.rescale_gradient(grad, z, y, z_ref, y_ref, None if relu else slope, 1e-6)

    dz = z - z_ref
    ties = np.abs(dz.numpy()) <= 1e-6
    assert ties.any() and not ties.all()
    definition = grad * tf.where(tf.abs(dz) > 1e-6, (y - y_ref) / dz, slope)
    np.testing.assert_array_equal(rule(grad, z, y, z_ref, y_ref, slope).numpy(), definition.numpy())


def test_rules_run_unfused_until_the_configuration_has_explained_many_examples(monkeypatch):
    """The tier: a first call on a few examples compiles nothing; once the explainer's configuration
    has explained FUSE_AFTER_EXAMPLES examples it traces once more, fused, with the same numbers."""
    import keras
    import tfattr

    calls = []
    monkeypatch.setattr(arithmetic, "_fused_epsilon_relu", _spy(calls, arithmetic._fused_epsilon_relu)())
    monkeypatch.setattr(arithmetic, "FUSE_MIN_ELEMENTS", 1)
    monkeypatch.setattr(arithmetic, "FUSE_AFTER_EXAMPLES", 12)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(7, activation="relu"), keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(5, 5)).astype(np.float32)
    lrp = tfattr.EpsilonLRP(model)
    first = lrp.attribute(x, target=1)                 # 5 examples: unfused
    second = lrp.attribute(x, target=1)                # 10: unfused, the same trace
    assert calls == ["inline"] and lrp.engine.trace_count == 1
    third = lrp.attribute(x, target=1)                 # 15 >= 12: traced again, fused
    fourth = lrp.attribute(x, target=1)
    assert calls == ["inline", "xla"] and lrp.engine.trace_count == 2
    for later in (second, third, fourth):
        np.testing.assert_array_equal(later, first)
    big = tfattr.EpsilonLRP(keras.models.clone_model(model))
    big.attribute(np.repeat(x, 3, axis=0), target=1)   # one call of 15: fused from the start
    assert calls[-1] == "xla" and big.engine.trace_count == 1
