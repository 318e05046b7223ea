"""A Hugging Face ``preprocessor_config.json`` as vit_zoo preprocessing: mean/std, the evaluation transform
and the input size, per model type.

The image processors (transformers 5, Pillow backend; each resizes uint8 images with Pillow):
    ViTImageProcessor    resize straight to ``size`` {"height", "width"} → recipe "hf" (squash).
    BitImageProcessor    (DINOv2) resize the shorter side to ``size`` {"shortest_edge": S} (the longer to
                         ``int(S * long / short)``), centre crop ``crop_size`` C → recipe "timm" with
                         crop_pct C / S. transformers crops at offset ``(in - C) // 2``, torchvision's
                         ``CenterCrop`` (the "timm" recipe) at ``round((in - C) / 2)``: one pixel apart when
                         ``in - C`` is odd and its half rounds up.
    DeiTImageProcessor   resize to ``size`` {"height": 256, "width": 256} (the aspect ratio not kept), then
                         centre crop 224. No recipe squashes before a crop: the nearest, "timm" with
                         crop_pct 224 / 256, equals it on square images and is recorded as assumed.
    CLIPImageProcessor   (CLIP, OpenCLIP's LAION repos) BiT's resize + crop, CLIP's mean/std → recipe "timm".
    SiglipImageProcessor resize straight to ``size`` (bicubic), mean = std = 0.5 → recipe "hf" (squash).
A legacy int ``size`` means {"height", "width"} for ViT, DeiT and SigLIP processors and {"shortest_edge"} for
BiT's and CLIP's (transformers ``get_size_dict``). Without a preprocessor_config.json the published repos' processors
are assumed: google/vit-* (mean = std = 0.5, squash bilinear), facebook/deit-* (ImageNet mean/std, 256 → 224
bicubic), facebook/dinov2-* (ImageNet mean/std, shorter side 256, crop 224, bicubic).
"""
from __future__ import annotations

from typing import Optional, Tuple

from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError
from vit_zoo.model import variants
from vit_zoo.model.identity import Preprocessing
from vit_zoo.model.recipes import crop_scale_size

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = variants.CLIP_MEAN, variants.CLIP_STD
# PIL resampling filters of ``resample`` (PIL.Image.Resampling values).
PIL_RESAMPLE = {2: "bilinear", 3: "bicubic"}

# What the published repos' preprocessor_config.json files state, per model type: (mean, std, processor).
PUBLISHED = {
    "vit": ((0.5,) * 3, (0.5,) * 3, {"image_processor_type": "ViTImageProcessor", "resample": 2}),
    "deit": (IMAGENET_MEAN, IMAGENET_STD, {"image_processor_type": "DeiTImageProcessor", "resample": 3,
                                           "size": {"height": 256, "width": 256}, "do_center_crop": True,
                                           "crop_size": {"height": 224, "width": 224}}),
    "dinov2": (IMAGENET_MEAN, IMAGENET_STD, {"image_processor_type": "BitImageProcessor", "resample": 3,
                                             "size": {"shortest_edge": 256}, "do_center_crop": True,
                                             "crop_size": {"height": 224, "width": 224}}),
    # openai/clip-vit-*, laion/CLIP-ViT-*: CLIPImageProcessor; google/siglip-*, google/siglip2-* (fixed
    # resolution): SiglipImageProcessor
    "clip": (CLIP_MEAN, CLIP_STD, {"image_processor_type": "CLIPImageProcessor", "resample": 3,
                                   "size": {"shortest_edge": 224}, "do_center_crop": True,
                                   "crop_size": {"height": 224, "width": 224}}),
    "siglip": ((0.5,) * 3, (0.5,) * 3, {"image_processor_type": "SiglipImageProcessor", "resample": 3,
                                        "size": {"height": 224, "width": 224}}),
}
PUBLISHED["dinov2_with_registers"] = PUBLISHED["dinov2"]


def processor_config(checkpoint: Checkpoint) -> Optional[dict]:
    """preprocessor_config.json beside the weights (read by ``open_checkpoint``), or None."""
    return checkpoint.metadata.get("preprocessor_config")


