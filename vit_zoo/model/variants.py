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
- clip: the image towers of Radford et al. 2021 (openai/CLIP ``model.py``) and OpenCLIP (Cherti et al. 2023,
  mlfoundations/open_clip ``model_configs``): a bias-free patch embedding, a LayerNorm before the blocks
  (``ln_pre``), the class token through ``ln_post`` and a bias-free projection to the embedding width; no
  classifier. OpenAI's towers use quick-GELU and LayerNorm epsilon 1e-5 (the defaults here); OpenCLIP's
  LAION towers use exact GELU (their converters set it). giant is OpenCLIP's ViT-g-14, gigantic its bigG-14.
- siglip, siglip2: the image towers of Zhai et al. 2023 and Tschannen et al. 2025 (big_vision
  ``models/vit.py``, ``proj/image_text/two_towers.py``): no class token, tanh-GELU, and the MAP head
  (attention pooling) as the embedding; so400m is the shape-optimised 400M tower (Alabdulmohsin et al.
  2023), giantopt SigLIP 2's g. SigLIP 2 at fixed resolution has SigLIP's architecture.
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
# The image-tower sizes beyond the classic table (CLIP's bigG, SigLIP's shape-optimised towers).
TOWER_SIZES = {
    "gigantic": Size(hidden_size=1664, mlp_size=8192, num_heads=16, num_layers=48),
    "so400m": Size(hidden_size=1152, mlp_size=4304, num_heads=16, num_layers=27),
    "giantopt": Size(hidden_size=1536, mlp_size=6144, num_heads=16, num_layers=40),
}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

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
    found = {name: {**SIZES, **TOWER_SIZES}[name]._asdict() for name in names}
    found.update(changed)
    return found


_DEIT = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)
_DINOV2 = dict(image_size=224, position_grid=(37, 37), pooling="token-mean", mean=IMAGENET_MEAN,
               std=IMAGENET_STD)
_DINOV2_SIZES = _sizes("small", "base", "large",
                       giant=dict(hidden_size=1536, mlp_size=4096, num_heads=24, num_layers=40, mlp="swiglu"))

_CLIP_PROJECTIONS = dict(base=512, large=768, huge=1024, giant=1024, gigantic=1280)
_CLIP_SIZES = {name: dict(fields, projection_size=_CLIP_PROJECTIONS[name])
               for name, fields in _sizes(*_CLIP_PROJECTIONS).items()}
_SIGLIP = Family(_sizes("base", "large", "so400m", "giantopt"), (14, 16), dict(class_token=False, pooling="map"),
                 dict(gelu="tanh", layer_norm_epsilon=1e-6, num_classes=0))

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
    "clip": Family(_CLIP_SIZES, (14, 16, 32), dict(pre_norm=True, patch_bias=False),
                   dict(gelu="quick", layer_norm_epsilon=1e-5, mean=CLIP_MEAN, std=CLIP_STD, num_classes=0)),
    "siglip": _SIGLIP,
    "siglip2": _SIGLIP,
}

# Abbreviations used by Google (ViT-B_16), big_vision (B/16), the papers (ViT-Ti/16) and Meta (vits14).
SIZE_ABBREVIATIONS = {"ti": "tiny", "s": "small", "m": "medium", "b": "base", "l": "large", "h": "huge",
                      "g": "giant", "bigg": "gigantic", "gopt": "giantopt"}

VARIANTS = {f"{family}-{size}-{patch}": (family, size, patch)
            for family, spec in FAMILIES.items() for size in spec.sizes for patch in spec.patches}


def size_group(*families: str, only: Tuple[str, ...] = ()) -> str:
    """A regex group ``(?P<size>...)`` of the size names of ``families`` (of ``FAMILIES``), in table order,
    for anchored patterns; ``only``: a subset of them, each checked to be one. Patterns that name sizes
    take them from here, so a size is declared once, in the table.

    Example:
        >>> size_group("deit")
        '(?P<size>tiny|small|base)'
    """
    known = list(dict.fromkeys(size for family in families for size in FAMILIES[family].sizes))
    unknown = [size for size in only if size not in known]
    if unknown:
        raise ValueError(f"sizes {unknown} are not sizes of {', '.join(families)}; theirs: {', '.join(known)}")
    return f"(?P<size>{'|'.join(only or known)})"


