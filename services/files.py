"""Files that readers in other processes poll: written whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path | str, data: Any, indent: int | None = 1) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and ``os.replace``, so a
    process polling for ``path`` never reads half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent))
    os.replace(tmp, path)
