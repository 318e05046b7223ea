"""Meta's DINOv2 torch.hub releases (facebookresearch/dinov2), as ``dinov2/models/vision_transformer.py`` names them.

Files (``dinov2_vit{s,b,l,g}14[_reg4]_*.pth`` under dl.fbaipublicfiles.com/dinov2/, plain state dicts):
    ``…_pretrain.pth``      the backbone (``hub/backbones.py``)
    ``…_linear_head.pth``   its ImageNet-1k linear head (``hub/classifiers.py``, layers=1): ``weight`` (1000, 2D),
                            ``bias``, on the class token ‖ the mean patch token after the final norm -- our
                            pooling "token-mean"
    ``…_linear4_head.pth``  the 4-layer head, ``weight`` (1000, 5D): the class tokens of the last 4 blocks ‖ the
                            mean patch token; not modelled, refused by name
Backbone and head load together: keep the head file beside the backbone with the same prefix (as torch.hub's
cache holds them: ``dinov2_vits14_linear_head.pth`` beside ``dinov2_vits14_pretrain.pth``) and load the
backbone: ``open_checkpoint`` reads the head beside it under the keys ``linear_head.*``. Without it the
backbone has no head (``include_top=False`` for features, or ``num_classes=N`` for a new head); the head file
alone is refused with the name of the backbone to put beside it. E.g. with torch.hub's cache:
``vit_zoo.load(weights=f"{torch.hub.get_dir()}/checkpoints/dinov2_vits14_pretrain.pth")`` is ViT-S/14 with its
ImageNet head at 224 px. (A state dict of Meta's names without ``mask_token`` is timm's layout, left to timm.)

Backbone layout (PyTorch shapes: Linear weights are (out, in)):
    patch_embed.proj.{weight (D, 3, 14, 14), bias}
    cls_token (1, 1, D), pos_embed (1, 1 + 37*37, D)    class token with its position embedding, 518 px grid
    register_tokens (1, 4, D)                           ``_reg4`` models: inserted after the class token,
                                                        after the position embeddings are added
    mask_token (1, D)                                   iBOT masked-token pre-training only: ignored
    blocks.{i}.norm1, .attn.qkv (3D, D) fused q, k, v, .attn.proj, .ls1.gamma (D,),
    blocks.{i}.norm2, .mlp.fc1 (M, D) / .mlp.fc2 -- giant: .mlp.w12 (2M, D) / .mlp.w3 (D, M), the fused
    SwiGLU (``layers/swiglu_ffn.py``: SiLU of the first half of w12's output times the second half) --, .ls2.gamma
    norm.{weight, bias}
A model built with ``block_chunks > 0`` (``DinoVisionTransformer``'s default 1, and Meta's training runs)
names its blocks ``blocks.{chunk}.{i}.…``; those are read as ``blocks.{i}.…``.

Numerics (Meta's code): ``nn.GELU`` (exact), ``nn.LayerNorm(eps=1e-6)``, LayerScale, ImageNet mean/std. The
position embeddings stay on their stored grid (``position_grid``) and are interpolated in the graph to every
input's grid, as ``interpolate_pos_encoding`` does at run time: the plain models with bicubic
``scale_factor=(g + 0.1) / 37`` ("bicubic-offset"), the register models (hub: ``interpolate_antialias=True,
interpolate_offset=0.0``) with bicubic ``size=g, antialias=True`` ("bicubic-antialias"). Evaluation: resize
256 bicubic, centre crop 224 (``data/transforms.py``), so the default input is 224 px. Width, depth, MLP kind
and registers are read off the tensors; the head count comes from the width (Meta's vit_small 6, vit_base 12,
vit_large 16, vit_giant2 24) or, for another width, from the config asked for.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from vit_zoo.converters import targets, transforms as T
from vit_zoo.converters.checkpoint import HEAD_PREFIX, Checkpoint
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError
from vit_zoo.model import checkpoint_formats as formats
from vit_zoo.model import variants
from vit_zoo.model.identity import source_preprocessing

NAME = formats.META_DINOV2
TELLTALE = ("'patch_embed.proj.weight' with 'mask_token', 'register_tokens' or 'blocks.0.mlp.w12.weight' (Meta "
            "DINOv2 state dict), or only 'weight' and 'bias' (its linear head)")
IGNORED = {r"mask_token": "the mask token of iBOT masked-image pre-training; unused on whole images"}

BLOCK = "blocks.{i}."
# slot (less its parameter) → Meta module; the fused qkv Linear is split into query, key, value below.
MODULES = {
    "patch_embed": "patch_embed.proj", "class_token": "cls_token", "pos_embed": "pos_embed",
    "register_tokens": "register_tokens",
    "norm1": BLOCK + "norm1", "attn.out": BLOCK + "attn.proj", "ls1": BLOCK + "ls1.gamma",
    "norm2": BLOCK + "norm2", "ls2": BLOCK + "ls2.gamma", "encoder_norm": "norm", "head": HEAD_PREFIX.rstrip("."),
}
MLP_MODULES = {"gelu": {"mlp.fc1": BLOCK + "mlp.fc1", "mlp.fc2": BLOCK + "mlp.fc2"},
               "swiglu": {"mlp.fc1": BLOCK + "mlp.w12", "mlp.fc2": BLOCK + "mlp.w3"}}

# Heads of Meta's sizes (dinov2/models/vision_transformer.py vit_small … vit_giant2), by width.
HEADS_BY_WIDTH = {size["hidden_size"]: size["num_heads"] for size in variants.FAMILIES["dinov2"].sizes.values()}
PATCH = 14

_CHUNKED = re.compile(r"blocks\.(\d+)\.(\d+)\.(.+)")
_RELEASE = re.compile(r"(dinov2_vit[sblg]14(?:_reg4)?)_(pretrain|linear_head|linear4_head)\.pth")


def detect(checkpoint: Checkpoint) -> bool:
    if _is_head(checkpoint):
        return True
    return "patch_embed.proj.weight" in checkpoint and any(
        key in checkpoint for key in ("mask_token", "register_tokens", _stored(checkpoint, "blocks.0.mlp.w12.weight")))


def config_fields(checkpoint: Checkpoint, hint=None) -> dict:
    """ViTConfig fields from the tensor shapes (and the linear head beside the backbone, if any).

    Args:
        hint: the ViTConfig asked for, or None; its head count settles a width that is none of Meta's.
    Raises:
        CheckpointError for a head file without its backbone, a 4-layer head (UnsupportedLayoutError), a
        non-square position grid, blocks numbered with gaps, or a head count that cannot be known.
    """
    where = _where(checkpoint)
    if _is_head(checkpoint):
        raise _lone_head_error(checkpoint)
    shape = lambda key, rank: checkpoint.required_shape(_stored(checkpoint, key), rank, "Meta DINOv2")  # noqa: E731
    width, channels, patch_h, patch_w = shape("patch_embed.proj.weight", 4)
    if (channels, patch_h, patch_w) != (3, PATCH, PATCH):
        raise CheckpointError(f"{where}: 'patch_embed.proj.weight' is {(width, channels, patch_h, patch_w)}; "
                              f"expected ({width}, 3, {PATCH}, {PATCH}) (RGB, patch 14, as every DINOv2 release)")
    if "cls_token" not in checkpoint:
        raise CheckpointError(f"{where} has no 'cls_token', which every DINOv2 backbone has")
    depth = checkpoint.block_count(r"blocks\.(\d+)\.norm1\.weight" if not _unchunked_names(checkpoint)
                                   else r"blocks\.\d+\.(\d+)\.norm1\.weight", where)
    swiglu = _stored(checkpoint, "blocks.0.mlp.w12.weight") in checkpoint
    mlp = shape("blocks.0.mlp.w3.weight", 2)[1] if swiglu else shape("blocks.0.mlp.fc1.weight", 2)[0]
    registers = shape("register_tokens", 3)[1] if "register_tokens" in checkpoint else 0
    fields = dict(
        image_size=224, patch_size=PATCH, hidden_size=width, mlp_size=mlp, num_layers=depth,
        num_heads=_num_heads(width, hint, where), class_token=True, register_tokens=registers,
        prefix_position_embeddings=True, position_grid=_grid(shape("pos_embed", 3)[1], where),
        pooling="token-mean", layer_scale=1e-5,  # Meta's training init (ssl_default_config layerscale)
        mlp="swiglu" if swiglu else "gelu", gelu="exact", layer_norm_epsilon=1e-6,
        qkv_bias=_stored(checkpoint, "blocks.0.attn.qkv.bias") in checkpoint,
        mean=variants.IMAGENET_MEAN, std=variants.IMAGENET_STD,
        position_embedding_resampling="bicubic-antialias" if registers else "bicubic-offset",
        num_classes=_head_classes(checkpoint, width, where),
    )
    return fields


def identity_fields(checkpoint: Checkpoint, config) -> dict:
    """Meta's evaluation transform (resize 256 bicubic, centre crop 224: crop_pct 0.875) and, with the linear
    head, the ImageNet-1k classes it was trained on."""
    head = f"{HEAD_PREFIX}weight" in checkpoint and config.num_classes == 1000
    return {"preprocessing": source_preprocessing(NAME, config.image_size),
            **({"labels": "imagenet1k"} if head else {})}


def mapping(config, checkpoint: Checkpoint = None) -> list:
    """Rows ``our variable ← Meta key, transform`` for the whole model (chunked block names resolved)."""
    kinds = T.pytorch_kinds(config.num_heads)
    modules = {**MODULES, **MLP_MODULES[config.mlp]}
    table = targets.table(modules, kinds, lambda module, param: module + (f".{param}" if param else ""))
    split_kernel, split_bias = kinds["heads_in_kernel"][1], kinds["heads_bias"][1]
    for index, part in enumerate(("query", "key", "value")):  # rows q, k, v of the fused (3D, D) Linear
        table[f"attn.{part}.kernel"] = (BLOCK + "attn.qkv.weight", T.fused_qkv_part(index, split_kernel))
        table[f"attn.{part}.bias"] = (BLOCK + "attn.qkv.bias", T.fused_qkv_part(index, split_bias))
    found = targets.rows(config, table, "Meta DINOv2")
    if checkpoint is None:
        return found
    unchunked = _unchunked_names(checkpoint)
    return [r._replace(sources=tuple(unchunked.get(s, s) for s in r.sources)) for r in found]


# ------------------------------------------------------------------------------------------------------
def _is_head(checkpoint: Checkpoint) -> bool:
    """Only a Linear's ``weight`` (C, F) and ``bias`` (C,): a DINOv2 linear-head file on its own."""
    return (set(checkpoint.keys()) == {"weight", "bias"} and len(checkpoint.shape("weight")) == 2
            and len(checkpoint.shape("bias")) == 1)


