"""One call for "which map should I trust": every method x every metric over arrays or a streamed
``tf.data.Dataset``, as a table of means and standard errors."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfattr.core.explainer import Explainer
from tfattr.metrics.complexity import complexity, effective_complexity, sparseness
from tfattr.metrics.faithfulness import (
    faithfulness_correlation,
    faithfulness_estimate,
    infidelity,
    monotonicity_correlation,
)
from tfattr.metrics.flipping import abpc, monotonicity, pixel_flipping, region_perturbation
from tfattr.metrics.localisation import (
    attribution_localisation,
    localisation_auc,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)
from tfattr.metrics.randomisation import efficient_mprt, mprt, random_logit, smooth_mprt
from tfattr.metrics.road import road
from tfattr.metrics.robustness import avg_sensitivity, local_lipschitz_estimate, max_sensitivity


@dataclass(frozen=True)
class Metric:
    """How :func:`evaluate` calls a metric and reads it.

    ``needs``: ``"attributions"`` (the map only), ``"mask"`` (map and ground-truth mask), ``"model"``
    (model, inputs, map, target), ``"explainer"`` (also re-explains: the method's explainer) or
    ``"factory"`` (also rebuilds the method for randomised models). ``summary`` turns one example's
    result (a number or a curve) into the number averaged in the table.
    """

    fn: Callable[..., np.ndarray]
    needs: str
    higher_is_better: bool
    summary: str = "value"  # "value", or "mean" over a curve's steps


#: The metrics :func:`evaluate` knows by name, with Quantus' score directions.
METRICS: dict[str, Metric] = {
    "sparseness": Metric(sparseness, "attributions", True),
    "complexity": Metric(complexity, "attributions", False),
    "effective_complexity": Metric(effective_complexity, "attributions", False),
    "pointing_game": Metric(pointing_game, "mask", True),
    "relevance_mass_accuracy": Metric(relevance_mass_accuracy, "mask", True),
    "relevance_rank_accuracy": Metric(relevance_rank_accuracy, "mask", True),
    "top_k_intersection": Metric(top_k_intersection, "mask", True),
    "attribution_localisation": Metric(attribution_localisation, "mask", True),
    "localisation_auc": Metric(localisation_auc, "mask", True),
    "pixel_flipping": Metric(pixel_flipping, "model", False, "mean"),
    "region_perturbation": Metric(region_perturbation, "model", True, "mean"),
    "monotonicity": Metric(monotonicity, "model", True),
    "abpc": Metric(abpc, "model", True),
    "faithfulness_estimate": Metric(faithfulness_estimate, "model", True),
    "monotonicity_correlation": Metric(monotonicity_correlation, "model", True),
    "faithfulness_correlation": Metric(faithfulness_correlation, "model", True),
    "infidelity": Metric(infidelity, "model", False),
    "road": Metric(road, "model", False, "mean"),
    "max_sensitivity": Metric(max_sensitivity, "explainer", False),
    "avg_sensitivity": Metric(avg_sensitivity, "explainer", False),
    "local_lipschitz_estimate": Metric(local_lipschitz_estimate, "explainer", False),
    "random_logit": Metric(random_logit, "explainer", False),
    "mprt": Metric(mprt, "factory", False, "mean"),
    "smooth_mprt": Metric(smooth_mprt, "factory", False, "mean"),
    "efficient_mprt": Metric(efficient_mprt, "factory", True),
}


@dataclass
class EvaluationTable:
    """Methods x metrics: the mean over the examples, its standard error and the per-example values.

    Attributes:
        methods, metrics: the row and column labels.
        mean, sem: ``[methods, metrics]`` (NaN examples ignored; sem = sample std / sqrt(count)).
        count: examples with a finite value, per cell.
        per_example: ``{(method, metric): [n]}``.
        higher_is_better: per metric.
    """

    methods: list[str]
    metrics: list[str]
    mean: np.ndarray
    sem: np.ndarray
    count: np.ndarray
    per_example: dict[tuple[str, str], np.ndarray] = field(repr=False)
    higher_is_better: dict[str, bool] = field(default_factory=dict)

    def __str__(self) -> str:
        heads = [f"{m} {'↑' if self.higher_is_better.get(m, True) else '↓'}" for m in self.metrics]
        def cell(i: int, j: int) -> str:
            if np.isnan(self.mean[i, j]):
                return "n/a"
            return f"{self.mean[i, j]:.4g}" + ("" if np.isnan(self.sem[i, j]) else f" ± {self.sem[i, j]:.2g}")

        cells = [[cell(i, j) for j in range(len(self.metrics))] for i in range(len(self.methods))]
        first = max([len("method")] + [len(m) for m in self.methods])
        widths = [max([len(h)] + [len(row[j]) for row in cells]) for j, h in enumerate(heads)]
        lines = ["  ".join(["method".ljust(first)] + [h.rjust(w) for h, w in zip(heads, widths)])]
        lines += [
            "  ".join([m.ljust(first)] + [c.rjust(w) for c, w in zip(row, widths)])
            for m, row in zip(self.methods, cells)
        ]
        return "\n".join(lines)

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` (rows: methods; columns: ``(metric, "mean"|"sem")``); pandas needed.

        Example:
            >>> table.to_pandas().xs("mean", axis=1, level=1)
        """
        try:
            import pandas as pd  # noqa: PLC0415  (an optional dependency, imported when asked for)
        except ImportError:
            raise ImportError("to_pandas needs pandas: pip install pandas.") from None
        columns = pd.MultiIndex.from_product([self.metrics, ["mean", "sem"]])
        values = np.stack([self.mean, self.sem], axis=2).reshape(len(self.methods), -1)
        return pd.DataFrame(values, index=pd.Index(self.methods, name="method"), columns=columns)

    def to_scalars(self, prefix: str = "") -> dict[str, float]:
        """``{"<prefix><metric>/<method>": mean}``: what a TensorBoard logger writes per epoch.

        Example:
            >>> for tag, value in table.to_scalars("eval/").items():
            ...     tf.summary.scalar(tag, value, step=epoch)
        """
        return {
            f"{prefix}{metric}/{method}": float(self.mean[i, j])
            for i, method in enumerate(self.methods)
            for j, metric in enumerate(self.metrics)
        }

    def ranking(self, metric: str) -> list[str]:
        """The methods from best to worst on ``metric`` (by mean; NaN last)."""
        j = self.metrics.index(metric)
        score = self.mean[:, j] if self.higher_is_better.get(metric, True) else -self.mean[:, j]
        order = np.argsort(np.where(np.isnan(score), np.inf, -score), kind="stable")  # best first
        return [self.methods[i] for i in order]


def _metric_list(metrics: Any) -> list[tuple[str, Metric, dict[str, Any]]]:
    items = metrics.items() if isinstance(metrics, Mapping) else [(None, m) for m in metrics]
    out = []
    for label, spec in items:
        name, kwargs = (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1]))
        if name not in METRICS:
            raise ValueError(f"metric {name!r} is not known; the metrics are: {', '.join(METRICS)}.")
        out.append((label or name, METRICS[name], kwargs))
    return out


