"""A checkpoint file in, a Keras model with its weights out: detect the format, read the config off the
checkpoint, build, and apply the format's mapping strictly (all or nothing)."""
from __future__ import annotations

import inspect
from typing import Optional

import numpy as np

from vit_zoo import converters
from vit_zoo.model.config import ViTConfig
from vit_zoo.model.builder import build
from vit_zoo.model.resample import resample_position_embeddings
from vit_zoo.model.variants import Size

# Fields that define the architecture (what a variant name fixes): a checkpoint must agree with
# name=/config= on all of them.
ARCHITECTURE_FIELDS = ("patch_size",) + Size._fields


def load_checkpoint(path, *, requested: Optional[ViTConfig] = None, name: Optional[str] = None,
                    image_size=None, num_classes: Optional[int] = None, config_overrides: Optional[dict] = None,
                    source_overrides: Optional[dict] = None, metadata: Optional[dict] = None,
                    **build_options):
    """Build the model a checkpoint describes and load its weights.

    Args:
        path: checkpoint file or directory (see ``converters.open_checkpoint``).
        requested: the config asked for (from name= / config=); its architecture must match the checkpoint.
        name: the name asked for, for error messages.
        image_size: resample the position embeddings to this size; None keeps the checkpoint's.
        num_classes: a new zero head of this size; None keeps the checkpoint's head.
        config_overrides: ViTConfig fields for the built model (dropout rates, resampling mode).
        source_overrides: ViTConfig fields the checkpoint cannot show (mean/std from a manifest entry).
        metadata: replaces the metadata read beside the file (e.g. a cached file's config).
        build_options: keyword arguments of ``vit_zoo.build``.
    Returns:
        (model, source_config, source_num_classes or None when the checkpoint has no head)
    """
    with converters.open_checkpoint(path, metadata=metadata) as checkpoint:
        source_format = converters.detect_format(checkpoint)
        fields = dict(_config_fields(source_format, checkpoint, requested), **(source_overrides or {}))
        source_classes = fields.pop("num_classes", None)
        base = requested if requested is not None else ViTConfig()
        source = base.replace(**fields, num_classes=source_classes or base.num_classes)
        if requested is not None:
            _check_same_architecture(checkpoint, source, requested, name)
        if build_options.get("include_top", True) and source_classes is None and num_classes is None:
            raise ValueError(f"checkpoint {checkpoint.path.name!r} has no classification head; pass "
                             f"num_classes=N for a new head, or include_top=False for features")
        changes = dict(config_overrides or {})
        changes.update({k: v for k, v in (("image_size", image_size), ("num_classes", num_classes))
                        if v is not None})
        target = source.replace(**changes)
        model = build(target, **build_options)
        rows = _mapping(source_format, source, checkpoint)
        if source_classes is None:
            rows = [r for r in rows if not r.target.startswith("head/")]
        rows = [_resampled(r, source, target) if r.target == "pos_embed/embeddings" else r for r in rows]
        model_paths = {variable.path for variable in model.weights}
        absent = {r.target.split("/")[0] for r in rows} - {p.split("/")[0] for p in model_paths}
        new_head = source_classes is None or (num_classes is not None and num_classes != source_classes)
        fresh_head = {"head/kernel", "head/bias"} & model_paths if new_head else set()
        converters.apply_rows(model, rows, checkpoint, ignored=source_format.IGNORED, absent_layers=absent,
                              keep_initialised=fresh_head, snapshot=False,  # a failure discards the model
                              description=f"{source_format.NAME} checkpoint {checkpoint.path.name!r}")
    for variable in model.weights:
        if variable.path in fresh_head:  # the ViT fine-tuning recipe starts a new head at zero
            variable.assign(np.zeros(variable.shape, "float32"))
    return model, source, source_classes


def _config_fields(source_format, checkpoint, requested):
    """Formats that cannot read the head count off the tensors (timm without config.json) take the
    requested config's."""
    if requested is not None and "num_heads" in inspect.signature(source_format.config_fields).parameters:
        return source_format.config_fields(checkpoint, num_heads=requested.num_heads)
    return source_format.config_fields(checkpoint)


def _mapping(source_format, config, checkpoint):
    if len(inspect.signature(source_format.mapping).parameters) >= 2:
        return source_format.mapping(config, checkpoint)
    return source_format.mapping(config)


def _resampled(position_row, source: ViTConfig, target: ViTConfig):
    if source.grid_size == target.grid_size:
        return position_row
    transform = position_row.transform

    def resample(*arrays):
        return resample_position_embeddings(np.asarray(transform(*arrays), np.float32), source.grid_size,
                                            target.grid_size, source.num_prefix_tokens,
                                            target.position_embedding_resampling)
    return position_row._replace(transform=resample)


def describe_architecture(config: ViTConfig) -> str:
    """e.g. ``"vit-base-16 (patch 16, width 768, MLP 3072, 12 heads, 12 blocks)"``."""
    label = config.variant or "a custom ViT"
    return (f"{label} (patch {config.patch_size}, width {config.hidden_size}, MLP {config.mlp_size}, "
            f"{config.num_heads} heads, {config.num_layers} blocks)")


def _check_same_architecture(checkpoint, source: ViTConfig, requested: ViTConfig, name):
    differing = [f for f in ARCHITECTURE_FIELDS if getattr(source, f) != getattr(requested, f)]
    if differing:
        suggestion = f"pass {source.variant!r}" if source.variant else "pass a matching config"
        raise ValueError(f"checkpoint {checkpoint.path.name!r} is {describe_architecture(source)}, not "
                         f"{describe_architecture(requested)}; drop name= or {suggestion}")
