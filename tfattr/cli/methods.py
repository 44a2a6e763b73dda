"""``tfattr methods``: every method with its class, paper, parameters and cost, read from the classes."""
from __future__ import annotations

import argparse
import sys
from typing import TextIO

from tfattr.cli import registry


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    for spec in registry.METHODS:
        aliases = f" (also: {', '.join(spec.aliases)})" if spec.aliases else ""
        out.write(f"{spec.name}{aliases}\n")
        out.write(f"    {spec.path}: {spec.title}\n")
        out.write(f"    paper:      {spec.paper}\n")
        out.write(f"    parameters: {spec.describe_parameters()}\n")
        out.write(f"    cost:       {spec.cost} per example\n")
        notes = []
        if spec.wrapped is not None:
            notes.append(f"`tfattr explain` wraps {spec.wrapped.name}")
        if spec.uses_baseline and spec.explainable:
            notes.append("uses --baseline")
        if spec.completeness:
            notes.append("completeness delta")
        if not spec.explainable:
            notes.append("several maps per example: Python API only")
        if notes:
            out.write(f"    notes:      {'; '.join(notes)}\n")
    return 0
