"""A checkpoint file in, a Keras model with its weights and its identity out: detect the format, read the
config and what the weights were trained with off the checkpoint, build, and apply the format's mapping
strictly (all or nothing).

Every format module has the same functions (see ``vit_zoo.converters``): ``detect(checkpoint)``,
``config_fields(checkpoint, hint)``, ``identity_fields(checkpoint, config)``, ``mapping(config, checkpoint)``.
Values a checkpoint cannot tell (its ``"assumed"`` entries) are assumed with one warning that lists each
of them, and recorded in ``identity.provenance.assumed``; what the caller knows (``known``: a manifest
entry's facts, a ``config=``) takes their place.
"""
from __future__ import annotations

import dataclasses
import re
import warnings
from typing import Optional

import numpy as np

from vit_zoo import converters
from vit_zoo.model.builder import build
from vit_zoo.model.config import ViTConfig
from vit_zoo.model.identity import LABEL_SET_SIZES, Identity, Provenance
from vit_zoo.model import spec
from vit_zoo.model.resample import resample_position_embeddings


def load_checkpoint(path, *, requested: Optional[ViTConfig] = None, name: Optional[str] = None,
                    explicit_config: bool = False, image_size=None, num_classes: Optional[int] = None,
                    config_overrides: Optional[dict] = None, known: Optional[dict] = None, **build_options):
    """Build the model a checkpoint describes and load its weights.

    Args:
        path: checkpoint file or directory (see ``converters.open_checkpoint``).
        requested: the config asked for (from name= / config=); its architecture must match the checkpoint,
            and formats that cannot read a value off the checkpoint (timm's head count without its
            config.json, a ``.weights.h5`` without its identity record) take it from here.
        name: the name asked for, for error messages.
        explicit_config: ``requested`` is a ``config=`` the caller wrote out (its numerics are given, not
            assumed); False for one derived from a name.
        image_size: resample the position embeddings to this size; None keeps the checkpoint's.
        num_classes: a new zero head of this size (no class names); None keeps the checkpoint's head.
        config_overrides: ViTConfig fields for the built model (dropout rates, resampling mode).
        known: facts about the checkpoint from outside the file, as parts of an identity record:
            ``{"config": {field: value}, "preprocessing": Preprocessing, "labels": ..., "provenance":
            {field: value}}`` (each optional), e.g. from a manifest entry.
        build_options: keyword arguments of ``vit_zoo.build``.
    Returns:
        (model, source_config, source_num_classes or None when the checkpoint has no head); the model's
        ``identity`` holds its config, preprocessing, class names and provenance.
    """
    known = known or {}
    with converters.open_checkpoint(path) as checkpoint:
        source_format = converters.detect_format(checkpoint)
        fields = dict(source_format.config_fields(checkpoint, requested))
        assumed = dict(fields.pop("assumed", {}))
        fields.update(known.get("config", {}))
        source_classes = fields.pop("num_classes", None)
        base = requested if requested is not None else ViTConfig()
        # None: the checkpoint has no head; 0: its top is complete without a classifier (an image tower)
        source = base.replace(**fields, num_classes=base.num_classes if source_classes is None else source_classes)
        if requested is not None:
            _check_same_architecture(checkpoint, source, requested, name)
        if build_options.get("include_top", True) and source_classes is None and num_classes is None:
            raise converters.CheckpointError(
                f"checkpoint {checkpoint.path.name!r} has no classification head; pass num_classes=N for "
                f"a new head, or include_top=False for features")
        changes = dict(config_overrides or {})
        changes.update({k: v for k, v in (("image_size", image_size), ("num_classes", num_classes))
                        if v is not None})
        target = source.replace(**changes)
        new_head = source_classes is None or (num_classes is not None and num_classes != source_classes)
        identity = _identity(source_format, checkpoint, source, target, new_head, known, assumed,
                             explicit_config)
        model = build(target, identity=identity, **build_options)
        rows = source_format.mapping(source, checkpoint)
        if source_classes is None:
            head_paths = {v.path for v in spec.head_variables(source)}
            rows = [r for r in rows if r.target not in head_paths]
        rows = [_resampled(r, source, target) if r.target == "pos_embed/embeddings" else r for r in rows]
        model_paths = {variable.path for variable in model.weights}
        absent = {r.target.split("/")[0] for r in rows} - {p.split("/")[0] for p in model_paths}
        fresh_head = {v.path for v in spec.head_variables(target)} & model_paths if new_head else set()
        set_aside = getattr(source_format, "SET_ASIDE", {})
        converters.apply_rows(model, rows, checkpoint, ignored={**source_format.IGNORED, **set_aside},
                              absent_layers=absent, keep_initialised=fresh_head, snapshot=False,  # a failure
                              description=f"{source_format.NAME} checkpoint {checkpoint.path.name!r}")  # discards it
        _announce_set_aside(checkpoint, set_aside, source_format.NAME)
    for variable in model.weights:
        if variable.path in fresh_head:  # the ViT fine-tuning recipe starts a new head at zero
            variable.assign(np.zeros(variable.shape, "float32"))
    return model, source, source_classes


