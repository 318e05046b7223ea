"""timm's CLIP and SigLIP image towers (``vit_*_clip_*``, ``vit_*_siglip_*`` in ``vision_transformer.py``): what
their state dicts add to a classic timm ViT, and how the top of such a tower is read.

    norm_pre.{weight, bias}              LayerNorm before the blocks (pre_norm=True: CLIP's ln_pre); such
                                         models have patch_embed.proj without bias (timm: bias=not pre_norm)
    attn_pool.latent (1, 1, D)           the MAP head (global_pool='map', AttentionPoolLatent, latent_len=1):
    attn_pool.q.{weight (D, D), bias}    query of the latent
    attn_pool.kv.{weight (2D, D), bias}  keys then values of the tokens, heads contiguous
    attn_pool.proj, attn_pool.norm, attn_pool.mlp.fc1 (M, D), attn_pool.mlp.fc2 (D, M)
                                         y = a + MLP(LN(a)) on the attended latent a
    head.{weight (E, D), bias (E,)}      a CLIP tower's projection: timm converts CLIP's bias-free ``proj``
                                         into this Linear with an all-zero bias (``_convert_openai_clip``)

A CLIP tower's head with an all-zero bias is read as the projection (the image embedding, ``num_classes=0``),
its zero bias checked and set aside; a head with any other bias is a classifier (a CLIP tower fine-tuned on
ImageNet: ``..._clip_224.openai_ft_in1k``). The GELU flavour and LayerNorm epsilon of these towers are set by
timm's architecture definitions, not the tensors, so a tower without timm's config.json is refused.
"""
from __future__ import annotations

import numpy as np

from vit_zoo.converters import transforms as T
from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError
from vit_zoo.model import variants

# The zero bias of a CLIP tower's projection head, checked to be zero by ``top_fields`` before it is set aside.
ZERO_BIAS = {r"head\.bias": "the all-zero bias timm stores with a CLIP tower's bias-free projection (checked zero)"}
# slot (less its parameter) → timm module of the MAP head and the projection; q / kv are split in ``table``.
MODULES = {"norm_pre": "norm_pre", "map.probe": "attn_pool.latent", "map.attn.query": "attn_pool.q",
           "map.attn.out": "attn_pool.proj", "map.norm": "attn_pool.norm", "map.mlp.fc1": "attn_pool.mlp.fc1",
           "map.mlp.fc2": "attn_pool.mlp.fc2", "projection": "head"}
TOWER_FAMILIES = ("clip", "siglip", "siglip2")
# the family's architecture field → the timm model_args option that may change it
OPTION_ARGS = {"pre_norm": "pre_norm", "patch_bias": "pre_norm", "class_token": "class_token", "pooling": "global_pool"}
# attn_pool tensors of AttentionPoolLatent options vit_zoo does not model: {key: what}.
UNMODELLED_POOL = {"attn_pool.pos_embed": "a position embedding inside the MAP head (pos_embed='abs')",
                   "attn_pool.q_norm.weight": "qk-norm inside the MAP head (qk_norm=True)"}


def is_tower(checkpoint: Checkpoint) -> bool:
    """A CLIP or SigLIP tower's tensors: norm_pre, the MAP head, or a patch embedding without bias."""
    return ("norm_pre.weight" in checkpoint or "attn_pool.latent" in checkpoint
            or "patch_embed.proj.bias" not in checkpoint)


def refuse_without_config(checkpoint: Checkpoint, where: str) -> None:
    """A tower without timm's config.json cannot be converted faithfully: raise, naming what is missing."""
    kind = ("SigLIP (attn_pool: the MAP head)" if "attn_pool.latent" in checkpoint
            else "CLIP (norm_pre, pre_norm=True)" if "norm_pre.weight" in checkpoint
            else "CLIP-like (a patch embedding without bias, as pre_norm=True makes it)")
    raise UnsupportedLayoutError(f"{where} is a timm {kind} image tower without timm's config.json beside it: timm "
                                 f"defines these towers' GELU flavour (exact, tanh or QuickGELU) and LayerNorm "
                                 f"epsilon (1e-5 or 1e-6) by architecture name, which the tensors do not show. Put "
                                 f"the repo's config.json (its 'architecture', e.g. vit_base_patch16_clip_224) beside "
                                 f"the weights file", "timm CLIP / SigLIP tower without config.json")


