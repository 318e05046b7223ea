"""Synthetic checkpoints in the exact on-disk layouts of the published formats (shared test fixtures).

Each takes a ``vit_zoo.ViTConfig`` (architecture only: widths, depth, heads, patch, image size, class
token, pooling, pre-logits, classes, qkv bias) and gives random tensors under the real key names and
shapes, from the one layout table per format in ``tests/layouts.py``: Google ``vit_jax`` and big_vision
``.npz`` (``npz_tensors``, ``big_vision_tensors``/``write_npz``) and timm ``model.safetensors`` state dicts
(``timm_tensors``/``write_safetensors``, plus timm's ``config.json``).

The safetensors writer is independent of the reader under test (and is checked against the
``safetensors`` package in the tests); it writes F32, F16 or BF16 (round to nearest even).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

import layouts


def npz_tensors(config, seed=0) -> dict:
    """``{vit_jax key: float32 array}`` for ``config`` (a "token" or "gap" vit_jax ViT)."""
    return layouts.tensors(layouts.vit_jax(config), layouts.weights(config, seed))


def big_vision_tensors(config, seed=0, **layout) -> dict:
    """``{big_vision key: float32 array}`` for ``config`` ("tok": class token, or "gap"); ``layout``:
    ``prefix`` ("params/" or "" for a released file), ``position`` (the position embedding's key)."""
    return layouts.tensors(layouts.big_vision(config, **layout), layouts.weights(config, seed))


def timm_tensors(config, seed=0) -> dict:
    """``{timm key: float32 array}`` for ``config``; pooling "avg-fcnorm" gives ``fc_norm``, no ``norm``;
    ``representation_size`` gives ``pre_logits.fc`` (timm < 0.6 in21k models)."""
    return layouts.tensors(layouts.timm(config), layouts.weights(config, seed))


def write_npz(path, tensors: dict, dtype=None) -> Path:
    """``np.savez`` as vit_jax's ``checkpoint.save`` does (flat '/' names); ``dtype`` casts all."""
    path = Path(path)
    np.savez(path, **{k: v.astype(dtype) if dtype else v for k, v in tensors.items()})
    return path


_SAFETENSORS_KINDS = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4"}


def to_bfloat16_bits(array) -> np.ndarray:
    """float32 → bfloat16 bit patterns (uint16), rounding to nearest even."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def from_bfloat16_bits(bits) -> np.ndarray:
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path, tensors: dict, dtype="F32", metadata=None) -> Path:
    """A ``.safetensors`` file: u64 header size, JSON header (8-byte aligned), raw little-endian data.

    Float arrays are stored as ``dtype`` (F32, F16, BF16); integer arrays keep an integer kind.
    """
    path = Path(path)
    header, blobs, offset = {}, [], 0
    for key, array in tensors.items():
        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.integer):
            kind = "I64" if array.dtype.itemsize == 8 else "I32"
            raw = array.astype(_SAFETENSORS_KINDS[kind])
        elif dtype == "BF16":
            kind, raw = "BF16", to_bfloat16_bits(array)
        else:
            kind, raw = dtype, array.astype(_SAFETENSORS_KINDS[dtype])
        blob = np.ascontiguousarray(raw).tobytes()
        header[key] = {"dtype": kind, "shape": list(array.shape),
                       "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {"format": "pt", **(metadata or {})}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)
    return path


def timm_config_json(architecture, config, global_pool=None, mean=(0.5, 0.5, 0.5),
                     std=(0.5, 0.5, 0.5), pretrained_cfg=None, **top_level) -> dict:
    """timm's ``config.json`` as ``save_config_for_hf`` writes it (fields vit_zoo reads, and a few more);
    ``pretrained_cfg`` entries and ``top_level`` fields (``label_names``, ``label_descriptions``) are added."""
    if global_pool is None:
        global_pool = "token" if config.pooling == "token" else "avg"
    written = {
        "architecture": architecture,
        "num_classes": config.num_classes,
        "num_features": config.hidden_size,
        "global_pool": global_pool,
        "pretrained_cfg": {
            "tag": "synthetic", "custom_load": False,
            "input_size": [3, *config.image_size], "fixed_input_size": True, "interpolation": "bicubic",
            "crop_pct": 0.9, "crop_mode": "center", "mean": list(mean), "std": list(std),
            "num_classes": config.num_classes, "pool_size": None, "first_conv": "patch_embed.proj",
            "classifier": "head",
        },
        **top_level,
    }
    written["pretrained_cfg"].update(pretrained_cfg or {})
    return written


def write_timm(directory, config, architecture=None, seed=0, dtype="F32", tensors=None,
               **config_json) -> Path:
    """``directory/model.safetensors`` (+ timm's ``config.json`` with ``architecture``); returns the file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = timm_tensors(config, seed) if tensors is None else tensors
    path = write_safetensors(directory / "model.safetensors", tensors, dtype=dtype)
    if architecture:
        config_file = timm_config_json(architecture, config, **config_json)
        (directory / "config.json").write_text(json.dumps(config_file))
    return path


def images(config, batch=2, seed=1) -> np.ndarray:
    """Normalised NHWC float32 inputs in [-1, 1] (what include_preprocessing=False models take)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (batch, *config.image_size, 3)).astype(np.float32)


def relative_error(actual, expected) -> float:
    """max|a − b| / max|b| (``actual``: a model output of any backend, or an array)."""
    from conftest import to_numpy

    actual, expected = np.asarray(to_numpy(actual), np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))