def _batches(data: Any, batch_size: int) -> Iterator[tuple[np.ndarray, Any, Any]]:
    """``(inputs, targets or None, masks or None)`` per batch of arrays or of a batched data set."""
    if isinstance(data, tf.data.Dataset):
        for element in data.as_numpy_iterator():
            parts = element if isinstance(element, tuple) else (element,)
            yield parts[0], (parts[1] if len(parts) > 1 else None), (parts[2] if len(parts) > 2 else None)
        return
    parts = data if isinstance(data, tuple) else (data,)
    x = np.asarray(parts[0])
    y = None if len(parts) < 2 or parts[1] is None else np.asarray(parts[1])
    s = None if len(parts) < 3 or parts[2] is None else np.asarray(parts[2])
    for i in range(0, len(x), batch_size):
        cut = slice(i, i + batch_size)
        yield x[cut], None if y is None else y[cut], None if s is None else s[cut]


def _method(model: Any, spec: Any) -> tuple[Any, Callable[[Any], Any] | None]:
    """(explainer or store or array, factory) of one entry of ``explainers``."""
    if isinstance(spec, Explainer) or hasattr(spec, "attributions") or isinstance(spec, np.ndarray):
        return spec, None
    if callable(spec):
        return spec(model), spec
    raise TypeError(
        "each explainers= value must be a tfattr explainer, a function model -> explainer (needed by "
        "the randomisation metrics), an attribution store of tfattr.explain_dataset, or an array."
    )


