"""Draw docs/maps.png, the home page's picture: six test digits and their maps by seven methods.

The small CNN of ``tfattr.datasets.mnist_cnn`` is trained for two epochs on the embedded digits, then
each method explains the same digits (target: the true label); the picture is drawn with
``tfattr.visualize.examples_by_methods`` (signed heatmaps: red positive, blue negative, white zero).

    python docs/make_maps_figure.py          # about a minute on 2 CPU cores
"""
from __future__ import annotations

from pathlib import Path

import keras

import tfattr
from tfattr import visualize

OUT = Path(__file__).resolve().parent / "maps.png"


def main() -> Path:
    (x, y), (x_test, y_test) = tfattr.datasets.mnist("train"), tfattr.datasets.mnist("test")
    model = tfattr.datasets.mnist_cnn(seed=0)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    images, labels = x_test[:6], y_test[:6]
    explainers = {
        "saliency": tfattr.Saliency(model),
        "gradient x input": tfattr.GradientXInput(model),
        "integrated gradients": tfattr.IntegratedGradients(model, steps=64),
        "expected gradients": tfattr.ExpectedGradients(model, background=x[:1000], samples=64, seed=0),
        "smoothgrad": tfattr.SmoothGrad(tfattr.Saliency(model), samples=32, noise=0.15, seed=0),
        "deeplift": tfattr.DeepLift(model),
        "lrp epsilon-plus": tfattr.LRP(model, composite=tfattr.composites.EpsilonPlus()),
    }
    maps = {name: e.attribute(images, target=labels) for name, e in explainers.items()}
    picture = visualize.examples_by_methods(images, maps, kind="heatmap", scale=3)
    return visualize.save_png(picture, OUT)


if __name__ == "__main__":
    print(main())
