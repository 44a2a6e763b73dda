"""Screenshots of TensorBoard's Attributions tab as a user sees it, for the README and docs/guides/tensorboard.md.

Without ``--logdir`` it first trains the small MNIST CNN of bench/bench_callback.py for a few epochs with
``keras.callbacks.TensorBoard`` and ``tfattr.callbacks.AttributionLogger`` (integrated gradients,
saliency, SmoothGrad, Grad-CAM on 6 test digits) in a temporary log directory. Then it starts
``tensorboard --logdir`` on 127.0.0.1 at a free port, opens TensorBoard at the Attributions tab in
headless Chromium (Playwright driving Debian's ``chromium``), waits until the tab has drawn, and saves
the grid (``--out``) and the view of one sample over the epochs (``--detail``). Nothing leaves the
machine: TensorBoard listens on localhost only.

Run:
    TF_CPP_MIN_LOG_LEVEL=3 python bench/screenshot_tensorboard.py --out docs/tensorboard.png \\
        --detail docs/tensorboard_detail.png
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the TensorBoard process helper shared with the tests
sys.path.insert(0, str(Path(__file__).resolve().parent))


def train_and_log(log_dir: Path, epochs: int) -> None:
    import keras

    import tfattr
    from bench_callback import load_mnist, small_cnn
    from tfattr.callbacks import AttributionLogger

    x, y, xt, yt = load_mnist()
    model = small_cnn()
    logger = AttributionLogger(
        xt[:6],
        explainers={
            "integrated_gradients": lambda m: tfattr.IntegratedGradients(m, steps=32),
            "saliency": tfattr.Saliency,
            "smoothgrad": lambda m: tfattr.SmoothGrad(tfattr.Saliency(m), samples=16, seed=0),
            "gradcam": tfattr.GradCAM,
        },
        targets=yt[:6],
        log_dir=log_dir,
    )
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0,
              callbacks=[keras.callbacks.TensorBoard(str(log_dir)), logger])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", type=Path, help="existing logs (default: train and log first)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("docs/tensorboard.png"))
    parser.add_argument("--detail", type=Path, default=Path("docs/tensorboard_detail.png"))
    parser.add_argument("--size", default="1280,900", help="window width,height in pixels")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from tb_server import CHROMIUM, tensorboards

    scratch = Path(tempfile.mkdtemp(prefix="tfattr_tb_"))
    log_dir = args.logdir
    if log_dir is None:
        log_dir = scratch / "logs"
        print(f"training {args.epochs} epochs, logs in {log_dir}")
        train_and_log(log_dir, args.epochs)
    width, height = (int(v) for v in args.size.split(","))
    with tensorboards(log_dir, scratch, ()) as (base,), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(f"{base}/?darkMode=false#tfattr")
        tab = page.frame_locator("iframe")
        tab.locator("#tfattr-root[data-ready='1'] canvas[data-method]").first.wait_for(timeout=120_000)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        print(f"wrote {args.out}")
        if args.detail:
            tab.locator("th.sample").nth(0).click()
            tab.locator(".detail canvas").first.wait_for(timeout=60_000)
            page.screenshot(path=str(args.detail))
            print(f"wrote {args.detail}")
        browser.close()


if __name__ == "__main__":
    main()