def _announce_set_aside(checkpoint, set_aside: dict, format_name: str) -> None:
    """One warning for the tensors a format sets aside deliberately (a CLIP / SigLIP text tower), with their
    count and why; none when the checkpoint holds none of them."""
    counts = {}
    for pattern, reason in set_aside.items():
        counts[reason] = counts.get(reason, 0) + sum(1 for key in checkpoint.keys() if re.fullmatch(pattern, key))
    found = "; ".join(f"{count} tensors of {reason}" for reason, count in counts.items() if count)
    if found:
        warnings.warn(f"{format_name} checkpoint {checkpoint.path.name!r}: set aside {found}", UserWarning,
                      stacklevel=4)


def _identity(source_format, checkpoint, source: ViTConfig, target: ViTConfig, new_head: bool, known: dict,
              assumed: dict, explicit_config: bool) -> Identity:
    """The built model's identity: the format's reading of the checkpoint, what ``known`` adds, and one
    warning for every value that had to be assumed."""
    described = dict(source_format.identity_fields(checkpoint, source))
    assumed.update(described.pop("assumed", {}))
    preprocessing = known.get("preprocessing") or described["preprocessing"]
    if known.get("preprocessing"):
        assumed.pop("preprocessing", None)
    if new_head:
        labels = None
    elif "labels" in known:
        labels = known["labels"]
    elif "labels" in described:  # the format states them (None: it knows nobody named the classes)
        labels = described["labels"]
    else:
        labels = _label_set_by_size(source.num_classes)
        if labels is not None:
            assumed["labels"] = labels
    for field in set(known.get("config", {})) | (set(ViTConfig.__dataclass_fields__) if explicit_config else set()):
        assumed.pop(field, None)
    if "labels" in known or new_head:
        assumed.pop("labels", None)
    provenance = described.get("provenance") or Provenance(format=source_format.NAME, source=str(checkpoint.path))
    provenance = dataclasses.replace(provenance, **known.get("provenance", {}), assumed=sorted(assumed))
    if assumed:
        listed = "; ".join(f"{key} = {value}" for key, value in sorted(assumed.items()))
        warnings.warn(f"{source_format.NAME} checkpoint {checkpoint.path.name!r} does not state every value its "
                      f"model needs; assumed: {listed} (model.identity.provenance.assumed lists them). To "
                      f"state them: keep the source's own files beside the weights (timm's config.json, "
                      f"Hugging Face's preprocessor_config.json), load published weights with pretrained=, "
                      f"or pass config= for the numerics", UserWarning, stacklevel=4)
    return Identity(target, preprocessing, labels, provenance)


def _label_set_by_size(num_classes: int):
    """The named label set a head of this size most likely is (an assumption, warned about)."""
    matches = [name for name, size in LABEL_SET_SIZES.items() if size == num_classes]
    return matches[0] if matches else None


def _resampled(position_row, source: ViTConfig, target: ViTConfig):
    """The position-embedding row, resampled at load time to the target's stored grid where that differs
    (a checkpoint whose config keeps its own grid, ``position_grid``, is resampled in the graph instead)."""
    if source.stored_position_grid == target.stored_position_grid:
        return position_row
    transform = position_row.transform

    def resample(*arrays):
        return resample_position_embeddings(np.asarray(transform(*arrays), np.float32),
                                            source.stored_position_grid, target.stored_position_grid,
                                            source.num_embedded_prefix_tokens, target.position_embedding_resampling)
    return position_row._replace(transform=resample)


def describe_architecture(config: ViTConfig) -> str:
    """e.g. ``"vit-base-16 (patch 16, width 768, MLP 3072, 12 heads, 12 blocks)"``."""
    label = config.variant or "a custom ViT"
    extras = [part for part, present in (
        ("distillation token", config.distillation_token), (f"{config.register_tokens} registers", config.register_tokens),
        ("LayerScale", config.layer_scale is not None), ("SwiGLU", config.mlp == "swiglu"),
        ("no class token", not config.class_token)) if present]
    return (f"{label} (patch {config.patch_size}, width {config.hidden_size}, MLP {config.mlp_size}, "
            f"{config.num_heads} heads, {config.num_layers} blocks{''.join(', ' + e for e in extras)})")


def _check_same_architecture(checkpoint, source: ViTConfig, requested: ViTConfig, name):
    differing = requested.architecture_differences(source)
    if differing:
        suggestion = f"pass {source.variant!r}" if source.variant else "pass a matching config"
        raise converters.ConversionError(
            f"checkpoint {checkpoint.path.name!r} is {describe_architecture(source)}, not "
            f"{describe_architecture(requested)}; drop name= or {suggestion}")
