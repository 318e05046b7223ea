"""The evaluation-preprocessing recipes, as data, and timm's crop rule: one definition for the model part
(``vit_zoo.model.identity`` validates a model's ``Preprocessing`` against it), the converters and
``vit_zoo.use.preprocessing`` (which applies the recipes to images). No Keras, no Pillow.

Recipes (each reproduces its source's *evaluation* transform):
    "google"  vit_jax / big_vision: resize straight to the input size, bilinear, half-pixel centres.
    "timm"    timm ``transforms_imagenet_eval``: the shorter side to ``floor(size / crop_pct)`` (bicubic),
              then a centre crop of the input size.
    "hf"      transformers ``ViTImageProcessor``: resize straight to the input size with Pillow bilinear.

Example:
    >>> timm_crop_pct((224, 224)), timm_crop_pct((384, 384))
    (0.9, 1.0)
    >>> crop_scale_size((224, 224), 0.875)
    (256, 256)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Tuple

INTERPOLATIONS = ("bilinear", "bicubic")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One evaluation transform.

    resize: ``"squash"`` (straight to (H, W)) or ``"shorter-side-crop"`` (keep the aspect ratio, resize to
        cover (H, W) / crop_pct, centre-crop (H, W)).
    resampler: ``"pil"`` (Pillow ``Image.resize``: antialiased, uint8 in → uint8 out) or ``"half-pixel"``
        (``tf.image.resize`` semantics through ``keras.ops.image.resize``: float, no antialiasing).
    """
    name: str
    resize: str
    interpolation: str
    resampler: str
    crop_pct: float = 1.0
    source: str = ""


RECIPES = {
    "google": Recipe("google", "squash", "bilinear", "half-pixel", 1.0,
                     "vit_jax input_pipeline.py eval; "
                     "big_vision pp resize(method='bilinear', antialias=False)"),
    "timm": Recipe("timm", "shorter-side-crop", "bicubic", "pil", 0.9,
                   "timm.data.transforms_factory.transforms_imagenet_eval (crop_mode='center')"),
    "hf": Recipe("hf", "squash", "bilinear", "pil", 1.0,
                 "transformers ViTImageProcessor / ViTImageProcessorPil (resample=BILINEAR)"),
}
# The recipes that resize straight to the input size and so take no crop (crop_pct 1).
SQUASH_RECIPES = tuple(name for name, recipe in RECIPES.items() if recipe.resize == "squash")


def timm_crop_pct(image_size) -> float:
    """The crop fraction of timm's ViT configs at ``image_size`` ((height, width) in pixels): 0.9 below
    384 px (the 224 px models), 1.0 at 384 px and above (the 384 px fine-tunes)."""
    return 1.0 if max(image_size) >= 384 else 0.9


def crop_scale_size(size: Tuple[int, ...], crop_pct: float) -> Tuple[int, ...]:
    """What timm resizes to before its centre crop of ``size`` (pixels, per side): ``floor(s / crop_pct)``."""
    return tuple(math.floor(s / crop_pct) for s in size)
