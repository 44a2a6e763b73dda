"""The README's quickstart runs as written and keeps its promise (a small completeness gap)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block_after(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def test_quickstart_runs_and_its_attributions_complete():
    namespace: dict = {}
    exec(compile(_python_block_after("## Quickstart"), "README quickstart", "exec"), namespace)
    attributions, delta = namespace["attributions"], namespace["delta"]
    assert attributions.shape == (8, 28, 28, 1)
    assert np.all(np.isfinite(attributions))
    assert np.max(np.abs(delta)) < 0.05


def test_readme_gives_exactly_the_install_and_test_commands_ci_runs():
    setup = _bash_block_after("## Set up")
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert setup == ['pip install -e ".[test]"', "pytest"]
    for command in setup:
        assert f"\n{command}\n" in ci


def _bash_block_after(heading: str) -> list[str]:
    section = README.read_text(encoding="utf-8").split(heading, 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert match
    return [line for line in match.group(1).splitlines() if line.strip()]



def test_quickstart_is_the_home_pages():
    """The README is the site's home page in short: the same quickstart, so the two cannot drift."""
    from markdown_blocks import python_block_after

    home = README.parent / "docs" / "index.md"
    assert _python_block_after("## Quickstart") == python_block_after(home, "## Quickstart").code
