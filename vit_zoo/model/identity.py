"""A model's identity: its architecture and numerics, how to feed it, what its outputs mean, where it came from.

One ``Identity`` travels with every vit_zoo model (``model.identity``). It is part of the model's Keras
config, so ``model.save`` / ``keras.models.load_model`` keep it; vit_zoo's ``.weights.h5`` files carry it
too, and exports carry what their format can hold. ``preprocess``, ``predict``, ``embed``, ``attention``,
``evaluate`` and ``export`` read it; the sources fill it (a manifest entry, Hugging Face ``config.json`` and
``preprocessor_config.json``, timm's ``pretrained_cfg``, fine-tuning's class names).

    config         ViTConfig: architecture and numerics (GELU flavour, LayerNorm epsilon, pooling,
                   mean/std, input size, classes)
    preprocessing  Preprocessing: the evaluation transform's recipe, crop fraction and interpolation (the
                   image size and mean/std are the config's)
    labels         the class names of the head: a named set ("imagenet1k", "imagenet21k"), a tuple of
                   ``config.num_classes`` names, or None when nobody knows them
    provenance     Provenance: format, source (file, Hub repo, URL), manifest key, revision, sha256,
                   which values were assumed rather than read, and what a fine-tuned model started from

Example:
    >>> from vit_zoo.model.config import ViTConfig
    >>> identity = Identity(ViTConfig(num_classes=3), labels=("cat", "dog", "fox"))
    >>> Identity.from_dict(identity.to_dict()) == identity
    True
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple, Union

from vit_zoo.model import checkpoint_formats as formats
from vit_zoo.model.config import ViTConfig
from vit_zoo.model.recipes import INTERPOLATIONS, RECIPES, SQUASH_RECIPES, timm_crop_pct

# Named label sets and their sizes (the names themselves ship as package data: vit_zoo.use.labels).
LABEL_SET_SIZES = {"imagenet1k": 1000, "imagenet21k": 21843}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """The evaluation transform of the weights (see ``vit_zoo.use.preprocessing``).

    recipe: one of ``vit_zoo.model.recipes.RECIPES``. crop_pct: fraction of the resized image kept by the
    "timm" centre crop (1.0 for the squash recipes). interpolation: ``"bilinear"`` or ``"bicubic"``.
    """

    recipe: str = "google"
    crop_pct: float = 1.0
    interpolation: str = "bilinear"

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"preprocessing recipe must be one of {list(RECIPES)}, got {self.recipe!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {self.interpolation!r}")
        if isinstance(self.crop_pct, bool) or not isinstance(self.crop_pct, (int, float)) \
                or not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be a fraction in (0, 1], got {self.crop_pct!r}")
        if self.recipe in SQUASH_RECIPES and self.crop_pct != 1:
            raise ValueError(f"recipe {self.recipe!r} resizes straight to the input size and takes no crop "
                             f"(crop_pct {self.crop_pct}); use recipe 'timm' for a centre crop")
        object.__setattr__(self, "crop_pct", float(self.crop_pct))


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Where the weights came from.

    format: one of ``vit_zoo.model.checkpoint_formats.FORMATS``. source: the file path, ``"hf-hub:REPO"``
    or URL read. manifest_key: ``"model.tag"`` for published weights. revision: the Hub revision. sha256:
    of the source file, where known (the manifest's, or computed by the download). assumed: names of the
    values the source could not tell and that were assumed (a warning listed them at load).
    finetuned_from: the provenance (as a dict) of the weights a fine-tuned model started from.
    """

    format: str = formats.BUILT
    source: Optional[str] = None
    manifest_key: Optional[str] = None
    revision: Optional[str] = None
    sha256: Optional[str] = None
    assumed: Tuple[str, ...] = ()
    finetuned_from: Optional[dict] = None

    def __post_init__(self):
        formats.check_format(self.format, "provenance format")
        object.__setattr__(self, "assumed", tuple(self.assumed))


Labels = Union[str, Tuple[str, ...], None]


