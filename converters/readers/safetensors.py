"""``.safetensors``: the header parsed and checked here, each tensor read at its offset when loaded.

Read, not memory-mapped: the pages of a mapping that has been read stay resident and count in the
process's memory until it is unmapped, i.e. a whole checkpoint by the end of a conversion.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from vit_zoo.converters.errors import CheckpointError
from vit_zoo.converters.readers import Contents, bfloat16_to_float32

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
          "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def read(path: Path) -> Contents:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path.name} is too short to be a safetensors file ({size} bytes)")
        (header_size,) = struct.unpack("<Q", prefix)
        if header_size > size - 8:
            raise CheckpointError(f"{path.name}: header claims {header_size} bytes but the file has "
                                  f"{size}; the file is truncated or not safetensors")
        header = json.loads(f.read(header_size))
    header.pop("__metadata__", None)
    start, data_size = 8 + header_size, size - 8 - header_size
    entries = {}
    for key, info in header.items():
        begin, end = info["data_offsets"]
        if end > data_size:
            raise CheckpointError(f"{path.name}: tensor {key!r} ends at byte {end} of the data, but the "
                                  f"data has {data_size} bytes; the file is truncated")
        kind = info["dtype"]
        if kind not in DTYPES:
            raise CheckpointError(f"{path.name}: tensor {key!r} has unsupported dtype {kind}")
        shape = tuple(info["shape"])
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(DTYPES[kind]).itemsize
        if end - begin != expected:
            raise CheckpointError(f"{path.name}: tensor {key!r} is {kind} {list(shape)} ({expected} bytes) "
                                  f"but its data_offsets span {end - begin} bytes; the header is corrupt")
        entries[key] = (shape, "bfloat16" if kind == "BF16" else str(np.dtype(DTYPES[kind])),
                        (lambda b=start + begin, k=kind, s=shape: _array(path, b, k, s)))
    return Contents(entries)


def _array(path: Path, offset: int, kind: str, shape: tuple) -> np.ndarray:
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.fromfile(path, dtype=DTYPES[kind], count=count, offset=offset)
    if raw.size != count:
        raise CheckpointError(f"{path.name}: {raw.size} of {count} values at byte {offset}; the file was "
                              f"truncated after it was opened")
    raw = raw.reshape(shape)
    return bfloat16_to_float32(raw) if kind == "BF16" else raw
