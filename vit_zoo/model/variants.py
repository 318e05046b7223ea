"""The named ViT variants: one table of families and sizes, and one function that resolves any ecosystem's
name to ours.

A name is ``{family}-{size}-{patch}``: ``vit-base-16``, ``deit-distilled-small-16``, ``deit3-large-16``,
``dinov2-reg4-giant-14``. A family fixes what its models are beyond the size (prefix tokens, LayerScale,
MLP kind, head, position-embedding storage) and the numerics a randomly initialised model gets; a
checkpoint's converter sets the numerics of its own source over those.

Sources of the table:
- vit: Table 1 of Dosovitskiy et al. 2021 and Google's ``vit_jax/configs/models.py``; Ti and S from DeiT /
  AugReg; giant from Zhai et al. 2022 (the 1B ``g/14`` of timm). Every size at every patch size.
- deit, deit-distilled: Touvron et al. 2021 (facebookresearch/deit ``models.py``; timm ``deit.py``): the
  classic architecture trained on ImageNet-1k with ImageNet mean/std; the distilled models add a
  distillation token (with its own position embedding) and a second head, averaged at inference.
- deit3: Touvron et al. 2022 ("DeiT III", deit ``models_v2.py``; timm ``deit3_*``): LayerScale (init 1e-6),
  position embeddings for the patches only (the class token is joined after they are added).
- dinov2, dinov2-reg4: Oquab et al. 2023 and Darcet et al. 2024 (facebookresearch/dinov2 ``hub/backbones.py``):
  patch 14, LayerScale (init 1e-5), position embeddings stored for 518 px (37 x 37) and interpolated to the
  input; giant ("vit_giant2") is 1536 wide with 24 heads and a fused SwiGLU MLP of 4096; the register
  models add 4 register tokens after the class token, which carry no position embedding.
"""
from __future__ import annotations

import difflib
import re
from typing import Dict, NamedTuple, Tuple


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

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Family(NamedTuple):
    """One family of the table.

    sizes: size name → the ViTConfig fields of that size (a ``Size`` plus anything it changes, such as
        DINOv2 giant's SwiGLU MLP). patches: the patch sizes the family is built at.
    architecture: fields that make a model this family's (compared by ``ViTConfig.variant``).
    defaults: numerics and storage a model built from the name gets (a converter sets its source's).
    """

    sizes: Dict[str, dict]
    patches: Tuple[int, ...]
    architecture: dict
    defaults: dict


def _sizes(*names, **changed) -> Dict[str, dict]:
    found = {name: SIZES[name]._asdict() for name in names}
    found.update(changed)
    return found


_DEIT = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)
_DINOV2 = dict(image_size=224, position_grid=(37, 37), pooling="token-mean", mean=IMAGENET_MEAN,
               std=IMAGENET_STD)
_DINOV2_SIZES = _sizes("small", "base", "large",
                       giant=dict(hidden_size=1536, mlp_size=4096, num_heads=24, num_layers=40, mlp="swiglu"))

FAMILIES: Dict[str, Family] = {
    "vit": Family(_sizes(*SIZES), PATCH_SIZES, {}, {}),
    "deit": Family(_sizes("tiny", "small", "base"), (16,), {}, _DEIT),
    "deit-distilled": Family(_sizes("tiny", "small", "base"), (16,),
                             dict(distillation_token=True, head="distilled"), _DEIT),
    "deit3": Family(_sizes("small", "base", "large", "huge",
                           medium=Size(hidden_size=512, mlp_size=2048, num_heads=8, num_layers=12)._asdict()),
                    (14, 16), dict(layer_scale=1e-6, prefix_position_embeddings=False), _DEIT),
    "dinov2": Family(_DINOV2_SIZES, (14,), dict(layer_scale=1e-5),
                     dict(_DINOV2, position_embedding_resampling="bicubic-offset")),
    "dinov2-reg4": Family(_DINOV2_SIZES, (14,), dict(layer_scale=1e-5, register_tokens=4),
                          dict(_DINOV2, position_embedding_resampling="bicubic-antialias")),
}

# Abbreviations used by Google (ViT-B_16), big_vision (B/16), the papers (ViT-Ti/16) and Meta (vits14).
SIZE_ABBREVIATIONS = {"ti": "tiny", "s": "small", "m": "medium", "b": "base", "l": "large", "h": "huge",
                      "g": "giant"}

