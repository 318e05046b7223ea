"""timm ViT state dicts (``model.safetensors``, or a ``.pth`` / ``.bin``), as ``timm/models/vision_transformer.py``
and ``deit.py`` name them: classic ViTs, DeiT (distilled too), DeiT-III, DINOv2 (with registers, and
giant's packed SwiGLU), the CLIP and SigLIP image towers (``converters.timm_tower``: norm_pre, the MAP head,
the projection); and the original DeiT / DeiT-III releases (``{"model": state_dict}`` ``.pth`` files
with timm's keys; DeiT-III's LayerScale named ``gamma_1`` / ``gamma_2``).

Layout (PyTorch shapes: Linear weights are (out, in)):
    patch_embed.proj.{weight (D, 3, P, P), bias}
    cls_token (1, 1, D)                          absent for class_token=False models
    dist_token (1, 1, D)                         DeiT distilled models
    reg_token (1, R, D)                          register models (DINOv2 reg4)
    pos_embed (1, E + h*w, D)                    E: class (+ distillation) rows, or 0 (no_embed_class)
    blocks.{i}.norm1.{weight, bias}
    blocks.{i}.attn.qkv.{weight (3D, D), bias}   fused; rows ordered q, k, v, heads contiguous
    blocks.{i}.attn.proj.{weight (D, D), bias}
    blocks.{i}.ls1.gamma (D,)                    LayerScale (DeiT-III, DINOv2); original DeiT-III: gamma_1
    blocks.{i}.norm2, blocks.{i}.mlp.fc1 (M, D) -- (2M, D) for SwiGLUPacked --, blocks.{i}.mlp.fc2 (D, M)
    blocks.{i}.ls2.gamma (D,)                    original DeiT-III: gamma_2
    norm_pre, attn_pool.*                        CLIP / SigLIP towers: see ``converters.timm_tower``
    norm.{weight, bias}                          final norm (token and "avg, fc_norm=False" models)
    fc_norm.{weight, bias}                       norm after pooling (global_pool="avg" models; no `norm`)
    pre_logits.fc.{weight (R, D), bias}          timm < 0.6 in21k models only: Linear + Tanh after pooling
    head.{weight (C, D), bias}                   absent for num_classes=0
    head_dist.{weight (C, D), bias}              DeiT distilled: averaged with head at inference

Numerics: ``nn.GELU`` (exact, erf), timm ``LayerNorm`` epsilon 1e-6 (the towers': by architecture,
``timm_config.NUMERICS``), SiLU gate of SwiGLUPacked on fc1's first
half; position embeddings resampled as timm does at load time and with dynamic_img_size
(``resample_abs_pos_embed``: bicubic, antialias=True). DINOv2 keeps its stored grid (518 px) and resamples
it to the input in the graph. The state dict does not hold the head count, the pooling of class-token
models, or the normalisation: they come from timm's ``config.json`` beside the file (``architecture``,
``model_args``, ``global_pool``, ``pretrained_cfg``) when present, else from the width via the family's table
(``vit_zoo.model.variants.FAMILIES``) and the family's defaults, assumed. Tensors of timm features that
vit_zoo does not model are refused by name, never dropped.
"""
from __future__ import annotations

import re

from vit_zoo.converters import targets, timm_config, timm_layout, timm_tower, transforms as T
from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError
from vit_zoo.model import checkpoint_formats as formats
from vit_zoo.model import variants
from vit_zoo.model.identity import Provenance, source_preprocessing

NAME = formats.TIMM
TELLTALE = "'patch_embed.proj.weight' with 'blocks.0.attn.qkv.weight' (timm state dict)"
IGNORED = dict(timm_tower.ZERO_BIAS)  # every other tensor of a supported timm ViT is used
# Keys of Meta's DINOv2 hub files (timm-like otherwise), which their own format reads.
META_DINOV2_KEYS = ("mask_token", "register_tokens")

