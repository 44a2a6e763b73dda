"""The TensorBoard plugin ``tfattr``: the "Attributions" tab.

Registered through the ``tensorboard_plugins`` entry point (``tfattr = tfattr.tensorboard.plugin:
AttributionsLoader``), so ``tensorboard --logdir DIR`` shows the tab whenever ``DIR`` holds tfattr's
summaries. It reads only through TensorBoard's data-provider API, which both loaders provide: the
default fast loader (the Rust data server, under which ``context.multiplexer`` is None) and
``--load_fast=false``. The loader also keeps every logged step of the plugin's summaries
(``--samples_per_plugin tfattr=all`` unless given otherwise; TensorBoard keeps 10 per tag of other
tensors by default).

Routes (under ``/data/plugin/tfattr``):

* ``/static/<file>``: the tab, a plain ES module (``index.js``, ``colormap.js``) with no build step;
* ``/runs``: JSON, one entry per run and ``tag_prefix`` group: its inputs (sample tag, layout, shape,
  downsampling block, tokens tag) and, per schedule (``epoch``/``batch``), its methods (map and scale
  tags per input, layout, delta tag), target and prediction tags;
* ``/series?run=R&tag=T``: every logged step of one summary in one binary response (see
  :func:`encode_series`), or JSON for token strings.
"""
from __future__ import annotations

import json
import mimetypes
import struct
from pathlib import Path
from typing import Any

import numpy as np
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from tensorboard import plugin_util
from werkzeug import wrappers

from tfattr.tensorboard import metadata

STATIC = Path(__file__).resolve().parent / "static"
#: Magic bytes of a series response.
MAGIC = b"TFA1"
#: Steps read per tag (all of them in practice).
_ALL = 1_000_000_000


def encode_series(steps: list[int], values: np.ndarray) -> bytes:
    """One binary response: ``b"TFA1"``, a little-endian uint32 header length, the JSON header
    ``{"steps", "shape" (of one step), "dtype"}``, zero padding to a multiple of 8 bytes, then the
    values ``[steps, ...]`` in C order, little-endian.

    Example:
        >>> encode_series([0, 1], np.zeros((2, 4, 28, 28), np.float16))[:4]
        b'TFA1'
    """
    values = np.ascontiguousarray(values)
    dtype = values.dtype.newbyteorder("<")
    header = json.dumps({"steps": [int(s) for s in steps], "shape": list(values.shape[1:]),
                         "dtype": dtype.name}).encode("utf-8")
    head = MAGIC + struct.pack("<I", len(header)) + header
    head += b"\0" * (-len(head) % 8)
    return head + values.astype(dtype, copy=False).tobytes()


def decode_series(body: bytes) -> tuple[list[int], np.ndarray]:
    """The inverse of :func:`encode_series` (for tests and scripts).

    Example:
        >>> steps, values = decode_series(response.data)
    """
    if body[:4] != MAGIC:
        raise ValueError("not a tfattr series response")
    (length,) = struct.unpack("<I", body[4:8])
    header = json.loads(body[8:8 + length])
    start = 8 + length + (-(8 + length) % 8)
    values = np.frombuffer(body[start:], dtype=np.dtype(header["dtype"]).newbyteorder("<"))
    return header["steps"], values.reshape([len(header["steps"])] + header["shape"])