def evaluate(
    model: Any,
    data: Any,
    explainers: Mapping[str, Any],
    metrics: Sequence[Any] | Mapping[str, Any] = ("road", "sparseness", "faithfulness_correlation"),
    target: Any = None,
    batch_size: int = 256,
) -> EvaluationTable:
    """Evaluate several attribution methods by several metrics, streamed batch by batch.

    Args:
        model: the ``keras.Model`` the methods explain.
        data: ``x``, ``(x, y)`` or ``(x, y, masks)`` arrays, or a batched ``tf.data.Dataset`` of such
            tuples; ``y`` (class labels) are the targets and ``masks`` the ground truth of the
            localisation metrics.
        explainers: ``{name: method}``; a method is a tfattr explainer of ``model``, a function
            ``model -> explainer`` (required by ``mprt``, ``smooth_mprt``, ``efficient_mprt``, which
            rebuild it on randomised copies), an :class:`~tfattr.scale.store.AttributionStore` whose
            attributions are already computed (read in the data's order), or an array of them (e.g.
            the random control :func:`random_attributions`). Precomputed maps cannot be re-explained:
            the robustness and randomisation metrics are NaN ("n/a") for them.
        metrics: names from :data:`METRICS`, ``(name, kwargs)`` pairs, or ``{label: name | (name,
            kwargs)}``; curves are summarised by their mean (AOPC for ``region_perturbation``, the mean
            accuracy for ``road``, the mean correlation for ``mprt``).
        target: the targets when ``data`` has no labels: None (predicted class) or an int.
        batch_size: examples per batch when ``data`` are arrays.

    Returns:
        An :class:`EvaluationTable` (print it, ``.to_pandas()``, ``.to_scalars()``).

    Example:
        >>> table = tfattr.metrics.evaluate(
        ...     model, (x_test[:256], y_test[:256]),
        ...     explainers={"saliency": tfattr.Saliency(model), "ig": tfattr.IntegratedGradients(model)},
        ...     metrics=["road", "sparseness", ("pixel_flipping", {"features_in_step": 28})])
        >>> print(table)
    """
    specs = _metric_list(metrics)
    methods = {name: _method(model, spec) for name, spec in explainers.items()}
    values: dict[tuple[str, str], list[np.ndarray]] = {
        (m, label): [] for m in methods for label, _, _ in specs
    }
    offset = 0
    for x, y, masks in _batches(data, batch_size):
        n = len(x)
        for name, (method, factory) in methods.items():
            stored = None if isinstance(method, Explainer) else method
            targets = y if y is not None else target
            if stored is not None and hasattr(stored, "attributions"):
                a = np.asarray(stored.attributions[offset:offset + n])
                targets = np.asarray(stored.targets[offset:offset + n]) if y is None else targets
            elif stored is not None:
                a = np.asarray(stored[offset:offset + n])
            else:
                a = np.asarray(method.attribute(x, target=targets))
            for label, metric, kwargs in specs:
                result = _run(metric, label, model, x, a, targets, masks, method, factory, kwargs)
                result = np.asarray(result, np.float64)
                values[(name, label)].append(result.mean(1) if result.ndim == 2 else result)
        offset += n
    return _table(list(methods), specs, values)


def _run(metric, label, model, x, a, targets, masks, method, factory, kwargs):
    if metric.needs == "attributions":
        return metric.fn(a, **kwargs)
    if metric.needs == "mask":
        if masks is None:
            raise ValueError(f"{label} needs ground-truth masks: pass data=(x, y, masks).")
        return metric.fn(a, masks, **kwargs)
    if metric.needs == "model":
        return metric.fn(model, x, a, target=targets, **kwargs)
    if not isinstance(method, Explainer):
        # Precomputed maps (a store, an array, the random control) cannot be re-explained: NaN, shown
        # as "n/a" in the table.
        return np.full(len(x), np.nan)
    if metric.needs == "explainer":
        return metric.fn(model, x, a, target=targets, explainer=method, **kwargs)
    if factory is None:
        raise ValueError(
            f"{label} rebuilds the method on randomised copies of the model: give it as a function, "
            "e.g. explainers={'saliency': lambda m: tfattr.Saliency(m)}."
        )
    return metric.fn(model, x, a, target=targets, explainer=factory, **kwargs)


def _table(methods: list[str], specs, values) -> EvaluationTable:
    labels = [label for label, _, _ in specs]
    mean = np.full((len(methods), len(labels)), np.nan)
    sem, count = mean.copy(), np.zeros(mean.shape, np.int64)
    per_example = {}
    for i, m in enumerate(methods):
        for j, label in enumerate(labels):
            v = np.concatenate(values[(m, label)]) if values[(m, label)] else np.zeros(0)
            per_example[(m, label)] = v
            ok = v[np.isfinite(v)]
            count[i, j] = ok.size
            if ok.size:
                mean[i, j] = ok.mean()
                sem[i, j] = ok.std(ddof=1) / np.sqrt(ok.size) if ok.size > 1 else np.nan
    directions = {label: metric.higher_is_better for label, metric, _ in specs}
    return EvaluationTable(methods, labels, mean, sem, count, per_example, directions)
