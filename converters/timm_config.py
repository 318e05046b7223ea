"""timm's ``config.json`` beside a state dict (``save_config_for_hf``): what the tensors cannot show.

``architecture`` (→ the family, the head count, and whether vit_zoo reproduces its numerics), ``model_args``,
``global_pool``, ``pretrained_cfg`` (input size, mean/std, crop_pct, interpolation, crop_mode) and
``label_names`` / ``label_descriptions``. Without a config.json every reader here gives timm's defaults.
"""
from __future__ import annotations

import re

from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError
from vit_zoo.model import variants
from vit_zoo.model.identity import Preprocessing
from vit_zoo.model.recipes import INTERPOLATIONS

# timm architectures whose numerics vit_zoo reproduces exactly (timm's own model_args, read 2026):
# {pattern: (family of vit_zoo.model.variants.FAMILIES, heads or None for the family's size table)}.
# Other names may differ in ways the tensors do not show (vit_base_patch16_rpn_224 is post-norm,
# vit_base_patch32_siglip_gap_256 average-pools with tanh GELU), so they are refused rather than guessed.
# The size names come from the variants table (variants.size_group), where timm defines a subset, only=.
ARCHITECTURES = {
    rf"vit_{variants.size_group('vit')}_patch(?P<patch>\d+)_(?P<image>\d+)": ("vit", None),
    rf"vit_{variants.size_group('vit', only=('base', 'huge', 'giant'))}_patch(?P<patch>\d+)_gap_(?P<image>\d+)":
        ("vit", 16),  # num_heads=16
    rf"vit_{variants.size_group('vit', only=('base',))}_patch(?P<patch>16)_(?P<image>224)_miil": ("vit", None),
    # timm < 0.6 names of the in21k models (with pre_logits.fc when representation_size was set)
    rf"vit_{variants.size_group('vit', only=('tiny', 'small', 'base', 'large', 'huge'))}_patch(?P<patch>\d+)_"
    r"(?P<image>\d+)_in21k": ("vit", None),
    # timm deit.py: the classic architecture; the distilled ones add dist_token and head_dist
    rf"deit_{variants.size_group('deit')}_patch(?P<patch>16)_(?P<image>224|384)": ("deit", None),
    rf"deit_{variants.size_group('deit-distilled')}_distilled_patch(?P<patch>16)_(?P<image>224|384)":
        ("deit-distilled", None),
    # DeiT-III: LayerScale (init_values=1e-6), no_embed_class=True; medium has 8 heads
    rf"deit3_{variants.size_group('deit3')}_patch(?P<patch>14|16)_(?P<image>224|384)": ("deit3", None),
    # DINOv2: LayerScale (1e-5), patch 14, 518 px; giant: 24 heads and SwiGLUPacked
    rf"vit_{variants.size_group('dinov2')}_patch(?P<patch>14)_dinov2": ("dinov2", None),
    rf"vit_{variants.size_group('dinov2-reg4')}_patch(?P<patch>14)_reg4_dinov2": ("dinov2-reg4", None),
    # CLIP / OpenCLIP image towers: pre_norm=True (norm_pre; a patch embedding without bias), LayerNorm eps
    # 1e-5; exact GELU, QuickGELU only in the *_clip_quickgelu_* definitions (timm's *_clip_224.openai
    # weights run with exact GELU in timm, which is what their timm checkpoint computes)
    rf"vit_{variants.size_group('clip')}_patch(?P<patch>14|16|32)_clip(?:_quickgelu)?_(?P<image>\d+)": ("clip", None),
    # SigLIP / SigLIP 2 image towers: class_token=False, global_pool='map' (attn_pool, the MAP head)
    rf"vit_{variants.size_group('siglip')}_patch(?P<patch>14|16|32)_siglip_(?P<image>\d+)": ("siglip", None),
}
# The numerics timm's definitions set beyond its defaults (exact nn.GELU, LayerNorm eps 1e-6), by
# architecture (timm 1.0.31 vision_transformer.py): {pattern: {ViTConfig field: value}}, first match wins.
# timm gives only some SigLIP towers act_layer='gelu_tanh' (big_vision's GELU); the others run exact GELU.
NUMERICS = {
    r"vit_.*_clip_quickgelu_\d+": dict(gelu="quick", layer_norm_epsilon=1e-5),
    r"vit_.*_clip_\d+": dict(gelu="exact", layer_norm_epsilon=1e-5),
    r"vit_base_patch32_siglip_256|vit_large_patch16_siglip_512|vit_so400m_patch16_siglip_\d+"
    r"|vit_giantopt_patch16_siglip_\d+": dict(gelu="tanh"),
}
# model_args act_layer (timm's get_act_layer names) → our GELU flavour; other activations are refused.
ACT_LAYERS = {"gelu": "exact", "gelu_tanh": "tanh", "quick_gelu": "quick"}