# Tensors of timm features vit_zoo does not model: {key regex: the feature and the family it belongs to}.
UNSUPPORTED = {
    r"blocks\.\d+\.attn\.[qk]_norm\..*": "qk-norm (qk_norm=True)",
    r"blocks\.\d+\.attn\.norm\..*": "attention output norm (scale_attn_norm=True)",
    r"blocks\.\d+\.mlp\.norm\..*": "MLP inner norm (scale_mlp_norm=True; EVA-02's sub-LN)",
    r"blocks\.\d+\.mlp\.fc1_[gx]\..*|blocks\.\d+\.mlp\.fc1\.weight_g": "split gated MLP (timm SwiGLU fc1_g / fc1_x: "
                                                                    "EVA-02, AIMv2)",
    r"blocks\.\d+\.attn\.[qv]_bias": "EVA / BEiT attention (q_bias, v_bias: timm eva.py, beit.py; EVA-02's "
                                    "rotary position embeddings hold no tensor)",
    r"blocks\.\d+\.attn\.[qkv]_proj\..*": "EVA attention with separate q/k/v projections (timm eva.py)",
    r"blocks\.\d+\.attn\.relative_position_(bias_table|index)|rel_pos_bias\..*": "BEiT relative position bias",
    r"blocks\.\d+\.(attns|ffns|in_proj|in_norm)\..*": "parallel blocks (ParallelThingsBlock / "
                                                       "ParallelScalingBlock)",
    r"blocks\.\d+\.(attn1|mlp1|norm11|norm21)\..*|blocks\.\d+\.gamma_[12]_1": "parallel blocks (DeiT-III "
                                                                                  "models_v2 paralx2)",
    r"patch_embed\.norm\..*": "patch-embedding norm (embed_norm_layer)",
    r"head_drop\..*": "head_drop (a Dropout in timm, which holds no tensors: a modified head)",
}

BLOCK = "blocks.{i}."
# slot (less its parameter) → timm module; the fused qkv Linear is split into query, key, value below.
MODULES = {
    "patch_embed": "patch_embed.proj", "class_token": "cls_token", "distillation_token": "dist_token",
    "pos_embed": "pos_embed", "register_tokens": "reg_token",
    "norm1": BLOCK + "norm1", "attn.out": BLOCK + "attn.proj", "norm2": BLOCK + "norm2",
    "mlp.fc1": BLOCK + "mlp.fc1", "mlp.fc2": BLOCK + "mlp.fc2",
    "encoder_norm": "norm", "fc_norm": "fc_norm", "pre_logits": "pre_logits.fc", "head": "head",
    "head_dist": "head_dist",
}
# The provenance format of the original DeiT / DeiT-III releases: .pth files of {"model": timm state dict}.
RELEASE_FORMAT = formats.DEIT_PTH
RECORDED_FORMATS = (NAME, RELEASE_FORMAT)