VARIANTS = {f"{family}-{size}-{patch}": (family, size, patch)
            for family, spec in FAMILIES.items() for size in spec.sizes for patch in spec.patches}

_SIZE = r"(?P<size>tiny|small|medium|base|large|huge|giant)"
_TAG = r"(?:\.[a-z0-9_]+)?"  # a timm pretrained tag: vit_base_patch16_224.augreg_in21k
# (family, pattern): each pattern captures a size (long or abbreviated) and a patch size, and may capture an
# image size (returned: "vit_base_patch16_384" resolves to ("vit-base-16", 384)). Only exact spellings match:
# a timm architecture outside this list (vit_base_patch16_clip_224, ..._siglip_...) is not a classic ViT.
_ALIAS_PATTERNS = (
    (None, re.compile(r"^(?P<family>vit|deit|deit-distilled|deit3|dinov2|dinov2-reg4)-(?P<size>[a-z]+)-"
                      r"(?P<patch>\d+)$")),
    # timm: vit_base_patch16_224[.augreg_in21k_ft_in1k], timm < 0.6: ..._in21k
    ("vit", re.compile(rf"^vit_{_SIZE}_patch(?P<patch>\d+)(?:_(?P<image>\d+))?(?:_in21k)?{_TAG}$")),
    # Hugging Face: google/vit-base-patch16-224[-in21k]
    ("vit", re.compile(rf"^(?:google/)?vit-{_SIZE}-patch(?P<patch>\d+)(?:-(?P<image>\d+))?(?:-in21k)?$")),
    # Google vit_jax: ViT-B_16; big_vision and papers: B/16, ViT-Ti/16
    ("vit", re.compile(r"^(?:vit-)?(?P<size>ti|s|b|l|h|g)[_/](?P<patch>\d+)$")),
    # DeiT: timm / original deit_small_patch16_224, deit_base_distilled_patch16_384; facebook/deit-...
    ("deit", re.compile(rf"^deit_{_SIZE}_patch(?P<patch>\d+)_(?P<image>\d+){_TAG}$")),
    ("deit-distilled", re.compile(rf"^deit_{_SIZE}_distilled_patch(?P<patch>\d+)_(?P<image>\d+){_TAG}$")),
    ("deit", re.compile(rf"^(?:facebook/)?deit-{_SIZE}-patch(?P<patch>\d+)-(?P<image>\d+)$")),
    ("deit-distilled", re.compile(rf"^(?:facebook/)?deit-{_SIZE}-distilled-patch(?P<patch>\d+)-(?P<image>\d+)$")),
    # DeiT-III: timm deit3_base_patch16_224[.fb_in22k_ft_in1k]; original models_v2 deit_base_patch16_LS
    ("deit3", re.compile(rf"^deit3_{_SIZE}_patch(?P<patch>\d+)_(?P<image>\d+){_TAG}$")),
    ("deit3", re.compile(rf"^deit_{_SIZE}_patch(?P<patch>\d+)_ls$")),
    # DINOv2: timm vit_small_patch14_dinov2[.lvd142m], vit_small_patch14_reg4_dinov2
    ("dinov2", re.compile(rf"^vit_{_SIZE}_patch(?P<patch>14)_dinov2{_TAG}$")),
    ("dinov2-reg4", re.compile(rf"^vit_{_SIZE}_patch(?P<patch>14)_reg4_dinov2{_TAG}$")),
    # Hugging Face facebook/dinov2-small[-imagenet1k-1-layer], facebook/dinov2-with-registers-small
    ("dinov2", re.compile(rf"^(?:facebook/)?dinov2-{_SIZE}(?:-imagenet1k-1-layer)?$")),
    ("dinov2-reg4", re.compile(rf"^(?:facebook/)?dinov2-with-registers-{_SIZE}(?:-imagenet1k-1-layer)?$")),
    # Meta's torch.hub names: dinov2_vits14, dinov2_vitb14_reg, dinov2_vitl14_lc, dinov2_vitg14_reg_lc
    ("dinov2", re.compile(r"^dinov2_vit(?P<size>s|b|l|g)(?P<patch>14)(?:_lc|_pretrain)?$")),
    ("dinov2-reg4", re.compile(r"^dinov2_vit(?P<size>s|b|l|g)(?P<patch>14)_reg4?(?:_lc|_pretrain)?$")),
)