def map_pooling(checkpoint: Checkpoint, class_token: bool, width: int, where: str) -> None:
    """Check a MAP head is the one vit_zoo models: one latent of the width, no options it lacks, no class token."""
    latent = checkpoint.required_shape("attn_pool.latent", 3, "timm")
    if latent != (1, 1, width):
        raise UnsupportedLayoutError(f"{where}: 'attn_pool.latent' is {latent}; vit_zoo models one latent query of "
                                     f"the width, (1, 1, {width}) (latent_len=1)", "timm attn_pool latent_len > 1")
    for key, what in UNMODELLED_POOL.items():
        if key in checkpoint:
            raise UnsupportedLayoutError(f"{where} has {key!r}: {what}, which vit_zoo does not model",
                                         f"timm attn_pool {what}")
    if class_token:
        raise UnsupportedLayoutError(f"{where} has both 'cls_token' and 'attn_pool': a MAP head over a class "
                                     f"token, which vit_zoo does not model (SigLIP towers have no class token)",
                                     "timm MAP head with a class token")


def check_family(fields: dict, family: str, meta: dict, where: str) -> None:
    """A tower named by its config.json has the tensors of its family (CLIP: norm_pre, no patch bias; SigLIP:
    no class token, the MAP head) unless model_args changed that option.

    Raises:
        CheckpointError naming the field, what the architecture implies and what the tensors show.
    """
    if family not in TOWER_FAMILIES:
        return
    args = meta.get("model_args") or {}
    for field, value in variants.FAMILIES[family].architecture.items():
        if fields[field] != value and OPTION_ARGS[field] not in args:
            raise CheckpointError(f"{where}: config.json names {meta['architecture']!r}, a {family} tower with "
                                  f"{field}={value!r}, but its tensors show {field}={fields[field]!r}; the "
                                  f"config.json belongs to another model")


def top_fields(checkpoint: Checkpoint, family: str, where: str) -> dict:
    """``num_classes`` and ``projection_size``: a CLIP tower's head with an all-zero bias is its projection
    (``num_classes=0``); any other head is a classifier of its rows; no head: ``num_classes`` 0 for a SigLIP
    tower (its MAP head's output is the embedding), None otherwise (features only)."""
    if "head.weight" not in checkpoint:
        return dict(num_classes=0 if "attn_pool.latent" in checkpoint else None, projection_size=None)
    rows = checkpoint.required_shape("head.weight", 2, "timm")[0]
    if family == "clip":
        if "head.bias" not in checkpoint:
            raise CheckpointError(f"{where} has 'head.weight' without 'head.bias'; timm's head is a Linear with bias")
        if not np.any(checkpoint.load("head.bias")):
            return dict(num_classes=0, projection_size=rows)
    return dict(num_classes=rows, projection_size=None)


def table(kinds: dict, block_table) -> dict:
    """The tower's rows beyond a classic timm ViT's: norm_pre, the MAP head (its fused kv split into key and
    value) and the projection, from ``block_table(modules)`` (the format's table writer)."""
    found = block_table(MODULES)
    split_kernel, split_bias = kinds["heads_in_kernel"][1], kinds["heads_bias"][1]
    for index, part in enumerate(("key", "value")):  # rows k, v of the fused (2D, D) Linear
        found[f"map.attn.{part}.kernel"] = ("attn_pool.kv.weight", T.fused_qkv_part(index, split_kernel, parts=2))
        found[f"map.attn.{part}.bias"] = ("attn_pool.kv.bias", T.fused_qkv_part(index, split_bias, parts=2))
    return found