def detect(checkpoint: Checkpoint) -> bool:
    """timm's keys; Meta's DINOv2 hub files (``mask_token``, ``register_tokens``) are left to their format."""
    return ("patch_embed.proj.weight" in checkpoint and any(k.startswith("blocks.0.") for k in checkpoint.keys())
            and not any(key in checkpoint for key in META_DINOV2_KEYS))


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
    Without a config.json the head count comes from ``hint`` (the config asked for) or the width's size
    in the family's table, the pooling of class-token models is taken as "token" and mean/std as the
    family's (timm's default 0.5 for a classic ViT, ImageNet's for DeiT, DeiT-III and DINOv2): each
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
                                     f"would drop or misplace weights: {listed}. vit_zoo converts the ViT family "
                                     f"({', '.join(variants.FAMILIES)}: timm vit_*, deit_*, deit3_*, "
                                     f"vit_*_dinov2); use such a checkpoint", "timm " + ", ".join(unsupported))
    width, channels, patch_h, patch_w = checkpoint.required_shape("patch_embed.proj.weight", 4, "timm")
    if patch_h != patch_w or channels != 3:
        raise CheckpointError(f"{where}: 'patch_embed.proj.weight' is {(width, channels, patch_h, patch_w)};"
                              f" expected square patches over RGB, (D, 3, P, P)")
    if "pos_embed" not in checkpoint:
        raise UnsupportedLayoutError(f"{where} has no 'pos_embed': no learned position embedding "
                                     f"(pos_embed='none'), which vit_zoo does not model",
                                     "timm no learned position embedding (pos_embed='none')")
    depth = checkpoint.block_count(r"blocks\.(\d+)\.norm1\.weight", where)
    meta = timm_config.read_config(checkpoint)
    if timm_tower.is_tower(checkpoint) and not meta:
        timm_tower.refuse_without_config(checkpoint, where)
    layout = timm_layout.read_layout(checkpoint, meta, patch_h, where)
    family = timm_config.architecture(meta, where)[0] or _tensor_family(checkpoint, layout)
    grid = layout.grid
    fields = dict(
        image_size=grid[0] * patch_h if grid[0] == grid[1] else (grid[0] * patch_h, grid[1] * patch_h),
        patch_size=patch_h, hidden_size=width, mlp_size=layout.mlp_size, num_layers=depth,
        num_heads=timm_config.num_heads(meta, width, hint.num_heads if hint else None, family, where),
        class_token=layout.class_token, distillation_token=layout.distillation_token,
        register_tokens=layout.register_tokens, prefix_position_embeddings=layout.prefix_position_embeddings,
        position_grid=grid if family in timm_layout.KEEPS_GRID else None,
        pooling=_pooling(checkpoint, meta, layout.class_token, where),
        representation_size=(checkpoint.required_shape("pre_logits.fc.weight", 2, "timm")[0]
                             if "pre_logits.fc.weight" in checkpoint else None),
        **timm_config.numerics(meta, where), pre_norm="norm_pre.weight" in checkpoint,
        patch_bias="patch_embed.proj.bias" in checkpoint, qkv_bias="blocks.0.attn.qkv.bias" in checkpoint,
        **timm_tower.top_fields(checkpoint, family, where),
        position_embedding_resampling="bicubic-antialias",  # timm's resample_abs_pos_embed
        layer_scale=_layer_scale_init(layout, meta, family), mlp=layout.mlp,
        head="distilled" if layout.distilled_head else "linear",
    )
    timm_tower.check_family(fields, family, meta, where)
    mean, std = timm_config.normalisation(meta, where, timm_config.family_normalisation(family))
    fields.update(mean=mean, std=std)
    if not meta:
        fields["assumed"] = {"mean": mean, "std": std}
        if hint is None:
            fields["assumed"]["num_heads"] = fields["num_heads"]
        if layout.class_token and fields["pooling"] == "token":
            fields["assumed"]["pooling"] = "token"
    rows = fields["projection_size"] or fields["num_classes"]
    if rows is not None and meta.get("num_classes") not in (None, rows):
        raise CheckpointError(f"{where}: config.json says num_classes={meta['num_classes']} but "
                              f"'head.weight' has {rows} rows; the config.json belongs to another model")
    return fields


def _tensor_family(checkpoint: Checkpoint, layout) -> str:
    """The family without a config.json: the layout's, where a classic layout in an original release
    (``{"model": ...}`` .pth) is DeiT's."""
    if layout.family == "vit" and _is_release(checkpoint):
        return "deit"
    return layout.family


def _is_release(checkpoint: Checkpoint) -> bool:
    """An original DeiT / DeiT-III release: a state dict under ``"model"`` (``readers.pytorch``)."""
    return checkpoint.metadata.get("state_dict_key") == "model"


def _layer_scale_init(layout, meta: dict, family: str):
    """LayerScale's initial value (what a re-initialised scale starts at; the weights hold the trained
    one): config.json's init_values, else the family's (DeiT-III 1e-6, DINOv2 1e-5)."""
    if layout.layer_scale is None:
        return None
    given = (meta.get("model_args") or {}).get("init_values")
    return float(given or variants.FAMILIES[family].architecture.get("layer_scale", 1e-5))