def resolve_name(name: str) -> tuple[str, int | None]:
    """Resolve any known spelling of a variant to ``(our_name, image_size_or_None)``.

    Example:
        >>> resolve_name("ViT-B_16")
        ('vit-base-16', None)
        >>> resolve_name("vit_large_patch16_384")
        ('vit-large-16', 384)
        >>> resolve_name("facebook/dinov2-with-registers-small")
        ('dinov2-reg4-small-14', None)
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string like 'vit-base-16', got {type(name).__name__}")
    key = name.strip().lower()
    for family, pattern in _ALIAS_PATTERNS:
        match = pattern.match(key)
        if not match:
            continue
        size = SIZE_ABBREVIATIONS.get(match["size"], match["size"])
        family = family or match["family"]
        patch = match.groupdict().get("patch") or FAMILIES[family].patches[0]  # facebook/dinov2-small: 14
        variant = f"{family}-{size}-{int(patch)}"
        if variant in VARIANTS:
            image = match.groupdict().get("image")
            return variant, int(image) if image else None
    raise ValueError(_unknown_name_message(name))


# Families of the wider ViT world that vit_zoo does not model (yet), recognised in a name to say so by name.
UNMODELLED_FAMILIES = {
    r"siglip": "SigLIP image towers (MAP head, no class token)",
    r"clip": "CLIP / OpenCLIP image towers (pre-norm, quick-GELU, projection)",
    r"eva": "EVA / EVA-02 (rotary position embeddings, SwiGLU, sub-LN)",
    r"beit": "BEiT (relative position bias)",
    r"_rope|rope_": "ViTs with rotary position embeddings",
    r"samvit|_sam_": "SAM's image encoder (windowed attention, relative positions)",
    r"hybrid|r50|resnet": "ResNet-hybrid ViTs",
}


def _unknown_name_message(name: str) -> str:
    key = name.strip().lower()
    for pattern, family in UNMODELLED_FAMILIES.items():
        if re.search(pattern, key):
            return (f"unknown model name {name!r}: it names a model of the {family} family, which vit_zoo does "
                    f"not model; families modelled: {', '.join(FAMILIES)} (vit_zoo.list_models())")
    candidates = list(VARIANTS)
    close = difflib.get_close_matches(name.strip().lower(), candidates, n=3, cutoff=0.5)
    hint = (f"closest: {', '.join(close)}" if close
            else f"known families: {', '.join(FAMILIES)} (vit_zoo.list_models() lists every name)")
    return (f"unknown model name {name!r}; {hint}. Aliases such as 'ViT-B_16', 'B/16', "
            f"'vit_base_patch16_224', 'google/vit-base-patch16-224', 'deit_small_distilled_patch16_224', "
            f"'vit_small_patch14_reg4_dinov2', 'facebook/dinov2-base' and 'dinov2_vitb14' are accepted too")


def list_models(family: str | None = None) -> list[str]:
    """Variant names, family by family, smallest first: ``['vit-tiny-8', ..., 'dinov2-reg4-giant-14']``;
    with ``family`` (one of ``FAMILIES``) only that family's."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
    return [name for name, (found, _, _) in VARIANTS.items() if family in (None, found)]


def family_of(name: str) -> str:
    """The family of a variant name or alias: ``family_of("dinov2_vits14") == "dinov2"``."""
    return VARIANTS[resolve_name(name)[0]][0]


def architecture_fields(name: str) -> dict:
    """The ViTConfig fields that make a model this variant (any alias): patch, widths, depth, heads, and the
    family's architecture (prefix tokens, LayerScale, MLP kind, head)."""
    family, size, patch = VARIANTS[resolve_name(name)[0]]
    spec = FAMILIES[family]
    return dict(patch_size=patch, **spec.sizes[size], **spec.architecture)


def variant_fields(name: str) -> dict:
    """Every ViTConfig field a variant name (any alias) fixes: its architecture and its family's defaults."""
    family = FAMILIES[family_of(name)]
    return {**family.defaults, **architecture_fields(name)}
