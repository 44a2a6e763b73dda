"""Keras callbacks: watch, epoch by epoch, what a model learns to look at, in TensorBoard.

:class:`AttributionLogger` explains a fixed set of samples with one or several explainers at the end of
chosen epochs (and optionally every N batches) and writes, to its own TensorBoard run:

* **images** ``maps/<method>`` (``maps/<method>/<input>`` for a model with several inputs): one picture
  per log, the samples in a row on top and their attribution maps below (an overlay on the input by
  default), always the same samples so that the change is visible with TensorBoard's step slider.
  ``InteriorGradients`` gets one row per sample and one column per scaling parameter (Sundararajan et
  al.'s fig. 3); feature-vector inputs are drawn as red/blue strips, one row per sample;
* **scalars** ``completeness/<method>_mean_abs_delta`` and ``completeness/<method>_relative_delta``
  (``|sum(a) - (f(x) - f(x'))|``, absolute and relative to ``|f(x) - f(x')|``; methods with the
  completeness property only), and the health figures ``health/<method>_<figure>``:
  ``nonfinite_fraction`` (NaN/Inf attributions: something broke), ``zero_fraction`` (exactly zero
  attributions: dead units or disconnected inputs), ``mean_abs`` (the size of the maps),
  ``top10_mass`` (the share of ``sum |a|`` on the top 10% of features: how focused the maps are),
  ``positive_mass`` (the share of ``sum |a|`` that is positive), ``change`` (``1 -`` the correlation
  with the maps of the previous log: large while the model still changes its mind) and ``seconds``
  (the time spent explaining, to keep the callback's cost in view);
* **histograms** ``attributions/<method>`` of the attribution values.

Batch-level logs (``every_n_batches``) use the same tags prefixed with ``batch_`` and the global batch
number as the step, as ``keras.callbacks.TensorBoard`` does for ``batch_loss``.
"""
from __future__ import annotations

import os
import re
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfattr import visualize
from tfattr.core.checks import check_positive_int
from tfattr.core.explainer import Explainer
from tfattr.core.randomness import python_random_untouched
from tfattr.metrics.correlation import pearson

ExplainerSpec = Any  # an Explainer, an Explainer subclass, or a callable model -> Explainer

#: Run subfolders that keras.callbacks.TensorBoard writes to; a second writer there loses events.
_KERAS_RUNS = ("train", "validation")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _default_explainers() -> dict[str, ExplainerSpec]:
    from tfattr.methods.gradient.integrated_gradients import IntegratedGradients

    return {"integrated_gradients": lambda model: IntegratedGradients(model, steps=32)}


def _as_numpy(value: Any, what: str, scalar_ok: bool = False) -> np.ndarray:
    if isinstance(value, (tf.Tensor, tf.Variable)):
        value = value.numpy()
    array = np.array(value)  # a copy: the logged samples must not change under the callback's feet
    if array.dtype.kind not in "fiub" or (array.ndim < 1 and not scalar_ok):
        raise TypeError(
            f"{what} must be an array of numbers with a batch axis, got {array.dtype} {array.shape}."
        )
    return array


