"""Writing files so that a kill at any moment leaves the old file or the new one, never a torn one."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


def replace_atomically(path, write_to: Callable[[Path], None]) -> Path:
    """The one atomic write: ``write_to(temporary)`` with a temporary path in ``path``'s folder (unique to the
    process, keeping ``path``'s suffixes, which writers such as Keras' ``save`` check: ``.keras``,
    ``.weights.h5``), the file flushed to disk (fsync), renamed over ``path``, the rename itself flushed
    (the folder's fsync, where the system has one); the temporary file is removed whatever happens. A kill
    at any moment leaves the old file or the new one. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffixes = ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix
    stem = path.name[:len(path.name) - len(suffixes)] if suffixes else path.name
    temporary = path.with_name(f".{stem}.{os.getpid()}.tmp{suffixes}")
    try:
        write_to(temporary)
        if temporary.is_file():  # what a writer closed may still be in the page cache only
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_folder(path.parent)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a folder for fsync; its rename is durable on its own
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path, write: Callable) -> Path:
    """``write(handle)`` into a temporary file (opened binary) that ``replace_atomically`` renames over
    ``path``. Returns ``path``."""
    def write_to(temporary: Path):
        with open(temporary, "wb") as handle:
            write(handle)
    return replace_atomically(path, write_to)


def write_json(path, value) -> Path:
    """``value`` as indented JSON (UTF-8) at ``path``, atomically."""
    return write_atomically(path, lambda handle: handle.write(json.dumps(value, indent=2).encode("utf-8")))
