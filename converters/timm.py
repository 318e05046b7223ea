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

from vit_zoo.converters import targets, timm_config, transforms as T
from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError
from vit_zoo.model.identity import source_preprocessing

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

BLOCK = "blocks.{i}."
# slot (less its parameter) → timm module; the fused qkv Linear is split into query, key, value below.
MODULES = {
    "patch_embed": "patch_embed.proj", "class_token": "cls_token", "pos_embed": "pos_embed",
    "norm1": BLOCK + "norm1", "attn.out": BLOCK + "attn.proj", "norm2": BLOCK + "norm2",
    "mlp.fc1": BLOCK + "mlp.fc1", "mlp.fc2": BLOCK + "mlp.fc2",
    "encoder_norm": "norm", "fc_norm": "fc_norm", "pre_logits": "pre_logits.fc", "head": "head",
}


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
        raise UnsupportedLayoutError(f"{where} uses timm features vit_zoo does not model, so converting it "
                                     f"would drop or misplace weights: {listed}. vit_zoo converts plain ViTs "
                                     f"(timm vit_{{size}}_patch{{P}}_{{image}}); use such a checkpoint",
                                     "timm " + ", ".join(unsupported))
    width, channels, patch_h, patch_w = checkpoint.required_shape("patch_embed.proj.weight", 4, "timm")
    if patch_h != patch_w or channels != 3:
        raise CheckpointError(f"{where}: 'patch_embed.proj.weight' is {(width, channels, patch_h, patch_w)};"
                              f" expected square patches over RGB, (D, 3, P, P)")
    for key, what in (("patch_embed.proj.bias", "a patch embedding without bias (pre_norm models)"),
                      ("pos_embed", "no learned position embedding (pos_embed='none')")):
        if key not in checkpoint:
            raise UnsupportedLayoutError(f"{where} has no {key!r}: {what}, which vit_zoo does not model",
                                         f"timm {what}")
    depth = checkpoint.block_count(r"blocks\.(\d+)\.norm1\.weight", where)
    mlp = checkpoint.required_shape("blocks.0.mlp.fc1.weight", 2, "timm")[0]
    meta = timm_config.read_config(checkpoint)
    class_token = "cls_token" in checkpoint
    prefix = int(class_token)
    tokens = checkpoint.required_shape("pos_embed", 3, "timm")[1]
    grid = _grid(tokens - prefix, meta, patch_h)
    if grid is None and class_token and _grid(tokens, meta, patch_h):
        raise UnsupportedLayoutError(f"{where}: 'pos_embed' holds {tokens} tokens, a grid without an entry for "
                                     f"the class token (timm no_embed_class=True), which vit_zoo does not model",
                                     "timm no_embed_class=True")
    if grid is None:
        raise CheckpointError(f"{where}: 'pos_embed' holds {tokens} tokens, which is not "
                              f"{'1 + ' if class_token else ''}a square grid, and no timm config.json "
                              f"beside the file gives pretrained_cfg.input_size")
    fields = dict(
        image_size=grid[0] * patch_h if grid[0] == grid[1] else (grid[0] * patch_h, grid[1] * patch_h),
        patch_size=patch_h, hidden_size=width, mlp_size=mlp, num_layers=depth,
        num_heads=timm_config.num_heads(meta, width, hint.num_heads if hint else None, where),
        class_token=class_token, pooling=_pooling(checkpoint, meta, class_token, where),
        representation_size=(checkpoint.required_shape("pre_logits.fc.weight", 2, "timm")[0]
                             if "pre_logits.fc.weight" in checkpoint else None),
        gelu="exact", layer_norm_epsilon=1e-6,
        qkv_bias="blocks.0.attn.qkv.bias" in checkpoint,
        num_classes=(checkpoint.required_shape("head.weight", 2, "timm")[0] if "head.weight" in checkpoint
                     else None),
        position_embedding_resampling="bicubic",  # timm resamples with bicubic interpolation
    )
    mean, std = timm_config.normalisation(meta, where)
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
    meta = timm_config.read_config(checkpoint)
    default = source_preprocessing(NAME, config.image_size)
    if not meta:
        return {"preprocessing": default,
                "assumed": {"preprocessing": f"timm centre crop {default.crop_pct}, {default.interpolation}"}}
    where = f"timm checkpoint {checkpoint.path.name!r}"
    names = timm_config.label_names(meta, config.num_classes, where)
    return {"preprocessing": timm_config.preprocessing(meta, default, where),
            **({"labels": names} if names is not None else {})}


def mapping(config, checkpoint: Checkpoint = None) -> list:
    """Rows ``our variable ← timm key, transform`` for the whole model."""
    kinds = T.pytorch_kinds(config.num_heads)
    table = targets.table(MODULES, kinds, lambda module, param: module + (f".{param}" if param else ""))
    split_kernel, split_bias = kinds["heads_in_kernel"][1], kinds["heads_bias"][1]
    for index, part in enumerate(("query", "key", "value")):  # rows q, k, v of the fused (3D, D) Linear
        table[f"attn.{part}.kernel"] = (BLOCK + "attn.qkv.weight", T.fused_qkv_part(index, split_kernel))
        table[f"attn.{part}.bias"] = (BLOCK + "attn.qkv.bias", T.fused_qkv_part(index, split_bias))
    return targets.rows(config, table, "timm")


def _pooling(checkpoint: Checkpoint, meta: dict, class_token: bool, where: str) -> str:
    """Our pooling from the final norms present and timm's ``global_pool``."""
    has_norm, has_fc_norm = "norm.weight" in checkpoint, "fc_norm.weight" in checkpoint
    pool = meta.get("global_pool")
    if pool not in (None, "", "token", "avg"):
        raise UnsupportedLayoutError(f"{where}: config.json global_pool={pool!r}; vit_zoo models 'token' and "
                                     f"'avg'", f"timm global_pool={pool!r}")
    if has_norm == has_fc_norm:
        raise CheckpointError(f"{where} has {'both' if has_norm else 'neither'} 'norm.weight' "
                              f"{'and' if has_norm else 'nor'} 'fc_norm.weight'; vit_zoo models a final norm "
                              f"either before pooling ('norm') or after it ('fc_norm', global_pool='avg')")
    if has_fc_norm:
        if pool == "token":
            raise UnsupportedLayoutError(f"{where}: fc_norm with global_pool='token' (norm after the class "
                                         f"token) is not modelled; vit_zoo's fc_norm follows average pooling",
                                         "timm fc_norm with global_pool='token'")
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
