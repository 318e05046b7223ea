"""The stable layer names of a vit_zoo model (documented in ``vit_zoo.model.builder``), without Keras:
converters, features and attention address weights and outputs through them."""
from __future__ import annotations

from vit_zoo.model.build_record import has_preprocessing  # noqa: F401 (re-exported; the build record knows it)

PREPROCESSING_LAYER = "preprocessing"
MAP_ATTENTION_LAYER = "map_attn"  # the MAP head's attention pooling (its probe attends over the tokens)


def block_name(index: int, part: str) -> str:
    """Name of a layer of encoder block ``index``, e.g. ``block_name(3, "attn") == "block_03_attn"``."""
    return f"block_{index:02d}_{part}"
