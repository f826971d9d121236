"""Every field of a resolved config with its value, its default and its documentation, read
from the attribute docstrings where the dataclasses declare their fields (``league config
show``): the docs live in one place, next to the fields."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
from dataclasses import dataclass
from typing import Any


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """``{field: docstring}`` of a dataclass: the string literal right after each field's
    annotated assignment in the class body (PEP 257's attribute docstrings), whitespace-joined."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)).body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


@dataclass
class FieldRow:
    """One resolved field."""

    key: str
    """Dotted key, as ``--set`` takes it (``train.outer.actor_lr``, ``agents[0].id``)."""
    value: Any
    """The resolved value (file and overrides applied)."""
    default: Any
    """The dataclass default."""
    doc: str
    """The field's attribute docstring (a nested section's: its class docstring)."""


def rows(cfg: Any, prefix: str = "") -> list[FieldRow]:
    """Every leaf field of a config dataclass, depth first; lists of dataclasses (a league's
    agents) are expanded per item."""
    out: list[FieldRow] = []
    docs = field_docs(type(cfg))
    for f in dataclasses.fields(cfg):
        key = f"{prefix}{f.name}"
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out += rows(value, key + ".")
        elif isinstance(value, list) and value and all(dataclasses.is_dataclass(v) for v in value):
            for i, item in enumerate(value):
                out += rows(item, f"{key}[{i}].")
        else:
            out.append(FieldRow(key, value, _default(f), docs.get(f.name, "")))
    return out


def _show(v: Any) -> str:
    if v is dataclasses.MISSING:
        return "(required)"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if v is None:
        return "none"
    return str(v)


def format_rows(table: list[FieldRow], title: str) -> str:
    """Plain text: ``key = value  (default: ...)``, ``*`` where the value differs from the
    default, and the doc indented on the next line."""
    lines = [title, "(* differs from the default)", ""]
    for r in table:
        mark = "*" if r.value != r.default else " "
        lines.append(f"{mark} {r.key} = {_show(r.value)}   (default: {_show(r.default)})")
        if r.doc:
            lines.append(f"      {r.doc}")
    return "\n".join(lines)
