"""The library holds no sockets and imports no services (DESIGN.md, "one code path"): every
module under ``league/`` is parsed and its imports checked, including imports inside
functions, so a process command or a server can never creep back into the library."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "league"
FORBIDDEN = ("services", "agents", "grpc", "socket", "socketserver", "http.server", "wsgiref", "prometheus_client")


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_library_imports_no_services_and_no_sockets():
    modules = sorted(LIBRARY.rglob("*.py"))
    assert len(modules) > 30
    bad = [f"{path.relative_to(LIBRARY.parent)}:{line} imports {name}"
           for path in modules for line, name in _imports(path)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, "\n".join(bad)
