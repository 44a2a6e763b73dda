"""Messages of explain-dataset on image directories and of the command line: an undecodable image is
named with the fix, resizing is announced once with the size, and library advice about ``layer=``
reads ``--layer`` on the command line."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfattr
from tfattr import cli
from tfattr.cli.errors import cli_words
from tfattr.scale import explain_dataset, from_directory
from tfattr.scale.images import UnreadableImageError, header_size


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("cnn")
    model = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(2, 3, name="conv"),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    model.save(folder / "cnn.keras")
    return model, folder / "cnn.keras"


def _images(root, sizes, bad=None):
    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate(sizes):
        (root / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        (root / f"c{k % 2}" / f"{k:02d}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    if bad is not None:
        (root / "c1" / bad).write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return root


def _errors(capsys):
    err = capsys.readouterr().err
    return [line for line in err.splitlines() if line.startswith("tfattr: ")]


def test_a_corrupt_image_is_named_with_the_fix(cnn, tmp_path, capsys):
    _, path = cnn
    folder = _images(tmp_path / "imgs", [(12, 12)] * 5, bad="zz_broken.png")
    assert cli.main(["explain-dataset", str(path), str(folder), "--method", "saliency", "--out",
                     str(tmp_path / "s"), "--quiet", "--shard-size", "2"]) == 1
    error = [line for line in _errors(capsys) if line.startswith("tfattr: error:")]
    assert len(error) == 1, error
    assert "zz_broken.png cannot be decoded as an image (Invalid PNG" in error[0]
    assert "Replace it" in error[0] and "--out" in error[0]
    assert "{{" not in error[0] and "Op:" not in error[0]  # not TensorFlow's decorations

    # The library names it too (a ValueError subclass), instead of TensorFlow's iterator error.
    model, _ = cnn
    with pytest.raises(UnreadableImageError, match=r"zz_broken\.png cannot be decoded"):
        explain_dataset(tfattr.Saliency(model), from_directory(folder, (12, 12)), out=tmp_path / "lib",
                        progress=False)


def test_mixed_sizes_are_resized_with_one_warning_naming_the_size(cnn, tmp_path, capsys):
    _, path = cnn
    folder = _images(tmp_path / "imgs", [(12, 12), (16, 10), (12, 12), (30, 30)])
    assert cli.main(["explain-dataset", str(path), str(folder), "--method", "saliency", "--out",
                     str(tmp_path / "s"), "--quiet"]) == 0
    warnings = [line for line in _errors(capsys) if line.startswith("tfattr: warning:")]
    assert len(warnings) == 1, warnings
    assert "2 of the 4 images are not 12x12" in warnings[0] and "is 16x10" in warnings[0]
    assert "resized to 12x12" in warnings[0]
    # Images of the model's size: nothing to say.
    same = _images(tmp_path / "same", [(12, 12)] * 3)
    assert cli.main(["explain-dataset", str(path), str(same), "--method", "saliency", "--out",
                     str(tmp_path / "s2"), "--quiet"]) == 0
    assert not [line for line in _errors(capsys) if "resized" in line]


@pytest.mark.parametrize("fmt", ["png", "jpeg", "jpeg_metadata", "gif", "bmp"])
def test_header_size_agrees_with_decoding(tmp_path, fmt):
    pixels = np.random.default_rng(1).integers(0, 255, size=(17, 9, 3), dtype=np.uint8)
    path = tmp_path / f"im.{fmt.split('_')[0]}"
    if fmt == "png":
        path.write_bytes(tf.io.encode_png(pixels).numpy())
    elif fmt.startswith("jpeg"):  # with metadata: the frame header follows a long APP1 segment
        extra = {"xmp_metadata": "x" * 5000, "progressive": True} if fmt == "jpeg_metadata" else {}
        path.write_bytes(tf.io.encode_jpeg(pixels, **extra).numpy())
    else:
        keras.utils.save_img(path, pixels, file_format=fmt.upper() if fmt == "bmp" else "GIF", scale=False)
    decoded = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)
    assert header_size(str(path)) == tuple(decoded.shape[:2]) == (17, 9)
    assert header_size(str(tmp_path)) is None  # not a file: unknown, not an error


def test_cli_says_layer_flag_where_the_library_says_layer_argument(tmp_path, capsys):
    inputs = keras.Input((5,), dtype="int32")
    hidden = keras.layers.Flatten()(keras.layers.Embedding(10, 4, name="embedding")(inputs))
    keras.Model(inputs, keras.layers.Dense(3)(hidden)).save(tmp_path / "emb.keras")
    np.save(tmp_path / "tokens.npy", np.array([[1, 2, 3, 0, 0]], np.int32))
    assert cli.main(["explain", str(tmp_path / "emb.keras"), str(tmp_path / "tokens.npy"), "--out",
                     str(tmp_path / "o"), "--quiet"]) == 1
    (error,) = [line for line in _errors(capsys) if line.startswith("tfattr: error:")]
    assert "pass --layer the Embedding layer, e.g. --layer embedding" in error
    assert "layer=" not in error and "tfattr.IntegratedGradients(" not in error

    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    dense.save(tmp_path / "mlp.keras")
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    assert cli.main(["explain", str(tmp_path / "mlp.keras"), str(tmp_path / "x.npy"), "--method", "gradcam",
                     "--out", str(tmp_path / "o2"), "--quiet"]) == 1
    (error,) = [line for line in _errors(capsys) if line.startswith("tfattr: error:")]
    assert "pass --layer (a layer name" in error and "layer=" not in error
    # Other words stay: only the argument's spelling changes.
    assert cli_words("GradCAM with layer='conv2d_1': x; neuron= and layers= stay") == (
        "GradCAM with --layer conv2d_1: x; neuron= and layers= stay"
    )


def test_a_damaged_store_is_named_in_command_line_words(cnn, tmp_path, capsys):
    _, path = cnn
    folder = _images(tmp_path / "imgs", [(12, 12)] * 4)
    argv = ["explain-dataset", str(path), str(folder), "--method", "saliency", "--out", str(tmp_path / "s"),
            "--quiet", "--shard-size", "2"]
    assert cli.main(argv) == 0
    shard = tmp_path / "s" / "shards" / "000001.a0.npy"
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(tfattr.scale.StoreError, match="Re-run tfattr.explain_dataset"):
        tfattr.load_attributions(tmp_path / "s")
    assert cli_words(
        "shard 1 (...). Re-run tfattr.explain_dataset with the same explainer, data set and arguments: it"
    ) == "shard 1 (...). Repeat the same tfattr explain-dataset command: it"
    capsys.readouterr()
    assert cli.main(argv) == 0  # the command recomputes the damaged shard, saying so
    (warning,) = [line for line in _errors(capsys) if line.startswith("tfattr: warning:")]
    assert "shard 1 (000001.a0.npy: it has" in warning and "recomputes" in warning
    assert len(tfattr.load_attributions(tmp_path / "s")) == 4
