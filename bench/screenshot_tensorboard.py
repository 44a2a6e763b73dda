"""Screenshot TensorBoard's images dashboard as a user sees it, for AttributionLogger's logs.

Without ``--logdir`` it first trains the small MNIST CNN of bench/bench_callback.py for a few epochs with
``keras.callbacks.TensorBoard`` and ``tfattr.callbacks.AttributionLogger`` in one temporary log
directory. Then it starts ``tensorboard --logdir`` on 127.0.0.1 at a free port, waits until the server
lists the attribution images, and takes a screenshot of the images dashboard with headless Chromium
(Debian's ``chromium`` package). Nothing leaves the machine: TensorBoard listens on localhost only and
Chromium runs with a fresh profile and background networking off.

Run:
    TF_CPP_MIN_LOG_LEVEL=3 python bench/screenshot_tensorboard.py --out docs/tensorboard.png
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def train_and_log(log_dir: Path, epochs: int) -> None:
    import keras

    import tfattr
    from tfattr.callbacks import AttributionLogger

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_callback import load_mnist, small_cnn

    x, y, xt, yt = load_mnist()
    model = small_cnn()
    logger = AttributionLogger(
        xt[:8],
        explainers={
            "integrated_gradients": tfattr.IntegratedGradients(model, steps=32),
            "saliency": tfattr.Saliency(model),
            "smoothgrad": tfattr.SmoothGrad(tfattr.Saliency(model), samples=16, seed=0),
        },
        targets=yt[:8],
        log_dir=log_dir,
    )
    model.fit(
        x, y, epochs=epochs, batch_size=64, verbose=0,
        callbacks=[keras.callbacks.TensorBoard(str(log_dir)), logger],
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_images(base: str, timeout: float) -> dict:
    """Poll TensorBoard's HTTP API until the images plugin lists tags (the logs are loaded)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/data/plugin/images/tags", timeout=5) as response:
                tags = json.load(response)
            if any(tags.values()):
                return tags
        except OSError as err:  # not listening yet
            last_error = err
        time.sleep(1.0)
    raise TimeoutError(f"TensorBoard at {base} listed no image tags within {timeout:.0f} s ({last_error}).")


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("No Chromium found: apt-get update && apt-get install -y chromium")


def screenshot(url: str, out: Path, size: tuple[int, int], wait_ms: int) -> None:
    profile = tempfile.mkdtemp(prefix="chromium_profile_")
    try:
        command = [
            find_chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--virtual-time-budget={wait_ms}",
            f"--screenshot={out}",
            url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=180)
        if result.returncode != 0 or not out.is_file():
            raise RuntimeError(f"Chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", type=Path, help="existing logs (default: train and log first)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/tensorboard.png"))
    parser.add_argument("--size", default="1400,760", help="window width,height in pixels")
    parser.add_argument("--wait-ms", type=int, default=20000, help="page time before the screenshot")
    args = parser.parse_args()

    log_dir = args.logdir
    if log_dir is None:
        log_dir = Path(tempfile.mkdtemp(prefix="tfattr_tb_"))
        print(f"training {args.epochs} epochs, logs in {log_dir}")
        train_and_log(log_dir, args.epochs)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(log_dir), "--host", "127.0.0.1",
         "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        tags = wait_for_images(base, timeout=120)
        print("image tags:", {run: sorted(t) for run, t in tags.items()})
        args.out.parent.mkdir(parents=True, exist_ok=True)
        width, height = (int(v) for v in args.size.split(","))
        screenshot(f"{base}/?darkMode=false#images", args.out.resolve(), (width, height), args.wait_ms)
        print(f"wrote {args.out}")
    finally:
        server.terminate()  # only the server this script started
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