_SIZE = size_group("vit", "deit", "deit3", "dinov2")  # the classic sizes, in ecosystem aliases
_TOWER_SIZE = size_group("clip", "siglip")  # CLIP and SigLIP towers
_TAG = r"(?:\.[a-z0-9_]+)?"  # a timm pretrained tag: vit_base_patch16_224.augreg_in21k
# (family, pattern): each pattern captures a size (long or abbreviated) and a patch size, and may capture an
# image size (returned: "vit_base_patch16_384" resolves to ("vit-base-16", 384)). Only exact spellings match:
# a timm architecture outside this list (vit_base_patch16_clip_224, ..._siglip_...) is not a classic ViT.
_ALIAS_PATTERNS = (
    (None, re.compile(rf"^(?P<family>{'|'.join(FAMILIES)})-(?P<size>[a-z0-9]+)-(?P<patch>\d+)$")),
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
    # CLIP: timm vit_base_patch16_clip_224[.openai], vit_large_patch14_clip_336, ..._clip_quickgelu_224;
    # Hugging Face openai/clip-vit-large-patch14-336, laion/CLIP-ViT-H-14-laion2B-s32B-b79K; OpenCLIP ViT-B-32,
    # ViT-L-14-336, ViT-H-14-quickgelu, ViT-bigG-14
    ("clip", re.compile(rf"^vit_{_TOWER_SIZE}_patch(?P<patch>\d+)_clip(?:_quickgelu)?_(?P<image>\d+){_TAG}$")),
    ("clip", re.compile(r"^(?:openai/)?clip-vit-(?P<size>base|large)-patch(?P<patch>\d+)(?:-(?P<image>\d+))?$")),
    ("clip", re.compile(r"^(?:laion/|[a-z0-9_-]+/)?clip-vit-(?P<size>b|l|h|g|bigg)-(?P<patch>\d+)(?:-[a-z0-9._-]+)?$")),
    ("clip", re.compile(r"^vit-(?P<size>b|l|h|g|bigg)-(?P<patch>\d+)(?:-(?P<image>\d{3}))?(?:-quickgelu)?$")),
    # SigLIP: timm vit_base_patch16_siglip_224[.webli | .v2_webli], vit_so400m_patch14_siglip_384; Hugging Face
    # google/siglip-so400m-patch14-384, google/siglip2-base-patch16-224; OpenCLIP ViT-SO400M-14-SigLIP-384
    ("siglip", re.compile(rf"^vit_{_TOWER_SIZE}_patch(?P<patch>\d+)_siglip_(?P<image>\d+){_TAG}$")),
    ("siglip", re.compile(rf"^(?:google/)?siglip-{_TOWER_SIZE}-patch(?P<patch>\d+)-(?P<image>\d+)$")),
    ("siglip2", re.compile(rf"^(?:google/)?siglip2-{_TOWER_SIZE}-patch(?P<patch>\d+)-(?P<image>\d+)$")),
    ("siglip", re.compile(r"^(?:timm/)?vit-(?P<size>b|l|so400m|gopt)-(?P<patch>\d+)-siglip-(?P<image>\d+)$")),
    ("siglip2", re.compile(r"^(?:timm/)?vit-(?P<size>b|l|so400m|gopt)-(?P<patch>\d+)-siglip2(?:-(?P<image>\d+))?$")),
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
    r"siglip.*_gap|siglip.*_navit|naflex": "SigLIP towers without the MAP head (global average pooling) or at "
                                           "native aspect ratio (NaFlex)",
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


def list_families() -> list[str]:
    """The family names, in table order, that ``list_models(family)`` takes: ``['vit', 'deit', ...]``."""
    return list(FAMILIES)


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
