"""Read checkpoint files without executing code, one tensor at a time.

``open_checkpoint(path)`` gives a ``Checkpoint``: a read-only view ``source key → (shape, dtype, array)``
that reads each tensor only when asked, into memory of its own that is released with the array (npz
members decompressed one at a time, safetensors tensors read at their offsets, h5py datasets), so a
conversion holds the model plus the tensor in flight. (Safetensors are read, not memory-mapped: the pages
of a mapping that has been read stay resident and count in the process's memory until it is unmapped,
i.e. a whole checkpoint by the end of a conversion.) Half precision (fp16, bf16) is widened to float32
on load.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np

SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
                      "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message says which file and why."""


class Checkpoint:
    """Lazy, read-only tensors of one checkpoint file.

    Attributes:
        path: the file read.
        metadata: format metadata (e.g. Hugging Face ``config.json`` as a dict), or {}. A vit_zoo
            ``.weights.h5`` or ``.keras`` file puts its identity record under ``IDENTITY_KEY``.
    """

    def __init__(self, path, entries: Dict[str, Tuple[tuple, str, Callable[[], np.ndarray]]],
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
    ``.bin`` / ``.pth``.

    A directory is searched for ``model.safetensors``, ``tf_model.h5``, ``pytorch_model.bin`` (in that
    order), and a ``config.json`` beside the file is read into ``metadata`` (unless ``metadata`` is given);
    ``preprocessor_config.json`` beside it goes to ``metadata["preprocessor_config"]``.
    """
    path = Path(path)
    if path.is_dir():
        path = _pick_in_directory(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if metadata is None:
        metadata = _config_beside(path)
    reader = _reader_for(path)
    try:
        return reader(path, metadata)
    except CheckpointError:
        raise
    except Exception as error:  # a truncated or foreign file surfaces as many library errors
        raise CheckpointError(f"cannot read checkpoint {str(path)!r} as {reader.__name__[6:]}: "
                              f"{type(error).__name__}: {error}. Is the file complete (compare its size "
                              f"with the source's) and in the format its name says?") from error


_DIRECTORY_FILES = ("model.safetensors", "tf_model.h5", "pytorch_model.bin")
IDENTITY_KEY = "vit_zoo_identity"  # a vit_zoo model's identity record (see vit_zoo.model.identity)
KERAS_ARCHIVE_MEMBERS = ("config.json", "model.weights.h5")


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


def _reader_for(path: Path):
    name = path.name.lower()
    with open(path, "rb") as f:
        magic = f.read(8)
    if name.endswith(".keras") or magic[:4] == b"PK\x03\x04" and _is_keras_archive(path):
        return _read_keras_archive
    if name.endswith(".npz") or magic[:4] == b"PK\x03\x04" and not name.endswith((".bin", ".pth", ".pt")):
        return _read_npz
    if name.endswith(".safetensors"):
        return _read_safetensors
    if name.endswith(".h5") or magic == b"\x89HDF\r\n\x1a\n":
        return _read_h5
    if name.endswith((".bin", ".pth", ".pt")):
        return _read_torch
    raise CheckpointError(f"unknown checkpoint file type {path.name!r}: expected .npz (vit_jax), "
                          f".safetensors (Hugging Face, timm), .h5 (tf_model.h5, .weights.h5), .keras or .bin")


def _is_keras_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return set(KERAS_ARCHIVE_MEMBERS) <= set(archive.namelist())
    except zipfile.BadZipFile:  # e.g. a truncated .npz: the npz reader says what is wrong with it
        return False


def _read_npz(path: Path, metadata: dict) -> Checkpoint:
    archive = np.load(path, allow_pickle=False)
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
            entries[key] = (tuple(shape), str(dtype), (lambda k=key: archive[k]))
    return Checkpoint(path, entries, metadata, closer=archive.close)


def _read_safetensors(path: Path, metadata: dict) -> Checkpoint:
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
        if kind not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path.name}: tensor {key!r} has unsupported dtype {kind}")
        shape = tuple(info["shape"])
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(SAFETENSORS_DTYPES[kind]).itemsize
        if end - begin != expected:
            raise CheckpointError(f"{path.name}: tensor {key!r} is {kind} {list(shape)} ({expected} bytes) "
                                  f"but its data_offsets span {end - begin} bytes; the header is corrupt")
        entries[key] = (shape, "bfloat16" if kind == "BF16" else str(np.dtype(SAFETENSORS_DTYPES[kind])),
                        (lambda b=start + begin, k=kind, s=shape: _safetensors_array(path, b, k, s)))
    return Checkpoint(path, entries, metadata)


def _safetensors_array(path: Path, offset: int, kind: str, shape: tuple) -> np.ndarray:
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.fromfile(path, dtype=SAFETENSORS_DTYPES[kind], count=count, offset=offset)
    if raw.size != count:
        raise CheckpointError(f"{path.name}: {raw.size} of {count} values at byte {offset}; the file was "
                              f"truncated after it was opened")
    raw = raw.reshape(shape)
    if kind == "BF16":  # bfloat16 is the top half of a float32
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw


def _read_h5(path: Path, metadata: dict) -> Checkpoint:
    import h5py

    handle = h5py.File(path, "r")
    entries = {}
    keras_names = _keras_layer_names(handle)

    def visit(name, node):
        if isinstance(node, h5py.Dataset):
            group, _, index = name.rpartition("/vars/")
            key = f"{keras_names[group]}/vars/{index}" if group in keras_names else name
            entries[key] = (tuple(node.shape), str(node.dtype), (lambda n=node: n[()]))

    handle.visititems(visit)
    if IDENTITY_KEY in handle.attrs:  # written by VisionTransformer.save_weights
        metadata = {**metadata, IDENTITY_KEY: json.loads(handle.attrs[IDENTITY_KEY])}
    return Checkpoint(path, entries, metadata, closer=handle.close)


def _read_keras_archive(path: Path, metadata: dict) -> Checkpoint:
    """A ``.keras`` archive (``model.save``): its ``model.weights.h5`` read as a ``.weights.h5`` (copied out
    to a temporary file, removed on close), the identity record from its ``config.json``."""
    with zipfile.ZipFile(path) as archive:
        missing = [m for m in KERAS_ARCHIVE_MEMBERS if m not in archive.namelist()]
        if missing:
            raise CheckpointError(f"{path.name} is a zip file but no Keras model archive (no {missing})")
        saved = json.loads(archive.read("config.json"))
        weights = tempfile.NamedTemporaryFile(suffix=".weights.h5", delete=False)
        with weights, archive.open("model.weights.h5") as member:
            shutil.copyfileobj(member, weights, 16 * 2**20)
    try:
        checkpoint = _read_h5(Path(weights.name), {})
    except BaseException:
        os.unlink(weights.name)
        raise
    record = (saved.get("config") or {}).get(IDENTITY_KEY)
    metadata = {"keras_class": saved.get("registered_name") or saved.get("class_name")}
    if record is not None:
        metadata[IDENTITY_KEY] = record
    close_h5 = checkpoint._closer

    def close():
        close_h5()
        os.unlink(weights.name)
    return Checkpoint(path, checkpoint._entries, metadata, closer=close)


def _keras_layer_names(handle) -> dict:
    """Keras 3 ``.weights.h5`` files group variables under class-derived paths (``layers/dense_2``) and
    keep the layer's own name in the ``vars`` group's ``name`` attribute; map path → layer name so keys
    read ``head/vars/0``. Other h5 files give {}."""
    import h5py

    if "layers" not in handle or "vars" not in handle:
        return {}
    names = {}
    for group_name, group in handle["layers"].items():
        if isinstance(group, h5py.Group) and "vars" in group and "name" in group["vars"].attrs:
            names[f"layers/{group_name}"] = str(group["vars"].attrs["name"])
    return names


def _read_torch(path: Path, metadata: dict) -> Checkpoint:
    try:
        import torch  # optional: only for pytorch_model.bin files
    except ImportError:
        raise CheckpointError(f"{path.name} is a PyTorch pickle file; reading it safely needs torch "
                              f"(torch.load(weights_only=True)): pip install torch, or use the repo's "
                              f"model.safetensors instead") from None
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path.name} holds a {type(state).__name__}, not a state dict")
    entries = {}
    for key, tensor in state.items():
        dtype = "bfloat16" if tensor.dtype == torch.bfloat16 else str(tensor.dtype).replace("torch.", "")
        entries[key] = (tuple(tensor.shape), dtype, (lambda t=tensor: t.float().numpy()
                                                     if t.dtype == torch.bfloat16 else t.numpy()))
    return Checkpoint(path, entries, metadata)
