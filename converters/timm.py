"""timm ``vit_*`` state dicts (``model.safetensors``), as ``timm/models/vision_transformer.py`` names them.

Layout (PyTorch shapes: Linear weights are (out, in)):
    patch_embed.proj.{weight (D, 3, P, P), bias}
    cls_token (1, 1, D)                          absent for class_token=False models
    pos_embed (1, T, D)                          T = prefix tokens + h*w
    blocks.{i}.norm1.{weight, bias}
    blocks.{i}.attn.qkv.{weight (3D, D), bias}   fused; rows ordered q, k, v, heads contiguous
    blocks.{i}.attn.proj.{weight (D, D), bias}
    blocks.{i}.norm2, blocks.{i}.mlp.fc1 (M, D), blocks.{i}.mlp.fc2 (D, M)
    norm.{weight, bias}                          final norm (token and "avg, fc_norm=False" models)
    fc_norm.{weight, bias}                       norm after pooling (global_pool="avg" models; no `norm`)
    pre_logits.fc.{weight (R, D), bias}          timm < 0.6 in21k models only: Linear + Tanh after pooling
    head.{weight (C, D), bias}                   absent for num_classes=0

Numerics: ``nn.GELU`` (exact, erf), timm ``LayerNorm`` epsilon 1e-6. The state dict does not hold the
head count, the pooling of class-token models, or the normalisation: they come from timm's
``config.json`` beside the file (``architecture``, ``global_pool``, ``pretrained_cfg``) when present, else
from the width via ``vit_zoo.model.variants.SIZES`` and timm's defaults (class-token pooling, mean = std = 0.5).
Tensors of timm features that vit_zoo does not model are refused by name, never dropped.
"""
from __future__ import annotations

import math
import re

from vit_zoo.model import variants
from vit_zoo.converters import transforms as T
from vit_zoo.converters.apply import row
from vit_zoo.converters.checkpoint import Checkpoint, CheckpointError
from vit_zoo.model.identity import Preprocessing, source_preprocessing

NAME = "timm"
TELLTALE = "'patch_embed.proj.weight' with 'blocks.0.attn.qkv.weight' (timm state dict)"
IGNORED: dict = {}  # every tensor of a supported timm ViT is used

# Tensors of timm VisionTransformer features vit_zoo does not model: {key regex: the timm feature}.
UNSUPPORTED = {
    r"reg_token": "register tokens (reg_tokens > 0)",
    r"blocks\.\d+\.ls[12]\.gamma": "LayerScale (init_values)",
    r"blocks\.\d+\.attn\.[qk]_norm\..*": "qk-norm (qk_norm=True)",
    r"blocks\.\d+\.attn\.norm\..*": "attention output norm (scale_attn_norm=True)",
    r"blocks\.\d+\.mlp\.norm\..*": "MLP inner norm (scale_mlp_norm=True)",
    r"blocks\.\d+\.mlp\.fc1_[gx]\..*|blocks\.\d+\.mlp\.fc1\.weight_g": "gated MLP (SwiGLU)",
    r"blocks\.\d+\.(attns|ffns|in_proj|in_norm)\..*": "parallel blocks (ParallelThingsBlock / "
                                                       "ParallelScalingBlock)",
    r"norm_pre\..*": "norm after the embeddings (pre_norm=True, CLIP towers)",
    r"patch_embed\.norm\..*": "patch-embedding norm (embed_norm_layer)",
    r"attn_pool\..*": "attention-pooling head (global_pool='map' or 'prr')",
    r"head_drop\..*": "head_drop (a Dropout in timm, which holds no tensors: a modified head)",
}

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


def detect(checkpoint: Checkpoint) -> bool:
    return "patch_embed.proj.weight" in checkpoint and any(k.startswith("blocks.0.")
                                                           for k in checkpoint.keys())


def unsupported_tensors(checkpoint: Checkpoint) -> dict:
    """``{timm feature: [tensor names]}`` for tensors of features vit_zoo does not model."""
    found = {}
    for key in checkpoint.keys():
        for pattern, feature in UNSUPPORTED.items():
            if re.fullmatch(pattern, key):
                found.setdefault(feature, []).append(key)
    return found


