"""Writing files so that a kill at any moment leaves the old file or the new one, never a torn one."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


def write_atomically(path, write: Callable) -> Path:
    """``write(handle)`` into a temporary file beside ``path`` (opened binary), flushed to disk, then
    renamed over ``path``; the temporary file is removed whatever happens. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_json(path, value) -> Path:
    """``value`` as indented JSON (UTF-8) at ``path``, atomically."""
    return write_atomically(path, lambda handle: handle.write(json.dumps(value, indent=2).encode("utf-8")))