def _readable(pattern: str) -> str:
    """An ``ARCHITECTURES`` pattern as the error message shows it: ``vit_{tiny,small}_patch{P}_{image}``."""
    text = re.sub(r"\(\?P<(\w+)>\\d\+\)", lambda m: "{P}" if m[1] == "patch" else "{%s}" % m[1], pattern)
    text = re.sub(r"\(\?P<\w+>([^)]*)\)", lambda m: "{%s}" % m[1].replace("|", ",") if "|" in m[1] else m[1], text)
    return re.sub(r"\(\?:([^)]*)\)\?", r"[\1]", text)


KNOWN_NAMES = ", ".join(_readable(pattern) for pattern in ARCHITECTURES)
# config.json model_args vit_zoo reads or that only change what the tensors show (their shapes and
# presence). Any other argument (act_layer, norm_layer, qk_norm, pos_embed, ...) may change numerics.
MODEL_ARGS = ("img_size", "in_chans", "num_classes", "global_pool", "patch_size", "depth", "embed_dim", "num_heads",
              "mlp_ratio", "qkv_bias", "init_values", "class_token", "reg_tokens", "no_embed_class", "fc_norm",
              "dynamic_img_size", "weight_init", "representation_size", "pre_norm", "act_layer")
# timm's _cfg default normalisation (IMAGENET_INCEPTION_MEAN / _STD), used without a config.json.
DEFAULT_MEAN = DEFAULT_STD = (0.5, 0.5, 0.5)


def read_config(checkpoint: Checkpoint) -> dict:
    """timm's config.json (``architecture``, ``global_pool``, ``pretrained_cfg``) or {}."""
    meta = checkpoint.metadata or {}
    return meta if "architecture" in meta or "pretrained_cfg" in meta else {}


def architecture(meta: dict, where: str):
    """(family, size, heads) for the config.json's architecture, or (None, None, None) without one.

    Raises:
        UnsupportedLayoutError naming the architecture (and the family it belongs to, where vit_zoo knows
        one it does not model) when vit_zoo does not reproduce its numerics, or naming model_args that
        may change them.
    """
    name = meta.get("architecture")
    if not name:
        return None, None, None
    base = name.split(".")[0]  # a pretrained tag may follow: vit_base_patch16_224.augreg_in21k
    for pattern, (family, heads) in ARCHITECTURES.items():
        match = re.fullmatch(pattern, base)
        if match:
            _check_model_args(meta, where)
            size = variants.FAMILIES[family].sizes[match["size"]]
            return family, match["size"], heads or size["num_heads"]
    unmodelled = [family for pattern, family in variants.UNMODELLED_FAMILIES.items() if re.search(pattern, base)]
    belongs = f", a model of the {unmodelled[0]} family," if unmodelled else ""
    raise UnsupportedLayoutError(
        f"{where}: config.json names timm architecture {name!r}{belongs} whose numerics vit_zoo does not "
        f"reproduce (known: {KNOWN_NAMES}). Other timm ViTs differ in ways the tensors do not show (post-norm, "
        f"GELU flavour, epsilon, rotary or relative positions)", f"timm {base}")


