"""Writing files so that a kill at any moment leaves the old file or the new one, never a torn one."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


def replace_atomically(path, write_to: Callable[[Path], None]) -> Path:
    """``write_to(temporary)`` with a temporary path beside ``path`` that keeps its suffixes (writers such as
    Keras' ``save`` check them: ``.keras``, ``.weights.h5``), then rename it over ``path``; the temporary
    file is removed whatever happens. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffixes = ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix
    stem = path.name[:len(path.name) - len(suffixes)] if suffixes else path.name
    temporary = path.with_name(f".{stem}.{os.getpid()}.tmp{suffixes}")
    try:
        write_to(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_atomically(path, write: Callable) -> Path:
    """``write(handle)`` into a temporary file beside ``path`` (opened binary), flushed to disk, then
    renamed over ``path`` (``replace_atomically``). Returns ``path``."""
    def write_to(temporary: Path):
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    return replace_atomically(path, write_to)


def write_json(path, value) -> Path:
    """``value`` as indented JSON (UTF-8) at ``path``, atomically."""
    return write_atomically(path, lambda handle: handle.write(json.dumps(value, indent=2).encode("utf-8")))