def _lone_head_error(checkpoint: Checkpoint) -> CheckpointError:
    classes, features = checkpoint.shape("weight")
    release = _RELEASE.fullmatch(checkpoint.path.name)
    backbone = f"{release[1]}_pretrain.pth" if release else "dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth"
    head = f"{release[1]}_linear_head.pth" if release else "the matching …_linear_head.pth"
    if release and release[2] == "linear4_head":
        return _linear4_error(repr(checkpoint.path.name), head)
    return CheckpointError(f"{checkpoint.path.name!r} holds only a linear head ({classes} classes on {features} "
                           f"features): a Meta DINOv2 head without its backbone. Put it beside the backbone "
                           f"{backbone!r} (as {head!r}) and load the backbone file; the head is read from beside it")


def _linear4_error(subject: str, head: str) -> UnsupportedLayoutError:
    return UnsupportedLayoutError(
        f"{subject} is Meta's 4-layer DINOv2 linear head (on the class tokens of the last 4 blocks ‖ the mean patch "
        f"token), which vit_zoo does not model; use the 1-layer head {head!r} beside the backbone, or the backbone "
        f"alone with include_top=False", "Meta DINOv2 linear4 head")


def _head_classes(checkpoint: Checkpoint, width: int, where: str):
    """Classes of the linear head read beside the backbone, or None without one."""
    key = f"{HEAD_PREFIX}weight"
    if key not in checkpoint:
        return None
    classes, features = checkpoint.required_shape(key, 2, "Meta DINOv2 linear head")
    beside = Path(checkpoint.metadata.get("companions", {}).get(HEAD_PREFIX, key)).name
    if features == 5 * width:
        raise _linear4_error(f"{beside!r} beside {where}", "…_linear_head.pth")
    if features != 2 * width:
        raise CheckpointError(f"{where}: the linear head beside it ({beside!r}) takes {features} features, but the "
                              f"backbone's class token ‖ mean patch token is {2 * width} wide (width {width}); the "
                              f"head belongs to another backbone")
    return classes


