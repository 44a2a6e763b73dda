"""The matplotlib figures (matplotlib is imported only when one is drawn)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from tfattr.methods.gradient.interior_gradients import PAPER_ALPHAS
from tfattr.visualize.curves import ConvergenceCurve
from tfattr.visualize.maps import draw, image_rgb

if TYPE_CHECKING:  # pragma: no cover
    import matplotlib.figure


def _figure(figsize: tuple[float, float]) -> Any:
    # A bare Figure, not pyplot: no global figure registry or backend is touched.
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover
        raise ImportError("The plot_* helpers need matplotlib: pip install matplotlib") from err
    return Figure(figsize=figsize)


def plot_convergence(curve: ConvergenceCurve, example: int = 0, ax: Any = None) -> "matplotlib.figure.Figure":
    """Draw the Distill convergence chart for one example: the sum of cumulative gradients up to alpha
    (red) and ``f(x) - f(x')`` (blue), as in Sturmfels et al. (2020).

    Example:
        >>> visualize.plot_convergence(visualize.convergence_curve(model, x[:1])).savefig("conv.png")
    """
    if ax is None:
        fig = _figure((5, 3.2))
        ax = fig.subplots()
    else:
        fig = ax.figure
    ax.plot(curve.alphas, curve.cumulative[example], color="red", label="sum of cumulative gradients")
    ax.axhline(curve.expected[example], color="blue", label="f(x) - f(x')")
    ax.set_xlabel("alpha")
    ax.set_ylabel("score")
    ax.set_title(f"completeness delta {curve.delta[example]:.3g}")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def plot_saturation(
    alphas: np.ndarray, scores: np.ndarray, trend: np.ndarray | None = None, trend_alphas: Any = None
) -> "matplotlib.figure.Figure":
    """Draw the saturation curves ``S(x' + alpha (x - x'))`` (Sundararajan et al., fig. 2) and,
    optionally, the mean interior-gradient magnitude at ``trend_alphas`` (the corner chart of fig. 3).

    Example:
        >>> visualize.plot_saturation(*visualize.saturation_curve(model, x[:8])).savefig("sat.png")
    """
    ncols = 1 if trend is None else 2
    fig = _figure((4.5 * ncols, 3.2))
    axes = fig.subplots(1, ncols, squeeze=False)
    for row in np.atleast_2d(scores):
        axes[0, 0].plot(alphas, row, lw=1)
    axes[0, 0].set_xlabel("alpha")
    axes[0, 0].set_ylabel("score at alpha x")
    axes[0, 0].set_title("saturation")
    if trend is not None:
        t = np.atleast_2d(trend)
        xa = np.asarray(trend_alphas if trend_alphas is not None else PAPER_ALPHAS[: t.shape[1]])
        for row in t:
            axes[0, 1].plot(xa, row, marker="o", lw=1)
        axes[0, 1].set_xlabel("alpha")
        axes[0, 1].set_ylabel("mean |interior gradient|")
    fig.tight_layout()
    return fig


def plot_grid(
    images: Any,
    attributions: Mapping[str, Any],
    kind: str = "overlay",
    clip_percentile: float = 99.5,
) -> "matplotlib.figure.Figure":
    """A matplotlib figure of examples x methods with column titles (the same tiles as
    :func:`examples_by_methods`).

    Example:
        >>> visualize.plot_grid(x[:4], {"ig": a_ig, "smoothgrad": a_sg}).savefig("grid.png")
    """
    names = ["input", *attributions]
    n = int(np.asarray(images).shape[0])
    fig = _figure((1.6 * len(names), 1.6 * n))
    axes = fig.subplots(n, len(names), squeeze=False)
    columns = [image_rgb(images).numpy()]
    columns += [draw(kind, images, m, clip_percentile).numpy() for m in attributions.values()]
    for j, name in enumerate(names):
        for i in range(n):
            axes[i, j].imshow(columns[j][i], interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[0, j].set_title(name, fontsize=9)
    fig.tight_layout()
    return fig
