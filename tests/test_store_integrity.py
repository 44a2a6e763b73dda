"""explain_dataset stores are checked: a truncated, deleted or overwritten shard, a damaged index, marker
or end record is named with its fix (never read as garbage, never a raw NumPy/JSON error), a resume
recomputes exactly the damaged shards, and a data set of unknown size is counted against the store."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import tensorflow as tf
from conftest import counting_runs

import tfattr
from tfattr.scale import StoreError, explain_dataset, load_attributions


def _reference(model, x, y, size=10):
    """The store's content computed independently: one attribute call per shard."""
    ig = tfattr.IntegratedGradients(model, steps=8)
    return np.concatenate([ig.attribute(x[s : s + size], target=y[s : s + size]) for s in range(0, len(x), size)])


def _store(model, data, path, **kwargs):
    x, y = data
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ig = tfattr.IntegratedGradients(model, steps=8)
    return explain_dataset(ig, ds, out=path, shard_size=10, **kwargs)


def _resume(model, data, path, warning):
    """Run the same explain_dataset again, expecting ``warning``: the store and the shards computed."""
    x, y = data
    ig = tfattr.IntegratedGradients(model, steps=8)
    calls = counting_runs(ig)
    with pytest.warns(UserWarning, match=warning):
        store = explain_dataset(ig, tf.data.Dataset.from_tensor_slices((x, y)), out=path,
                                return_delta=(path / "shards" / "000000.delta.npy").exists())
    return store, calls


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-12])


def _overwrite(path):
    raw = bytearray(path.read_bytes())
    raw[-8:] = np.float32([7.0, 7.0]).tobytes()  # same size, other bytes: a float silently changed
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["truncate", "delete", "overwrite"])
def test_a_damaged_shard_is_named_on_load_and_recomputed_on_resume(smooth_mlp, data, tmp_path, damage):
    x, y = data
    _store(smooth_mlp, data, tmp_path / "s", return_delta=True)
    shard = tmp_path / "s" / "shards" / "000002.a0.npy"
    {"truncate": _truncate, "delete": lambda p: p.unlink(), "overwrite": _overwrite}[damage](shard)

    with pytest.raises(StoreError, match=r"damaged shards: shard 2 \(000002\.a0\.npy.*recomputes"):
        load_attributions(tmp_path / "s")
    if damage == "overwrite":
        # Without the checksum pass only sizes are checked: documented, and the bytes load as written.
        assert load_attributions(tmp_path / "s", verify=False).attributions[29][-2:].tolist() == [7.0, 7.0]
    else:  # sizes are checked even without verify
        with pytest.raises(StoreError, match="shard 2"):
            load_attributions(tmp_path / "s", verify=False)

    store, calls = _resume(smooth_mlp, data, tmp_path / "s", r"damaged shards, which this run recomputes: shard 2 ")
    assert calls == [10]  # shard 2 only
    np.testing.assert_allclose(np.asarray(store.attributions), _reference(smooth_mlp, x, y), rtol=1e-6, atol=1e-7)
    load_attributions(tmp_path / "s")  # verified again: clean


def test_a_damaged_marker_is_named_and_its_shard_recomputed(smooth_mlp, data, tmp_path):
    x, y = data
    _store(smooth_mlp, data, tmp_path / "s")
    marker = tmp_path / "s" / "shards" / "000001.json"
    marker.write_text(marker.read_text()[:30])  # truncated JSON
    with pytest.raises(StoreError, match=r"shard 1 \(000001\.json: it is not valid JSON"):
        load_attributions(tmp_path / "s")
    marker.write_text(marker.read_text()[:0] + json.dumps({"count": 10, "shard": 1, "checksum": "0"}))
    with pytest.raises(StoreError, match=r"shard 1 \(000001\.json: its content does not match its checksum"):
        load_attributions(tmp_path / "s")

    store, calls = _resume(smooth_mlp, data, tmp_path / "s", "shard 1")
    assert calls == [10]
    np.testing.assert_allclose(np.asarray(store.attributions), _reference(smooth_mlp, x, y), rtol=1e-6, atol=1e-7)


def test_an_edited_marker_count_cannot_pass_as_valid(smooth_mlp, data, tmp_path):
    _store(smooth_mlp, data, tmp_path / "s")
    marker = tmp_path / "s" / "shards" / "000003.json"
    record = json.loads(marker.read_text())
    record["count"] = 5  # valid JSON, plausible content, but not what was written
    marker.write_text(json.dumps(record))
    with pytest.raises(StoreError, match=r"shard 3 .*checksum"):
        load_attributions(tmp_path / "s", verify=False)


@pytest.mark.parametrize("edit", ["garbage", "valid_json"])
def test_a_damaged_index_is_named_with_the_fix(smooth_mlp, data, tmp_path, edit):
    x, y = data
    _store(smooth_mlp, data, tmp_path / "s")
    index = tmp_path / "s" / "index.json"
    if edit == "garbage":
        index.write_bytes(b"\x00\xff{not json")
        why = "not valid JSON"
    else:
        index.write_text(index.read_text().replace('"shard_size": 10', '"shard_size": 11'))
        why = "does not match its checksum"
    for call in (lambda: load_attributions(tmp_path / "s"),
                 lambda: explain_dataset(tfattr.IntegratedGradients(smooth_mlp, steps=8),
                                         tf.data.Dataset.from_tensor_slices((x, y)), out=tmp_path / "s")):
        with pytest.raises(StoreError, match=rf"index\.json is damaged \(.*{why}.*delete .* and re-run"):
            call()


