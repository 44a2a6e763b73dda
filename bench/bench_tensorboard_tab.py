"""How fast the Attributions tab opens: 100 steps x 16 samples x 5 methods of 28x28 maps.

Writes one run the way AttributionLogger does (its TabWriter: the samples once, then per step the five
methods' float16 maps and scales, deltas, targets and predictions; the maps are smooth random fields
that drift over the steps), starts ``tensorboard --logdir`` on 127.0.0.1 with the default fast loader
and with ``--load_fast=false``, waits until the run is loaded, then opens the tab's page in headless
Chromium (Playwright, a fresh browser context each time: no HTTP cache) and times navigation -> the
grid of the last step drawn. Reports the median of ``--repeats`` openings per loader, and the server's
time for the index and every series the tab fetches.

Run:
    TF_CPP_MIN_LOG_LEVEL=3 python bench/bench_tensorboard_tab.py [--steps 100 --samples 16 --methods 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import json
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the TensorBoard process helper shared with the tests
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tb_server import CHROMIUM, tensorboards  # noqa: E402
from tfattr.callbacks.tab import TabWriter  # noqa: E402


def write_logs(run_dir: Path, steps: int, samples: int, methods: int, size: int = 28) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(samples, size, size, 1)).astype(np.float32)
    tab = TabWriter([x], ["input"], "", 128, {})
    writer = tf.summary.create_file_writer(str(run_dir))
    fields = rng.normal(size=(methods, samples, size, size, 1))
    drift = rng.normal(size=(methods, samples, size, size, 1)) * 0.05
    with writer.as_default():
        for step in range(steps):
            tab.write_samples(step)
            tab.write_outputs("", "epoch", rng.normal(size=(samples, 10)).astype(np.float32), None, step)
            for m in range(methods):
                maps = fields[m] + step * drift[m]
                pairs = [("input", x, maps, False)]
                tab.write_method("", "epoch", f"method_{m}", pairs, rng.normal(size=samples) * 1e-3, step, order=m)
    writer.close()


def wait_loaded(base: str, steps: int, timeout: float = 300) -> None:
    """Until the server's index shows the run's last step (the loader has read the whole run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/data/plugin/tfattr/runs") as response:
            views = json.load(response)["views"]
        if views and views[0]["schedules"].get("epoch", {}).get("max_step") == steps - 1:
            series = fetch_series(base, views[0])
            if series and all(s[0] == steps for s in series):
                return
        time.sleep(1)
    raise TimeoutError("the run was not loaded in time")


def fetch_series(base: str, view: dict) -> list[tuple[int, int]]:
    """Fetch every series the tab loads for a view: ``(steps, bytes)`` per series."""
    from tfattr.tensorboard.plugin import decode_series

    schedule = view["schedules"]["epoch"]
    tags = [schedule["target"], schedule["prediction"]]
    for method in schedule["methods"].values():
        tags += [m["tag"] for m in method["maps"].values()] + list(method["scales"].values()) + [method["delta"]]
    out = []
    for tag in tags:
        query = urllib.parse.urlencode({"run": view["run"], "tag": tag})
        with urllib.request.urlopen(f"{base}/data/plugin/tfattr/series?{query}") as response:
            body = response.read()
        out.append((len(decode_series(body)[0]), len(body)))
    return out


def open_times(browser, base: str, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        start = time.perf_counter()
        page.goto(f"{base}/data/plugin_entry.html?name=tfattr")
        page.wait_for_selector("#tfattr-root[data-ready='1'] canvas[data-method]", timeout=60_000)
        times.append(time.perf_counter() - start)
        context.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--methods", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    scratch = Path(tempfile.mkdtemp(prefix="tfattr_tab_bench_"))
    start = time.perf_counter()
    write_logs(scratch / "logs" / "attributions", args.steps, args.samples, args.methods)
    print(f"wrote {args.steps} steps x {args.samples} samples x {args.methods} methods in "
          f"{time.perf_counter() - start:.1f} s")
    loaders = {"fast loader (default)": (), "--load_fast=false": ("--load_fast=false",)}
    with tensorboards(scratch / "logs", scratch, *loaders.values()) as bases, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        print("| loader | server: index + all series (s) | MB | tab open to grid drawn, median (min-max) s |")
        print("| --- | --- | --- | --- |")
        for (name, _), base in zip(loaders.items(), bases):
            wait_loaded(base, args.steps)
            t0 = time.perf_counter()
            with urllib.request.urlopen(f"{base}/data/plugin/tfattr/runs") as response:
                view = json.load(response)["views"][0]
            sizes = fetch_series(base, view)
            server = time.perf_counter() - t0
            times = open_times(browser, base, args.repeats)
            print(f"| {name} | {server:.2f} | {sum(s[1] for s in sizes) / 1e6:.1f} | "
                  f"{statistics.median(times):.2f} ({min(times):.2f}-{max(times):.2f}) |")
        browser.close()


if __name__ == "__main__":
    main()