def config_fields(checkpoint: Checkpoint, hint=None) -> dict:
    """ViTConfig fields from the tensor shapes and timm's ``config.json`` (``checkpoint.metadata``).
    Without a config.json the head count comes from ``hint`` (the config asked for) or the width's named
    size, the pooling of class-token models is taken as "token" and mean/std as timm's default 0.5: each
    listed under ``"assumed"``.

    Args:
        hint: the ViTConfig asked for (``name=`` / ``config=``) or None; its head count settles a
            checkpoint whose width is no named size and that has no timm config.json, and must agree
            with the config.json otherwise.
    Raises:
        CheckpointError naming unsupported tensors (and their timm feature), an architecture whose
        numerics are not reproduced, or a head count that cannot be known.
    """
    where = f"timm checkpoint {checkpoint.path.name!r}"
    unsupported = unsupported_tensors(checkpoint)
    if unsupported:
        listed = "; ".join(f"{feature}: {', '.join(keys[:4])}{' …' if len(keys) > 4 else ''} "
                           f"({len(keys)} tensors)" for feature, keys in unsupported.items())
        raise CheckpointError(f"{where} uses timm features vit_zoo does not model, so converting it would "
                              f"drop or misplace weights: {listed}. vit_zoo converts plain ViTs (timm "
                              f"vit_{{size}}_patch{{P}}_{{image}}); use such a checkpoint")
    width, channels, patch_h, patch_w = checkpoint.required_shape("patch_embed.proj.weight", 4, "timm")
    if patch_h != patch_w or channels != 3:
        raise CheckpointError(f"{where}: 'patch_embed.proj.weight' is {(width, channels, patch_h, patch_w)};"
                              f" expected square patches over RGB, (D, 3, P, P)")
    for key, what in (("patch_embed.proj.bias", "a patch embedding without bias (pre_norm models)"),
                      ("pos_embed", "no learned position embedding (pos_embed='none')")):
        if key not in checkpoint:
            raise CheckpointError(f"{where} has no {key!r}: {what}, which vit_zoo does not model")
    depth = checkpoint.block_count(r"blocks\.(\d+)\.norm1\.weight", where)
    mlp = checkpoint.required_shape("blocks.0.mlp.fc1.weight", 2, "timm")[0]
    meta = _timm_config(checkpoint)
    class_token = "cls_token" in checkpoint
    prefix = int(class_token)
    tokens = checkpoint.required_shape("pos_embed", 3, "timm")[1]
    grid = _grid(tokens - prefix, meta, patch_h)
    if grid is None and class_token and _grid(tokens, meta, patch_h):
        raise CheckpointError(f"{where}: 'pos_embed' holds {tokens} tokens, a grid without an entry for the "
                              f"class token (timm no_embed_class=True), which vit_zoo does not model")
    if grid is None:
        raise CheckpointError(f"{where}: 'pos_embed' holds {tokens} tokens, which is not "
                              f"{'1 + ' if class_token else ''}a square grid, and no timm config.json "
                              f"beside the file gives pretrained_cfg.input_size")
    fields = dict(
        image_size=grid[0] * patch_h if grid[0] == grid[1] else (grid[0] * patch_h, grid[1] * patch_h),
        patch_size=patch_h, hidden_size=width,
        mlp_size=mlp, num_heads=_heads(meta, width, hint.num_heads if hint else None, where), num_layers=depth,
        class_token=class_token, pooling=_pooling(checkpoint, meta, class_token, where),
        representation_size=(checkpoint.required_shape("pre_logits.fc.weight", 2, "timm")[0]
                             if "pre_logits.fc.weight" in checkpoint else None),
        gelu="exact", layer_norm_epsilon=1e-6,
        qkv_bias="blocks.0.attn.qkv.bias" in checkpoint,
        num_classes=(checkpoint.required_shape("head.weight", 2, "timm")[0] if "head.weight" in checkpoint
                     else None),
        position_embedding_resampling="bicubic",  # timm resamples with bicubic interpolation
    )
    mean, std = _normalisation(meta, where)
    fields.update(mean=mean, std=std)
    if not meta:
        fields["assumed"] = {"mean": mean, "std": std}
        if hint is None:
            fields["assumed"]["num_heads"] = fields["num_heads"]
        if class_token and fields["pooling"] == "token":
            fields["assumed"]["pooling"] = "token"
    if fields["num_classes"] is not None and meta.get("num_classes") not in (None, fields["num_classes"]):
        raise CheckpointError(f"{where}: config.json says num_classes={meta['num_classes']} but "
                              f"'head.weight' has {fields['num_classes']} rows; the config.json belongs to "
                              f"another model")
    return fields


