"""timm's ``config.json`` beside a state dict (``save_config_for_hf``): what the tensors cannot show.

``architecture`` (→ the head count, and whether vit_zoo reproduces its numerics), ``model_args``,
``global_pool``, ``pretrained_cfg`` (input size, mean/std, crop_pct, interpolation, crop_mode) and
``label_names`` / ``label_descriptions``. Without a config.json every reader here gives timm's defaults.
"""
from __future__ import annotations

import re

from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError
from vit_zoo.model import variants
from vit_zoo.model.identity import Preprocessing

# timm architectures whose numerics vit_zoo reproduces exactly (timm's own model_args, read 2026):
# {pattern: heads (None: the size's heads in variants.SIZES)}. Other names may differ in ways the
# tensors do not show (vit_base_patch16_rpn_224 is post-norm, *_clip_* use eps 1e-5 and QuickGELU,
# vit_base_patch32_siglip_gap_256 tanh GELU), so they are refused rather than guessed.
ARCHITECTURES = {
    r"vit_(?P<size>tiny|small|base|large|huge|giant)_patch(?P<patch>\d+)_(?P<image>\d+)": None,
    r"vit_(?P<size>base|huge|giant)_patch(?P<patch>\d+)_gap_(?P<image>\d+)": 16,  # num_heads=16 in timm
    r"vit_(?P<size>base)_patch(?P<patch>16)_(?P<image>224)_miil": None,
    # timm < 0.6 names of the in21k models (with pre_logits.fc when representation_size was set)
    r"vit_(?P<size>tiny|small|base|large|huge)_patch(?P<patch>\d+)_(?P<image>\d+)_in21k": None,
}
# timm's _cfg default normalisation (IMAGENET_INCEPTION_MEAN / _STD), used without a config.json.
DEFAULT_MEAN = DEFAULT_STD = (0.5, 0.5, 0.5)


def read_config(checkpoint: Checkpoint) -> dict:
    """timm's config.json (``architecture``, ``global_pool``, ``pretrained_cfg``) or {}."""
    meta = checkpoint.metadata or {}
    return meta if "architecture" in meta or "pretrained_cfg" in meta else {}


def architecture(meta: dict, where: str):
    """(size, heads) for the config.json's architecture, or (None, None) without one."""
    name = meta.get("architecture")
    if not name:
        return None, None
    base = name.split(".")[0]  # a pretrained tag may follow: vit_base_patch16_224.augreg_in21k
    for pattern, heads in ARCHITECTURES.items():
        match = re.fullmatch(pattern, base)
        if match:
            return match["size"], heads or variants.SIZES[match["size"]].num_heads
    raise UnsupportedLayoutError(
        f"{where}: config.json names timm architecture {name!r}, whose numerics vit_zoo does not reproduce "
        f"(known: vit_{{tiny,small,base,large,huge,giant}}_patch{{P}}_{{image}}[_in21k], "
        f"vit_{{base,huge,giant}}_patch{{P}}_gap_{{image}}, vit_base_patch16_224_miil). Other timm ViTs differ "
        f"in ways the tensors do not show (post-norm, GELU flavour, epsilon)", f"timm {base}")


def num_heads(meta: dict, width: int, given, where: str) -> int:
    size, heads = architecture(meta, where)
    args = meta.get("model_args") or {}
    heads = args.get("num_heads", heads)
    if size is not None and variants.SIZES[size].hidden_size != width:
        raise CheckpointError(f"{where}: config.json names {meta['architecture']!r} (width "
                              f"{variants.SIZES[size].hidden_size}) but 'patch_embed.proj.weight' has width "
                              f"{width}; the config.json belongs to another model")
    if heads is None:
        by_width = {s.hidden_size: s.num_heads for s in variants.SIZES.values()}
        heads = by_width.get(width)
    if given is not None:
        if heads is not None and int(given) != heads and meta:
            raise CheckpointError(f"{where}: num_heads={given} given, but its config.json says {heads}")
        heads = int(given)
    if heads is None:
        known = sorted(s.hidden_size for s in variants.SIZES.values())
        raise CheckpointError(f"{where}: width {width} is no named size ({known}) and timm state dicts "
                              f"do not store the head count; put timm's config.json beside the file or "
                              f"give num_heads")
    if width % heads:
        raise CheckpointError(f"{where}: {heads} heads do not divide the width {width}")
    return heads


def normalisation(meta: dict, where: str):
    cfg = meta.get("pretrained_cfg") or {}
    mean, std = cfg.get("mean", DEFAULT_MEAN), cfg.get("std", DEFAULT_STD)
    if len(mean) != 3 or len(std) != 3:
        raise CheckpointError(f"{where}: config.json pretrained_cfg mean/std {mean}/{std} are not RGB "
                              f"triples")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def preprocessing(meta: dict, default: Preprocessing, where: str) -> Preprocessing:
    """timm's evaluation transform from ``pretrained_cfg`` (centre crop of ``crop_pct``, ``interpolation``);
    ``default`` for what it does not say."""
    cfg = meta.get("pretrained_cfg") or {}
    mode = cfg.get("crop_mode", "center")
    if mode != "center":
        raise CheckpointError(f"{where}: config.json pretrained_cfg crop_mode={mode!r}; vit_zoo reproduces "
                              f"timm's 'center' crop only")
    interpolation = cfg.get("interpolation", default.interpolation)
    if interpolation not in ("bilinear", "bicubic"):
        raise CheckpointError(f"{where}: config.json pretrained_cfg interpolation={interpolation!r}; "
                              f"vit_zoo resizes with 'bilinear' or 'bicubic'")
    return Preprocessing("timm", float(cfg.get("crop_pct", default.crop_pct)), interpolation)


def label_names(meta: dict, num_classes: int, where: str):
    """config.json ``label_names`` (a list, or {index: name}) in class order, each shown through
    ``label_descriptions`` where it has one (ImageNet synsets → their WordNet lemmas); None without."""
    names = meta.get("label_names")
    if not names:
        return None
    if isinstance(names, dict):
        names = [names[key] for key in sorted(names, key=int)]
    if len(names) != num_classes:
        raise CheckpointError(f"{where}: config.json lists {len(names)} label_names for a head of "
                              f"{num_classes} classes")
    descriptions = meta.get("label_descriptions") or {}
    return tuple(str(descriptions.get(name, name)) for name in names)


