"""Checkpoint files as lazy, read-only tensors: ``open_checkpoint(path)`` → ``Checkpoint``.

A ``Checkpoint`` is a view ``source key → (shape, dtype, array)`` that reads each tensor only when asked,
into memory of its own that is released with the array (the readers in ``converters.readers``, one per
container, never execute code), so a conversion holds the model plus the tensor in flight. Half precision
(fp16, bf16) is widened to float32 on load.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np

from vit_zoo.converters import readers
from vit_zoo.converters.errors import CheckpointError
from vit_zoo.converters.readers import Entry
from vit_zoo.model.saved_identity import IDENTITY_KEY  # noqa: F401  (the identity record's key)


class Checkpoint:
    """Lazy, read-only tensors of one checkpoint file.

    Attributes:
        path: the file read.
        metadata: format metadata (e.g. Hugging Face ``config.json`` as a dict), or {}. A vit_zoo
            ``.weights.h5`` or ``.keras`` file puts its identity record under ``IDENTITY_KEY``.
    """

    def __init__(self, path, entries: Dict[str, Entry],
                 metadata: Optional[dict] = None, closer: Optional[Callable[[], None]] = None):
        self.path = Path(path)
        self._entries = entries
        self.metadata = metadata or {}
        self._closer = closer

    def keys(self):
        return list(self._entries)

    def __contains__(self, key):
        return key in self._entries

    def __len__(self):
        return len(self._entries)

    def shape(self, key) -> tuple:
        return self._entry(key)[0]

    def dtype(self, key) -> str:
        return self._entry(key)[1]

    def load(self, key) -> np.ndarray:
        """The tensor as a NumPy array; half precision widened to float32."""
        array = self._entry(key)[2]()
        if array.dtype in (np.float16,) or self.dtype(key) == "bfloat16":
            array = array.astype(np.float32)
        return array

    def required_shape(self, key, rank: int, layout: str) -> tuple:
        """The shape of ``key``, which every checkpoint of ``layout`` (e.g. "vit_jax") has, of ``rank``
        dimensions; a CheckpointError saying what is missing or wrong otherwise."""
        if key not in self._entries:
            raise CheckpointError(f"{layout} checkpoint {self.path.name!r} has no tensor {key!r}, which every "
                                  f"{layout} ViT has; the file is incomplete or another layout")
        shape = tuple(self.shape(key))
        if len(shape) != rank:
            raise CheckpointError(f"{layout} checkpoint {self.path.name!r}: {key!r} has shape {shape}; "
                                  f"expected {rank} dimensions")
        return shape

    def block_count(self, pattern: str, where: str) -> int:
        """How many blocks the keys number 0…n-1, ``pattern`` capturing the block index (fullmatch)."""
        regex = re.compile(pattern)
        found = sorted(int(m[1]) for m in map(regex.fullmatch, self._entries) if m)
        if not found:
            raise CheckpointError(f"{where} has no blocks (no key matches {pattern!r})")
        if found != list(range(len(found))):
            gaps = sorted(set(range(max(found) + 1)) - set(found))
            missing = [pattern.replace(r"(\d+)", str(g)).replace("\\", "") for g in gaps[:5]]
            raise CheckpointError(f"{where}: blocks are not numbered 0…{max(found)}; missing {missing}")
        return len(found)

    def view(self, prefix: str, metadata: Optional[dict] = None) -> "Checkpoint":
        """The tensors under ``prefix`` with the prefix stripped (e.g. an OpenCLIP tower's timm trunk,
        ``visual.trunk.``), read lazily from this file, with ``metadata`` of their own; closing it closes
        nothing."""
        entries = {key[len(prefix):]: entry for key, entry in self._entries.items() if key.startswith(prefix)}
        return Checkpoint(self.path, entries, metadata)

    def _entry(self, key):
        try:
            return self._entries[key]
        except KeyError:
            raise KeyError(f"{self.path.name} has no tensor {key!r}") from None

    def close(self):
        if self._closer:
            self._closer()
            self._closer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_checkpoint(path, metadata: Optional[dict] = None) -> Checkpoint:
    """Open ``.npz``, ``.safetensors``, ``.h5`` / ``.weights.h5``, a Keras ``.keras`` archive, or PyTorch
    ``.bin`` / ``.pth`` (see ``converters.readers``).

    A directory is searched for ``model.safetensors``, ``tf_model.h5``, ``pytorch_model.bin`` (in that
    order), and a ``config.json`` beside the file is read into ``metadata`` (unless ``metadata`` is given);
    ``preprocessor_config.json`` beside it goes to ``metadata["preprocessor_config"]``. A file that completes
    the checkpoint beside it (``COMPANIONS``: Meta's DINOv2 linear head beside its backbone) joins its
    tensors under a key prefix; ``metadata["companions"]`` maps the prefix to the file read.

    Raises:
        CheckpointError: no such file, an unknown kind of file, or one its reader cannot read.
    """
    path = Path(path)
    if path.is_dir():
        path = _pick_in_directory(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if metadata is None:
        metadata = _config_beside(path)
    contents = _read(path)
    entries, closers, metadata = dict(contents.entries), [contents.closer], {**metadata, **(contents.metadata or {})}

    def close():
        for closer in closers:
            if closer:
                closer()
    try:
        for companion, prefix in _companions_beside(path):
            extra = _read(companion)
            closers.append(extra.closer)
            entries.update({prefix + key: entry for key, entry in extra.entries.items()})
            metadata.setdefault("companions", {})[prefix] = str(companion)
    except BaseException:
        close()
        raise
    return Checkpoint(path, entries, metadata, close)


# Files published beside a checkpoint that complete it: (the checkpoint's file name, the companion's name
# from that match, the key prefix its tensors join under). Meta's DINOv2 hub publishes the ImageNet linear
# head of each backbone as a file of its own (converters.dinov2_meta).
HEAD_PREFIX = "linear_head."
COMPANIONS = ((re.compile(r"(dinov2_vit[sblg]14(?:_reg4)?)_pretrain\.pth"), r"\1_linear_head.pth", HEAD_PREFIX),)


def _companions_beside(path: Path):
    for pattern, name, prefix in COMPANIONS:
        match = pattern.fullmatch(path.name)
        if match and (path.parent / match.expand(name)).is_file():
            yield path.parent / match.expand(name), prefix


def _read(path: Path):
    """The reader's ``Contents`` of one file; a CheckpointError for a file no reader takes or can read."""
    with open(path, "rb") as f:
        read = readers.reader_for(path, f.read(8))
    if read is None:
        raise CheckpointError(f"unknown checkpoint file type {path.name!r}: expected .npz (vit_jax, big_vision), "
                              f".safetensors (Hugging Face, timm), .h5 (tf_model.h5, .weights.h5), .keras or .bin")
    try:
        return read(path)
    except CheckpointError:
        raise
    except Exception as error:  # a truncated or foreign file surfaces as many library errors
        kind = read.__module__.rsplit(".", 1)[-1]
        raise CheckpointError(f"cannot read checkpoint {str(path)!r} as {kind}: {type(error).__name__}: "
                              f"{error}. Is the file complete (compare its size with the source's) and in "
                              f"the format its name says?") from error


_DIRECTORY_FILES = ("model.safetensors", "tf_model.h5", "pytorch_model.bin", "open_clip_model.safetensors",
                    "open_clip_pytorch_model.bin")


def _pick_in_directory(directory: Path) -> Path:
    for name in _DIRECTORY_FILES:
        if (directory / name).is_file():
            return directory / name
    found = sorted(p.name for p in directory.iterdir())[:10]
    raise CheckpointError(f"directory {str(directory)!r} holds none of {list(_DIRECTORY_FILES)}; "
                          f"found: {found}")


def _config_beside(path: Path) -> dict:
    metadata = _json_file(path.parent / "config.json") or {}
    processor = _json_file(path.parent / "preprocessor_config.json")
    if processor is not None:
        metadata = {**metadata, "preprocessor_config": processor}
    return metadata


def _json_file(path: Path) -> Optional[dict]:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{str(path)!r} is not valid JSON: {error}") from error
