"""The named ViT variants: one table, and one function that resolves any ecosystem's name to ours.

Widths, depths and heads are Table 1 of Dosovitskiy et al. 2021 ("An Image is Worth 16x16 Words") and
Google's ``vit_jax/configs/models.py``; Ti and S come from DeiT / AugReg, giant from Zhai et al. 2022
("Scaling Vision Transformers", the 1B ``g/14`` of timm). A variant name is ``vit-{size}-{patch}``:
every size exists at every patch size, since only the patch size differs between them.
"""
from __future__ import annotations

import difflib
import re
from typing import NamedTuple


class Size(NamedTuple):
    hidden_size: int
    mlp_size: int
    num_heads: int
    num_layers: int


SIZES = {
    "tiny": Size(hidden_size=192, mlp_size=768, num_heads=3, num_layers=12),
    "small": Size(hidden_size=384, mlp_size=1536, num_heads=6, num_layers=12),
    "base": Size(hidden_size=768, mlp_size=3072, num_heads=12, num_layers=12),
    "large": Size(hidden_size=1024, mlp_size=4096, num_heads=16, num_layers=24),
    "huge": Size(hidden_size=1280, mlp_size=5120, num_heads=16, num_layers=32),
    "giant": Size(hidden_size=1408, mlp_size=6144, num_heads=16, num_layers=40),
}
PATCH_SIZES = (8, 14, 16, 32)

# Abbreviations used by Google (ViT-B_16), big_vision (B/16) and the papers (ViT-Ti/16).
SIZE_ABBREVIATIONS = {"ti": "tiny", "s": "small", "b": "base", "l": "large", "h": "huge", "g": "giant"}

VARIANTS = {f"vit-{size}-{patch}": (size, patch) for size in SIZES for patch in PATCH_SIZES}

# Each pattern captures a size (long or abbreviated) and a patch size; an optional image-size suffix is
# matched and returned, so "vit_base_patch16_384" resolves to ("vit-base-16", 384).
_ALIAS_PATTERNS = (
    # ours: vit-base-16
    re.compile(r"^vit-(?P<size>[a-z]+)-(?P<patch>\d+)$"),
    # timm: vit_base_patch16_224[.augreg_in21k_ft_in1k]; Hugging Face: google/vit-base-patch16-224[-in21k]
    re.compile(r"^(?:google/)?vit[_-](?P<size>[a-z]+)[_-]patch(?P<patch>\d+)(?:[_-](?P<image>\d+))?"
               r"(?:[-_.].*)?$"),
    # Google vit_jax: ViT-B_16, R50+ViT-B_16 excluded; big_vision and papers: B/16, ViT-Ti/16
    re.compile(r"^(?:vit-)?(?P<size>ti|s|b|l|h|g)[_/](?P<patch>\d+)$"),
)


def resolve_name(name: str) -> tuple[str, int | None]:
    """Resolve any known spelling of a variant to ``(our_name, image_size_or_None)``.

    Example:
        >>> resolve_name("ViT-B_16")
        ('vit-base-16', None)
        >>> resolve_name("vit_large_patch16_384")
        ('vit-large-16', 384)
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string like 'vit-base-16', got {type(name).__name__}")
    key = name.strip().lower()
    for pattern in _ALIAS_PATTERNS:
        match = pattern.match(key)
        if not match:
            continue
        size = SIZE_ABBREVIATIONS.get(match["size"], match["size"])
        variant = f"vit-{size}-{int(match['patch'])}"
        if variant in VARIANTS:
            image = match.groupdict().get("image")
            return variant, int(image) if image else None
    raise ValueError(_unknown_name_message(name))


def _unknown_name_message(name: str) -> str:
    candidates = list(VARIANTS)
    close = difflib.get_close_matches(name.strip().lower(), candidates, n=3, cutoff=0.5)
    hint = f"closest: {', '.join(close)}" if close else f"known: {', '.join(candidates)}"
    return (f"unknown model name {name!r}; {hint}. Aliases such as 'ViT-B_16', 'B/16', "
            f"'vit_base_patch16_224' and 'google/vit-base-patch16-224' are accepted too")


def list_models() -> list[str]:
    """All variant names, smallest first: ``['vit-tiny-8', 'vit-tiny-14', ..., 'vit-giant-32']``."""
    return list(VARIANTS)


def variant_fields(name: str) -> dict:
    """The ViTConfig fields fixed by a variant name (any alias): patch, widths, depth, heads."""
    variant, _ = resolve_name(name)
    size, patch = VARIANTS[variant]
    return dict(patch_size=patch, **SIZES[size]._asdict())