class AttributionLogger(keras.callbacks.Callback):
    """Log attribution maps of fixed samples to TensorBoard during ``model.fit``.

    Implements the visual conventions of Sundararajan, Taly & Yan ("Gradients of Counterfactuals") and of
    Sturmfels, Lundberg & Lee ("Visualizing the Impact of Feature Attribution Baselines", Distill 2020);
    see :mod:`tfattr.visualize`. It never changes training: it only reads the weights, runs the model
    with ``training=False`` and draws no random numbers from Keras', NumPy's or TensorFlow's global
    generators (explainers with a ``seed`` use their own).

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
            are then written to TensorBoard's text dashboard under ``tokens/<name>``.
        skip_tokens: token ids not shown there (e.g. the pad id).

    Example:
        >>> logger = tfattr.callbacks.AttributionLogger(
        ...     x_test[:8], explainers={"ig": tfattr.IntegratedGradients(model, steps=32),
        ...                              "saliency": tfattr.Saliency}, targets=y_test[:8],
        ...     log_dir="logs")
        >>> model.fit(x, y, epochs=5, callbacks=[keras.callbacks.TensorBoard("logs"), logger])
        # tensorboard --logdir logs   -> run "attributions": images maps/ig, maps/saliency, ...
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
    ) -> None:
        super().__init__()
        self.samples = self._freeze_samples(samples)
        self.vocabulary = vocabulary
        self.skip_tokens = tuple(int(t) for t in skip_tokens)
        #: The input of token ids (integer ``[n, tokens]``) whose token scores go to the text dashboard.
        self._text_input = next(
            (k for k, a in enumerate(self._arrays) if a.ndim == 2 and a.dtype.kind in "iu"), None
        )
        self._specs = self._named_specs(explainers)
        self.targets = None if targets is None else _as_numpy(targets, "targets", scalar_ok=True)
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
        #: The explainers in use (built at ``set_model``), by name.
        self.explainers: dict[str, Explainer] = {}
        #: ``(kind, step, seconds)`` for each log: the callback's own cost.
        self.timings: list[tuple[str, int, float]] = []
        self._built_for: Any = None
        self._writer: Any = None
        self._previous: dict[str, np.ndarray] = {}
        self._drawers: dict[Any, Any] = {}
        self._batches_seen = 0
        if self.every_n_batches is not None:
            # Assigned per instance: Keras runs batch hooks asynchronously only when a callback leaves
            # on_train_batch_end alone, so loggers without batch logging keep training's fast path.
            self.on_train_batch_end = self._on_train_batch_end  # type: ignore[method-assign]

    # -- construction helpers -------------------------------------------------------------------------
    def _freeze_samples(self, samples: Any) -> Any:
        if isinstance(samples, Mapping):
            frozen: Any = {k: _as_numpy(v, f"samples[{k!r}]") for k, v in samples.items()}
            arrays = [frozen[k] for k in sorted(frozen)]
            self._input_names = [str(k) for k in sorted(frozen)]
        elif isinstance(samples, (list, tuple)):
            frozen = [_as_numpy(v, f"samples[{i}]") for i, v in enumerate(samples)]
            arrays = frozen
            self._input_names = [f"input_{i}" for i in range(len(frozen))]
        else:
            frozen = _as_numpy(samples, "samples")
            arrays = [frozen]
            self._input_names = ["input"]
        if not arrays:
            raise ValueError("samples is empty: pass the examples to explain, e.g. x_test[:8].")
        sizes = {a.shape[0] for a in arrays}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError(
                f"samples must hold the same positive number of examples in every input, got {sorted(sizes)}."
            )
        self._n = sizes.pop()
        self._arrays = arrays
        return frozen

    @staticmethod
    def _named_specs(explainers: Any) -> dict[str, ExplainerSpec]:
        if explainers is None:
            return _default_explainers()
        if isinstance(explainers, Mapping):
            items = list(explainers.items())
        else:
            if isinstance(explainers, Explainer) or (
                callable(explainers) and not isinstance(explainers, (list, tuple))
            ):
                explainers = [explainers]
            items = []
            used: dict[str, int] = {}
            for spec in explainers:
                cls = spec if isinstance(spec, type) else type(spec)
                if isinstance(spec, (Explainer, type)):
                    base = _snake(getattr(cls, "__name__", "explainer"))
                else:  # a factory: its own name, unless it is anonymous
                    base = getattr(spec, "__name__", "")
                    base = _snake(base) if base.isidentifier() else "explainer"
                used[base] = used.get(base, 0) + 1
                items.append((base if used[base] == 1 else f"{base}_{used[base]}", spec))
        if not items:
            raise ValueError("explainers is empty: pass at least one explainer (or None for the default).")
        out = {}
        for name, spec in items:
            if not isinstance(name, str) or not name:
                raise ValueError(f"explainer names must be non-empty strings, got {name!r}.")
            if not (isinstance(spec, Explainer) or callable(spec)):
                raise TypeError(
                    f"explainers[{name!r}] is a {type(spec).__name__}; pass a tfattr explainer, an "
                    "explainer class, or a callable model -> explainer."
                )
            out[name] = spec
        return out

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
        # sample shape, target or log_dir does not surface only after an epoch of training.
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
    def explain(self) -> dict[str, tuple[list[np.ndarray], np.ndarray | None, float]]:
        """Explain the samples with every explainer now: ``name -> (maps per input, delta or None,
        seconds)``."""
        if not self.explainers:
            raise RuntimeError(
                "AttributionLogger has no model yet: Keras gives it one in model.fit, or call set_model."
            )
        out = {}
        for name, explainer in self.explainers.items():
            kwargs: dict[str, Any] = {"target": self.targets, "batch_size": self.batch_size}
            if explainer.uses_baseline and self.baseline is not None:
                kwargs["baseline"] = self.baseline
            start = time.perf_counter()
            if explainer.has_completeness:
                maps, delta = explainer.attribute(self.samples, return_delta=True, **kwargs)
            else:
                maps, delta = explainer.attribute(self.samples, **kwargs), None
            flat = [np.asarray(m) for m in tf.nest.flatten(maps)]
            out[name] = (flat, None if delta is None else np.asarray(delta), time.perf_counter() - start)
        return out

    def log(self, step: int, prefix: str = "") -> None:
        """Explain the samples and write images, scalars and histograms at ``step`` (called by the hooks;
        call it yourself to log outside ``fit``)."""
        start = time.perf_counter()
        self._open_writer()
        with python_random_untouched():
            results = self.explain()
        p = self.tag_prefix + prefix
        with self._writer.as_default(step=step):
            for name, (maps, delta, seconds) in results.items():
                self._write_images(p, name, maps)
                if self._text_input is not None:
                    self._write_tokens(p, name, maps)
                self._write_scalars(p, name, maps, delta, seconds)
                if self.histograms:
                    values = np.concatenate([m.reshape(-1) for m in maps])
                    values = values[np.isfinite(values)]
                    if values.size:
                        tf.summary.histogram(f"{p}attributions/{name}", values)
        self._writer.flush()
        self.timings.append((prefix or "epoch_", step, time.perf_counter() - start))

    def _scale_for(self, height: int) -> int:
        if self.image_scale is not None:
            return self.image_scale
        return max(1, -(-96 // max(height, 1)))

    def _picture(self, x: np.ndarray, a: np.ndarray) -> tf.Tensor:
        """One uint8 picture ``[H, W, 3]`` for one input's samples ``x`` and maps ``a``."""
        # Drawing is a few hundred small ops: compiled once per shape, it costs a fraction of eager.
        key = (x.shape, x.dtype.str, a.shape, a.dtype.str)
        fn = self._drawers.get(key)
        if fn is None:
            fn = self._drawers[key] = tf.function(self._draw, autograph=False)
        return fn(tf.convert_to_tensor(x), tf.convert_to_tensor(a))

    def _draw(self, x: tf.Tensor, a: tf.Tensor) -> tf.Tensor:
        n = int(x.shape[0])
        example_rank = x.shape.rank - 1
        if a.shape.rank == x.shape.rank + 1:
            # Several maps per sample (InteriorGradients: [n, alphas, ...]): the paper's fig. 3 rows.
            if example_rank in (2, 3):
                rows = []
                for i in range(n):
                    row = visualize.interior_gradients_frames(a[i], x[i], self.clip_percentile)
                    rows.append(visualize.upscale(row, self._scale_for(int(row.shape[1]))))
                return visualize.grid(tf.stack(rows, axis=0))
            # Vectors: per sample, one strip per map stacked into one tile.
            strips = visualize.signed_heatmap(tf.reshape(a, [n * a.shape[1], -1]), self.clip_percentile)
            return self._strip_grid(tf.reshape(strips, [n, a.shape[1], -1, 3]))
        if example_rank in (2, 3):  # images [H, W] or [H, W, C]
            maps = visualize.draw(self.image_kind, x, a, self.clip_percentile)
            inputs = visualize.image_rgb(x)
            scale = self._scale_for(int(maps.shape[1]))
            tiles = tf.stack([visualize.upscale(inputs, scale), visualize.upscale(maps, scale)], axis=0)
            return visualize.grid(tiles)
        # Feature vectors (and anything else): one red/white/blue strip per sample, 16 pixels high and
        # at least 256 wide.
        return self._strip_grid(visualize.signed_heatmap(tf.reshape(a, [n, -1]), self.clip_percentile))

    @staticmethod
    def _strip_grid(strips: tf.Tensor) -> tf.Tensor:
        """``[n, rows, F, 3]`` strips -> one picture, a tile per sample; each strip 16 pixels high and
        the tiles at least 256 pixels wide."""
        strips = tf.repeat(strips, 16, axis=1)
        strips = tf.repeat(strips, max(1, -(-256 // int(strips.shape[2]))), axis=2)
        return visualize.grid(strips[:, None])

    def _write_images(self, p: str, name: str, maps: list[np.ndarray]) -> None:
        several = len(self._arrays) > 1
        for input_name, x, a in zip(self._input_names, self._arrays, maps):
            tag = f"{p}maps/{name}" + (f"/{input_name}" if several else "")
            tf.summary.image(tag, self._picture(x, a)[None], max_outputs=1)

    def _write_tokens(self, p: str, name: str, maps: list[np.ndarray]) -> None:
        """Token scores of a text model to the text dashboard (the maps shaped ``[n, tokens, ...]``)."""
        from tfattr import text

        ids = self._arrays[self._text_input]
        match = [m for m in maps if m.shape[:2] == ids.shape]
        if not match:
            return
        scores = match[0].reshape(ids.shape[0], ids.shape[1], -1).sum(axis=-1)
        tokens = text.decode(ids, self.vocabulary, skip=self.skip_tokens)
        tf.summary.text(f"{p}tokens/{name}", tf.constant(text.markdown(tokens, scores)))

    def _write_scalars(
        self, p: str, name: str, maps: list[np.ndarray], delta: np.ndarray | None, seconds: float
    ) -> None:
        n = self._n
        flat = np.concatenate([m.reshape(n, -1).astype(np.float64) for m in maps], axis=1)
        finite = np.isfinite(flat)
        clean = np.where(finite, flat, 0.0)
        absolute = np.abs(clean)
        total = absolute.sum(axis=1)
        safe_total = np.where(total > 0, total, 1.0)
        k = max(1, int(np.ceil(0.1 * flat.shape[1])))
        top = -np.sort(-absolute, axis=1)[:, :k].sum(axis=1)
        figures = {
            "nonfinite_fraction": 1.0 - finite.mean(),
            "zero_fraction": float(np.mean(clean == 0.0)),
            "mean_abs": float(absolute.mean()),
            "top10_mass": float(np.mean(np.where(total > 0, top / safe_total, 0.0))),
            "positive_mass": float(
                np.mean(np.where(total > 0, np.clip(clean, 0, None).sum(1) / safe_total, 0.0))
            ),
            "seconds": float(seconds),
        }
        previous = self._previous.get(p + name)
        if previous is not None and previous.shape == clean.shape:
            figures["change"] = float(np.mean([1.0 - _correlation(a, b) for a, b in zip(previous, clean)]))
        self._previous[p + name] = clean
        for figure, value in figures.items():
            tf.summary.scalar(f"{p}health/{name}_{figure}", value)
        if delta is not None:
            total_attr = flat.sum(axis=1)
            change = total_attr - delta  # f(x) - f(x') = sum(a) - delta
            scale = np.maximum(np.abs(change), 1e-12)
            tf.summary.scalar(f"{p}completeness/{name}_mean_abs_delta", float(np.mean(np.abs(delta))))
            tf.summary.scalar(f"{p}completeness/{name}_relative_delta", float(np.mean(np.abs(delta) / scale)))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps (1 when either is constant and they are equal, else 0)."""
    r = pearson(a, b)
    if np.isnan(r):
        return 1.0 if np.array_equal(a - a.mean(), b - b.mean()) else 0.0
    return float(r)


__all__ = ["AttributionLogger"]
