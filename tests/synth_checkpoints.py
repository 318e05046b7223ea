"""Synthetic checkpoints in the exact on-disk layouts of the published formats (shared test fixtures).

Each writer takes a ``vit_zoo.ViTConfig`` (architecture only: widths, depth, heads, patch, image size,
class token, pooling, pre-logits, classes, qkv bias) and writes random tensors under the real key names
and shapes: Google ``vit_jax`` ``.npz`` (``npz_tensors``/``write_npz``) and timm ``model.safetensors``
state dicts (``timm_tensors``/``write_safetensors``, plus timm's ``config.json``). Values are scaled so
that activations stay O(1) through the blocks and every LayerNorm has non-trivial scales and biases, so
a wrong transpose, head split or epsilon shows in the outputs.

The safetensors writer is independent of the reader under test (and is checked against the
``safetensors`` package in the tests); it writes F32, F16 or BF16 (round to nearest even).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np


class _Random:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def kernel(self, *shape, fan_in):
        return self.rng.standard_normal(shape, dtype=np.float32) * np.float32(1 / np.sqrt(fan_in))

    def bias(self, *shape, scale=0.05):
        return self.rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)

    def scale(self, *shape):
        return 1 + self.rng.standard_normal(shape, dtype=np.float32) * np.float32(0.2)


def _grid(config):
    return config.image_size[0] // config.patch_size, config.image_size[1] // config.patch_size


# ------------------------------------------------------------------------------------------------
# Google vit_jax .npz
def npz_tensors(config, seed=0) -> dict:
    """``{vit_jax key: float32 array}`` for ``config`` (a "token" or "gap" vit_jax ViT)."""
    r = _Random(seed)
    d, m, h, p = config.hidden_size, config.mlp_size, config.num_heads, config.patch_size
    dh = d // h
    gh, gw = _grid(config)
    t = {"embedding/kernel": r.kernel(p, p, 3, d, fan_in=p * p * 3), "embedding/bias": r.bias(d)}
    if config.class_token:
        t["cls"] = r.bias(1, 1, d, scale=0.5)
    t["Transformer/posembed_input/pos_embedding"] = r.bias(1, gh * gw + int(config.class_token), d, scale=0.3)
    for i in range(config.num_layers):
        b = f"Transformer/encoderblock_{i}/"
        a = b + "MultiHeadDotProductAttention_1/"
        t[b + "LayerNorm_0/scale"], t[b + "LayerNorm_0/bias"] = r.scale(d), r.bias(d, scale=0.1)
        for part in ("query", "key", "value"):
            t[f"{a}{part}/kernel"] = r.kernel(d, h, dh, fan_in=d)
            if config.qkv_bias:
                t[f"{a}{part}/bias"] = r.bias(h, dh)
        t[a + "out/kernel"], t[a + "out/bias"] = r.kernel(h, dh, d, fan_in=d), r.bias(d)
        t[b + "LayerNorm_2/scale"], t[b + "LayerNorm_2/bias"] = r.scale(d), r.bias(d, scale=0.1)
        t[b + "MlpBlock_3/Dense_0/kernel"] = r.kernel(d, m, fan_in=d)
        t[b + "MlpBlock_3/Dense_0/bias"] = r.bias(m)
        t[b + "MlpBlock_3/Dense_1/kernel"] = r.kernel(m, d, fan_in=m)
        t[b + "MlpBlock_3/Dense_1/bias"] = r.bias(d)
    t["Transformer/encoder_norm/scale"] = r.scale(d)
    t["Transformer/encoder_norm/bias"] = r.bias(d, scale=0.1)
    width = d
    if config.representation_size:
        width = config.representation_size
        t["pre_logits/kernel"], t["pre_logits/bias"] = r.kernel(d, width, fan_in=d), r.bias(width)
    if config.num_classes:
        t["head/kernel"], t["head/bias"] = r.kernel(width, config.num_classes, fan_in=width), r.bias(
            config.num_classes)
    return t


def write_npz(path, tensors: dict, dtype=None) -> Path:
    """``np.savez`` as vit_jax's ``checkpoint.save`` does (flat '/' names); ``dtype`` casts all."""
    path = Path(path)
    np.savez(path, **{k: v.astype(dtype) if dtype else v for k, v in tensors.items()})
    return path


# ------------------------------------------------------------------------------------------------
# timm state dict
def timm_tensors(config, seed=0) -> dict:
    """``{timm key: float32 array}`` for ``config``; pooling "avg-fcnorm" gives ``fc_norm``, no ``norm``;
    ``representation_size`` gives ``pre_logits.fc`` (timm < 0.6 in21k models)."""
    r = _Random(seed)
    d, m, p = config.hidden_size, config.mlp_size, config.patch_size
    gh, gw = _grid(config)
    t = {"patch_embed.proj.weight": r.kernel(d, 3, p, p, fan_in=p * p * 3),
         "patch_embed.proj.bias": r.bias(d)}
    if config.class_token:
        t["cls_token"] = r.bias(1, 1, d, scale=0.5)
    t["pos_embed"] = r.bias(1, gh * gw + int(config.class_token), d, scale=0.3)
    for i in range(config.num_layers):
        b = f"blocks.{i}."
        t[b + "norm1.weight"], t[b + "norm1.bias"] = r.scale(d), r.bias(d, scale=0.1)
        t[b + "attn.qkv.weight"] = r.kernel(3 * d, d, fan_in=d)
        if config.qkv_bias:
            t[b + "attn.qkv.bias"] = r.bias(3 * d)
        t[b + "attn.proj.weight"], t[b + "attn.proj.bias"] = r.kernel(d, d, fan_in=d), r.bias(d)
        t[b + "norm2.weight"], t[b + "norm2.bias"] = r.scale(d), r.bias(d, scale=0.1)
        t[b + "mlp.fc1.weight"], t[b + "mlp.fc1.bias"] = r.kernel(m, d, fan_in=d), r.bias(m)
        t[b + "mlp.fc2.weight"], t[b + "mlp.fc2.bias"] = r.kernel(d, m, fan_in=m), r.bias(d)
    norm = "fc_norm" if config.pooling == "avg-fcnorm" else "norm"
    t[norm + ".weight"], t[norm + ".bias"] = r.scale(d), r.bias(d, scale=0.1)
    width = d
    if config.representation_size:
        width = config.representation_size
        t["pre_logits.fc.weight"], t["pre_logits.fc.bias"] = r.kernel(width, d, fan_in=d), r.bias(width)
    if config.num_classes:
        t["head.weight"] = r.kernel(config.num_classes, width, fan_in=width)
        t["head.bias"] = r.bias(config.num_classes)
    return t


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
    """max|a − b| / max|b|."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))
