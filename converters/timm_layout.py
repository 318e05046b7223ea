"""The architecture a timm-keyed state dict shows by its tensors alone: prefix tokens, which of them carry
position embeddings and the stored grid, LayerScale (and how it is named), the MLP kind, the head kind, and
the family (``vit_zoo.model.variants.FAMILIES``) that layout belongs to.

    cls_token (1, 1, D)            class token                         (absent: class_token=False)
    dist_token (1, 1, D)           DeiT distillation token; with head_dist (C, D) beside head (C, D)
    reg_token (1, R, D)            timm register tokens (DINOv2 reg4: R = 4), never with position rows here
    pos_embed (1, E + h*w, D)      E = class + distillation rows, or 0 with no_embed_class=True
                                   (DeiT-III, timm *_reg4_dinov2: the class token joins after the add)
    blocks.{i}.ls1.gamma (D,)      timm LayerScale (init_values); the original DeiT-III release names it
    blocks.{i}.gamma_1 (D,)        ... gamma_1 / gamma_2 (facebookresearch/deit models_v2.py)
    blocks.{i}.mlp.fc1 (2M, D)     timm SwiGLUPacked (DINOv2 giant): SiLU on the first half times the
                                   second (GluMlp gate_last=False); a GELU MLP has fc1 (M, D), fc2 (D, M)
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError

# The LayerScale names: timm's and the original DeiT-III release's, as key patterns ({i}: the block).
LAYER_SCALE_KEYS = {"timm": ("blocks.{i}.ls1.gamma", "blocks.{i}.ls2.gamma"),
                    "deit3-original": ("blocks.{i}.gamma_1", "blocks.{i}.gamma_2")}
# Families whose source keeps the stored position grid and resamples to the input at run time.
KEEPS_GRID = ("dinov2", "dinov2-reg4")


class Layout(NamedTuple):
    """What the tensors show. ``grid``: the stored (rows, columns) patch grid; ``layer_scale``: a key of
    ``LAYER_SCALE_KEYS`` or None; ``mlp``: "gelu" or "swiglu"; ``mlp_size``: M."""

    class_token: bool
    distillation_token: bool
    register_tokens: int
    prefix_position_embeddings: bool
    grid: Tuple[int, int]
    layer_scale: Optional[str]
    mlp: str
    mlp_size: int
    distilled_head: bool

    @property
    def family(self) -> str:
        """The family this layout is (a classic layout may equally be DeiT's: the same tensors)."""
        if self.register_tokens:
            return "dinov2-reg4"
        if self.distillation_token:
            return "deit-distilled"
        if self.layer_scale:
            return "dinov2" if self.prefix_position_embeddings else "deit3"
        return "vit"


def read_layout(checkpoint: Checkpoint, meta: dict, patch: int, where: str) -> Layout:
    """The layout of a timm-keyed state dict (``meta``: timm's config.json or {}, for its input size).

    Raises:
        UnsupportedLayoutError for layouts vit_zoo does not model (registers without a class token or with
        position embeddings); CheckpointError for a position table that fits no grid.
    """
    class_token = "cls_token" in checkpoint
    distillation = "dist_token" in checkpoint
    registers = checkpoint.required_shape("reg_token", 3, "timm")[1] if "reg_token" in checkpoint else 0
    if registers and not class_token:
        raise UnsupportedLayoutError(f"{where} has 'reg_token' but no 'cls_token': register tokens without a class "
                                     f"token (timm vit_*_reg*_gap_* models), which vit_zoo does not model; it "
                                     f"models DINOv2's layout (class token, then registers)",
                                     "timm register tokens without a class token")
    if distillation != ("head_dist.weight" in checkpoint) and "head.weight" in checkpoint:
        raise CheckpointError(f"{where} has {'dist_token' if distillation else 'head_dist'} without "
                              f"{'head_dist' if distillation else 'dist_token'}; a DeiT distilled model has both")
    tokens = checkpoint.required_shape("pos_embed", 3, "timm")[1]
    embedded, grid = _position_rows(tokens, int(class_token) + int(distillation), registers, meta, patch, where)
    if embedded and registers and embedded == int(class_token) + int(distillation) + registers:
        raise UnsupportedLayoutError(f"{where}: 'pos_embed' holds {tokens} rows, with rows for the {registers} "
                                     f"register tokens (timm reg_tokens with no_embed_class=False), which vit_zoo "
                                     f"does not model: registers carry no position embedding in DINOv2",
                                     "timm register tokens with position embeddings")
    fc1 = checkpoint.required_shape("blocks.0.mlp.fc1.weight", 2, "timm")[0]
    fc2_in = checkpoint.required_shape("blocks.0.mlp.fc2.weight", 2, "timm")[1]
    if fc1 not in (fc2_in, 2 * fc2_in):
        raise CheckpointError(f"{where}: 'blocks.0.mlp.fc1.weight' has {fc1} rows and 'blocks.0.mlp.fc2.weight' "
                              f"{fc2_in} columns; a GELU MLP has them equal, a packed SwiGLU fc1 twice fc2's")
    return Layout(class_token, distillation, registers, prefix_position_embeddings=bool(embedded), grid=grid,
                  layer_scale=_layer_scale(checkpoint, where), mlp="swiglu" if fc1 == 2 * fc2_in else "gelu",
                  mlp_size=fc2_in, distilled_head="head_dist.weight" in checkpoint)


def _position_rows(tokens: int, embedded_prefix: int, registers: int, meta: dict, patch: int, where: str):
    """(prefix rows, grid) of a ``pos_embed`` of ``tokens`` rows: the class (+ distillation) rows and the
    grid, or no prefix rows (no_embed_class). Registers come with no_embed_class in every supported layout,
    so for them no prefix rows are tried first."""
    options = [embedded_prefix, 0] if embedded_prefix else [0]
    if registers:
        options = [0, embedded_prefix + registers]
    for rows in options:
        grid = grid_for(tokens - rows, meta, patch)
        if grid is not None:
            return rows, grid
    prefix = f"{embedded_prefix} prefix row{'s' if embedded_prefix > 1 else ''} + " if embedded_prefix else ""
    raise CheckpointError(f"{where}: 'pos_embed' holds {tokens} tokens, which is not {prefix}a square grid, "
                          f"and no timm config.json beside the file gives pretrained_cfg.input_size")


def grid_for(patches: int, meta: dict, patch: int):
    """The (rows, columns) patch grid for ``patches`` tokens: from pretrained_cfg.input_size, else square."""
    size = (meta.get("pretrained_cfg") or {}).get("input_size")
    if size and len(size) == 3:
        grid = (int(size[1]) // patch, int(size[2]) // patch)
        if grid[0] * grid[1] == patches:
            return grid
    side = math.isqrt(max(patches, 0))
    return (side, side) if side and side * side == patches else None


def _layer_scale(checkpoint: Checkpoint, where: str) -> Optional[str]:
    """Which LayerScale naming the blocks use (every block both scales), or None without LayerScale."""
    found = [name for name, (first, _) in LAYER_SCALE_KEYS.items() if first.format(i=0) in checkpoint]
    if len(found) > 1:
        raise CheckpointError(f"{where} names LayerScale both ways ('ls1.gamma' and 'gamma_1'); a checkpoint "
                              f"uses one")
    return found[0] if found else None
