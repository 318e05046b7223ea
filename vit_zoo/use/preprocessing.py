"""Evaluation preprocessing of each checkpoint family, as data: decode, resize, crop.

Recipes (each reproduces its source's *evaluation* transform; all decode files with Pillow):
    "google"  vit_jax ``input_pipeline.py`` (eval: ``tf.image.resize(im, [crop_size, crop_size])``) and
              big_vision ``pp`` ``resize`` (``method="bilinear", antialias=False``): resize straight to the
              input size (aspect ratio not kept), bilinear, half-pixel centres, no antialiasing.
    "timm"    timm ``transforms_imagenet_eval`` (crop_mode "center"): resize the shorter side to
              ``floor(size / crop_pct)`` with Pillow bicubic (torchvision ``Resize(int)``: the longer side
              becomes ``int(short * long / short_in)``), then a centre crop of the input size
              (torchvision ``CenterCrop``: offset ``int(round((in - out) / 2))``). crop_pct is per
              checkpoint (0.9 for timm's ViTs at 224, 1.0 at 384; timm's global default is 0.875).
    "hf"      transformers ``ViTImageProcessor`` (its Pillow backend, ``ViTImageProcessorPil``): resize
              straight to the input size with Pillow bilinear (antialiased when shrinking).
Each recipe's interpolation above is its source's default; weights that state another one are resized
with theirs (``identity.preprocessing.interpolation``: e.g. a Hugging Face processor with ``resample=3``
is resized bicubically). Every recipe then rescales to [0, 1] and normalises with the checkpoint's
mean/std — which our models do inside (``include_preprocessing=True``), so ``preprocess`` returns
[0, 255] unless ``normalize=True``.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from vit_zoo.model.config import check_patch_multiple
from vit_zoo.model.identity import Identity, identity_of, source_preprocessing
from vit_zoo.model.recipes import (  # noqa: F401 (RECIPES re-exported: the recipes preprocess applies)
    INTERPOLATIONS, RECIPES, Recipe, crop_scale_size, timm_crop_pct)
from vit_zoo.use.images import MAX_PIXELS, load_image, load_images


_PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything ``preprocess`` needs: the recipe (with its crop_pct), the output size and mean/std."""
    recipe: Recipe
    image_size: Tuple[int, int]
    mean: Optional[Tuple[float, float, float]] = None
    std: Optional[Tuple[float, float, float]] = None


