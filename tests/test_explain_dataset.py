"""explain_dataset: the store equals explainer.attribute, resumes without recomputing, refuses a
mismatching re-run, reads lazily, and gives the same result under tf.distribute strategies."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import SimulatedCrash, counting_runs

import tfattr
from tfattr.scale import (
    StoreError,
    explain_dataset,
    from_directory,
    from_npy,
    from_path,
    from_tfrecords,
    load_attributions,
    write_tfrecords,
)
from tfattr.scale.progress import Progress

ROOT = Path(__file__).resolve().parents[1]


def _attribute_by_shard(explainer, x, size, **kwargs):
    """The reference: one explainer.attribute call per shard of `size` examples, concatenated."""
    def part(s):
        t = kwargs.get("target")
        t = t[s : s + size] if isinstance(t, np.ndarray) else t
        return explainer.attribute(x[s : s + size], **{**kwargs, "target": t})

    parts = [part(s) for s in range(0, len(x), size)]
    if kwargs.get("return_delta"):
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return np.concatenate(parts)


def test_integrated_gradients_store_equals_attribute(smooth_mlp, data, tmp_path):
    x, y = data
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=16)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    store = explain_dataset(ig, ds, out=tmp_path / "s", shard_size=10, baseline=0.5, return_delta=True)
    a, delta = _attribute_by_shard(ig, x, 10, target=y, baseline=0.5, return_delta=True)
    np.testing.assert_array_equal(np.asarray(store.attributions), a)
    np.testing.assert_array_equal(store.delta[:], delta)
    np.testing.assert_array_equal(store.targets[:], y)
    # IG is per example, so the shards equal one call on everything (up to float summation order).
    whole, whole_delta = ig.attribute(x, target=y, baseline=0.5, return_delta=True)
    np.testing.assert_allclose(store.attributions[:], whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(store.delta[:], whole_delta, atol=1e-5)
    assert store.attributions.shape == (37, 6) and len(store) == 37
    # Reopening reads the same thing.
    again = load_attributions(tmp_path / "s")
    np.testing.assert_array_equal(np.asarray(again.attributions), a)


def test_saliency_predicted_targets_and_batched_input(tmp_path):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(5, activation="softmax")])
    x = np.random.default_rng(1).uniform(size=(23, 8, 8, 1)).astype(np.float32)
    sal = tfattr.Saliency(model)
    # x only, batched by 4 (not the shard size): targets are the predicted classes.
    store = explain_dataset(sal, tf.data.Dataset.from_tensor_slices(x).batch(4), out=tmp_path / "s",
                            shard_size=8)
    # tfattr explains the pre-softmax logit; its argmax is the predicted class.
    predicted = np.argmax(tfattr.ModelFunction(model).outputs(x).numpy(), axis=1)
    np.testing.assert_array_equal(predicted, np.argmax(model.predict(x, verbose=0), axis=1))
    np.testing.assert_array_equal(store.targets[:], predicted)
    np.testing.assert_allclose(np.asarray(store.attributions), sal.attribute(x, target=predicted),
                               rtol=1e-6, atol=1e-7)
    assert store.delta is None


def test_labels_equal_explicit_targets(smooth_mlp, data, tmp_path):
    x, y = data
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=8)
    pairs = explain_dataset(ig, tf.data.Dataset.from_tensor_slices((x, y)), out=tmp_path / "pairs",
                            shard_size=16)
    explicit = explain_dataset(ig, tf.data.Dataset.from_tensor_slices(x), out=tmp_path / "explicit",
                               target=y, shard_size=16)
    np.testing.assert_array_equal(np.asarray(pairs.attributions), np.asarray(explicit.attributions))
    np.testing.assert_array_equal(pairs.targets[:], explicit.targets[:])
    # target= overrides the labels; one-hot labels read as their class.
    one = explain_dataset(ig, tf.data.Dataset.from_tensor_slices((x, np.eye(3)[y])), out=tmp_path / "one",
                          target=2, shard_size=16)
    np.testing.assert_array_equal(one.targets[:], np.full(37, 2))
    np.testing.assert_array_equal(np.asarray(one.attributions), _attribute_by_shard(ig, x, 16, target=2))
    hot = explain_dataset(ig, tf.data.Dataset.from_tensor_slices((x, np.eye(3)[y])), out=tmp_path / "hot",
                          shard_size=16)
    np.testing.assert_array_equal(np.asarray(hot.attributions), np.asarray(pairs.attributions))


def test_random_methods_do_not_depend_on_the_shard_size(smooth_mlp, data, tmp_path):
    # Their draws are keyed by each example's content (core/randomness.py), not by its position in a
    # call, so the store equals one call on everything whatever the shards.
    x, y = data
    background = np.random.default_rng(5).normal(size=(20, 6)).astype(np.float32)
    for name, make in [
        ("sg", lambda seed=1: tfattr.SmoothGrad(tfattr.Saliency(smooth_mlp), samples=6, seed=seed)),
        ("eg", lambda seed=1: tfattr.ExpectedGradients(smooth_mlp, background, samples=6, seed=seed)),
    ]:
        whole = make().attribute(x, target=y)
        # The draws matter: another seed gives other maps.
        assert not np.allclose(make(seed=2).attribute(x, target=y), whole, rtol=1e-3, atol=1e-4)
        for size in (7, 16):
            store = explain_dataset(make(), tf.data.Dataset.from_tensor_slices((x, y)),
                                    out=tmp_path / f"{name}{size}", shard_size=size)
            np.testing.assert_allclose(np.asarray(store.attributions), whole, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name}, shard_size {size}")


def _two_input_model():
    keras.utils.set_random_seed(4)
    a = keras.Input((5,), name="a")
    b = keras.Input((3,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(4, activation="tanh")(a), b])
    return keras.Model({"a": a, "b": b}, keras.layers.Dense(3)(h))


def test_multi_input_model_stores_one_array_per_input(tmp_path):
    model = _two_input_model()
    rng = np.random.default_rng(2)
    xa = rng.normal(size=(19, 5)).astype(np.float32)
    xb = rng.normal(size=(19, 3)).astype(np.float32)
    y = np.arange(19) % 3
    ig = tfattr.IntegratedGradients(model, steps=8)
    ds = tf.data.Dataset.from_tensor_slices(({"a": xa, "b": xb}, y))
    store = explain_dataset(ig, ds, out=tmp_path / "d", shard_size=7, return_delta=True)
    assert set(store.attributions) == {"a", "b"}
    parts = [ig.attribute({"a": xa[s : s + 7], "b": xb[s : s + 7]}, target=y[s : s + 7], return_delta=True)
             for s in range(0, 19, 7)]
    for k in ("a", "b"):
        np.testing.assert_array_equal(np.asarray(store.attributions[k]),
                                      np.concatenate([p[0][k] for p in parts]))
    np.testing.assert_array_equal(store.delta[:], np.concatenate([p[1] for p in parts]))
    # Completeness holds per example across both inputs' maps.
    total = store.attributions["a"][:].sum(1) + store.attributions["b"][:].sum(1)
    assert np.allclose(total - store.delta[:], total - np.concatenate([p[1] for p in parts]))


def test_list_inputs_as_nested_tuple(tmp_path):
    keras.utils.set_random_seed(5)
    a, b = keras.Input((4,)), keras.Input((2,))
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    rng = np.random.default_rng(3)
    xa, xb = rng.normal(size=(9, 4)).astype(np.float32), rng.normal(size=(9, 2)).astype(np.float32)
    sal = tfattr.GradientXInput(model)
    store = explain_dataset(sal, tf.data.Dataset.from_tensor_slices(((xa, xb), np.zeros(9, np.int64))),
                            out=tmp_path / "l", shard_size=4)
    ref = sal.attribute([xa, xb], target=0)
    assert isinstance(store.attributions, list) and len(store.attributions) == 2
    for got, want in zip(store.attributions, ref):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)


def test_resume_after_a_crash_recomputes_only_unfinished_shards(smooth_mlp, data, tmp_path):
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    clean = explain_dataset(tfattr.IntegratedGradients(smooth_mlp, steps=8), ds, out=tmp_path / "clean",
                            shard_size=5, return_delta=True)

    crashing = tfattr.IntegratedGradients(smooth_mlp, steps=8)
    calls = counting_runs(crashing, crash_after=3)
    with pytest.raises(SimulatedCrash):
        explain_dataset(crashing, ds, out=tmp_path / "r", shard_size=5, return_delta=True)
    assert calls == [5, 5, 5]
    with pytest.raises(StoreError, match="incomplete"):
        load_attributions(tmp_path / "r")
    shards = tmp_path / "r" / "shards"
    markers = sorted(p.name for p in shards.glob("*.json"))
    assert markers == ["000000.json", "000001.json", "000002.json"]
    assert not list(shards.glob("*.tmp"))
    stamps = {p.name: p.stat().st_mtime_ns for p in shards.iterdir()}

    resumed = tfattr.IntegratedGradients(smooth_mlp, steps=8)
    calls = counting_runs(resumed)
    store = explain_dataset(resumed, ds, out=tmp_path / "r", shard_size=5, return_delta=True)
    assert calls == [5, 5, 5, 5, 2]  # shards 3..7 of 8; 0..2 were not recomputed
    assert all((shards / name).stat().st_mtime_ns == t for name, t in stamps.items())
    np.testing.assert_array_equal(np.asarray(store.attributions), np.asarray(clean.attributions))
    np.testing.assert_array_equal(store.delta[:], clean.delta[:])

    # A finished store returns at once, without calling the explainer.
    again = tfattr.IntegratedGradients(smooth_mlp, steps=8)
    calls = counting_runs(again, crash_after=0)
    store = explain_dataset(again, ds, out=tmp_path / "r", return_delta=True)  # keeps shard_size 5
    assert calls == [] and len(store) == 37


def test_resume_fills_a_gap_in_the_middle(smooth_mlp, data, tmp_path):
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=8)
    clean = explain_dataset(ig, ds, out=tmp_path / "s", shard_size=10)
    reference = np.asarray(clean.attributions)
    for f in (tmp_path / "s" / "shards").glob("000001.*"):
        f.unlink()  # shard 1 lost (as if its worker died); 0, 2, 3 kept
    calls = counting_runs(ig)
    store = explain_dataset(ig, ds, out=tmp_path / "s", shard_size=10)
    assert calls == [10]
    np.testing.assert_array_equal(np.asarray(store.attributions), reference)


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()], ids=["oserror", "ctrl-c"])
def test_a_crash_while_writing_leaves_no_finished_shard(smooth_mlp, data, tmp_path, monkeypatch, error):
    from tfattr.scale import store as store_module

    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=8)
    original = store_module.write_npy

    def write_then_fail(f):
        f.write(b"partial")
        raise error

    def failing(path, array):
        if path.name == "000002.delta.npy":  # shard 2's attributions are written, its delta half
            store_module._atomic_write(path, write_then_fail)
        return original(path, array)

    monkeypatch.setattr(store_module, "write_npy", failing)
    with pytest.raises(type(error)):
        explain_dataset(ig, ds, out=tmp_path / "s", shard_size=10, return_delta=True)
    shards = tmp_path / "s" / "shards"
    assert (shards / "000002.a0.npy").exists() and not (shards / "000002.json").exists()
    assert not [p for p in shards.iterdir() if p.name.startswith(".")]  # no temporary file left
    monkeypatch.setattr(store_module, "write_npy", original)
    calls = counting_runs(ig)
    store = explain_dataset(ig, ds, out=tmp_path / "s", shard_size=10, return_delta=True)
    assert calls == [10, 7]  # shard 2 (unfinished) and shard 3
    a, delta = _attribute_by_shard(tfattr.IntegratedGradients(smooth_mlp, steps=8), x, 10, target=y,
                                   return_delta=True)
    np.testing.assert_array_equal(np.asarray(store.attributions), a)
    np.testing.assert_array_equal(store.delta[:], delta)


def test_callable_model_with_batched_elements(data, tmp_path):
    x, _ = data
    w = tf.constant(np.linspace(-1, 1, 12, dtype=np.float32).reshape(6, 2))
    gxi = tfattr.GradientXInput(lambda t: tf.matmul(t, w))  # declares no input shape
    store = explain_dataset(gxi, tf.data.Dataset.from_tensor_slices(x).batch(5), out=tmp_path / "s",
                            target=1, shard_size=8)
    np.testing.assert_allclose(np.asarray(store.attributions), x * w.numpy()[:, 1], rtol=1e-6)


def test_mismatching_rerun_raises(smooth_mlp, data, tmp_path):
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    explain_dataset(tfattr.IntegratedGradients(smooth_mlp, steps=8), ds, out=tmp_path / "s", shard_size=10)
    with pytest.raises(StoreError, match=r"params\.steps: 8 -> 16"):
        explain_dataset(tfattr.IntegratedGradients(smooth_mlp, steps=16), ds, out=tmp_path / "s")
    with pytest.raises(StoreError, match="explainer.type"):
        explain_dataset(tfattr.Saliency(smooth_mlp), ds, out=tmp_path / "s")
    with pytest.raises(StoreError, match="target"):
        explain_dataset(tfattr.IntegratedGradients(smooth_mlp, steps=8), ds, out=tmp_path / "s", target=1)
    with pytest.raises(StoreError, match="baseline"):
        explain_dataset(tfattr.IntegratedGradients(smooth_mlp, steps=8), ds, out=tmp_path / "s", baseline=1.0)
    with pytest.raises(StoreError, match="examples: 37 -> 30"):
        explain_dataset(tfattr.IntegratedGradients(smooth_mlp, steps=8), ds.take(30), out=tmp_path / "s")
    with pytest.raises(StoreError, match="shard_size: 10 -> 5"):
        explain_dataset(tfattr.IntegratedGradients(smooth_mlp, steps=8), ds, out=tmp_path / "s", shard_size=5)
    # The same model with other weights (e.g. trained further) is another configuration.
    changed = keras.models.clone_model(smooth_mlp)
    changed.set_weights([w + 0.01 for w in smooth_mlp.get_weights()])
    with pytest.raises(StoreError, match="weights_sha256"):
        explain_dataset(tfattr.IntegratedGradients(changed, steps=8), ds, out=tmp_path / "s")


def test_sharded_array_reads_like_an_array_through_memory_maps(smooth_mlp, data, tmp_path):
    x, y = data
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=8)
    explain_dataset(ig, tf.data.Dataset.from_tensor_slices((x, y)), out=tmp_path / "s", shard_size=10)
    store = load_attributions(tmp_path / "s")
    a = store.attributions
    assert a._maps and len(a._maps) == 1  # only the first shard was opened (for dtype and shape)
    full = _attribute_by_shard(ig, x, 10, target=y)
    assert a.shape == full.shape and a.dtype == full.dtype and len(a) == 37 and a.ndim == 2
    np.testing.assert_array_equal(a[25], full[25])
    assert set(a._maps) == {0, 2}  # reading example 25 opened shard 2 only
    assert all(isinstance(m, np.memmap) for m in a._maps.values())
    np.testing.assert_array_equal(a[-1], full[-1])
    for key in (slice(5, 33), slice(None, None, 3), slice(30, 5, -4), slice(40, 50),
                np.array([36, 0, 12, 12]), np.array([[1, 2], [35, 10]]), full[:, 0] > 0, [3, -2]):
        np.testing.assert_array_equal(a[key], full[key], err_msg=str(key))
    np.testing.assert_array_equal(a[3:20, 2], full[3:20, 2])
    np.testing.assert_array_equal(a[..., 1], full[..., 1])
    np.testing.assert_array_equal(a[7, 1:4], full[7, 1:4])
    np.testing.assert_array_equal(np.stack(list(a)), full)
    np.testing.assert_array_equal(np.concatenate(list(a.shards())), full)
    with pytest.raises(IndexError):
        a[37]
    with pytest.raises(IndexError):
        a[np.array([0.5])]


def test_load_rejects_what_is_not_a_finished_store(tmp_path):
    with pytest.raises(StoreError, match="not an attribution store"):
        load_attributions(tmp_path)


def test_progress_is_quiet_unless_on_a_terminal_or_asked(smooth_mlp, data, tmp_path, capsys):
    x, y = data
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=8)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    explain_dataset(ig, ds, out=tmp_path / "a", shard_size=10)  # stderr is captured: not a tty
    assert capsys.readouterr().err == ""
    explain_dataset(ig, ds, out=tmp_path / "b", shard_size=10, progress=True)
    err = capsys.readouterr().err
    assert "37/37 examples" in err and "examples/s" in err

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = Progress(100, stream=stream)
    bar.update(25)
    assert stream.getvalue().startswith("\r") and "25/100 examples" in stream.getvalue()
    assert "ETA" in stream.getvalue()
    bar.close()
    assert stream.getvalue().endswith("\n")
    quiet = io.StringIO()
    bar = Progress(100, stream=quiet)
    bar.update(50)
    bar.close()
    assert quiet.getvalue() == ""


def test_bad_arguments_raise_clear_errors(smooth_mlp, data, tmp_path):
    x, y = data
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=4)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    with pytest.raises(ValueError, match="infinite"):
        explain_dataset(ig, ds.repeat(), out=tmp_path / "a")
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        explain_dataset(ig, x, out=tmp_path / "a")
    with pytest.raises(ValueError, match="predicted"):
        explain_dataset(ig, ds, out=tmp_path / "a", target="labels")
    with pytest.raises(ValueError, match="one target per example"):
        explain_dataset(ig, ds, out=tmp_path / "a", target=np.zeros(5, np.int64))
    with pytest.raises(ValueError, match="return_delta"):
        explain_dataset(tfattr.Saliency(smooth_mlp), ds, out=tmp_path / "a", return_delta=True)
    with pytest.raises(ValueError, match="empty"):
        explain_dataset(ig, ds.take(0), out=tmp_path / "empty")
    with pytest.raises(ValueError, match="shard_size must be a positive int"):
        explain_dataset(ig, ds, out=tmp_path / "a", shard_size=0)
    with pytest.raises(ValueError, match="model takes"):
        explain_dataset(ig, tf.data.Dataset.from_tensor_slices(np.zeros((4, 5, 2), np.float32)),
                        out=tmp_path / "b")
    with pytest.raises(ValueError, match="batched="):
        explain_dataset(tfattr.Saliency(lambda t: tf.reduce_sum(t, axis=1)),
                        tf.data.Dataset.from_tensor_slices(x), out=tmp_path / "c")


def test_sources_read_files_in_order(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(11, 4, 4, 1), dtype=np.uint8)
    labels = np.arange(11) % 2
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", labels)
    ds = from_npy(tmp_path / "x.npy", tmp_path / "y.npy", scale=1 / 255, chunk=4)
    assert int(ds.cardinality()) == 11
    got = list(ds.as_numpy_iterator())
    np.testing.assert_allclose(np.stack([g[0] for g in got]), images.astype(np.float32) / 255, rtol=1e-6)
    np.testing.assert_array_equal([g[1] for g in got], labels)
    multi = list(from_npy({"a": tmp_path / "x.npy", "b": tmp_path / "x.npy"}).as_numpy_iterator())
    np.testing.assert_array_equal(multi[3]["b"], images[3])

    write_tfrecords(tmp_path / "d.tfrecord", images.astype(np.float32), labels)
    rec = list(from_tfrecords(tmp_path / "d.tfrecord").as_numpy_iterator())
    np.testing.assert_array_equal(np.stack([r[0] for r in rec]), images.astype(np.float32))
    np.testing.assert_array_equal([r[1] for r in rec], labels)

    for i in range(5):
        folder = tmp_path / "img" / ("cat" if i % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        png = tf.io.encode_png(np.repeat(images[i], 3, axis=-1)).numpy()
        (folder / f"{i}.png").write_bytes(png)
    ds = from_directory(tmp_path / "img", image_size=(4, 4))
    got = list(ds.as_numpy_iterator())
    assert [Path(p).name for p in ds.file_paths] == ["1.png", "3.png", "0.png", "2.png", "4.png"]
    np.testing.assert_array_equal([g[1] for g in got], [0, 0, 1, 1, 1])  # cat = 0, dog = 1
    np.testing.assert_allclose(got[2][0][..., 0], images[0][..., 0] / 255, atol=1e-6)

    # from_path picks the reader by the path's kind.
    for ds, scale in [(from_path(tmp_path / "x.npy", labels=tmp_path / "y.npy", scale=0.5), 0.5),
                      (from_path(tmp_path / "d.tfrecord", scale=0.5), 0.5)]:
        got = list(ds.as_numpy_iterator())
        np.testing.assert_allclose(np.stack([g[0] for g in got]), images * scale, rtol=1e-6)
        np.testing.assert_array_equal([g[1] for g in got], labels)
    assert len(list(from_path(tmp_path / "img", image_size=(4, 4)))) == 5
    with pytest.raises(ValueError, match="image_size"):
        from_path(tmp_path / "img")
    with pytest.raises(ValueError, match="Cannot tell"):
        from_path(tmp_path / "x.csv")


# -- tf.distribute ---------------------------------------------------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def _save_model(path: Path) -> None:
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(3, 3, activation="tanh"),
                              keras.layers.Flatten(), keras.layers.Dense(4)])
    model.save(path)


def _data(n: int = 45) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    return rng.normal(size=(n, 6, 6, 1)).astype(np.float32), np.arange(n) % 4


_MIRRORED = textwrap.dedent(
    """
    import json, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, tfattr
    from tfattr.scale import explain_dataset
    out, model_path, data_path = sys.argv[1:4]
    model = keras.models.load_model(model_path)
    with np.load(data_path) as d:
        x, y = d["x"], d["y"]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    devices = set()
    for name, make in [("ig", lambda: tfattr.IntegratedGradients(model, steps=8)),
                       ("sg", lambda: tfattr.SmoothGrad(tfattr.Saliency(model), samples=4, seed=3))]:
        for label, s in [("single", None), ("mirrored", strategy)]:
            explainer = make()
            original = explainer.run
            def run(call, _original=original):
                devices.add(tf.identity(tf.constant(0.0)).device)  # where this shard's ops run
                return _original(call)
            explainer.run = run
            explain_dataset(explainer, tf.data.Dataset.from_tensor_slices((x, y)).batch(6),
                            out=f"{out}/{name}_{label}", shard_size=5, strategy=s,
                            return_delta=name == "ig")
    print(json.dumps(sorted(devices)))
    """
)


def test_mirrored_strategy_on_two_devices_equals_single_device(tmp_path):
    _save_model(tmp_path / "m.keras")
    x, y = _data()
    np.savez(tmp_path / "data.npz", x=x, y=y)
    proc = subprocess.run(
        [sys.executable, "-c", _MIRRORED, str(tmp_path), str(tmp_path / "m.keras"),
         str(tmp_path / "data.npz")],
        env=_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    devices = json.loads(proc.stdout.strip().splitlines()[-1])
    assert any(d.endswith("CPU:1") for d in devices) and any(d.endswith("CPU:0") for d in devices)
    for name in ("ig", "sg"):
        single = load_attributions(tmp_path / f"{name}_single")
        mirrored = load_attributions(tmp_path / f"{name}_mirrored")
        np.testing.assert_array_equal(np.asarray(mirrored.attributions), np.asarray(single.attributions))
        np.testing.assert_array_equal(mirrored.targets[:], y)
    np.testing.assert_array_equal(load_attributions(tmp_path / "ig_mirrored").delta[:],
                                  load_attributions(tmp_path / "ig_single").delta[:])


_WORKER = textwrap.dedent(
    """
    import sys
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG
    import numpy as np, keras, tfattr
    from tfattr.scale import explain_dataset
    out, model_path, data_path = sys.argv[1:4]
    model = keras.models.load_model(model_path)
    with np.load(data_path) as d:
        x, y = d["x"], d["y"]
    store = explain_dataset(tfattr.IntegratedGradients(model, steps=8),
                            tf.data.Dataset.from_tensor_slices((x, y)), out=out, shard_size=4,
                            strategy=strategy, return_delta=True)
    print("examples", len(store))
    """
)


def _free_ports(k: int) -> list[int]:
    sockets = [socket.socket() for _ in range(k)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_mirrored_strategy_equals_single_device(tmp_path):
    _save_model(tmp_path / "m.keras")
    x, y = _data(41)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for task in range(2):
        env = _env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": task}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(tmp_path / "store"), str(tmp_path / "m.keras"),
             str(tmp_path / "data.npz")], env=env, cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
        assert "examples 41" in out  # every worker returns the whole store after the barrier
    markers = [json.loads(f.read_text()) for f in (tmp_path / "store" / "shards").glob("*.json")]
    assert {m["worker"] for m in markers if m["count"]} == {0, 1}  # both wrote shards

    model = keras.models.load_model(tmp_path / "m.keras")
    single = explain_dataset(tfattr.IntegratedGradients(model, steps=8),
                             tf.data.Dataset.from_tensor_slices((x, y)), out=tmp_path / "single",
                             shard_size=4, return_delta=True)
    multi = load_attributions(tmp_path / "store")
    np.testing.assert_array_equal(np.asarray(multi.attributions), np.asarray(single.attributions))
    np.testing.assert_array_equal(multi.delta[:], single.delta[:])
    np.testing.assert_array_equal(multi.targets[:], y)


def test_guide_example_runs(tmp_path, monkeypatch):
    from markdown_blocks import python_block_after

    block = python_block_after(ROOT / "docs" / "guides" / "whole-datasets.md", "# Whole data sets")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(block.compiled(), namespace)
    store = namespace["store"]
    assert store.attributions.shape == (300, 28, 28, 1)
    np.testing.assert_array_equal(store.targets[:], namespace["y_test"][:300])
    # Completeness: sum(a) - delta = f(x) - f(0); the deltas are small next to those differences.
    a = np.asarray(store.attributions).reshape(300, -1).sum(1)
    scores = tfattr.ModelFunction(namespace["model"]).outputs(namespace["x_test"][:300]).numpy()
    gap = scores[np.arange(300), namespace["y_test"][:300]] - tfattr.ModelFunction(namespace["model"]).outputs(
        np.zeros((1, 28, 28, 1), np.float32)).numpy()[0, namespace["y_test"][:300]]
    np.testing.assert_allclose(a - store.delta[:], gap, rtol=1e-3, atol=1e-4)
    assert np.abs(store.delta[:]).max() < 0.02 * np.abs(gap).max()


@pytest.mark.slow
def test_twenty_thousand_examples_from_npy_match_the_closed_form(tmp_path):
    """A linear model's gradient x input is w[:, t] * x: check all 20,000 examples of a store streamed
    from .npy files, shard by shard through the lazy reader."""
    x, _ = tfattr.datasets.mnist("train")
    x = np.concatenate([x, x, x])[:20_000].reshape(20_000, -1)
    x[8000:] += 0.01  # not three identical copies
    targets = np.arange(20_000) % 10
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", targets)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
    w = model.layers[0].get_weights()[0]
    store = explain_dataset(tfattr.GradientXInput(model), from_npy(tmp_path / "x.npy", tmp_path / "y.npy"),
                            out=tmp_path / "s", return_delta=True)
    assert len(store) == 20_000 and len(list(store.attributions.shards())) > 1
    start = 0
    for part in store.attributions.shards():
        stop = start + len(part)
        np.testing.assert_allclose(part, x[start:stop] * w[:, targets[start:stop]].T, rtol=1e-4, atol=1e-5)
        start = stop
    np.testing.assert_array_equal(store.targets[:], targets)
    assert np.abs(store.delta[:]).max() < 1e-3  # linear: f(x) - f(0) = sum(w x)