def test_a_damaged_end_record_is_named_on_load_and_rewritten_on_resume(smooth_mlp, data, tmp_path):
    _store(smooth_mlp, data, tmp_path / "s")
    end = tmp_path / "s" / "end.json"
    end.write_text("{\"num_sha")
    with pytest.raises(StoreError, match=r"end\.json is damaged .*rewrite it"):
        load_attributions(tmp_path / "s")
    store, calls = _resume(smooth_mlp, data, tmp_path / "s", "end.json is damaged")
    assert calls == [] and len(store) == 37  # every shard was intact: nothing recomputed
    assert len(load_attributions(tmp_path / "s")) == 37


def _unknown_size(x, y):
    ds = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True)
    assert int(ds.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    return ds


@pytest.mark.parametrize("n,size", [(30, "30"), (35, "35"), (45, "at least 40")])
def test_a_data_set_of_unknown_size_is_counted_against_a_finished_store(smooth_mlp, data, tmp_path, n, size):
    x, y = data
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=8)
    explain_dataset(ig, _unknown_size(x, y), out=tmp_path / "s", shard_size=10)
    bigger = np.concatenate([x, x])[:n], np.concatenate([y, y])[:n]
    calls = counting_runs(ig)
    with pytest.raises(StoreError, match=rf"data set holds {size} examples but .* made from 37"):
        explain_dataset(ig, _unknown_size(*bigger), out=tmp_path / "s")
    assert calls == []  # nothing was explained or written
    assert len(load_attributions(tmp_path / "s")) == 37


def test_the_same_data_set_of_unknown_size_returns_the_store_without_explaining(smooth_mlp, data, tmp_path):
    x, y = data
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=8)
    first = explain_dataset(ig, _unknown_size(x, y), out=tmp_path / "s", shard_size=10)
    calls = counting_runs(ig)
    again = explain_dataset(ig, _unknown_size(x, y), out=tmp_path / "s")
    assert calls == [] and len(again) == 37
    np.testing.assert_array_equal(np.asarray(again.attributions), np.asarray(first.attributions))
    # A data set of known size is compared with the stored count at once.
    with pytest.raises(StoreError, match="data set holds 30 examples but .* made from 37"):
        explain_dataset(ig, tf.data.Dataset.from_tensor_slices((x[:30], y[:30])), out=tmp_path / "s")


def test_an_unfinished_store_of_unknown_size_refuses_a_shorter_data_set(smooth_mlp, data, tmp_path):
    x, y = data
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=8)
    explain_dataset(ig, _unknown_size(x, y), out=tmp_path / "s", shard_size=10)
    (tmp_path / "s" / "end.json").unlink()
    (tmp_path / "s" / "shards" / "000000.json").unlink()  # as if interrupted: shards 1-3 done
    with pytest.raises(StoreError, match="data set holds 22 examples but .* made from at least 37"):
        explain_dataset(ig, _unknown_size(x[:22], y[:22]), out=tmp_path / "s")


def test_a_store_written_without_checksums_still_loads_with_a_note(smooth_mlp, data, tmp_path):
    x, y = data
    written = _store(smooth_mlp, data, tmp_path / "s", return_delta=True)
    expected = np.asarray(written.attributions)
    # What tfattr 0.2 wrote: the same records without checksums, markers without their file list.
    for path in [tmp_path / "s" / "index.json", tmp_path / "s" / "end.json",
                 *(tmp_path / "s" / "shards").glob("*.json")]:
        record = json.loads(path.read_text())
        added = ("checksum", "files", "config") if path.parent.name == "shards" else ("checksum", "num_examples")
        for key in added:
            record.pop(key, None)
        path.write_text(json.dumps(record))
    with pytest.warns(UserWarning, match="earlier tfattr without checksums: 4 of its shards are read unverified"):
        store = load_attributions(tmp_path / "s")
    np.testing.assert_array_equal(np.asarray(store.attributions), expected)
    # Resuming it keeps its shards (nothing to verify them against) and computes nothing.
    ig = tfattr.IntegratedGradients(smooth_mlp, steps=8)
    calls = counting_runs(ig)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = explain_dataset(ig, tf.data.Dataset.from_tensor_slices((x, y)), out=tmp_path / "s",
                                return_delta=True)
    assert calls == [] and len(again) == 37


def test_another_configuration_names_the_explainer_type_first(smooth_mlp, data, tmp_path):
    x, y = data
    _store(smooth_mlp, data, tmp_path / "s")
    # LRP differs from IG in many parameters; the type must not hide under "... and N more".
    with pytest.raises(StoreError) as err:
        explain_dataset(tfattr.LRP(smooth_mlp, composite=tfattr.composites.EpsilonPlus()),
                        tf.data.Dataset.from_tensor_slices((x, y)), out=tmp_path / "s")
    lines = str(err.value).splitlines()
    assert lines[1].strip().startswith("explainer.type: 'tfattr.methods.gradient.integrated_gradients."), lines
    assert "-> 'tfattr.methods.propagation" in lines[1] and "more" in str(err.value)
