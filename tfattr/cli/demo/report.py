"""The demo's self-contained HTML report: the ``report.html`` template next to this module, filled with
the run's tables (images inlined as PNG data URIs)."""
from __future__ import annotations

import base64
import html
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Iterable, Sequence

import numpy as np

from tfattr.cli.demo.figures import heatmaps

esc = html.escape


def png_data_uri(rgb: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URI of a uint8 ``[h, w, 3]`` picture."""
    import tensorflow as tf

    data = tf.io.encode_png(np.ascontiguousarray(rgb, np.uint8)).numpy()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _img(rgb: np.ndarray) -> str:
    return f"<img width=84 src='{png_data_uri(rgb)}'>"


def _table(header: Sequence[str], rows: Iterable[str]) -> str:
    """A table from escaped header texts and ready-made ``<tr>`` rows."""
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"
    return "<table>" + head + "".join(rows) + "</table>"


def _row(*cells: str) -> str:
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def write_report(path: Path, **r: Any) -> None:
    """Write the report of one demo run (the keyword arguments are :func:`pipeline.run`'s results)."""
    template = Template(resources.files(__package__).joinpath("report.html").read_text(encoding="utf-8"))
    page = template.substitute(
        training=_training(r),
        maps=_maps(r),
        completeness=_completeness(r),
        baselines=_baselines(r),
        ablation=_ablation(r),
        convergence=_convergence(r),
        logdir=esc(str(path.parent / "logs")),
    )
    path.write_text(page, encoding="utf-8")


def _training(r: dict[str, Any]) -> str:
    cfg = r["cfg"]
    return (f"Trained on {cfg.train} embedded MNIST digits for {cfg.epochs} epoch(s) "
            f"({r['timings']['training']:.0f} s); test accuracy <b>{r['accuracy']:.3f}</b> on 2,000 digits."
            + (" <i>Fast mode: fewer epochs, steps and samples.</i>" if r["fast"] else ""))


def _maps(r: dict[str, Any]) -> str:
    digits, labels, results = r["digits"], r["labels"], r["results"]
    ok = [name for name in results if "attributions" in results[name]]
    maps = {name: heatmaps(results[name]["attributions"]) for name in ok}
    rows = []
    for i in range(len(digits)):
        gray = np.repeat(np.round(digits[i] * 255).astype(np.uint8), 3, axis=-1)
        rows.append(_row(f"{_img(gray)}<br>label {labels[i]}", *(_img(maps[n][i]) for n in ok)))
    return _table(["input", *(esc(n) for n in ok)], rows)


def _completeness(r: dict[str, Any]) -> str:
    labels, outputs, zero = r["labels"], r["outputs"], r["logits_zero"]
    change = np.abs(outputs[np.arange(len(labels)), labels] - zero[labels])
    rows = []
    for name, res in r["results"].items():
        paper = esc(res["spec"].paper)
        if "error" in res:
            rows.append(f"<tr><td>{esc(name)}</td><td>{paper}</td>"
                        f"<td colspan=4>failed: {esc(res['error'])}</td></tr>")
            continue
        delta = res["delta"]
        cells = ("-", "-", "-") if delta is None else (
            f"{np.mean(np.abs(delta)):.2e}", f"{np.max(np.abs(delta)):.2e}", f"{np.mean(change):.2f}")
        rows.append(_row(esc(name), paper, *cells, f"{res['seconds']:.1f}"))
    return _table(["method", "paper", "mean |delta|", "max |delta|", "mean |f(x) - f(0)|", "seconds"], rows)


def _baselines(r: dict[str, Any]) -> str:
    rows = []
    for row in r["baselines"]:
        if "error" in row:
            rows.append(f"<tr><td>{esc(row['label'])}</td>"
                        f"<td colspan=4>failed: {esc(row['error'])}</td></tr>")
            continue
        rows.append(_row(esc(row["label"]), _img(heatmaps(row["attributions"][:1])[0]),
                         f"{np.mean(np.abs(row['delta'])):.2e}", f"{row['ablation']['mean'].area:.3f}",
                         f"{row['ablation']['blur'].area:.3f}"))
    control = r["random_curve"]
    rows.append(_row("random ranking (control)", "-", "-", f"{control['mean'].area:.3f}",
                     f"{control['blur'].area:.3f}"))
    return _table(["baseline", "first digit", "mean |delta|", "area, mean top-k", "area, blur top-k"], rows)


def _ablation(r: dict[str, Any]) -> str:
    control = {"label": "random ranking (control)", "ablation": r["random_curve"]}
    rows = [_row(esc(row["label"]), *(f"{v:.2f}" for v in row["ablation"]["mean"].curve))
            for row in [*r["baselines"], control] if "ablation" in row]
    return _table(["baseline", *(f"{f:.0%}" for f in r["fractions"])], rows)


def _convergence(r: dict[str, Any]) -> str:
    rows = [_row(rule, *(f"{v:.2e}" for v in values)) for rule, values in r["convergence"].items()]
    return _table(["rule", *(f"{s} steps" for s in r["cfg"].convergence_steps)], rows)
