"""Attention probabilities of each encoder block, attention rollout, and the class token's map (or, for a
tower without one, SigLIP's, the map of its MAP head's probe).

The maps are computed from the model's own weights by each block's ``SelfAttention.attention_probabilities``
applied to that block's ``norm1`` output, so they exist whatever fused attention kernel the model itself
runs (``keras.ops.dot_product_attention`` never materialises them). The token order is the model's: its
prefix tokens first (class, DeiT's distillation token, DINOv2's registers: ``config.num_prefix_tokens``),
then the patches row by row on the input's grid (H / patch, W / patch); the identity says which.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import keras
import numpy as np

from vit_zoo.use.features import resolve_block_indices, vit_identity
from vit_zoo.use.images import tensor_to_numpy
from vit_zoo.model.builder import MAP_ATTENTION_LAYER, block_name, has_preprocessing
from vit_zoo.model.vision_transformer import check_input_size

HEAD_FUSIONS = ("mean", "max", "min")


def model_inputs(model: keras.Model, images) -> np.ndarray:
    """``images`` as ``model``'s input batch: a float (B, H, W, 3) array or tensor is taken as it is
    (already preprocessed); anything else (paths, PIL images, uint8 arrays, lists) goes through
    ``vit_zoo.preprocess(images, weights=model)``."""
    array = tensor_to_numpy(images) if hasattr(images, "shape") and hasattr(images, "dtype") else images
    if isinstance(array, np.ndarray) and array.ndim == 4 and np.issubdtype(array.dtype, np.floating):
        expected = tuple(model.input_shape[1:])
        if array.shape[-1] != 3 or any(e is not None and e != a for e, a in zip(expected, array.shape[1:])):
            raise ValueError(f"images have shape {array.shape} but model {model.name!r} takes (B, "
                             f"{', '.join('any' if e is None else str(e) for e in expected)}); pass file paths "
                             f"or uint8 images to have them preprocessed, or resize them first")
        check_input_size(model, array)
        return array.astype(np.float32)
    from vit_zoo.use.preprocessing import preprocess

    return preprocess(images, weights=model, normalize=not has_preprocessing(model))


def attention_maps(model: keras.Model, images, layers: Union[int, Sequence[int], None] = None,
                   batch_size: int = 8) -> Dict[int, np.ndarray]:
    """Attention probabilities softmax(Q Kᵀ / √Dh) of the chosen blocks.

    Args:
        model: a vit_zoo ViT (any head, pooling, preprocessing or dynamic size).
        images: a preprocessed float batch (B, H, W, 3), or anything ``vit_zoo.preprocess`` accepts.
        layers: block indices (negative from the end); None for every block. Each block's maps take
            B·H·T²·4 bytes (ViT-B/16 at 384 px: 12 heads × 577² ≈ 16 MB per image and block), so pick the
            blocks you need for large images.
        batch_size: images run through the model this many at a time.

    Returns:
        {block index (0-based): (B, heads, T, T) float32 NumPy array}, in the order of ``layers``; row q
        of head h holds token q's attention over all T tokens and sums to 1. T = prefix tokens + h*w
        patches (see the module docstring): e.g. 1 + 196 for ViT-B/16 at 224 px, 2 + 196 for a distilled
        DeiT, 5 + 256 for DINOv2 with registers at 224 px.
    """
    indices = resolve_block_indices(model, layers)
    pixels = model_inputs(model, images)
    trunk = keras.Model(model.input, [model.get_layer(block_name(i, "norm1")).output for i in indices])
    maps = {index: [] for index in indices}
    for start in range(0, len(pixels), batch_size):
        normed = trunk(pixels[start:start + batch_size], training=False)
        normed = normed if isinstance(normed, (list, tuple)) else [normed]
        for index, tokens in zip(indices, normed):
            probabilities = model.get_layer(block_name(index, "attn")).attention_probabilities(tokens)
            maps[index].append(keras.ops.convert_to_numpy(probabilities).astype(np.float32))
    return {index: np.concatenate(parts) for index, parts in maps.items()}


def attention_rollout(maps: Union[Mapping[int, np.ndarray], Sequence[np.ndarray]], head_fusion: str = "mean",
                      discard_ratio: float = 0.0) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

    Per block (in block order; a dict is taken in increasing block index): fuse the heads (mean, max or
    min over heads); if ``discard_ratio`` > 0, zero that fraction of the smallest fused entries of each
    image (never entry (0, 0)), as the widely used ``vit-explain`` does; add the identity for the residual
    connection and renormalise each row to sum 1 (so A ← (A + I) / 2 when nothing was discarded);
    then multiply through the blocks: R = Â_L ··· Â_1.

    Args:
        maps: (B, heads, T, T) attention probabilities per block, e.g. from ``attention_maps``.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"``.
        discard_ratio: fraction in [0, 1) of the weakest attention entries to drop per block.

    Returns:
        (B, T, T) float32: row q is how much each token's input flows into token q's output.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {list(HEAD_FUSIONS)}, got {head_fusion!r}")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio!r}")
    ordered = [maps[key] for key in sorted(maps)] if isinstance(maps, Mapping) else list(maps)
    if not ordered:
        raise ValueError("no attention maps given")
    rollout = None
    for position, block_maps in enumerate(ordered):
        block_maps = np.asarray(block_maps, dtype=np.float64)
        if block_maps.ndim != 4 or block_maps.shape[-1] != block_maps.shape[-2]:
            raise ValueError(f"attention maps must be (B, heads, T, T); entry {position} has shape "
                             f"{block_maps.shape}")
        fused = getattr(np, head_fusion)(block_maps, axis=1)
        if discard_ratio > 0:
            fused = _discard_weakest(fused, discard_ratio)
        tokens = fused.shape[-1]
        fused = fused + np.eye(tokens)
        fused /= fused.sum(axis=-1, keepdims=True)
        if rollout is not None and rollout.shape != fused.shape:
            raise ValueError(f"attention maps of different shapes: {rollout.shape} and {fused.shape} "
                             f"(entry {position}); give maps of the same images")
        rollout = fused if rollout is None else fused @ rollout
    return rollout.astype(np.float32)


def _discard_weakest(fused: np.ndarray, discard_ratio: float) -> np.ndarray:
    batch, tokens, _ = fused.shape
    flat = fused.reshape(batch, -1).copy()
    count = int(flat.shape[1] * discard_ratio)
    weakest = np.argsort(flat, axis=1, kind="stable")[:, :count]
    for row, indices in zip(flat, weakest):
        row[indices[indices != 0]] = 0.0
    return flat.reshape(batch, tokens, tokens)


def class_token_map(rollout: np.ndarray, grid_size: Optional[Tuple[int, int]] = None,
                    num_prefix_tokens: int = 1, normalize: bool = True, token_index: int = 0) -> np.ndarray:
    """The class token's row over the patch tokens, on the patch grid: (B, T, T) → (B, h, w) float32.

    ``rollout`` is ``attention_rollout``'s output or one block's head-fused map. ``num_prefix_tokens``: the
    model's (``model.identity.config.num_prefix_tokens``: class, distillation and register tokens), none
    of which is on the map. ``grid_size`` (h, w) defaults to a square grid. ``token_index`` picks another
    prefix token's row (1: DeiT's distillation token). ``normalize`` scales each map to a maximum of 1.
    """
    rollout = np.asarray(rollout, dtype=np.float32)
    if rollout.ndim != 3 or rollout.shape[1] != rollout.shape[2]:
        raise ValueError(f"expected a (B, T, T) rollout, got shape {rollout.shape}")
    if num_prefix_tokens < 1:
        raise ValueError("the class token's map needs a class token (num_prefix_tokens ≥ 1)")
    if not 0 <= token_index < num_prefix_tokens:
        raise ValueError(f"token_index {token_index} is not a prefix token (the model has {num_prefix_tokens}: "
                         f"0 to {num_prefix_tokens - 1})")
    return _on_grid(rollout[:, token_index, num_prefix_tokens:], grid_size, normalize)


def _on_grid(patch_values: np.ndarray, grid_size: Optional[Tuple[int, int]], normalize: bool) -> np.ndarray:
    """(B, h*w) values of the patch tokens → (B, h, w) float32 (square without ``grid_size``), each map
    scaled to a maximum of 1 with ``normalize``."""
    patches = patch_values.shape[-1]
    if grid_size is None:
        side = math.isqrt(patches)
        if side * side != patches:
            raise ValueError(f"{patches} patch tokens do not form a square grid; pass grid_size=(h, w)")
        grid_size = (side, side)
    if grid_size[0] * grid_size[1] != patches:
        raise ValueError(f"grid_size {tuple(grid_size)} holds {grid_size[0] * grid_size[1]} patches, but the "
                         f"rollout has {patches} patch tokens")
    mask = patch_values.reshape(-1, *grid_size)
    if normalize:
        mask = mask / np.maximum(mask.max(axis=(1, 2), keepdims=True), np.finfo(np.float32).tiny)
    return mask.astype(np.float32)


def attention_mask(model: keras.Model, images, layers: Union[int, Sequence[int], None] = None,
                   head_fusion: str = "mean", discard_ratio: float = 0.0, batch_size: int = 8,
                   normalize: bool = True) -> np.ndarray:
    """The class token's rollout map for each image: (B, h, w) float32 on the model's patch grid
    (``images`` as for ``attention_maps``); in [0, 1] with a maximum of 1, or with ``normalize=False``
    the rollout's own values (the class token's share of the attention flow from each patch). The other
    prefix tokens (distillation, registers) take part in the rollout but are not on the map; a
    ``dynamic_size`` model's grid is the one of the images' size.

    A model without a class token that pools with the MAP head (SigLIP towers) maps its probe instead: the
    probe's attention over the final tokens (heads fused as ``head_fusion``) carried back through the rollout,
    p · R, the share of the pooled embedding's attention flow from each patch (the probe has no residual path).
    """
    config = vit_identity(model).config
    probe = not config.class_token and _has_map_head(model)
    if not config.class_token and not probe:
        raise ValueError(f"model {model.name!r} has no class token and no MAP head (pooling 'map'), so it has no "
                         f"attention map of a pooled token; load it with its top (include_top=True) for its MAP head")
    pixels = model_inputs(model, images)
    maps = attention_maps(model, pixels, layers=layers, batch_size=batch_size)
    grid = (pixels.shape[1] // config.patch_size, pixels.shape[2] // config.patch_size)
    rollout = attention_rollout(maps, head_fusion, discard_ratio)
    if not probe:
        return class_token_map(rollout, grid, config.num_prefix_tokens, normalize=normalize)
    attended = getattr(np, head_fusion)(probe_attention(model, pixels, batch_size), axis=1)  # (B, T)
    flow = np.einsum("bt,bts->bs", attended, rollout)
    return _on_grid(flow[:, config.num_prefix_tokens:], grid, normalize)


def probe_attention(model: keras.Model, images, batch_size: int = 8) -> np.ndarray:
    """The MAP head's attention: its learned probe's softmax(q Kᵀ / √Dh) over the final tokens, per head:
    (B, heads, T) float32, each row summing to 1 (``images`` as for ``attention_maps``)."""
    if not _has_map_head(model):
        raise ValueError(f"model {model.name!r} has no MAP head (pooling 'map' with its top); its attention "
                         f"maps are attention_maps' (per block)")
    pooling = model.get_layer(MAP_ATTENTION_LAYER)
    pixels = model_inputs(model, images)
    trunk = keras.Model(model.input, pooling.input)
    parts = [keras.ops.convert_to_numpy(pooling.attention_probabilities(trunk(pixels[start:start + batch_size],
                                                                                training=False)))[:, :, 0]
             for start in range(0, len(pixels), batch_size)]
    return np.concatenate(parts).astype(np.float32)


def _has_map_head(model: keras.Model) -> bool:
    """The identity pools with the MAP head and the build record says the graph runs it (its top, or
    ``pooling="map"`` features)."""
    from vit_zoo.model.build_record import build_record_of

    record = build_record_of(model)
    return (vit_identity(model).config.pooling == "map" and record is not None
            and (record.include_top or record.pooling == "map"))
