"""Attention overlays drawn with Pillow alone (the library behind ``vit-zoo attention``; no plotting package).

The picture is the photo itself, at its own resolution and aspect ratio, with the class token's
attention-rollout map resized onto the part of the photo the model saw (all of it for the squash recipes;
the centre crop for "timm", outlined), and a colour bar beside it labelled 0 and the map's maximum (the
class token's share of the attention flow from the most attended patch). ``vit_zoo.plot_attention`` is
the matplotlib figure API (optional ``plot`` extra).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vit_zoo.use.attention import attention_mask
from vit_zoo.use.images import load_images
from vit_zoo.use.preprocessing import input_region, resolve_settings

# matplotlib's "inferno" colour map (Smith & van der Walt, CC0) sampled at 33 even steps, RGB 0..255
INFERNO = np.array([
    (0, 0, 4), (4, 3, 18), (11, 7, 36), (21, 11, 55), (33, 12, 74), (47, 10, 91), (61, 9, 101), (74, 12, 107),
    (87, 16, 110), (100, 21, 110), (113, 25, 110), (125, 30, 109), (138, 34, 106), (151, 39, 102),
    (163, 44, 97), (176, 49, 91), (188, 55, 84), (199, 62, 76), (210, 70, 68), (219, 80, 59), (228, 90, 49),
    (235, 102, 40), (241, 115, 29), (246, 128, 19), (249, 142, 9), (251, 157, 7), (252, 172, 17),
    (251, 188, 33), (249, 203, 53), (245, 219, 76), (242, 234, 105), (243, 246, 138), (252, 255, 164)],
    np.float64)


def colorize(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape S; clipped) → S + (3,) uint8 RGB of the inferno colour map."""
    positions = np.linspace(0.0, 1.0, len(INFERNO))
    values = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
    channels = [np.interp(values, positions, INFERNO[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def render_overlay(photo: np.ndarray, mask: np.ndarray, region: Optional[Tuple[float, float, float, float]] = None,
                   alpha: float = 0.5) -> Image.Image:
    """The overlay picture: ``photo`` (H, W, 3) uint8 with ``mask`` (h, w) (non-negative; coloured from 0
    to its maximum) resized bilinearly onto ``region`` (top, left, bottom, right) in photo pixels (default:
    the whole photo) and blended with opacity ``alpha``, then a colour bar labelled 0 and the maximum.
    Returns an RGB image of height H whose left W columns are the photo."""
    height, width = photo.shape[:2]
    top, left, bottom, right = region or (0.0, 0.0, float(height), float(width))
    mask = np.asarray(mask, np.float32)
    peak = float(mask.max())
    box = (int(round(left)), int(round(top)), int(round(right)), int(round(bottom)))
    size = (max(1, box[2] - box[0]), max(1, box[3] - box[1]))
    heat = np.asarray(Image.fromarray(mask / max(peak, 1e-12)).resize(size, Image.BILINEAR))
    picture = photo.astype(np.float64)
    area = picture[box[1]:box[1] + size[1], box[0]:box[0] + size[0]]
    area[:] = (1 - alpha) * area + alpha * colorize(heat)[:area.shape[0], :area.shape[1]]
    image = Image.fromarray(np.rint(picture).astype(np.uint8))
    if region is not None and box != (0, 0, width, height):
        ImageDraw.Draw(image).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), outline=(255, 255, 255))
    return _with_colour_bar(image, peak)


def _with_colour_bar(image: Image.Image, peak: float) -> Image.Image:
    """``image`` with a white panel on its right: a vertical colour bar, the maximum at its top, 0 at its
    bottom; font and bar scale with the image height."""
    width, height = image.size
    font_size = int(np.clip(height / 24, 9, 48))
    font = _font(font_size)
    labels = (f"{peak:.3g}", "0")
    text_width = max(int(np.ceil(ImageDraw.Draw(image).textlength(label, font=font))) for label in labels)
    bar_width, margin = max(6, font_size), max(3, font_size // 2)
    canvas = Image.new("RGB", (width + 3 * margin + bar_width + text_width, height), (255, 255, 255))
    canvas.paste(image, (0, 0))
    bar_top, bar_bottom = font_size // 2, max(font_size // 2 + 2, height - font_size // 2)
    ramp = colorize(np.linspace(1.0, 0.0, bar_bottom - bar_top))[:, None, :].repeat(bar_width, axis=1)
    canvas.paste(Image.fromarray(np.ascontiguousarray(ramp)), (width + margin, bar_top))
    draw = ImageDraw.Draw(canvas)
    text_left = width + 2 * margin + bar_width
    draw.text((text_left, bar_top), labels[0], fill=(0, 0, 0), font=font, anchor="lm")
    draw.text((text_left, bar_bottom), labels[1], fill=(0, 0, 0), font=font, anchor="lm")
    return canvas


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (FreeType builds)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def attention_overlay(model, image, path: Union[str, Path], layers: Union[int, Sequence[int], None] = None,
                      head_fusion: str = "mean", discard_ratio: float = 0.9, alpha: float = 0.5) -> np.ndarray:
    """Write ``image`` with its class-token attention-rollout map over it and a colour bar to ``path``
    (PNG, JPEG, ... by suffix), drawn with Pillow; the library function behind ``vit-zoo attention``.

    Args:
        model: a vit_zoo ViT with a class token, or a tower pooled by its MAP head (SigLIP: the probe's map);
            its identity's preprocessing decides the region it sees.
        image: a path, PIL image or (H, W, 3) array: the photo, drawn at its own size.
        layers, head_fusion, discard_ratio: of the rollout (see ``vit_zoo.use.attention.attention_mask``).
        alpha: opacity of the heat map.

    Returns:
        The map (h, w) float32 on the model's patch grid: the class token's rollout share per patch (not
        rescaled; the colour bar's top label is its maximum).
    """
    photo = load_images([image])[0]
    photo = photo if photo.dtype == np.uint8 else np.clip(np.rint(photo), 0, 255).astype(np.uint8)
    mask = attention_mask(model, [photo], layers=layers, head_fusion=head_fusion, discard_ratio=discard_ratio,
                          normalize=False)[0]
    settings = resolve_settings(model)
    region = input_region(photo.shape[0], photo.shape[1], settings.recipe, settings.image_size)
    render_overlay(photo, mask, region, alpha).save(path)
    return mask
