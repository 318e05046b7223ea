"""How a model's graph was built from its config: ``vit_zoo.build``'s options, recorded with the model.

The identity (``vit_zoo.model.identity``) says what the weights are; this record says what this particular
graph takes and gives: whether it ends in the classification head(s), which pooling its output has, whether
it normalises its own inputs, its classifier activation and whether it takes any input size. It travels in
the model's Keras config beside the identity (``VisionTransformer``), so every use asks it -- "has a head",
"takes pixels in [0, 255]" -- instead of looking for layer names.

Example:
    >>> record = BuildRecord(include_top=False, pooling=None)
    >>> BuildRecord.from_dict(record.to_dict()) == record
    True
"""
from __future__ import annotations

import dataclasses
from typing import Optional

BUILD_KEY = "vit_zoo_build"  # in the model's Keras config


@dataclasses.dataclass(frozen=True)
class BuildRecord:
    """``vit_zoo.build``'s options as the graph has them.

    include_top: the outputs are the head's (B, num_classes) (logits, or probabilities with
        ``classifier_activation="softmax"``); the head layers are ``vit_zoo.model.spec.head_layers``.
    pooling: the pooling of the output (``ViTConfig.POOLINGS``, "gap" resolved to "avg-fcnorm" for an
        fc_norm config), or None for the token sequence (B, T, D) and for feature models (blocks' outputs).
    include_preprocessing: the model takes RGB in [0, 255] and normalises inside.
    classifier_activation: the name of the output activation (None for logits or features).
    dynamic_size: the model takes any input size divisible by the patch size.
    """

    include_top: bool = True
    pooling: Optional[str] = "token"
    include_preprocessing: bool = True
    classifier_activation: Optional[str] = None
    dynamic_size: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BuildRecord":
        known = {field.name for field in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise ValueError(f"not a vit_zoo build record (a dict with keys {sorted(known)}): {str(data)[:200]}")
        return cls(**data)

    @property
    def outputs(self) -> str:
        """``"probabilities"``, ``"logits"`` or ``"features"`` (pooled, tokens or blocks' outputs)."""
        if not self.include_top:
            return "features"
        return "probabilities" if self.classifier_activation == "softmax" else "logits"


def activation_name(activation) -> Optional[str]:
    """The name an activation is recorded by: None for none / "linear", else its string or function name."""
    name = activation if isinstance(activation, str) or activation is None else getattr(activation, "__name__", None)
    return None if name in (None, "linear") else name


def build_record_of(model) -> Optional[BuildRecord]:
    """The build record of a vit_zoo model (``model.build_record``), or None for other models."""
    record = getattr(model, "build_record", None)
    return record if isinstance(record, BuildRecord) else None


def has_head(model) -> bool:
    """True when ``model``'s outputs are its classification head's (built with ``include_top=True``)."""
    record = build_record_of(model)
    return record is not None and record.include_top


def has_preprocessing(model) -> bool:
    """True when ``model`` normalises its own inputs (built with ``include_preprocessing=True``): it takes
    RGB in [0, 255] rather than normalised pixels. False for a model vit_zoo did not build."""
    record = build_record_of(model)
    return record is not None and record.include_preprocessing


def record_from_graph(model) -> BuildRecord:
    """The record of a model saved before records existed (vit_zoo 0.x ``.keras`` files up to the family
    spec) or copied by ``keras.models.clone_model``: read once from its stable layer names."""
    layers = {layer.name: layer for layer in model.layers}
    include_top = "head" in layers
    pool = layers.get("pool")
    pooling = None
    if pool is not None:
        pooling = {"mean": "avg-fcnorm" if "fc_norm" in layers else "gap"}.get(pool.mode, pool.mode)
    activation = getattr(layers.get("predictions"), "activation", None)
    shape = model.input_shape if len(model.inputs) == 1 else (None, 0, 0, 3)
    return BuildRecord(include_top=include_top, pooling=pooling, include_preprocessing="preprocessing" in layers,
                       classifier_activation=activation_name(activation) if include_top else None,
                       dynamic_size=None in tuple(shape[1:3]))
