"""The model a fine-tuning run starts from, and the identity of the model it ends with.

A run starts from a variant name (random weights), published weights (``"NAME:TAG"``), a ``ViTConfig``,
a ``keras.Model``, or a checkpoint path in any format ``vit_zoo.load`` reads (vit_jax ``.npz``, a Hugging
Face folder or file, timm ``model.safetensors``, ``.weights.h5``, ``.keras``, ``"hf-hub:REPO"``), with a
new zero-initialised head sized to the data's classes. The fine-tuned model keeps the starting weights'
preprocessing, names its classes, and records where it started (``provenance.finetuned_from``).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Sequence

import keras

from vit_zoo.model import checkpoint_formats, spec
from vit_zoo.model.config import ViTConfig
from vit_zoo.model.identity import Identity, Provenance, identity_of
from vit_zoo.model.variants import resolve_name
from vit_zoo.weights.pretrained import HF_HUB_PREFIX as HUB_PREFIX  # the one spelling of the Hub scheme


def starting_model(model, num_classes: int, *, image_size=None, drop_path_rate=None, dtype=None):
    """A classifier of ``num_classes`` to fine-tune, from any of the starting points above. Call it in
    the distribution scope the run trains in."""
    from vit_zoo.weights.loading import load  # (vit_zoo.load; the train part sits below the public API)

    options = dict(num_classes=num_classes, image_size=image_size, drop_path_rate=drop_path_rate, dtype=dtype)
    if isinstance(model, ViTConfig):
        return load(config=model, **options)
    if isinstance(model, (str, os.PathLike)) and (str(model).startswith(HUB_PREFIX) or Path(model).exists()):
        if isinstance(model, str):
            refuse_a_name_shadowed_by_a_path(model)
        return load(weights=os.fspath(model), **options)
    if isinstance(model, str):
        name, _, tag = model.partition(":")
        if "/" in name or os.sep in name or name.endswith((".npz", ".keras", ".h5", ".safetensors", ".bin")):
            raise FileNotFoundError(f"model {model!r}: no such checkpoint file or folder")
        resolve_name(name)  # an unknown name fails here, before the warning about random weights
        if not tag:
            warnings.warn(f"model {name!r} without a weights tag starts from random weights (training from "
                          f"scratch); pass '{name}:TAG' for published weights (vit_zoo.list_weights)",
                          stacklevel=3)
        return load(name, pretrained=tag or False, **options)
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a name, 'NAME:TAG', a ViTConfig, a checkpoint path or a keras.Model, "
                        f"got {type(model).__name__}")
    return _given_model(model, num_classes)


def head_layers(model) -> list:
    """Names of the layers of ``model``'s classification head(s), what ``freeze_backbone`` trains: from its
    identity's spec (``head``, and ``head_dist`` for a distilled DeiT); ``["head"]`` for a plain Keras model."""
    identity = identity_of(model)
    return spec.head_layers(identity.config) if identity is not None else ["head"]


def refuse_a_name_shadowed_by_a_path(model: str) -> None:
    """A bare model name (no folder part) that is also a file or folder here is ambiguous: say so, and how
    to pick either, rather than load the path (a stray export named after its variant, say)."""
    if "/" in model or os.sep in model:
        return
    try:
        resolve_name(model.partition(":")[0])
    except ValueError:
        return
    kind = "folder" if Path(model).is_dir() else "file"
    raise ValueError(f"model {model!r} is both a model name and a {kind} in the current folder "
                     f"('{Path(model).resolve()}'); pass './{model}' to start from the {kind}, or rename or move "
                     f"the {kind} to use the model name")


def _given_model(model, num_classes: int):
    if model.output_shape[-1] != num_classes:
        raise ValueError(f"the model has {model.output_shape[-1]} outputs but the data has {num_classes} "
                         f"classes; pass a name, ViTConfig or checkpoint path (a new head is made), or save the "
                         f"model and pass its path")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.distribute.has_strategy():
            clone = keras.models.clone_model(model)  # variables must be created under the strategy's scope
            clone.set_weights(model.get_weights())
            if identity_of(model) is not None:
                clone.identity = model.identity  # clone_model drops it
            return clone
    return model


def finetuned_identity(model, class_names: Optional[Sequence[str]], saved_as) -> Optional[Identity]:
    """The identity ``model`` will have once fine-tuned, from the one it starts with: its config, the
    starting weights' preprocessing (a model built from scratch has the default "google" recipe),
    ``class_names`` as its labels (None: unknown), and a provenance that points at ``saved_as`` and records
    the starting weights' provenance. None for a model that carries no identity (a plain ``keras.Model``)."""
    start = identity_of(model)
    if start is None:
        return None
    return Identity(start.config, start.preprocessing, tuple(class_names) if class_names is not None else None,
                    Provenance(format=checkpoint_formats.KERAS, source=str(saved_as),
                               finetuned_from=start.to_dict()["provenance"]))