def identity_fields(checkpoint: Checkpoint, config) -> dict:
    """timm's evaluation transform (``pretrained_cfg`` crop_pct, interpolation) and class names
    (``label_names``, shown through ``label_descriptions`` where given) from config.json; without one,
    timm's ViT defaults, assumed."""
    meta = _timm_config(checkpoint)
    default = source_preprocessing(NAME, config.image_size)
    cfg = meta.get("pretrained_cfg") or {}
    if not meta:
        return {"preprocessing": default,
                "assumed": {"preprocessing": f"timm centre crop {default.crop_pct}, {default.interpolation}"}}
    where = f"timm checkpoint {checkpoint.path.name!r}"
    mode = cfg.get("crop_mode", "center")
    if mode != "center":
        raise CheckpointError(f"{where}: config.json pretrained_cfg crop_mode={mode!r}; vit_zoo reproduces "
                              f"timm's 'center' crop only")
    interpolation = cfg.get("interpolation", default.interpolation)
    if interpolation not in ("bilinear", "bicubic"):
        raise CheckpointError(f"{where}: config.json pretrained_cfg interpolation={interpolation!r}; "
                              f"vit_zoo resizes with 'bilinear' or 'bicubic'")
    preprocessing = Preprocessing("timm", float(cfg.get("crop_pct", default.crop_pct)), interpolation)
    names = _label_names(meta, config.num_classes, where)
    return {"preprocessing": preprocessing, **({"labels": names} if names is not None else {})}


def _label_names(meta: dict, num_classes: int, where: str):
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


def mapping(config, checkpoint: Checkpoint = None) -> list:
    """Rows ``our variable ← timm key, transform`` for the whole model."""
    heads = config.num_heads
    rows = [row("patch_embed/kernel", "patch_embed.proj.weight", transform=T.conv_to_keras),
            row("patch_embed/bias", "patch_embed.proj.bias"),
            row("pos_embed/embeddings", "pos_embed")]
    if config.class_token:
        rows.append(row("class_token/token", "cls_token"))
    for i in range(config.num_layers):
        src, dst = f"blocks.{i}.", f"block_{i:02d}_"
        rows += _layer_norm(dst + "norm1", src + "norm1")
        for index, part in enumerate(("query", "key", "value")):
            rows.append(row(f"{dst}attn/{part}_kernel", src + "attn.qkv.weight",
                            transform=T.fused_qkv_part(index, T.split_heads_in(heads))))
            if config.qkv_bias:
                rows.append(row(f"{dst}attn/{part}_bias", src + "attn.qkv.bias",
                                transform=T.fused_qkv_part(index, T.split_heads_bias(heads))))
        rows += [row(f"{dst}attn/output_kernel", src + "attn.proj.weight",
                     transform=T.merge_heads_out(heads)),
                 row(f"{dst}attn/output_bias", src + "attn.proj.bias")]
        rows += _layer_norm(dst + "norm2", src + "norm2")
        rows += _linear(dst + "mlp_fc1", src + "mlp.fc1") + _linear(dst + "mlp_fc2", src + "mlp.fc2")
    if config.pooling == "avg-fcnorm":
        rows += _layer_norm("fc_norm", "fc_norm")
    else:
        rows += _layer_norm("encoder_norm", "norm")
    if config.representation_size:
        rows += _linear("pre_logits", "pre_logits.fc")
    return rows + _linear("head", "head")