def numerics(meta: dict, where: str) -> dict:
    """``gelu`` and ``layer_norm_epsilon`` of the config.json's architecture (``NUMERICS``; timm's defaults
    otherwise), with model_args ``act_layer`` over them.

    Raises:
        UnsupportedLayoutError for an ``act_layer`` that is no GELU flavour vit_zoo computes.
    """
    base = (meta.get("architecture") or "").split(".")[0]
    found = dict(gelu="exact", layer_norm_epsilon=1e-6)
    found.update(next((values for pattern, values in NUMERICS.items() if re.fullmatch(pattern, base)), {}))
    act = (meta.get("model_args") or {}).get("act_layer")
    if act is not None:
        if act not in ACT_LAYERS:
            raise UnsupportedLayoutError(f"{where}: config.json model_args act_layer={act!r}; vit_zoo computes "
                                         f"{sorted(ACT_LAYERS)}", f"timm act_layer {act!r}")
        found["gelu"] = ACT_LAYERS[act]
    return found


def _check_model_args(meta: dict, where: str) -> None:
    args = meta.get("model_args") or {}
    unknown = sorted(key for key in args if key not in MODEL_ARGS and not key.endswith("_rate"))
    if unknown:
        raise UnsupportedLayoutError(f"{where}: config.json model_args set {unknown} for "
                                     f"{meta['architecture']!r}, which may change its numerics in ways the "
                                     f"tensors do not show; vit_zoo reads only {list(MODEL_ARGS)}",
                                     f"timm model_args {', '.join(unknown)}")


def num_heads(meta: dict, width: int, given, family: str, where: str) -> int:
    """The head count: config.json's (model_args.num_heads, else its architecture's), else ``given`` (the
    config asked for), else the width's size in the layout's ``family`` table (then in ``variants.SIZES``).

    Raises:
        CheckpointError when the config.json's width or heads disagree with the checkpoint or ``given``,
        the head count cannot be known, or does not divide the width.
    """
    named_family, size, heads = architecture(meta, where)
    args = meta.get("model_args") or {}
    heads = args.get("num_heads", heads)
    if size is not None:
        expected = args.get("embed_dim", variants.FAMILIES[named_family].sizes[size]["hidden_size"])
        if expected != width:
            raise CheckpointError(f"{where}: config.json names {meta['architecture']!r} (width {expected}) but "
                                  f"'patch_embed.proj.weight' has width {width}; the config.json belongs to "
                                  f"another model")
    if heads is None:
        heads = _heads_by_width(family).get(width)
    if given is not None:
        if heads is not None and int(given) != heads and meta:
            raise CheckpointError(f"{where}: num_heads={given} given, but its config.json says {heads}")
        heads = int(given)
    if heads is None:
        known = sorted(_heads_by_width(family))
        raise CheckpointError(f"{where}: width {width} is no named {family} size ({known}) and timm state dicts "
                              f"do not store the head count; put timm's config.json beside the file or "
                              f"give num_heads")
    if width % heads:
        raise CheckpointError(f"{where}: {heads} heads do not divide the width {width}")
    return heads


def _heads_by_width(family: str) -> dict:
    """width → heads of the family's published sizes, then of every named size (DeiT-III tiny: 3)."""
    found = {s.hidden_size: s.num_heads for s in variants.SIZES.values()}
    found.update({s["hidden_size"]: s["num_heads"] for s in variants.FAMILIES[family].sizes.values()})
    return found


def family_normalisation(family: str):
    """The mean/std a family's weights were trained with where no config.json says (timm's default for
    a classic ViT: 0.5)."""
    defaults = variants.FAMILIES[family].defaults
    return tuple(defaults.get("mean", DEFAULT_MEAN)), tuple(defaults.get("std", DEFAULT_STD))


def normalisation(meta: dict, where: str, default=(DEFAULT_MEAN, DEFAULT_STD)):
    """(mean, std) from config.json's pretrained_cfg, else ``default``."""
    cfg = meta.get("pretrained_cfg") or {}
    mean, std = cfg.get("mean", default[0]), cfg.get("std", default[1])
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
    if interpolation not in INTERPOLATIONS:
        raise CheckpointError(f"{where}: config.json pretrained_cfg interpolation={interpolation!r}; "
                              f"vit_zoo resizes with {' or '.join(map(repr, INTERPOLATIONS))}")
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


