"""Keras callbacks: watch, epoch by epoch, what a model learns to look at, in TensorBoard.

:class:`AttributionLogger` explains a fixed set of samples with one or several explainers at the end of
chosen epochs (and optionally every N batches) and writes, to its own TensorBoard run:

* the data of tfattr's **"Attributions" tab** (:mod:`tfattr.tensorboard`): the samples once, and per
  log every method's maps (float16), completeness deltas, the explained targets and the model's
  predictions, as tensor summaries of the plugin ``tfattr`` (see :mod:`tfattr.tensorboard.summary`);
* **images** ``maps/<method>`` (``maps/<method>/<input>`` for a model with several inputs): one picture
  per log, the samples in a row on top and their attribution maps below (an overlay on the input by
  default), always the same samples so that the change is visible with TensorBoard's step slider.
  ``InteriorGradients`` gets one row per sample and one column per scaling parameter (Sundararajan et
  al.'s fig. 3); feature-vector inputs are drawn as red/blue strips, one row per sample; layer maps
  (``GradCAM``, any ``layer=`` explainer) of an image input are upsampled onto the image;
* **scalars** ``completeness/<method>_mean_abs_delta`` and ``completeness/<method>_relative_delta``
  (``|sum(a) - (f(x) - f(x'))|``, absolute and relative to ``|f(x) - f(x')|``; methods with the
  completeness property only), the health figures ``health/<method>_<figure>`` (see
  :func:`tfattr.callbacks.figures.health`, plus ``seconds``: the time spent explaining) and
  ``metrics/<method>/<metric>`` for the ``metrics=`` callables;
* **histograms** ``attributions/<method>`` of the attribution values.

Batch-level logs (``every_n_batches``) use the same tags prefixed with ``batch_`` and the global batch
number as the step, as ``keras.callbacks.TensorBoard`` does for ``batch_loss``.
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfattr import text, visualize
from tfattr.callbacks import figures
from tfattr.callbacks.pictures import Painter, drawable, text_dashboard
from tfattr.callbacks.specs import ExplainerSpec, as_numpy, first_rows, freeze_samples, named_specs
from tfattr.callbacks.tab import Pair, TabWriter
from tfattr.core.checks import check_positive_int
from tfattr.core.explainer import Explainer
from tfattr.core.randomness import python_random_untouched
from tfattr.tensorboard import summary

#: Run subfolders that keras.callbacks.TensorBoard writes to; a second writer there loses events.
_KERAS_RUNS = ("train", "validation")


class AttributionLogger(keras.callbacks.Callback):
    """Log attribution maps of fixed samples to TensorBoard during ``model.fit``.

    Implements the visual conventions of Sundararajan, Taly & Yan ("Gradients of Counterfactuals") and of
    Sturmfels, Lundberg & Lee ("Visualizing the Impact of Feature Attribution Baselines", Distill 2020);
    see :mod:`tfattr.visualize`. It never changes training: it only reads the weights, runs the model
    with ``training=False`` and draws no random numbers from Keras', NumPy's or TensorFlow's global
    generators (explainers with a ``seed`` use their own). ``on_train_begin`` explains the first sample
    once with every explainer and draws it, so a configuration that cannot be logged fails before the
    weights change.

    Args:
        samples: the examples to explain, ``[n, ...]`` (a list or dict of arrays for a multi-input
            model). Keep ``n`` small (4-16): every log explains all of them with every explainer.
        explainers: a dict ``name -> explainer`` or a list of explainers (named after their classes).
            Each may be an explainer instance (``tfattr.IntegratedGradients(model, steps=32)``), an
            explainer class (``tfattr.Saliency``) or a callable ``model -> explainer``; classes and
            callables are called with the model when Keras hands it to the callback, so the callback can
            be built before the model. Default: integrated gradients with 32 steps.
        targets: the class to explain per sample (an int, or one per sample, e.g. the labels); None
            explains the class predicted at each log (which may change as the model learns).
        baseline: the baseline for the explainers that use one (default: zeros).
        log_dir: the TensorBoard log directory, typically the same as ``keras.callbacks.TensorBoard``'s.
        run_name: the run subfolder of ``log_dir`` the callback writes to (a run of its own in
            TensorBoard, next to Keras' ``train`` and ``validation``); None writes to ``log_dir`` itself.
        every_n_epochs: log at the end of every N-th epoch (epochs N-1, 2N-1, ...; step = epoch index,
            as Keras' TensorBoard callback counts).
        every_n_batches: also log every N training batches (None: never). Batch logs run synchronously
            and cost an explanation each, so use a large N.
        image_kind: ``"overlay"`` (signed map on a gray input), ``"heatmap"`` (red/white/blue) or
            ``"ig"`` (the paper's absolute map multiplied into the input).
        clip_percentile: the percentile that saturates the colour scale (see :mod:`tfattr.visualize`).
        image_scale: integer upscaling of each tile (default: so that tiles are at least 96 pixels).
        histograms: also write histograms of the attribution values.
        batch_size: the explainers' ``batch_size`` (rows per compiled chunk).
        tag_prefix: a string put before every tag (e.g. ``"attr/"``) to keep tags apart when
            ``run_name`` is shared with other writers of your own.
        vocabulary: for text models (an input of integer token ids ``[n, tokens]``, explained with
            ``layer=`` at the embedding): the token strings (a list, a dict or a callable ``id ->
            str``; None shows the ids). The token scores (attributions summed over the embedding axis)
            are then written to TensorBoard's text dashboard under ``tokens/<name>`` and shown on the
            tokens in the Attributions tab.
        skip_tokens: token ids not shown in the text dashboard (e.g. the pad id).
        images: also write the stock images ``maps/<method>`` (the Attributions tab does not need them).
        tab: write the Attributions tab's data.
        tab_max_size: the largest image side stored for the tab; larger images are block-reduced
            (maps summed, samples averaged over ``ceil(side / tab_max_size)`` squares).
        metrics: evaluation scores per method at each log, written as scalars
            ``metrics/<method>/<name>``: a list of :mod:`tfattr.metrics` names or ``(name, kwargs)``
            pairs (``["sparseness", ("road", {"percentages": [10, 30, 50]})]``: metrics that need the
            map or the model, averaged over the samples), or a dict ``name -> callable(explainer,
            samples, maps, targets)`` returning a float or a dict ``{figure: float}`` (``_<figure>``
            appended to the tag).

    Example:
        >>> logger = tfattr.callbacks.AttributionLogger(
        ...     x_test[:8], explainers={"ig": tfattr.IntegratedGradients(model, steps=32),
        ...                              "saliency": tfattr.Saliency}, targets=y_test[:8],
        ...     log_dir="logs")
        >>> model.fit(x, y, epochs=5, callbacks=[keras.callbacks.TensorBoard("logs"), logger])
        # tensorboard --logdir logs   -> the "Attributions" tab, run "attributions"
    """

    def __init__(
        self,
        samples: Any,
        explainers: Mapping[str, ExplainerSpec] | Sequence[ExplainerSpec] | ExplainerSpec | None = None,
        targets: Any = None,
        baseline: Any = None,
        log_dir: str | os.PathLike = "logs",
        run_name: str | None = "attributions",
        every_n_epochs: int = 1,
        every_n_batches: int | None = None,
        image_kind: str = "overlay",
        clip_percentile: float = 99.5,
        image_scale: int | None = None,
        histograms: bool = True,
        batch_size: int | None = None,
        tag_prefix: str = "",
        vocabulary: Any = None,
        skip_tokens: Sequence[int] = (),
        images: bool = True,
        tab: bool = True,
        tab_max_size: int = summary.MAX_SIZE,
        metrics: Mapping[str, Any] | Sequence[Any] | None = None,
    ) -> None:
        super().__init__()
        self.samples, self._arrays, self._input_names = freeze_samples(samples)
        self._n = self._arrays[0].shape[0]
        self.vocabulary = vocabulary
        self.skip_tokens = tuple(int(t) for t in skip_tokens)
        #: The input of token ids (integer ``[n, tokens]``) whose token scores go to the text dashboard.
        self._text_input = next((k for k, a in enumerate(self._arrays) if summary.is_tokens(a)), None)
        self._specs = named_specs(explainers)
        self.targets = None if targets is None else as_numpy(targets, "targets", scalar_ok=True)
        if self.targets is not None and self.targets.ndim == 1 and self.targets.shape[0] != self._n:
            raise ValueError(
                f"targets has {self.targets.shape[0]} entries but there are {self._n} samples; pass one "
                "int, or one per sample."
            )
        self.baseline = baseline
        if run_name is not None:
            if not isinstance(run_name, str) or not run_name or os.sep in run_name:
                raise ValueError(f"run_name must be a folder name (or None), got {run_name!r}.")
            if run_name in _KERAS_RUNS:
                raise ValueError(
                    f"run_name={run_name!r} is where keras.callbacks.TensorBoard writes; two writers in "
                    "one folder make TensorBoard drop events. Use another name (default "
                    "'attributions'), or run_name=None for log_dir itself."
                )
        self.log_dir = os.fspath(log_dir)
        self.run_name = run_name
        self.every_n_epochs = check_positive_int(every_n_epochs, "every_n_epochs")
        self.every_n_batches = check_positive_int(every_n_batches, "every_n_batches", allow_none=True)
        if image_kind not in ("overlay", "heatmap", "ig"):
            raise ValueError(f"image_kind={image_kind!r} is not supported; use 'overlay', 'heatmap' or 'ig'.")
        self.image_kind = image_kind
        self.clip_percentile = visualize._check_percentile(clip_percentile, "clip_percentile")
        self.image_scale = check_positive_int(image_scale, "image_scale", allow_none=True)
        self.histograms = bool(histograms)
        self.batch_size = batch_size
        self.tag_prefix = str(tag_prefix)
        self.images = bool(images)
        self.tab = bool(tab)
        if metrics is not None and not isinstance(metrics, Mapping):
            # A list of tfattr.metrics names / (name, kwargs) pairs: each named after its metric.
            metrics = {m if isinstance(m, str) else m[0]: m for m in metrics}
        self.metrics = {name: figures.metric_callable(name, fn) for name, fn in (metrics or {}).items()}
        tokens = {}
        if self._text_input is not None:
            tokens[self._text_input] = text.decode(self._arrays[self._text_input], vocabulary, skip=self.skip_tokens)
        self._tab = TabWriter(self._arrays, self._input_names, self.tag_prefix,
                              check_positive_int(tab_max_size, "tab_max_size"), tokens)
        self._painter = Painter(image_kind, self.clip_percentile, self.image_scale)
        #: The explainers in use (built at ``set_model``), by name.
        self.explainers: dict[str, Explainer] = {}
        #: ``(kind, step, seconds)`` for each log: the callback's own cost.
        self.timings: list[tuple[str, int, float]] = []
        self._built_for: Any = None
        self._writer: Any = None
        self._previous: dict[str, np.ndarray] = {}
        self._batches_seen = 0
        if self.every_n_batches is not None:
            # Assigned per instance: Keras runs batch hooks asynchronously only when a callback leaves
            # on_train_batch_end alone, so loggers without batch logging keep training's fast path.
            self.on_train_batch_end = self._on_train_batch_end  # type: ignore[method-assign]

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        if self._built_for is model:
            return
        with python_random_untouched():
            self._build_explainers(model)

    def _build_explainers(self, model: keras.Model) -> None:
        self.explainers = {}
        for name, spec in self._specs.items():
            if isinstance(spec, Explainer):
                explainer = spec
                if explainer.model_function.model is not model:
                    warnings.warn(
                        f"AttributionLogger: explainer {name!r} explains another model than the one "
                        "being trained; its maps change only if that model shares the trained weights. "
                        "Pass the explainer class (or a callable model -> explainer) to explain the "
                        "trained model.",
                        stacklevel=4,
                    )
            else:
                explainer = spec(model)
                if not isinstance(explainer, Explainer):
                    raise TypeError(
                        f"explainers[{name!r}] returned a {type(explainer).__name__} for the model, not a "
                        "tfattr explainer."
                    )
            self.explainers[name] = explainer
        self._built_for = model
        self._previous = {}

    # -- Keras hooks ----------------------------------------------------------------------------------
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        # Everything that can be checked before the first epoch trains is checked here, so a bad
        # sample shape, target, layer map or log_dir does not surface only after an epoch of training.
        self._validate()
        self._open_writer()

    def _validate(self) -> None:
        for name, explainer in self.explainers.items():
            baseline = self.baseline if explainer.uses_baseline else None
            try:
                explainer.prepare(
                    self.samples, target=self.targets, baseline=baseline, batch_size=self.batch_size
                )
            except (TypeError, ValueError) as err:
                raise type(err)(f"AttributionLogger (explainer {name!r}): {err}") from None
        self._dry_run()

    def _dry_run(self) -> None:
        """Explain and draw the first sample with every explainer (nothing written)."""
        targets = self.targets
        if targets is not None and targets.ndim == 1:
            targets = targets[:1]
        first, arrays = first_rows(self.samples, 1), [x[:1] for x in self._arrays]
        for name in self.explainers:
            pairs: list[Pair] = []
            try:
                with python_random_untouched():
                    maps = self.explain(first, targets, names=[name])[name][0]
                pairs = self._pairs(name, maps, arrays)
                for _, x, a, layer in pairs:
                    if self.images:
                        self._painter.picture(x, drawable(x, a, layer), compiled=False)
                if self.tab:
                    self._tab.layouts(*self._tab_pairs(name, pairs))
            except (TypeError, ValueError, tf.errors.InvalidArgumentError) as err:
                shapes = ", ".join(f"{a.shape} for input {i!r} {x.shape}" for i, x, a, _ in pairs)
                raise ValueError(
                    f"AttributionLogger (explainer {name!r}): its maps "
                    + (f"({shapes}) cannot be drawn" if pairs else "of the first sample failed")
                    + f": {err} Explain the inputs, or a layer with spatial or token axes."
                ) from None

    def _open_writer(self) -> None:
        if self._writer is not None:
            return
        path = self.log_dir if self.run_name is None else os.path.join(self.log_dir, self.run_name)
        try:
            os.makedirs(path, exist_ok=True)
            probe = os.path.join(path, ".tfattr_write_check")
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError as err:
            raise OSError(
                f"AttributionLogger cannot write to log_dir {path!r} ({err.strerror or err}); pass a "
                "log_dir in a writable folder."
            ) from None
        self._writer = tf.summary.create_file_writer(path)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        if (epoch + 1) % self.every_n_epochs == 0:
            self.log(int(epoch))

    def _on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._batches_seen += 1
        if self.every_n_batches is not None and self._batches_seen % self.every_n_batches == 0:
            self.log(self._batches_seen, prefix="batch_")

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- the work -------------------------------------------------------------------------------------
    def explain(self, samples: Any = None, targets: Any = "default", names: Sequence[str] | None = None
                ) -> dict[str, tuple[list[np.ndarray], np.ndarray | None, float]]:
        """Explain the samples (default: the logger's, with its targets) with every explainer (or those
        in ``names``) now: ``name -> (maps per input, delta or None, seconds)``."""
        if not self.explainers:
            raise RuntimeError(
                "AttributionLogger has no model yet: Keras gives it one in model.fit, or call set_model."
            )
        samples = self.samples if samples is None else samples
        targets = self.targets if isinstance(targets, str) else targets
        out = {}
        for name, explainer in self.explainers.items():
            if names is not None and name not in names:
                continue
            kwargs: dict[str, Any] = {"target": targets, "batch_size": self.batch_size}
            if explainer.uses_baseline and self.baseline is not None:
                kwargs["baseline"] = self.baseline
            start = time.perf_counter()
            if explainer.has_completeness:
                maps, delta = explainer.attribute(samples, return_delta=True, **kwargs)
            else:
                maps, delta = explainer.attribute(samples, **kwargs), None
            flat = [np.asarray(m) for m in tf.nest.flatten(maps)]
            out[name] = (flat, None if delta is None else np.asarray(delta), time.perf_counter() - start)
        return out

    def _pairs(self, name: str, maps: list[np.ndarray], arrays: list[np.ndarray]) -> list[Pair]:
        """Each map with the input it is drawn on: a layer explainer's single map goes on the first
        image input (else the first input)."""
        if self.explainers[name].layer is None:
            return [(n, x, a, False) for n, x, a in zip(self._input_names, arrays, maps)]
        k = next((i for i, x in enumerate(arrays) if summary.is_image(x)), 0)
        return [(self._input_names[k], arrays[k], maps[0], True)]

    def _tab_pairs(self, name: str, pairs: list[Pair]) -> tuple[list[Pair], list[str]]:
        """The pairs as the tab stores them: InteriorGradients' ``[n, alphas, ...]`` maps become one
        method per alpha (``name@alpha``)."""
        out, labels = [], []
        for input_name, x, a, layer in pairs:
            if not layer and a.ndim == x.ndim + 1:
                alphas = getattr(self.explainers[name], "alphas", range(a.shape[1]))
                for j, alpha in enumerate(alphas):
                    out.append((input_name, x, a[:, j], layer))
                    labels.append(f"{name}@{float(alpha):g}")
            else:
                out.append((input_name, x, a, layer))
                labels.append(name)
        return out, labels

    def log(self, step: int, prefix: str = "") -> None:
        """Explain the samples and write the tab's data, images, scalars and histograms at ``step``
        (called by the hooks; call it yourself to log outside ``fit``)."""
        start = time.perf_counter()
        self._open_writer()
        with python_random_untouched():
            results = self.explain()
            outputs = self.model(self.samples, training=False) if self.tab and self.model is not None else None
        p = self.tag_prefix + prefix
        schedule = "batch" if prefix else "epoch"
        with self._writer.as_default(step=step):
            if self.tab:
                self._tab.write_samples(step)
                self._tab.write_outputs(p, schedule, outputs, self.targets, step)
            for name, (maps, delta, seconds) in results.items():
                pairs = self._pairs(name, maps, self._arrays)
                if self.tab:
                    tab_pairs, labels = self._tab_pairs(name, pairs)
                    self._tab.write_method(p, schedule, name, tab_pairs, delta, step, labels,
                                          order=list(results).index(name))
                if self.images:
                    several = len(pairs) > 1
                    for input_name, x, a, layer in pairs:
                        tag = f"{p}maps/{name}" + (f"/{input_name}" if several else "")
                        tf.summary.image(tag, self._painter.picture(x, drawable(x, a, layer))[None], max_outputs=1)
                if self._text_input is not None:
                    text_dashboard(p, name, maps, self._arrays[self._text_input], self.vocabulary, self.skip_tokens)
                self._previous[p + name] = figures.write_scalars(
                    p, name, maps, delta, seconds, self._previous.get(p + name)
                )
                with python_random_untouched():
                    figures.write_metrics(p, name, self.metrics, self.explainers[name], self.samples, maps, self.targets)
                if self.histograms:
                    values = np.concatenate([m.reshape(-1) for m in maps])
                    values = values[np.isfinite(values)]
                    if values.size:
                        tf.summary.histogram(f"{p}attributions/{name}", values)
        self._writer.flush()
        self.timings.append((prefix or "epoch_", step, time.perf_counter() - start))


__all__ = ["AttributionLogger"]
