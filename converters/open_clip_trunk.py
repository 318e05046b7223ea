"""OpenCLIP towers whose image trunk is a timm ViT (``open_clip.timm_model.TimmModel``: ``visual.trunk.*``, the
SigLIP configs ViT-B-16-SigLIP, ViT-SO400M-14-SigLIP-384, ViT-SO400M-16-SigLIP2-*, ...).

Layout: ``visual.trunk.<timm key>`` is ``timm.create_model(vision_cfg.timm_model_name, num_classes=0,
global_pool=vision_cfg.timm_pool)``'s state dict (``converters.timm``: norm_pre, the MAP head, ...), then
``vision_cfg.timm_proj``:
    "none"     the trunk's pooled features are the image embedding (the SigLIP configs: timm_pool "map")
    "linear"   visual.head.proj.weight (E, D), no bias (timm_proj_bias false): our projection
``timm_proj`` "mlp", a projection with bias, "" (the trunk's own head as the projection) and the attention
pools ("abs_attn", "rot_attn") are refused by name. The numerics are timm's for the trunk's architecture (its
GELU flavour and LayerNorm epsilon: ``timm_config.NUMERICS``), since open_clip runs timm's code; the
preprocessing and normalisation are open_clip's ``preprocess_cfg`` (``open_clip_format.identity_fields``).
"""
from __future__ import annotations

from vit_zoo.converters import timm
from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import UnsupportedLayoutError

PREFIX = "visual.trunk."
PROJECTION = "visual.head.proj.weight"
# open_clip's CLIPVisionCfg defaults for a timm trunk
DEFAULT_POOL, DEFAULT_PROJ = "avg", "linear"
POOLS = ("map", "avg", "token")


def is_trunk(checkpoint: Checkpoint) -> bool:
    return any(key.startswith(PREFIX) for key in checkpoint.keys())


def trunk(checkpoint: Checkpoint, vision: dict, where: str) -> Checkpoint:
    """The trunk's tensors as a timm state dict, with the config.json facts timm would write for it.

    Raises:
        UnsupportedLayoutError naming a ``vision_cfg`` option vit_zoo does not model, or a missing
        ``timm_model_name`` (the trunk's numerics are set by its timm architecture).
    """
    name = vision.get("timm_model_name")
    if not name:
        raise UnsupportedLayoutError(f"{where} has a timm trunk ('{PREFIX}*') but no open_clip_config.json "
                                     f"model_cfg.vision_cfg.timm_model_name beside it: the trunk's GELU flavour and "
                                     f"LayerNorm epsilon are set by that timm architecture; put the repo's "
                                     f"open_clip_config.json beside the weights", "OpenCLIP timm trunk without config")
    pool, proj = vision.get("timm_pool", DEFAULT_POOL), vision.get("timm_proj", DEFAULT_PROJ)
    refusals = {pool not in POOLS: f"timm_pool={pool!r} (vit_zoo models {list(POOLS)})",
                proj not in ("none", "linear"): f"timm_proj={proj!r} (vit_zoo models 'none' and 'linear')",
                bool(vision.get("timm_proj_bias")): "timm_proj_bias=true (a projection with bias)"}
    if True in refusals:
        raise UnsupportedLayoutError(f"{where}: an OpenCLIP timm trunk ({name}) with {refusals[True]}, which vit_zoo "
                                     f"does not model", f"OpenCLIP timm trunk {refusals[True].split(' (')[0]}")
    return checkpoint.view(PREFIX, {"architecture": name, "num_classes": 0, "global_pool": pool,
                                    "model_args": {"global_pool": pool}})


def config_fields(checkpoint: Checkpoint, vision: dict, where: str) -> dict:
    """The trunk's fields as ``converters.timm`` reads them, with the projection of ``timm_proj="linear"``; the
    tower's output is its embedding (``num_classes=0``)."""
    view = trunk(checkpoint, vision, where)
    if "head.weight" in view:
        raise UnsupportedLayoutError(f"{where} has '{PREFIX}head.weight': the trunk's own head as the projection "
                                     f"(timm_proj ''), which vit_zoo does not model",
                                     "OpenCLIP timm trunk head as projection")
    fields = timm.config_fields(view)
    linear = vision.get("timm_proj", DEFAULT_PROJ) == "linear"
    if linear != (PROJECTION in checkpoint):
        raise UnsupportedLayoutError(f"{where}: open_clip_config.json timm_proj={vision.get('timm_proj', DEFAULT_PROJ)!r}"
                                     f" but the checkpoint {'has no' if linear else 'has'} {PROJECTION!r}; the config "
                                     f"belongs to another model", "OpenCLIP timm trunk projection mismatch")
    fields.update(num_classes=0, projection_size=checkpoint.required_shape(PROJECTION, 2, "OpenCLIP")[0]
                  if linear else None)
    return fields


def mapping(config, checkpoint: Checkpoint) -> list:
    """timm's rows for the trunk with their keys under ``visual.trunk.``; the projection (timm's ``head`` in a
    timm tower) from ``visual.head.proj.weight``, a Linear of the same layout."""
    renamed = {"head.weight": PROJECTION}
    return [row._replace(sources=tuple(renamed.get(key, PREFIX + key) for key in row.sources))
            for row in timm.mapping(config, checkpoint.view(PREFIX))]