def _layer_norm(target, source):
    return [row(f"{target}/gamma", f"{source}.weight"), row(f"{target}/beta", f"{source}.bias")]


def _linear(target, source):
    return [row(f"{target}/kernel", f"{source}.weight", transform=T.transpose),
            row(f"{target}/bias", f"{source}.bias")]


def _timm_config(checkpoint: Checkpoint) -> dict:
    """timm's config.json (``architecture``, ``global_pool``, ``pretrained_cfg``) or {}."""
    meta = checkpoint.metadata or {}
    return meta if "architecture" in meta or "pretrained_cfg" in meta else {}


def _architecture(meta: dict, where: str):
    """(size, heads) for the config.json's architecture, or (None, None) without one."""
    name = meta.get("architecture")
    if not name:
        return None, None
    base = name.split(".")[0]  # a pretrained tag may follow: vit_base_patch16_224.augreg_in21k
    for pattern, heads in ARCHITECTURES.items():
        match = re.fullmatch(pattern, base)
        if match:
            return match["size"], heads or variants.SIZES[match["size"]].num_heads
    raise CheckpointError(f"{where}: config.json names timm architecture {name!r}, whose numerics vit_zoo "
                          f"does not reproduce (known: vit_{{tiny,small,base,large,huge,giant}}_patch{{P}}_"
                          f"{{image}}[_in21k], vit_{{base,huge,giant}}_patch{{P}}_gap_{{image}}, "
                          f"vit_base_patch16_224_miil). Other timm ViTs differ in ways the tensors do not "
                          f"show (post-norm, GELU flavour, epsilon)")


def _heads(meta: dict, width: int, given, where: str) -> int:
    size, heads = _architecture(meta, where)
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


def _pooling(checkpoint: Checkpoint, meta: dict, class_token: bool, where: str) -> str:
    """Our pooling from the final norms present and timm's ``global_pool``."""
    has_norm, has_fc_norm = "norm.weight" in checkpoint, "fc_norm.weight" in checkpoint
    pool = meta.get("global_pool")
    if pool not in (None, "", "token", "avg"):
        raise CheckpointError(f"{where}: config.json global_pool={pool!r}; vit_zoo models 'token' and 'avg'")
    if has_norm == has_fc_norm:
        raise CheckpointError(f"{where} has {'both' if has_norm else 'neither'} 'norm.weight' "
                              f"{'and' if has_norm else 'nor'} 'fc_norm.weight'; vit_zoo models a final norm "
                              f"either before pooling ('norm') or after it ('fc_norm', global_pool='avg')")
    if has_fc_norm:
        if pool == "token":
            raise CheckpointError(f"{where}: fc_norm with global_pool='token' (norm after the class token) "
                                  f"is not modelled; vit_zoo's fc_norm follows average pooling")
        return "avg-fcnorm"
    if not class_token:
        if pool == "token":
            raise CheckpointError(f"{where}: global_pool='token' but the checkpoint has no 'cls_token'")
        return "gap"
    return "gap" if pool == "avg" else "token"


def _grid(patches: int, meta: dict, patch: int):
    """The (rows, columns) patch grid for ``patches`` tokens: from pretrained_cfg.input_size, else square."""
    size = (meta.get("pretrained_cfg") or {}).get("input_size")
    if size and len(size) == 3:
        grid = (int(size[1]) // patch, int(size[2]) // patch)
        if grid[0] * grid[1] == patches:
            return grid
    side = math.isqrt(max(patches, 0))
    return (side, side) if side and side * side == patches else None


def _normalisation(meta: dict, where: str):
    cfg = meta.get("pretrained_cfg") or {}
    mean, std = cfg.get("mean", DEFAULT_MEAN), cfg.get("std", DEFAULT_STD)
    if len(mean) != 3 or len(std) != 3:
        raise CheckpointError(f"{where}: config.json pretrained_cfg mean/std {mean}/{std} are not RGB "
                              f"triples")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