def identity_fields(checkpoint: Checkpoint, config) -> dict:
    """timm's evaluation transform (``pretrained_cfg`` crop_pct, interpolation) and class names
    (``label_names``, shown through ``label_descriptions`` where given) from config.json; without one,
    timm's ViT defaults, assumed. An original DeiT / DeiT-III release (a ``{"model": ...}`` .pth) is
    recorded as provenance format "deit-pth"."""
    meta = timm_config.read_config(checkpoint)
    default = source_preprocessing(NAME, config.image_size)
    provenance = {"provenance": Provenance(format=RELEASE_FORMAT if _is_release(checkpoint) else NAME, source=str(checkpoint.path))}
    if not meta:
        return {"preprocessing": default, **provenance,
                "assumed": {"preprocessing": f"timm centre crop {default.crop_pct}, {default.interpolation}"}}
    where = f"timm checkpoint {checkpoint.path.name!r}"
    names = timm_config.label_names(meta, config.num_classes, where)
    return {"preprocessing": timm_config.preprocessing(meta, default, where), **provenance,
            **({"labels": names} if names is not None else {})}


def mapping(config, checkpoint: Checkpoint = None) -> list:
    """Rows ``our variable ← timm key, transform`` for the whole model; LayerScale by the checkpoint's
    naming (timm's ``ls1.gamma``, or the original DeiT-III release's ``gamma_1``)."""
    kinds = T.pytorch_kinds(config.num_heads)
    naming = "deit3-original" if checkpoint is not None and "blocks.0.gamma_1" in checkpoint else "timm"
    scales = dict(zip(("ls1", "ls2"), timm_layout.LAYER_SCALE_KEYS[naming]))
    table = targets.table({**MODULES, **scales}, kinds, _key)
    split_kernel, split_bias = kinds["heads_in_kernel"][1], kinds["heads_bias"][1]
    for index, part in enumerate(("query", "key", "value")):  # rows q, k, v of the fused (3D, D) Linear
        table[f"attn.{part}.kernel"] = (BLOCK + "attn.qkv.weight", T.fused_qkv_part(index, split_kernel))
        table[f"attn.{part}.bias"] = (BLOCK + "attn.qkv.bias", T.fused_qkv_part(index, split_bias))
    if config.pre_norm or config.pooling == "map" or config.projection_size:
        table.update(timm_tower.table(kinds, lambda modules: targets.table(modules, kinds, _key)))
    return targets.rows(config, table, "timm")


def _key(module: str, param) -> str:
    return module + (f".{param}" if param else "")


def _pooling(checkpoint: Checkpoint, meta: dict, class_token: bool, where: str) -> str:
    """Our pooling from the final norms present, the MAP head and timm's ``global_pool``."""
    has_norm, has_fc_norm = "norm.weight" in checkpoint, "fc_norm.weight" in checkpoint
    pool = meta.get("global_pool")
    if pool not in (None, "", "token", "avg", "map"):
        raise UnsupportedLayoutError(f"{where}: config.json global_pool={pool!r}; vit_zoo models 'token', "
                                     f"'avg' and 'map'", f"timm global_pool={pool!r}")
    if ("attn_pool.latent" in checkpoint) != (pool == "map") and pool is not None:
        raise CheckpointError(f"{where}: config.json global_pool={pool!r} but the checkpoint "
                              f"{'has' if 'attn_pool.latent' in checkpoint else 'has no'} 'attn_pool.latent'; "
                              f"global_pool='map' and the MAP head's tensors come together")
    if "attn_pool.latent" in checkpoint:
        timm_tower.map_pooling(checkpoint, class_token, checkpoint.shape("patch_embed.proj.weight")[0], where)
        if has_fc_norm or not has_norm:
            raise CheckpointError(f"{where}: a MAP head follows the final 'norm' in timm; the checkpoint has "
                                  f"{'fc_norm' if has_fc_norm else 'no norm'}")
        return "map"
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