def _num_heads(width: int, hint, where: str) -> int:
    heads = HEADS_BY_WIDTH.get(width) or (hint.num_heads if hint is not None else None)
    if heads is None:
        raise CheckpointError(f"{where}: width {width} is none of Meta's DINOv2 sizes ({sorted(HEADS_BY_WIDTH)}) and "
                              f"its state dicts do not store the head count; pass config= with num_heads")
    if width % heads:
        raise CheckpointError(f"{where}: {heads} heads do not divide the width {width}")
    return heads


def _grid(tokens: int, where: str):
    """The square (M, M) grid of ``pos_embed`` (1 + M*M tokens: the class token's and the patches')."""
    side = math.isqrt(max(tokens - 1, 0))
    if not side or side * side != tokens - 1:
        raise CheckpointError(f"{where}: 'pos_embed' holds {tokens} tokens, not 1 + a square grid (Meta's "
                              f"interpolate_pos_encoding needs N = M*M patches; the releases store 1 + 37*37)")
    return (side, side)


def _where(checkpoint: Checkpoint) -> str:
    return f"Meta DINOv2 checkpoint {checkpoint.path.name!r}"


def _unchunked_names(checkpoint: Checkpoint) -> dict:
    """``{"blocks.3.norm1.weight": "blocks.1.3.norm1.weight", …}`` for a block-chunked state dict (block_chunks
    > 0: each chunk holds its blocks under their global index), {} for a plain one."""
    found, where = {}, _where(checkpoint)
    for key in checkpoint.keys():
        match = _CHUNKED.fullmatch(key)
        if match:
            flat = f"blocks.{match[2]}.{match[3]}"
            if flat in found:
                raise CheckpointError(f"{where}: block {match[2]} appears in two chunks ({found[flat]!r} and {key!r})")
            found[flat] = key
    if found and any(re.fullmatch(r"blocks\.\d+\.[a-z].*", key) for key in checkpoint.keys()):
        raise CheckpointError(f"{where} mixes chunked ('blocks.C.I.…') and plain ('blocks.I.…') block names")
    return found


def _stored(checkpoint: Checkpoint, key: str) -> str:
    """The checkpoint's own name for a plain block key (its chunked name in a block-chunked state dict)."""
    if key in checkpoint or not key.startswith("blocks."):
        return key
    return _unchunked_names(checkpoint).get(key, key)