def preprocess(images, weights=None, *, recipe: Optional[str] = None, image_size=None,
               crop_pct: Optional[float] = None, interpolation: Optional[str] = None, normalize: bool = False,
               mean=None, std=None, value_range=(0, 255), max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode, resize and crop images as a checkpoint's own evaluation does.

    Args:
        images: a path, PIL image, array or tensor ((H, W[, C]) one image, (B, H, W, C) a batch), or a list
            of paths / PIL images / (H, W[, C]) arrays. Arrays: uint8, integers in 0..255, or floats in
            ``value_range``. Grayscale becomes RGB; RGBA is composited over white (a warning says so).
        weights: where the settings come from: a vit_zoo model (its ``identity``: recipe, crop fraction,
            interpolation, image size, mean/std; its input size and ``preprocessing`` layer), an
            ``Identity``, a manifest key (``"vit-base-16"`` for its default weights, ``"vit-base-16.TAG"``),
            a manifest entry dict (``image_size``, ``mean``, ``std``, ``format``; optional ``recipe``,
            ``crop_pct``, ``interpolation``) or a ``ViTConfig`` (size and mean/std only).
        recipe: ``"google"``, ``"timm"`` or ``"hf"``; default: the weights', else "google".
        image_size: output (H, W) or int; overrides the one from ``weights``.
        crop_pct: the "timm" recipe's crop fraction; default: the weights', else as timm's ViT configs
            (0.9 below 384 px, 1.0 at 384 px and above).
        interpolation: ``"bilinear"`` or ``"bicubic"``; default: the weights', else the recipe's own
            (bicubic for "timm", bilinear for the others).
        normalize: False: return [0, 255] pixels (for models built with ``include_preprocessing=True``);
            True: return ``(x / 255 - mean) / std``.
        mean, std: per-channel normalisation of [0, 1] pixels; default: from ``weights``.
        value_range: (low, high) of float array inputs; ``(0, 1)`` for [0, 1] images.
        max_pixels: files and PIL images with more pixels are refused before decoding.

    A recipe given explicitly takes the recipe's own crop fraction and interpolation unless they are given
    too (the weights' crop and interpolation belong to the weights' recipe).

    Returns:
        (B, H, W, 3) float32 NumPy array: RGB in [0, 255], or normalised when ``normalize=True``.

    Example:
        >>> import numpy as np
        >>> preprocess(np.zeros((40, 60, 3), "uint8"), image_size=32, recipe="timm").shape
        (1, 32, 32, 3)
    """
    transform = ImageTransform(resolve_settings(weights, recipe=recipe, image_size=image_size, crop_pct=crop_pct,
                                                interpolation=interpolation, mean=mean, std=std), normalize)
    return np.stack([transform.fit(image) for image in load_images(images, max_pixels, value_range)])


@dataclasses.dataclass(frozen=True)
class ImageTransform:
    """The one per-image transform of ``preprocess``, ``predict`` and ``evaluate``: ``transform(item, where)``
    takes a path, PIL image, encoded bytes or (H, W[, C]) array (``load_image``; ``where`` names it in errors),
    ``fit(image)`` a decoded one; both give (H, W, 3) float32 in [0, 255], or normalised when ``normalize``."""
    settings: Settings
    normalize: bool = False

    def __post_init__(self):
        if self.normalize and (self.settings.mean is None or self.settings.std is None):
            raise ValueError("normalize=True needs the mean and std the weights were trained with: pass weights="
                             " (a model with a preprocessing layer, or a manifest entry) or mean= and std=")

    def __call__(self, item, where: str = "the image") -> np.ndarray:
        return self.fit(load_image(item, where))

    def fit(self, image: np.ndarray) -> np.ndarray:
        pixels = apply_recipe(image, self.settings.recipe, self.settings.image_size)
        if not self.normalize:
            return pixels
        mean, std = np.asarray(self.settings.mean, np.float32), np.asarray(self.settings.std, np.float32)
        return ((pixels / np.float32(255.0) - mean) / std).astype(np.float32)


def resolve_settings(weights=None, *, recipe=None, image_size=None, crop_pct=None, interpolation=None,
                     mean=None, std=None) -> Settings:
    """The settings for ``weights`` (a model, ``Identity``, manifest key or entry dict, ``ViTConfig``, or
    None), explicit arguments taking precedence (see ``preprocess``)."""
    found = _settings_from(weights)
    name = recipe or found.get("recipe") or "google"
    if name not in RECIPES:
        raise ValueError(f"unknown preprocessing recipe {name!r}; known: {sorted(RECIPES)}")
    chosen = RECIPES[name]
    if found.get("recipe") == name:  # the weights' crop and interpolation belong to their own recipe
        crop_pct = crop_pct if crop_pct is not None else found.get("crop_pct")
        interpolation = interpolation or found.get("interpolation")
    if interpolation is not None:
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {interpolation!r}")
        chosen = dataclasses.replace(chosen, interpolation=interpolation)
    if crop_pct is not None:
        if not (isinstance(crop_pct, (int, float)) and 0 < crop_pct <= 1):
            raise ValueError(f"crop_pct must be a fraction in (0, 1], got {crop_pct!r}")
        if chosen.resize != "shorter-side-crop" and crop_pct != 1:
            raise ValueError(f"recipe {name!r} resizes straight to the input size and takes no crop_pct "
                             f"(got {crop_pct}); use recipe='timm' for a centre crop")
        chosen = dataclasses.replace(chosen, crop_pct=float(crop_pct))
    size = image_size if image_size is not None else found.get("image_size")
    if size is None:
        raise ValueError("the output size is unknown: pass image_size= or weights= (a model with a fixed "
                         "input size, or a manifest entry)")
    size = _size_pair(size)
    if image_size is not None and found.get("patch_size"):  # a dynamic_size model takes multiples of it
        check_patch_multiple(size, found["patch_size"], "image_size")
    if crop_pct is None and chosen.resize == "shorter-side-crop":
        chosen = dataclasses.replace(chosen, crop_pct=timm_crop_pct(size))  # timm's ViT configs
    mean = mean if mean is not None else found.get("mean")
    std = std if std is not None else found.get("std")
    return Settings(chosen, size, _triple("mean", mean), _triple("std", std))


def _settings_from(weights) -> dict:
    """Settings fields found on a model, Identity, manifest entry or ViTConfig (missing ones absent)."""
    if weights is None:
        return {}
    if isinstance(weights, str):  # "vit-base-16" (its default weights) or "vit-base-16.TAG"
        from vit_zoo.weights import manifest

        model, _, tag = weights.partition(".")
        return _settings_from(manifest.resolve(model, tag or True))
    if isinstance(weights, Identity):
        return _identity_settings(weights)
    if isinstance(weights, dict):  # a manifest entry: its format's evaluation transform unless it states one
        found = {key: weights[key] for key in ("image_size", "mean", "std") if weights.get(key) is not None}
        if weights.get("format") is not None:
            size = _size_pair(found.get("image_size", 224))
            found.update(_preprocessing_fields(source_preprocessing(weights["format"], size)))
        found.update({key: weights[key] for key in ("recipe", "crop_pct", "interpolation")
                      if weights.get(key) is not None})
        return found
    if hasattr(weights, "input_shape") and hasattr(weights, "get_layer"):  # a Keras model
        return _model_settings(weights)
    if all(hasattr(weights, field) for field in ("image_size", "mean", "std", "patch_size")):  # ViTConfig
        return {"image_size": weights.image_size, "mean": weights.mean, "std": weights.std}
    raise TypeError(f"weights must be a Keras model, an Identity, a manifest key or entry dict or a ViTConfig, "
                    f"got {type(weights).__name__}")


def _identity_settings(identity: Identity) -> dict:
    config = identity.config
    return {**_preprocessing_fields(identity.preprocessing), "image_size": config.image_size,
            "mean": config.mean, "std": config.std}


def _preprocessing_fields(preprocessing) -> dict:
    return {"recipe": preprocessing.recipe, "crop_pct": preprocessing.crop_pct,
            "interpolation": preprocessing.interpolation}


def _model_settings(model) -> dict:
    """A Keras model's settings: its identity's, its fixed input size, its preprocessing layer's mean/std;
    for a ``dynamic_size`` model also its patch size (an image_size= must be a multiple of it)."""
    identity = identity_of(model)
    found = {} if identity is None else _identity_settings(identity)
    height, width = model.input_shape[1:3]
    if height is not None and width is not None:
        found["image_size"] = (height, width)
    layers = {layer.name: layer for layer in model.layers}
    if (height is None or width is None) and "patch_embed" in layers:
        found["patch_size"] = layers["patch_embed"].strides[0]
    if "preprocessing" in layers:  # else built with include_preprocessing=False: normalize=True needs mean/std
        found["mean"], found["std"] = layers["preprocessing"].mean, layers["preprocessing"].std
    return found


def apply_recipe(image: np.ndarray, recipe: Recipe, size: Tuple[int, int]) -> np.ndarray:
    """One (h, w, 3) image (uint8, or float32 in [0, 255]) → (H, W, 3) float32 in [0, 255]."""
    if recipe.resize == "squash":
        return _resize(image, size, recipe)
    height, width = image.shape[:2]
    resized = _resize(image, timm_resize_size(height, width, size, recipe.crop_pct), recipe)
    top, left = _crop_offsets(resized.shape[:2], size)
    return resized[top:top + size[0], left:left + size[1]]


def input_region(height: int, width: int, recipe: Recipe, size: Tuple[int, int]):
    """The part of a (height, width) photo that ``apply_recipe`` turns into the model input of ``size``:
    (top, left, bottom, right) in photo pixels (floats) — the whole photo for the squash recipes, the
    centre crop for "shorter-side-crop"."""
    if recipe.resize == "squash":
        return 0.0, 0.0, float(height), float(width)
    resized = timm_resize_size(height, width, size, recipe.crop_pct)
    top, left = _crop_offsets(resized, size)
    scale_y, scale_x = height / resized[0], width / resized[1]
    return top * scale_y, left * scale_x, (top + size[0]) * scale_y, (left + size[1]) * scale_x


def _crop_offsets(resized: Tuple[int, int], size: Tuple[int, int]) -> Tuple[int, int]:
    """(top, left) of torchvision's ``CenterCrop(size)`` of a ``resized`` (height, width) image."""
    return int(round((resized[0] - size[0]) / 2.0)), int(round((resized[1] - size[1]) / 2.0))


def timm_resize_size(height: int, width: int, size: Tuple[int, int], crop_pct: float) -> Tuple[int, int]:
    """(height, width) timm resizes an image to before its centre crop of ``size``."""
    scale = crop_scale_size(size, crop_pct)
    if scale[0] == scale[1]:  # torchvision Resize(int): the shorter side becomes scale
        short_target = scale[0]
        if width <= height:
            return int(short_target * height / width), short_target
        return short_target, int(short_target * width / height)
    ratio = min(height / scale[0], width / scale[1])  # timm ResizeKeepRatio(longest=0)
    return round(height / ratio), round(width / ratio)


def _resize(image: np.ndarray, size: Tuple[int, int], recipe: Recipe) -> np.ndarray:
    height, width = size
    if recipe.resampler == "half-pixel":
        import keras  # only this recipe needs it; keeps `import vit_zoo.use.preprocessing` light

        batch = image[None].astype(np.float32)
        resized = keras.ops.image.resize(batch, (height, width), interpolation=recipe.interpolation,
                                         antialias=False, data_format="channels_last")
        return np.asarray(keras.ops.convert_to_numpy(resized)[0], dtype=np.float32)
    resample = _PIL_FILTERS[recipe.interpolation]
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize((width, height), resample), dtype=np.float32)
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], np.float32))
                           .resize((width, height), resample)) for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0.0, 255.0).astype(np.float32)


def _size_pair(size) -> Tuple[int, int]:
    pair = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in pair):
        raise ValueError(f"image_size must be a positive int or (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


def _triple(name: str, values: Optional[Sequence[float]]):
    if values is None:
        return None
    triple = tuple(float(v) for v in values)
    if len(triple) != 3:
        raise ValueError(f"{name} must be three numbers (R, G, B), got {values!r}")
    return triple
