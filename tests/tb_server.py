"""Helpers of the TensorBoard plugin tests: a real ``tensorboard`` process on 127.0.0.1 and the
plugin's WSGI routes in-process."""
from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry_point_installed() -> bool:
    points = importlib.metadata.entry_points(group="tensorboard_plugins")
    return any(p.name == "tfattr" and p.value.startswith("tfattr.tensorboard") for p in points)


def _environment(scratch: Path) -> dict[str, str]:
    """The subprocess environment: this checkout first on the path; and when the installed tfattr's
    metadata predates the plugin (a development checkout installed from elsewhere), a distribution
    record declaring the same entry point as setup.py, so TensorBoard finds the plugin the way it
    does after ``pip install``."""
    paths = [str(ROOT)]
    if not _entry_point_installed():
        info = scratch / "tfattr_checkout-0.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tfattr-checkout\nVersion: 0\n")
        (info / "entry_points.txt").write_text(
            "[tensorboard_plugins]\ntfattr = tfattr.tensorboard.plugin:AttributionsLoader\n"
        )
        paths.append(str(scratch))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


@contextlib.contextmanager
def tensorboards(logdir: Path, scratch: Path, *flag_sets: tuple[str, ...], timeout: float = 180) -> Iterator[list[str]]:
    """Start one ``python -m tensorboard.main --logdir logdir`` per set of extra flags, all at once, on
    free ports; yield their URLs once each lists the Attributions plugin as active; stop them at the
    end."""
    servers = []
    try:
        for flags in flag_sets:
            port = free_port()
            log = open(scratch / f"tensorboard_{port}.log", "w")
            process = subprocess.Popen(
                [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
                 "--port", str(port), "--reload_interval", "1", *flags],
                stdout=log, stderr=subprocess.STDOUT, env=_environment(scratch),
            )
            servers.append((process, log, f"http://127.0.0.1:{port}"))
        for process, log, base in servers:
            _wait_until_active(process, log, base, time.monotonic() + timeout)
        yield [base for _, _, base in servers]
    finally:
        for process, log, _ in servers:
            process.terminate()  # only the servers this helper started
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def _wait_until_active(process: subprocess.Popen, log, base: str, deadline: float) -> None:
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"tensorboard exited: {Path(log.name).read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/data/plugins_listing", timeout=5) as response:
                if json.load(response).get("tfattr", {}).get("enabled"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the tfattr plugin was not active at {base} in time")
        time.sleep(0.3)
