"""``.npz`` (vit_jax, big_vision): members read one at a time; pickled objects refused."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from vit_zoo.converters.errors import CheckpointError
from vit_zoo.converters.readers import Contents, bfloat16_to_float32, corrupt_file


def read(path: Path) -> Contents:
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError):
        raise corrupt_file(path, ".npz") from None
    entries = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            with zf.open(info) as member:
                version = np.lib.format.read_magic(member)
                header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)(member)
            shape, _, dtype = header
            if dtype.hasobject:
                archive.close()
                raise CheckpointError(f"{path.name}: tensor {key!r} holds Python objects (a pickle); "
                                      f"checkpoints are read without executing code, so it is refused")
            if dtype.kind == "V" and dtype.itemsize == 2 and dtype.names is None:
                # NumPy saves JAX's bfloat16 as 2-byte void; big_vision's recover_dtype reads it back so.
                entries[key] = (tuple(shape), "bfloat16", (lambda k=key: bfloat16_to_float32(archive[k])))
            else:
                entries[key] = (tuple(shape), str(dtype), (lambda k=key: archive[k]))
    return Contents(entries, {}, archive.close)
