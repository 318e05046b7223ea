"""One reader per container: each turns a file into lazy entries ``key → (shape, dtype, load)`` without
executing code, reading a tensor only when ``load()`` is called.

    npz          vit_jax / big_vision ``.npz`` (``np.load(allow_pickle=False)``, member by member)
    safetensors  Hugging Face / timm ``.safetensors`` (header parsed here, tensors read at their offsets)
    h5           ``tf_model.h5``, Keras ``.weights.h5`` and the ``.keras`` archive around one (h5py)
    pytorch      PyTorch ``.bin`` / ``.pth`` (``torch.load(weights_only=True)``, when torch is installed)
    torchscript  TorchScript ``.pt`` archives (OpenAI CLIP): the state dict only (``torch.jit.load``), with torch
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import numpy as np

# key → (shape, dtype name as numpy spells it or "bfloat16", a function that reads the array)
Entry = Tuple[tuple, str, Callable[[], np.ndarray]]


class Contents(NamedTuple):
    """What a reader found: the entries, metadata the file itself holds, and how to close it."""

    entries: Dict[str, Entry]
    metadata: Optional[dict] = None
    closer: Optional[Callable[[], None]] = None


def reader_for(path: Path, magic: bytes) -> Optional[Callable[[Path], Contents]]:
    """The ``read`` function for ``path`` by its name and first bytes, or None for an unknown kind."""
    name = path.name.lower()
    zipped = magic[:4] == b"PK\x03\x04"
    torch_names = (".bin", ".pth", ".pt")
    if name.endswith(".keras") or zipped and _module("h5").is_keras_archive(path):
        return _module("h5").read_keras_archive
    if name.endswith(".npz") or zipped and not name.endswith(torch_names):
        return _module("npz").read
    if name.endswith(".safetensors"):
        return _module("safetensors").read
    if name.endswith(".h5") or magic == b"\x89HDF\r\n\x1a\n":
        return _module("h5").read
    if name.endswith(torch_names):
        return _module("torchscript" if zipped and _module("torchscript").is_torchscript(path) else "pytorch").read
    return None


def corrupt_file(path: Path, kind: str):
    """The error for a file its reader cannot open (cut short by an interrupted copy or download, or not
    what its name says): a ``CheckpointError`` naming the ``kind`` (".keras", ".npz", ...) and the path."""
    from vit_zoo.converters.errors import CheckpointError

    return CheckpointError(f"incomplete or corrupt {kind} file '{path}'. Is the file complete (compare its size "
                           f"with the source's)? Copy or download it again")


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (any 2-byte dtype) → float32: a bfloat16 is the top half of a float32."""
    return (bits.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _module(name: str):
    return importlib.import_module(f"vit_zoo.converters.readers.{name}")
