"""The few named tensor transforms the mappings use, each a pure NumPy function tested once, and what each
container does to each kind of slot (``converters.targets.SLOT_KINDS``)."""
from __future__ import annotations

import numpy as np


def transpose(array: np.ndarray) -> np.ndarray:
    """PyTorch Linear (out, in) → Keras Dense (in, out)."""
    return np.ascontiguousarray(array.T)


def conv_to_keras(array: np.ndarray) -> np.ndarray:
    """PyTorch Conv2d (D, 3, P, P) → Keras Conv2D (P, P, 3, D)."""
    return np.ascontiguousarray(array.transpose(2, 3, 1, 0))


def split_heads_in(num_heads: int):
    """(D_out, D_in) PyTorch Linear for q, k or v → (D_in, H, Dh) Keras attention kernel."""
    def transform(array):
        width_out, width_in = array.shape
        return np.ascontiguousarray(array.T.reshape(width_in, num_heads, width_out // num_heads))
    return transform


def split_heads_bias(num_heads: int):
    """(D,) bias → (H, Dh)."""
    def transform(array):
        return array.reshape(num_heads, array.shape[0] // num_heads)
    return transform


def merge_heads_out(num_heads: int):
    """(D_out, D_in) PyTorch Linear of the attention output → (H, Dh, D_out)."""
    def transform(array):
        width_out, width_in = array.shape
        return np.ascontiguousarray(array.T.reshape(num_heads, width_in // num_heads, width_out))
    return transform


def fused_qkv_part(index: int, then=None, parts: int = 3):
    """Slice q (0), k (1) or v (2) out of a fused (3D, ...) tensor (``parts=2``: k, v of a fused (2D, ...)
    one), then apply ``then``."""
    def transform(array):
        part = np.split(array, parts, axis=0)[index]
        return then(part) if then else part
    return transform


def to_shape(*shape):
    """Reshape to a fixed shape (e.g. a (D,) class token stored as (1, 1, D))."""
    def transform(array):
        return array.reshape(shape)
    return transform


def pytorch_kinds(num_heads: int) -> dict:
    """Slot kind → (PyTorch parameter name, transform to our shape): ``nn.Linear`` (out, in) weights,
    ``nn.Conv2d`` (D, 3, P, P), ``nn.LayerNorm`` weight/bias; attention weights split into heads."""
    return {"tensor": (None, None), "conv_kernel": ("weight", conv_to_keras), "bias": ("bias", None),
            "dense_kernel": ("weight", transpose), "norm_scale": ("weight", None), "norm_bias": ("bias", None),
            "heads_in_kernel": ("weight", split_heads_in(num_heads)),
            "heads_bias": ("bias", split_heads_bias(num_heads)),
            "heads_out_kernel": ("weight", merge_heads_out(num_heads))}


# Slot kind → (Flax parameter name, transform): Flax shapes are ours (DenseGeneral keeps the heads axis).
FLAX_KINDS = {"tensor": (None, None), "conv_kernel": ("kernel", None), "bias": ("bias", None),
              "dense_kernel": ("kernel", None), "norm_scale": ("scale", None), "norm_bias": ("bias", None),
              "heads_in_kernel": ("kernel", None), "heads_bias": ("bias", None),
              "heads_out_kernel": ("kernel", None)}
