"""The stable layer names of a vit_zoo model (documented in ``vit_zoo.model.builder``), without Keras:
converters, features and attention address weights and outputs through them."""
from __future__ import annotations

PREPROCESSING_LAYER = "preprocessing"


def block_name(index: int, part: str) -> str:
    """Name of a layer of encoder block ``index``, e.g. ``block_name(3, "attn") == "block_03_attn"``."""
    return f"block_{index:02d}_{part}"


def has_preprocessing(model) -> bool:
    """True when ``model`` normalises its own inputs (built with ``include_preprocessing=True``): it takes
    RGB in [0, 255] rather than normalised pixels."""
    return any(layer.name == PREPROCESSING_LAYER for layer in model.layers)