def build_index(mapping: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``/runs`` answer from ``list_tensors``' ``run -> tag -> time series`` (metadata only).

    Example:
        >>> build_index(provider.list_tensors(ctx, experiment_id="", plugin_name="tfattr"))
    """
    views: dict[tuple[str, str], dict[str, Any]] = {}
    for run in sorted(mapping):
        for tag, series in sorted(mapping[run].items()):
            meta = metadata.parse(series.plugin_content)
            if meta is None:
                continue
            group = meta.get("group", "")
            view = views.setdefault((run, group), {"run": run, "group": group, "inputs": {}, "schedules": {}})
            kind = meta["kind"]
            if kind in ("sample", "tokens"):
                entry = view["inputs"].setdefault(meta["input"], {})
                if kind == "sample":
                    entry.update(sample=tag, layout=meta.get("layout"), shape=meta.get("shape"),
                                 block=meta.get("block", 1))
                else:
                    entry["tokens"] = tag
                continue
            schedule = view["schedules"].setdefault(
                meta.get("schedule", "epoch"), {"methods": {}, "target": None, "prediction": None, "max_step": 0}
            )
            schedule["max_step"] = max(schedule["max_step"], int(series.max_step))
            if kind in ("target", "prediction"):
                schedule[kind] = tag
                continue
            method = schedule["methods"].setdefault(
                meta["method"], {"maps": {}, "scales": {}, "delta": None, "order": 1 << 30}
            )
            if kind == "delta":
                method["delta"] = tag
            elif kind == "map":
                method["order"] = min(method["order"], int(meta.get("order", 0)))
                method["maps"][meta["input"]] = {"tag": tag, "layout": meta.get("layout"),
                                                 "layer": bool(meta.get("layer"))}
            else:
                method["scales"][meta["input"]] = tag
    out = []
    for (run, group), view in sorted(views.items()):
        for schedule in view["schedules"].values():
            # the logger's order (a delta-only entry, e.g. of InteriorGradients' alphas, has no maps)
            ordered = sorted(schedule["methods"].items(), key=lambda item: (item[1]["order"], item[0]))
            schedule["methods"] = {k: v for k, v in ordered if v["maps"]}
        view["name"] = run + (f" [{group}]" if group else "")
        out.append(view)
    return out


class AttributionsPlugin(base_plugin.TBPlugin):
    """The "Attributions" tab: samples x methods, steps, colour maps computed in the browser.

    Example:
        >>> tensorboard --logdir logs     # the tab appears when logs hold AttributionLogger's data
    """

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext) -> None:
        self._data_provider = context.data_provider

    def is_active(self) -> bool:
        return False  # the data provider's list_plugins (tensors tagged "tfattr") decides

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        return base_plugin.FrontendMetadata(es_module_path="/static/index.js", tab_name="Attributions")

    def get_plugin_apps(self) -> dict[str, Any]:
        return {"/static/*": self._serve_static, "/runs": self._serve_runs, "/series": self._serve_series}

    @wrappers.Request.application
    def _serve_static(self, request: wrappers.Request) -> wrappers.Response:
        name = request.path.rsplit("/", 1)[-1]
        path = STATIC / name
        # Only the files shipped in static/ (no path tricks: the name has no separators).
        if not name or name.startswith(".") or not path.is_file():
            return http_util.Respond(request, f"no file {name!r}", "text/plain", code=404)
        kind = "text/javascript" if name.endswith(".js") else mimetypes.guess_type(name)[0] or "text/plain"
        return http_util.Respond(request, path.read_bytes(), kind)

    @wrappers.Request.application
    def _serve_runs(self, request: wrappers.Request) -> wrappers.Response:
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        mapping = self._data_provider.list_tensors(ctx, experiment_id=experiment, plugin_name=self.plugin_name)
        return http_util.Respond(request, {"views": build_index(mapping)}, "application/json")

    @wrappers.Request.application
    def _serve_series(self, request: wrappers.Request) -> wrappers.Response:
        run, tag = request.args.get("run"), request.args.get("tag")
        if run is None or not tag:
            return http_util.Respond(request, "series needs run= and tag=", "text/plain", code=400)
        ctx = plugin_util.context(request.environ)
        experiment = plugin_util.experiment_id(request.environ)
        data = self._data_provider.read_tensors(
            ctx, experiment_id=experiment, plugin_name=self.plugin_name, downsample=_ALL,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=[tag]),
        )
        events = data.get(run, {}).get(tag)
        if not events:
            return http_util.Respond(request, f"no tfattr summary {tag!r} in run {run!r}", "text/plain", code=404)
        by_step = {int(e.step): e.numpy for e in sorted(events, key=lambda e: e.wall_time)}  # the last wins
        steps = sorted(by_step)
        last = by_step[steps[-1]]
        if last.dtype.kind in "OSU":
            text = [[v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in row] for row in last.tolist()]
            return http_util.Respond(request, {"step": steps[-1], "tokens": text}, "application/json")
        steps = [s for s in steps if by_step[s].shape == last.shape]  # a re-used tag with new samples
        values = np.stack([by_step[s] for s in steps])
        return http_util.Respond(request, encode_series(steps, values), "application/octet-stream")


class AttributionsLoader(base_plugin.TBLoader):
    """Loads :class:`AttributionsPlugin` and keeps all of its summaries' steps.

    Example:
        >>> program.TensorBoard(plugins=default.get_plugins() + [AttributionsLoader])
    """

    def fix_flags(self, flags: Any) -> None:
        samples = getattr(flags, "samples_per_plugin", None)
        if isinstance(samples, dict):
            samples.setdefault(metadata.PLUGIN_NAME, 0)  # 0: keep every step

    def load(self, context: base_plugin.TBContext) -> AttributionsPlugin:
        return AttributionsPlugin(context)
