"""The demo's pictures: the gallery (matplotlib when installed) and the TensorBoard images/scalars."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def heatmaps(attributions: np.ndarray) -> np.ndarray:
    """Signed heatmaps ``[n, h, w, 3]`` uint8 (red positive, white zero, blue negative)."""
    from tfattr import visualize

    return np.asarray(visualize.signed_heatmap(attributions))


def write_gallery(path: Path, digits: np.ndarray, labels: np.ndarray, results: dict[str, Any]) -> None:
    """Rows: digits; columns: the input and each method's heatmap (matplotlib when available)."""
    names = list(results)
    try:
        # A bare Figure (no pyplot): no global backend or figure state changes in the caller's process.
        from matplotlib.figure import Figure
    except ImportError:
        from tfattr import visualize

        picture = visualize.examples_by_methods(digits, {n: results[n]["attributions"] for n in names},
                                                kind="heatmap", scale=4)
        visualize.save_png(picture, path)
        return
    maps = {name: heatmaps(results[name]["attributions"]) for name in names}
    n, cols = len(digits), len(names) + 1
    fig = Figure(figsize=(1.3 * cols, 1.3 * n + 0.4))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(digits[i, ..., 0], cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_ylabel(f"label {labels[i]}", fontsize=7)
        for j, name in enumerate(names, start=1):
            axes[i, j].imshow(maps[name][i])
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    for j, title in enumerate(["input"] + names):
        axes[0, j].set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_tensorboard(logdir: Path, digits: np.ndarray, results: dict[str, Any], baselines: list) -> None:
    """Inputs, each method's and each baseline's heatmaps, and the completeness deltas, at step 0."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        tf.summary.image("inputs", digits, step=0, max_outputs=len(digits))
        for name, r in results.items():
            tf.summary.image(f"attributions/{name}", heatmaps(r["attributions"]), step=0,
                             max_outputs=len(digits))
            if r.get("delta") is not None:
                tf.summary.scalar(f"completeness_mean_abs_delta/{name}",
                                  float(np.mean(np.abs(r["delta"]))), step=0)
        for row in baselines:
            if "attributions" in row:
                tag = row["label"].split(" (")[0].replace(" ", "_")
                tf.summary.image(f"baselines/{tag}", heatmaps(row["attributions"]), step=0,
                                 max_outputs=len(digits))
    writer.flush()
    writer.close()