def normalisation(checkpoint: Checkpoint, model_type: str):
    """(mean, std) of [0, 1] pixels from preprocessor_config.json; the published repos' without one."""
    processor = processor_config(checkpoint)
    if processor is None:
        return PUBLISHED[model_type][:2]
    if not processor.get("do_normalize", True):
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def three(name):
        value = processor.get(name, 0.5)
        return (value,) * 3 if isinstance(value, (int, float)) else tuple(value)

    return three("image_mean"), three("image_std")


def model_image_size(checkpoint: Checkpoint, config_image: Tuple[int, int]):
    """(the input size, None or what was assumed): the processor's centre crop (DINOv2: 224 px, while its
    config.json image_size, 518, is the size its position table is stored for), else config.json's."""
    processor = processor_config(checkpoint)
    if processor is not None and processor.get("do_center_crop", True) and processor.get("crop_size"):
        return _pair(processor["crop_size"]), None
    return config_image, (f"{config_image} (config.json image_size; no preprocessor_config.json crop_size "
                          f"to take the evaluation size from)")


def preprocessing(checkpoint: Checkpoint, model_type: str, image_size) -> Tuple[Preprocessing, dict]:
    """(the evaluation transform as a vit_zoo recipe, {"preprocessing": what was assumed} or {})."""
    processor = processor_config(checkpoint)
    stated = processor is not None
    processor = processor if stated else PUBLISHED[model_type][2]
    resample = processor.get("resample", 2)
    if resample not in PIL_RESAMPLE:
        raise CheckpointError(f"{str(checkpoint.path.parent / 'preprocessor_config.json')!r}: resample "
                              f"{resample!r}; vit_zoo resizes with 2 (bilinear) or 3 (bicubic)")
    interpolation = PIL_RESAMPLE[resample]
    kind = processor.get("image_processor_type") or processor.get("feature_extractor_type") or ""
    size = _size(processor.get("size"), square=not kind.startswith(("Bit", "CLIP")))
    crop = _pair(processor["crop_size"]) if processor.get("do_center_crop") and processor.get("crop_size") else None
    name = kind or f"the {model_type} image processor"
    if crop is None or (size.get("height"), size.get("width")) == crop:  # ViTImageProcessor: squash
        found, gap = Preprocessing("hf", 1.0, interpolation), None
    elif "shortest_edge" in size:
        found, gap = _shorter_side_crop(size["shortest_edge"], crop, interpolation, name)
    else:
        squash = (size.get("height"), size.get("width"))
        found = Preprocessing("timm", min(c / s for c, s in zip(crop, squash)), interpolation)
        gap = (f"{name} resizes to {squash} without keeping the aspect ratio, then crops {crop}; the nearest "
               f"recipe, 'timm' crop_pct {found.crop_pct:g} (shorter side kept), equals it on square images")
    published = "" if stated else f"no preprocessor_config.json: {name} of the published repos ({_describe(processor)})"
    assumed = {"preprocessing": "; ".join(part for part in (published, gap) if part)} if published or gap else {}
    if stated and gap is None and crop is not None and crop != tuple(image_size):
        assumed["preprocessing"] = f"{name} crops {crop}, the model takes {tuple(image_size)}"
    return found, assumed


def _shorter_side_crop(shortest: int, crop, interpolation: str, name: str):
    """BitImageProcessor's resize + crop as the "timm" recipe; the gap where the recipe cannot equal it."""
    crop_pct = crop[0] / shortest
    found = Preprocessing("timm", crop_pct, interpolation) if crop_pct <= 1 else Preprocessing("timm", 1.0,
                                                                                              interpolation)
    if crop[0] != crop[1] or crop_scale_size(crop, found.crop_pct)[0] != shortest:
        return found, (f"{name} resizes the shorter side to {shortest} and crops {crop}; the nearest recipe is "
                       f"'timm' crop_pct {found.crop_pct:g}")
    return found, None


def _size(size, square: bool) -> dict:
    if size is None:
        return {}
    if isinstance(size, int):
        return {"height": size, "width": size} if square else {"shortest_edge": size}
    return dict(size)


def _pair(size) -> Tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, dict):
        return (int(size["height"]), int(size["width"]))
    return tuple(int(s) for s in size)


def _describe(processor: dict) -> str:
    return ", ".join(f"{key} {processor[key]}" for key in ("size", "crop_size", "resample") if key in processor)
