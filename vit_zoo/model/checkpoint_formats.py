"""The checkpoint formats a model's weights can come from: one registry, each name declared once.

A format name is what ``Provenance.format`` records, what a manifest entry's ``format`` states and what a
converter's ``NAME`` is. Every other place takes the names from here: ``vit_zoo.model.identity`` validates
provenance against ``FORMATS``; ``vit_zoo.weights.manifest_schema`` validates entries against
``MANIFEST_FORMATS`` (and how each is downloaded: ``URL_FORMATS``, ``HUB_FORMATS``); ``vit_zoo.weights.hub``
and each converter use the constants below. A leaf module without Keras, so the model part, the converters
and the download code may all import it.

Example:
    >>> check_format("timm")
    'timm'
    >>> DESCRIPTIONS[BUILT]
    'randomly initialised by vit_zoo: no checkpoint'
"""
from __future__ import annotations

from typing import Dict, Optional

# name -> (one-line description, how a manifest entry of the format is downloaded: "url", "hub" or None for
# a format that no manifest entry has). Filled by _declare, in declaration order.
_REGISTRY: Dict[str, tuple] = {}


def _declare(name: str, description: str, download: Optional[str] = None) -> str:
    _REGISTRY[name] = (description, download)
    return name


GOOGLE_NPZ = _declare("google-npz", "Google vit_jax .npz: flat '/'-separated Flax parameters (ViT, AugReg)", "url")
BIG_VISION_NPZ = _declare("big-vision-npz", "Google big_vision ViT .npz (params/..., unrolled encoder)", "url")
DEIT_PTH = _declare("deit-pth", "the original DeiT / DeiT-III releases: .pth of {'model': timm state dict}", "url")
META_DINOV2 = _declare("meta-dinov2", "Meta's DINOv2 torch.hub .pth state dicts (backbone, linear head)", "url")
OPENAI_CLIP = _declare("openai-clip", "an OpenAI CLIP state dict (visual.*) without open_clip_config.json", "url")
HF = _declare("hf", "a Hugging Face transformers checkpoint with its config.json (ViT, DeiT, DINOv2, CLIP, "
                    "SigLIP)", "hub")
TIMM = _declare("timm", "a timm state dict (model.safetensors / .pth), with timm's config.json where given", "hub")
OPEN_CLIP = _declare("open-clip", "an OpenCLIP checkpoint with open_clip_config.json beside it", "hub")
KERAS = _declare("keras", "vit_zoo's own weights: model.save_weights (.weights.h5) or model.save (.keras)")
BUILT = _declare("built", "randomly initialised by vit_zoo: no checkpoint")

FORMATS = tuple(_REGISTRY)
DESCRIPTIONS = {name: description for name, (description, _) in _REGISTRY.items()}
# The formats of manifest entries: downloaded from a plain URL, or from a Hugging Face Hub repo.
URL_FORMATS = tuple(name for name, (_, download) in _REGISTRY.items() if download == "url")
HUB_FORMATS = tuple(name for name, (_, download) in _REGISTRY.items() if download == "hub")
MANIFEST_FORMATS = URL_FORMATS + HUB_FORMATS


def check_format(name, what: str = "format", known=FORMATS) -> str:
    """``name`` when it is one of ``known`` (all formats by default), else a ValueError listing them."""
    if name not in known:
        raise ValueError(f"{what} must be one of {list(known)}, got {name!r}")
    return name
