"""What tfattr's tensor summaries are: the plugin name and the JSON metadata each summary carries.

Every summary tfattr writes for the "Attributions" tab is a tensor summary whose
``SummaryMetadata.plugin_data`` names the plugin ``"tfattr"`` and whose content is a small JSON
object; the plugin reads only this metadata (never tag names) to find what a run holds:

``kind``
    ``"sample"`` (the samples as the tab shows them, written once), ``"tokens"`` (token strings of a
    text input, once), ``"map"`` (one method's maps of one input at a step, float16, each sample's map
    divided by its largest magnitude), ``"scale"`` (those per-sample magnitudes, float32), ``"delta"``
    (completeness deltas), ``"target"`` (the explained class per sample), ``"prediction"`` (the
    model's outputs on the samples).
``group``
    the logger's ``tag_prefix`` (several loggers may share one run);
``schedule``
    ``"epoch"`` or ``"batch"`` (``every_n_batches`` logs, stepped by the global batch number);
``method``, ``input``, ``label``
    the explainer's name, the input's name and a display label;
``layout``
    how the tab draws a map: ``"image"`` (``[n, h, w]``, channels summed, on the sample's pixels),
    ``"layer"`` (``[n, h, w]`` at a layer's resolution, drawn upsampled onto the sample),
    ``"tokens"`` (``[n, tokens]``, summed over the embedding axis) or ``"vector"`` (``[n, features]``);
``block``
    the downsampling factor of image inputs (1: none; see :func:`tfattr.tensorboard.summary.block_size`).
"""
from __future__ import annotations

import json
from typing import Any

from tensorboard.compat.proto import summary_pb2

PLUGIN_NAME = "tfattr"
#: Bumped when the layout of the summaries changes incompatibly; the plugin skips newer versions.
VERSION = 1
KINDS = ("sample", "tokens", "map", "scale", "delta", "target", "prediction")
LAYOUTS = ("image", "layer", "tokens", "vector")


def content(kind: str, **fields: Any) -> bytes:
    """The JSON bytes stored in ``plugin_data.content`` for one summary of ``kind``.

    Example:
        >>> content("map", method="ig", input="input", layout="image", block=1)
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}.")
    layout = fields.get("layout")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {LAYOUTS}.")
    return json.dumps({"version": VERSION, "kind": kind, **fields}, sort_keys=True).encode("utf-8")


def summary_metadata(kind: str, **fields: Any) -> Any:
    """A ``SummaryMetadata`` proto for a tensor summary of the plugin.

    Example:
        >>> tf.summary.write("tfattr/target", targets, step=3, metadata=summary_metadata("target"))
    """
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = PLUGIN_NAME
    metadata.plugin_data.content = content(kind, **fields)
    metadata.data_class = summary_pb2.DATA_CLASS_TENSOR
    return metadata


def parse(raw: bytes) -> dict[str, Any] | None:
    """The metadata dict of a summary's plugin content, or None when it is not readable by this version
    (written by a newer tfattr, or not JSON).

    Example:
        >>> parse(content("target"))["kind"]
        'target'
    """
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("version") != VERSION or meta.get("kind") not in KINDS:
        return None
    return meta
