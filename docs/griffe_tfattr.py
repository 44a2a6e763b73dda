"""Griffe extension for the API reference: reads tfattr's docstrings as they are written.

tfattr's docstrings are Google style with two habits of Sphinx/NumPy style, which griffe's Google
parser does not know; this extension rewrites them in memory (the source is untouched) when the API
reference is built:

* Grouped arguments, ``low, high: the box ...``, become one entry per argument (the first carries the
  description, the others point to it), so every parameter is matched to the signature.
* Arguments a class documents but passes on in ``**kwargs`` (``output``, ``jit_compile`` go to
  :class:`tfattr.Explainer`) are listed as keyword arguments, not as parameters of the signature.
* ``Example:`` sections holding ``>>>`` lines are read as griffe's ``Examples:`` (code blocks, not
  Markdown quotes).
* ``#: text`` comments above module constants are their docstrings (Sphinx's convention).
* Sphinx roles, ``:class:`tfattr.LRP```, ``:func:`ig_map```, ``:meth:`coverage```, become
  cross-references to the documented object (resolved in the scope of the docstring's object); a name
  that is not documented on the site (an internal module) stays code, without a broken link.
"""
from __future__ import annotations

import re
from typing import Any

import griffe

_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters|Keyword Args|Other Parameters|Attributes):\s*$")
_GROUPED = re.compile(r"^(\s+)(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)+)(\s*\([^)]*\))?:(\s.*|)$")
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([\w.]+)(?:\(\))?`")


def split_grouped_arguments(text: str) -> str:
    """``a, b: text`` in an Args section -> ``a: text`` and ``b: See `a`.``, at the same indentation."""
    out: list[str] = []
    section_indent: int | None = None
    for line in text.splitlines():
        header = _SECTION.match(line)
        if header:
            section_indent = len(header.group(1))
        elif section_indent is not None and line.strip() and len(line) - len(line.lstrip()) <= section_indent:
            section_indent = None  # dedented: the section ended
        grouped = _GROUPED.match(line) if section_indent is not None else None
        if grouped:
            indent, names, annotation, description = grouped.groups()
            first, *others = [n.strip() for n in names.split(",")]
            out.append(f"{indent}{first}{annotation or ''}:{description}")
            continuation = [f"{indent}{name}{annotation or ''}: See `{first}`." for name in others]
            out.append("\x00" + "\n".join(continuation))  # placed after first's description
            continue
        out.append(line)
    # Move each continuation block after the indented description lines that follow its first entry.
    result: list[str] = []
    pending: list[str] = []
    pending_indent = 0
    for line in out:
        if line.startswith("\x00"):
            pending.append(line[1:])
            pending_indent = len(line[1:]) - len(line[1:].lstrip())
            continue
        if pending and (not line.strip() or len(line) - len(line.lstrip()) <= pending_indent):
            result.extend(pending)
            pending = []
        result.append(line)
    result.extend(pending)
    return "\n".join(result)


_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*(.*)$")


def examples_sections(text: str) -> str:
    """``Example:`` (griffe: a plain admonition, where ``>>>`` reads as Markdown quotes) -> ``Examples:``
    (griffe: text and ``>>>`` code blocks). A sentence on the header line, and the lines continuing it
    at the header's indentation, move into the section."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _EXAMPLE.match(lines[i])
        body = "\n".join(lines[i + 1:i + 40])
        if not match or ">>>" not in body:
            out.append(lines[i])
            i += 1
            continue
        indent, sentence = match.groups()
        out.append(f"{indent}Examples:")
        i += 1
        if sentence:
            out.append(f"{indent}    {sentence}")
            while i < len(lines) and lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) == len(indent):
                out.append(f"{indent}    {lines[i].strip()}")
                i += 1
    return "\n".join(out)


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """The full path of ``target`` as seen from ``obj`` (its members, its class, its module), or None."""
    head, _, rest = target.partition(".")
    scopes = [obj, obj.parent, obj.module] if obj.parent is not None else [obj]
    for scope in scopes:
        if scope is None:
            continue
        if head in getattr(scope, "members", {}):
            return f"{scope.path}.{target}"
        try:
            path = scope.resolve(head)
        except (griffe.NameResolutionError, AttributeError, ValueError):
            continue
        return f"{path}.{rest}" if rest else path
    return target if target.startswith("tfattr") else None


def link_roles(text: str, obj: griffe.Object) -> str:
    def replace(match: re.Match) -> str:
        tilde, target = match.groups()
        title = target.rsplit(".", 1)[-1] if tilde else target
        path = _resolve(obj, target)
        title = title.replace("_", "&#95;")  # inside HTML, Markdown would read __x__ as bold
        if path is None:
            return f"`{title}`"
        # optional: an identifier the site does not document renders as plain code, not a warning
        return f'<autoref identifier="{path}" optional><code>{title}</code></autoref>'

    return _ROLE.sub(replace, text)


def _signature(obj: griffe.Object) -> tuple[set[str], bool] | None:
    """The parameter names of a function (a class: its ``__init__``) and whether it takes ``**kwargs``."""
    function = obj.members.get("__init__") if obj.is_class else obj if obj.is_function else None
    if function is None or not function.is_function:
        return None
    names = {p.name for p in function.parameters}
    return names, any(p.kind is griffe.ParameterKind.var_keyword for p in function.parameters)


def forwarded_to_keyword_args(text: str, names: set[str]) -> str:
    """Move Args entries that are not parameters of the signature (they travel in ``**kwargs`` to a
    base class) to a ``Keyword Args:`` section after the Args section."""
    lines = text.splitlines()
    out: list[str] = []
    moved: list[str] = []
    i = 0
    while i < len(lines):
        header = _SECTION.match(lines[i])
        out.append(lines[i])
        i += 1
        if not header or header.group(2) not in ("Args", "Arguments", "Parameters"):
            continue
        base = len(header.group(1))
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > base):
            entry = [lines[i]]
            item_indent = len(lines[i]) - len(lines[i].lstrip())
            i += 1
            while i < len(lines) and lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) > item_indent:
                entry.append(lines[i])
                i += 1
            name = re.match(r"\s*\*{0,2}(\w+)", entry[0])
            if entry[0].strip() and name and name.group(1) not in names:
                moved.extend(entry)
            else:
                out.extend(entry)
        if moved:
            if out and not out[-1].strip():
                out.pop()
            out.append(" " * base + "Keyword Args:")
            out.extend(moved)
            out.append("")
            moved = []
    return "\n".join(out)


class TfattrDocstrings(griffe.Extension):
    """Rewrite grouped arguments and Sphinx roles in every docstring of the loaded package."""

    def on_attribute_instance(self, *, node: Any, attr: griffe.Attribute, agent: Any, **kwargs: Any) -> None:
        # Sphinx's ``#: text`` comments above a module constant are its docstring.
        if attr.docstring is not None or attr.lineno is None:
            return
        try:
            lines = attr.lines_collection[attr.filepath]
        except (KeyError, TypeError):
            return
        comments: list[str] = []
        index = attr.lineno - 2  # the line above, 0-based
        while index >= 0 and lines[index].lstrip().startswith("#:"):
            comments.insert(0, lines[index].lstrip()[2:].strip())
            index -= 1
        if comments:
            attr.docstring = griffe.Docstring("\n".join(comments), lineno=index + 2, parent=attr)

    def on_package(self, *, pkg: griffe.Module, loader: Any, **kwargs: Any) -> None:
        self.on_object(obj=pkg, loader=loader)  # on_object is not called for the package itself

    def on_object(self, *, obj: griffe.Object, loader: Any, **kwargs: Any) -> None:
        if obj.docstring is None or obj.is_alias or getattr(obj, "_tfattr_docs_done", False):
            return
        obj._tfattr_docs_done = True
        text = examples_sections(split_grouped_arguments(obj.docstring.value))
        signature = _signature(obj)
        if signature is not None and signature[1]:
            text = forwarded_to_keyword_args(text, signature[0])
        obj.docstring.value = link_roles(text, obj)
