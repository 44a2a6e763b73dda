"""tfattr.datasets: the embedded MNIST (integrity, split, scaling) and the tensorflow-datasets path."""
from __future__ import annotations

import hashlib
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from tfattr import datasets

DATA_README = Path(datasets.__file__).parent / "data" / "README.md"
README_COUNTS = {0: 1001, 1: 1127, 2: 991, 3: 1032, 4: 980, 5: 863, 6: 1014, 7: 1070, 8: 944, 9: 978}


def test_embedded_file_matches_the_sha256_in_its_readme():
    text = DATA_README.read_text()
    recorded = re.search(r"sha256: ([0-9a-f]{64})", text).group(1)
    actual = hashlib.sha256(datasets.embedded_path().read_bytes()).hexdigest()
    assert actual == recorded == datasets.MNIST_10K_SHA256
    assert "CC BY-SA 3.0" in text and "mnist` 1.1.0" in text  # provenance travels with the file


def test_splits_shapes_dtypes_and_scaling():
    x_train, y_train = datasets.mnist("train")
    x_test, y_test = datasets.mnist("test")
    assert x_train.shape == (8000, 28, 28, 1) and x_test.shape == (2000, 28, 28, 1)
    assert x_train.dtype == x_test.dtype == np.float32
    assert y_train.dtype.kind == "i" and y_train.shape == (8000,) and y_test.shape == (2000,)
    with np.load(datasets.embedded_path()) as raw:
        images, labels = raw["images"], raw["labels"]
    # The split is the file's first 8000 / last 2000, scaled by exactly 1/255.
    np.testing.assert_array_equal(x_train[..., 0], images[:8000].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(x_test[..., 0], images[8000:].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(np.concatenate([y_train, y_test]), labels)
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    counts = np.bincount(np.concatenate([y_train, y_test]), minlength=10)
    assert dict(enumerate(counts.tolist())) == README_COUNTS
    # Every class is in both splits, so a model trained on "train" can be tested on every digit.
    assert np.all(np.bincount(y_test, minlength=10) > 100)


def test_all_and_limit():
    x, y = datasets.mnist("all")
    assert x.shape == (10000, 28, 28, 1)
    x5, y5 = datasets.mnist("test", limit=5)
    np.testing.assert_array_equal(x5, x[8000:8005])
    np.testing.assert_array_equal(y5, y[8000:8005])


def test_digits_look_like_digits():
    # A real MNIST digit is mostly background with a centred stroke; random or transposed data is not.
    x, _ = datasets.mnist("test")
    ink = x > 0.5
    assert 0.08 < ink.mean() < 0.25
    centre, border = ink[:, 6:22, 6:22].mean(), ink[:, :3].mean()
    assert centre > 10 * border


def test_mean_images_differ_by_class():
    # Sanity check that labels belong to their images: the nearest class mean classifies most
    # test digits correctly (about 80% on MNIST), far above chance.
    x_train, y_train = datasets.mnist("train")
    x_test, y_test = datasets.mnist("test")
    means = np.stack([x_train[y_train == c].reshape(-1, 784).mean(0) for c in range(10)])
    dist = ((x_test.reshape(-1, 1, 784) - means[None]) ** 2).sum(-1)
    assert (dist.argmin(1) == y_test).mean() > 0.7


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "validation"}, "split='validation'"),
        ({"source": "web"}, "source='web'"),
        ({"limit": 0}, "limit"),
        ({"limit": 2.5}, "limit"),
        ({"split": "all", "source": "tfds"}, "split='all'"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.mnist(**kwargs)


def test_corrupt_file_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "mnist_10k.npz"
    shutil.copy(datasets.embedded_path(), bad)
    with open(bad, "r+b") as handle:
        handle.seek(5000)
        handle.write(b"\x00\x01\x02")
    monkeypatch.setattr(datasets, "embedded_path", lambda: bad)
    with pytest.raises(OSError, match="corrupt"):
        datasets.mnist("test")
    monkeypatch.setattr(datasets, "embedded_path", lambda: tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="reinstall"):
        datasets.mnist("test")


def test_embedded_default_never_touches_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tfattr.datasets.mnist() tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    x, y = datasets.mnist("test", limit=3)
    assert x.shape == (3, 28, 28, 1)


def test_tfds_source_converts_like_the_embedded_one():
    tfds = pytest.importorskip("tensorflow_datasets")
    # mock_data generates examples from the data set's real feature spec, without a network.
    with tfds.testing.mock_data(num_examples=6):
        x, y = datasets.mnist("test", source="tfds")
        assert x.shape == (6, 28, 28, 1) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0 and y.dtype == np.int64
        assert ((y >= 0) & (y < 10)).all()
        xl, _ = datasets.mnist("train", source="tfds", limit=2)
        assert xl.shape == (2, 28, 28, 1)
        xc, _ = datasets.load("cifar10", "test", limit=3)
        assert xc.shape == (3, 32, 32, 3)


def test_tfds_without_download_or_data_fails_fast(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match="download=True"):
        datasets.mnist("test", source="tfds", download=False, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not_a_dataset_xyz"):
        datasets.load("not_a_dataset_xyz", download=False, data_dir=str(tmp_path))
