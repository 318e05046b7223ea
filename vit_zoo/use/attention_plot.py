"""Attention figures drawn with matplotlib (the optional ``plot`` extra: ``pip install vit-zoo[plot]``); the
overlay picture of ``vit-zoo attention`` needs only Pillow (``vit_zoo.use.attention_overlay``)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from vit_zoo.use.attention import attention_rollout, class_token_map
from vit_zoo.use.images import load_images


def _matplotlib_figure():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting attention needs matplotlib: pip install 'vit-zoo[plot]' "
                          "(or pip install matplotlib)") from None
    return Figure


def plot_attention(image, maps_or_mask, ax=None, path: Union[str, Path, None] = None, alpha: float = 0.5,
                   cmap: str = "inferno", title: Optional[str] = None, num_prefix_tokens: int = 1):
    """Draw ``image`` with an attention heat map over it.

    Args:
        image: one image: a path, PIL image or (H, W, 3) array (uint8, or float in [0, 255]); show the
            pixels the model saw (``vit_zoo.preprocess`` output) so the map lines up.
        maps_or_mask: a mask (h, w) or (1, h, w) on the patch grid, e.g. from ``attention_mask``; or the
            per-block maps of ``attention_maps`` (dict or list of (B, heads, T, T)), whose rollout
            class-token map is drawn (first image of the batch; the grid is the one of T -
            ``num_prefix_tokens`` patches whose aspect ratio is closest to the image's).
        ax: a matplotlib Axes to draw on; None makes a new Figure (no pyplot, so no display is needed).
        path: save the figure there (PNG, PDF, ... by extension).
        alpha: opacity of the heat map.
        num_prefix_tokens: with attention maps: the model's prefix tokens
            (``model.identity.config.num_prefix_tokens``: 2 for a distilled DeiT, 5 for DINOv2 with registers).

    Returns:
        The matplotlib Figure.
    """
    pixels = load_images(image)[0].astype(np.float32)
    mask = _as_mask(maps_or_mask, pixels.shape[:2], num_prefix_tokens)
    if ax is None:
        figure = _matplotlib_figure()(figsize=(4, 4 * pixels.shape[0] / pixels.shape[1]), dpi=100)
        ax = figure.add_axes((0, 0, 1, 1))
    else:
        _matplotlib_figure()
        figure = ax.figure
    heat = np.asarray(Image.fromarray(mask).resize((pixels.shape[1], pixels.shape[0]), Image.BILINEAR))
    ax.imshow(np.clip(pixels, 0, 255).astype(np.uint8))
    ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=0.0, vmax=max(float(heat.max()), 1e-12))
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    if path is not None:
        figure.savefig(path)
    return figure


def _as_mask(maps_or_mask, image_shape, num_prefix_tokens: int) -> np.ndarray:
    """(h, w) float32 from a mask or from per-block attention maps."""
    if isinstance(maps_or_mask, dict) or (isinstance(maps_or_mask, (list, tuple))
                                          and np.ndim(maps_or_mask[0]) == 4):
        rollout = attention_rollout(maps_or_mask)[:1]
        patches = rollout.shape[-1] - num_prefix_tokens
        return class_token_map(rollout, _grid_for(patches, image_shape), num_prefix_tokens)[0]
    mask = np.asarray(maps_or_mask, dtype=np.float32)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"expected a mask (h, w) or (1, h, w), or a dict/list of (B, heads, T, T) attention "
                         f"maps; got an array of shape {mask.shape}")
    return np.ascontiguousarray(mask)


def _grid_for(patches: int, image_shape) -> tuple:
    aspect = image_shape[0] / image_shape[1]
    pairs = [(h, patches // h) for h in range(1, patches + 1) if patches % h == 0]
    return min(pairs, key=lambda hw: abs(math.log(hw[0] / hw[1]) - math.log(aspect)))
