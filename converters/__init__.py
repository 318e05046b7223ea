"""Checkpoint converters (installed as ``vit_zoo.converters``): one module per format.

Every format module is data plus the same four functions:
    NAME                      the format's name, one of ``vit_zoo.model.checkpoint_formats`` (the registry
                              of format names: "google-npz", "hf", "timm", ...)
    RECORDED_FORMATS          optional: every provenance format the module records, where it records more
                              than its NAME (timm's "deit-pth" for the DeiT release files)
    TELLTALE                  the keys ``detect`` looks for, for the unknown-format error
    IGNORED                   {key regex: reason} for tensors deliberately not used
    detect(checkpoint)        True when the checkpoint's keys are this format's
    config_fields(checkpoint, hint)
                              ViTConfig fields read off the checkpoint (shapes, config.json);
                              "num_classes" is None when the checkpoint has no head; ``hint`` is the
                              ViTConfig asked for (or None), for values the checkpoint cannot tell;
                              "assumed": {field: value} lists the values not read from the checkpoint
    identity_fields(checkpoint, config)
                              {"preprocessing": Preprocessing, "labels": names | set | None
                               (absent when the checkpoint cannot say: the loader then assumes the
                               ImageNet set of the head's size, with a warning), optionally
                               "provenance": Provenance, "assumed": {name: value}}
    mapping(config, checkpoint)
                              rows (our variable ← source keys, transform) for the whole model: the
                              format's table ``slot → (source key, transform)`` zipped with the model's
                              targets (``converters.targets``), which no format spells itself
The registry below detects the format; ``apply.apply_rows`` applies a mapping strictly. Errors are typed
(``converters.errors``): ``CheckpointError``, its ``UnsupportedLayoutError`` (a recognised layout that is
not converted, named) and ``ConversionError`` (a checkpoint that does not fit the model).
"""
from __future__ import annotations

import importlib

from vit_zoo.converters.apply import Row, apply_rows, row  # noqa: F401
from vit_zoo.converters.checkpoint import Checkpoint, open_checkpoint  # noqa: F401
from vit_zoo.converters.errors import CheckpointError, ConversionError, UnsupportedLayoutError  # noqa: F401

# Tried in order; the first whose detect() accepts the checkpoint converts it. big_vision comes before
# vit_jax: both are Flax .npz files, and vit_jax's detect leaves big_vision's block names to it. Meta's
# DINOv2 state dicts come before timm's, whose names they share (Meta's have mask_token, timm's do not).
FORMAT_MODULES = ("big_vision", "google_npz", "huggingface_tower", "huggingface", "open_clip_format", "dinov2_meta", "timm",
                  "keras_weights")


def formats():
    """The format modules that are present, in detection order."""
    found = []
    for name in FORMAT_MODULES:
        try:
            found.append(importlib.import_module(f"vit_zoo.converters.{name}"))
        except ModuleNotFoundError as error:
            if error.name != f"vit_zoo.converters.{name}":
                raise
    return found


def detect_format(checkpoint: Checkpoint):
    """The format module for ``checkpoint``, or a CheckpointError naming the keys looked for."""
    for module in formats():
        if module.detect(checkpoint):
            return module
    sample = sorted(checkpoint.keys())[:6]
    looked = "; ".join(f"{m.NAME}: {m.TELLTALE}" for m in formats())
    raise CheckpointError(f"unknown checkpoint format in {checkpoint.path.name!r}: its keys "
                          f"(first {len(sample)} of {len(checkpoint)}: {sample}) match no known layout. "
                          f"Looked for {looked}")


def recorded_formats() -> set:
    """Every provenance format the converters record: each format module's ``NAME``, or its
    ``RECORDED_FORMATS`` where it has them (``vit_zoo.model.checkpoint_formats`` declares the names)."""
    return {name for module in formats() for name in getattr(module, "RECORDED_FORMATS", (module.NAME,))}
