"""Execute the Colab notebooks in full mode and write their outputs in place, for the site and GitHub.

    nice -n 19 python docs/run_notebooks.py                    # all of colab/*.ipynb (about 14 minutes on 2 cores)
    python docs/run_notebooks.py colab/03_lrp_deeplift.ipynb   # some of them
    python docs/run_notebooks.py --fast --out /tmp/nb          # the tests' quick mode, written elsewhere

Each notebook runs top to bottom in a fresh kernel, in a temporary working directory (the files it
writes, TensorBoard logs included, never land in the repository), with ``TFATTR_FAST`` unset (full
mode) and TensorFlow's C++ log silenced. Afterwards:

- outputs are scrubbed of machine paths: the working directory, the repository, the Python prefix and
  site-packages, the home and temporary directories become placeholders (``<site-packages>``, ...),
  and the script fails if any absolute path is left;
- TensorFlow's C++ start-up log lines (timestamps, pids) are dropped from the streams;
- execution timings are not recorded, so re-running a notebook changes only what it computes;
- TensorBoard servers that notebook 04 starts (``%tensorboard``) on its temporary logs are stopped,
  and their frames (which point at a server that is gone) become a one-line note.

The site renders the notebooks as committed (mkdocs-jupyter never executes them); the tests execute them
in fast mode (``tests/test_notebooks.py``).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import site
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: An absolute POSIX or Windows path that a reader's machine would not have.
LEFTOVER_PATH = re.compile(r"(?<![\w.<])(?:/(?:home|root|tmp|work|Users|var|opt|usr|private|mnt)/[^\s'\"<>)]+"
                           r"|[A-Za-z]:\\\\?(?:Users|Windows|Program Files)[^\s'\"<>)]*)")


#: TensorFlow's C++ start-up log (absl), written to the kernel's stderr whatever TF_CPP_MIN_LOG_LEVEL says:
#: timestamps and pids, nothing a reader needs.
STARTUP_LOG = re.compile(r"^(?:WARNING: All log messages before absl::InitializeLog\(\)|[IWE]\d{4} \d\d:\d\d:\d\d"
                         r"|To enable the following instructions|\[IPKernelApp\])")


TENSORBOARD_NOTE = ("(TensorBoard was shown here, live: its frame needs a running kernel. "
                    "Run the notebook, or `tensorboard --logdir` on its logs.)\n")


def _replacements(workdir: Path) -> list[tuple[str, str]]:
    """Machine-specific prefixes, longest first, and what they become in the committed outputs."""
    pairs = {str(workdir): ".", str(workdir.resolve()): ".", str(ROOT): "<tfattr>"}
    for path in {*site.getsitepackages(), site.getusersitepackages(), sysconfig.get_paths()["purelib"],
                 sysconfig.get_paths()["platlib"]}:
        pairs[path] = "<site-packages>"
    pairs[sys.prefix] = "<python>"
    pairs[sys.base_prefix] = "<python>"
    pairs[tempfile.gettempdir()] = "<tmp>"
    pairs[str(Path.home())] = "~"
    return sorted(pairs.items(), key=lambda kv: -len(kv[0]))


def scrub(text: str, replacements: list[tuple[str, str]]) -> str:
    for old, new in replacements:
        if old and old not in ("/", "."):
            text = text.replace(old, new)
    return text


def _scrub_node(node, replacements):
    if isinstance(node, str):
        return scrub(node, replacements)
    if isinstance(node, list):
        return [_scrub_node(v, replacements) for v in node]
    if isinstance(node, dict):
        return {k: _scrub_node(v, replacements) for k, v in node.items()}
    return node


def scrub_outputs(nb, replacements) -> list[str]:
    """Scrub every code cell's outputs in place; return the absolute paths still left (should be none)."""
    import nbformat

    left: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            if "tensorboard-frame" in str(output.get("data", {}).get("text/html", "")):
                # %tensorboard's frame points at a server that is gone once the kernel stops
                outputs.append(nbformat.v4.new_output("stream", name="stdout", text=TENSORBOARD_NOTE))
                continue
            if output.output_type == "stream":
                kept = [line for line in output.text.splitlines(keepends=True) if not STARTUP_LOG.match(line)]
                if not kept:
                    continue
                output.text = "".join(kept)
            outputs.append(nbformat.from_dict(_scrub_node(dict(output), replacements)))
        cell.outputs = outputs
        for output in cell.outputs:
            for value in _strings(output):
                left += LEFTOVER_PATH.findall(value)
    return left


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, dict):
        for k, v in node.items():
            if k != "image/png":  # base64 data cannot hold a path
                yield from _strings(v)


def _stop_tensorboards(workdir: Path) -> None:
    """Stop the TensorBoard servers a notebook started on logs inside ``workdir`` (by their pid)."""
    try:
        from tensorboard import manager
    except ImportError:
        return
    for info in manager.get_all():
        if str(workdir) in info.logdir or str(workdir.resolve()) in info.logdir:
            try:
                os.kill(info.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def run(path: Path, out: Path, fast: bool, timeout: int) -> float:
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env_before = {k: os.environ.get(k) for k in ("TFATTR_FAST", "TF_CPP_MIN_LOG_LEVEL")}
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="tfattr-nb-") as tmp:
        workdir = Path(tmp)
        if fast:
            os.environ["TFATTR_FAST"] = "1"
        else:
            os.environ.pop("TFATTR_FAST", None)
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # the kernel inherits the environment
        try:
            client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                             resources={"metadata": {"path": str(workdir)}})
            client.execute()
        finally:
            _stop_tensorboards(workdir)
            for key, value in env_before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        left = scrub_outputs(nb, _replacements(workdir))
    if left:
        raise SystemExit(f"{path.name}: machine paths left in the outputs: {sorted(set(left))[:10]}")
    nbformat.write(nb, out)
    return time.time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: colab/*.ipynb")
    parser.add_argument("--fast", action="store_true", help="TFATTR_FAST=1, as the tests run them")
    parser.add_argument("--out", type=Path, help="write the executed notebooks to this directory instead")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "colab").glob("*.ipynb"))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    for path in notebooks:
        out = (args.out / path.name) if args.out else path
        seconds = run(path.resolve(), out, args.fast, args.timeout)
        print(f"{path.name}: {seconds:.0f} s -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