def source_preprocessing(format: str, image_size) -> Preprocessing:
    """The evaluation transform a source family uses where a checkpoint does not state its own: vit_jax /
    big_vision squash-resize bilinearly ("google"); transformers' ViTImageProcessor squash-resizes with
    Pillow bilinear ("hf"); timm's ViT configs centre-crop with crop_pct 0.9 below 384 px and 1.0 at 384 px
    and above, bicubic ("timm"); Meta's DINOv2 evaluates with resize 256, centre crop 224, bicubic ("timm",
    crop_pct 0.875). vit_zoo's own training evaluates like vit_jax ("google").
    ``image_size``: (height, width) in pixels."""
    if format == formats.META_DINOV2:
        return Preprocessing("timm", 0.875, "bicubic")
    if format == formats.TIMM:
        return Preprocessing("timm", timm_crop_pct(image_size), "bicubic")
    if format == formats.HF:
        return Preprocessing("hf", 1.0, "bilinear")
    return Preprocessing("google", 1.0, "bilinear")


@dataclasses.dataclass(frozen=True)
class Identity:
    """Everything that must travel with a model's weights (see the module docstring)."""

    config: ViTConfig
    preprocessing: Preprocessing = Preprocessing()
    labels: Labels = None
    provenance: Provenance = Provenance()

    def __post_init__(self):
        if not isinstance(self.config, ViTConfig):
            raise TypeError(f"Identity.config must be a ViTConfig, got {type(self.config).__name__}")
        object.__setattr__(self, "labels", checked_labels(self.labels, self.config.num_classes))

    @property
    def class_count(self) -> int:
        return self.config.num_classes

    def replace(self, **changes) -> "Identity":
        """A copy with fields replaced; ``config=`` may be a dict of ViTConfig changes. Labels that no
        longer fit a changed class count must be replaced too."""
        if isinstance(changes.get("config"), dict):
            changes["config"] = self.config.replace(**changes["config"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON-able dict; ``preprocessing`` also states the image size and mean/std it applies."""
        config = self.config
        preprocessing = dict(dataclasses.asdict(self.preprocessing), image_size=list(config.image_size),
                             mean=list(config.mean), std=list(config.std))
        provenance = dataclasses.asdict(self.provenance)
        provenance["assumed"] = list(provenance["assumed"])
        labels = list(self.labels) if isinstance(self.labels, tuple) else self.labels
        return {"config": config.to_dict(), "preprocessing": preprocessing, "labels": labels,
                "provenance": provenance}

    @classmethod
    def from_dict(cls, data: dict) -> "Identity":
        """The inverse of ``to_dict``; a clear ValueError for a record that is not one."""
        if not isinstance(data, dict) or "config" not in data:
            raise ValueError(f"not a vit_zoo identity record (expected a dict with 'config', "
                             f"'preprocessing', 'labels', 'provenance'): {str(data)[:200]}")
        preprocessing = {key: value for key, value in (data.get("preprocessing") or {}).items()
                         if key in _field_names(Preprocessing)}
        provenance = {key: value for key, value in (data.get("provenance") or {}).items()
                      if key in _field_names(Provenance)}
        return cls(ViTConfig.from_dict(data["config"]), Preprocessing(**preprocessing), data.get("labels"),
                   Provenance(**provenance))


def checked_labels(labels, num_classes: int) -> Labels:
    """``labels`` as stored: a named set, a tuple of ``num_classes`` strings, or None; errors say why not."""
    if labels is None:
        return None
    if isinstance(labels, str):
        if labels not in LABEL_SET_SIZES:
            raise ValueError(f"unknown label set {labels!r}; named sets: {sorted(LABEL_SET_SIZES)}, or give "
                             f"a list of {num_classes} class names")
        if LABEL_SET_SIZES[labels] != num_classes:
            raise ValueError(f"label set {labels!r} has {LABEL_SET_SIZES[labels]} classes, but the head has "
                             f"{num_classes}")
        return labels
    names = tuple(labels)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"class names must be strings, got {[type(n).__name__ for n in names][:5]}")
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names given for a head of {num_classes} classes; give one "
                         f"name per class, in class-index order")
    return names


def identity_of(model) -> Optional[Identity]:
    """The identity a model carries (``model.identity`` of a vit_zoo model), or None for other models."""
    identity = getattr(model, "identity", None)
    return identity if isinstance(identity, Identity) else None


def _field_names(cls) -> set:
    return {field.name for field in dataclasses.fields(cls)}
