"""``load``: a named variant, a config or a checkpoint in, a ready Keras model out."""
from __future__ import annotations

import inspect
from typing import Optional

import numpy as np

from vit_zoo import converters
from vit_zoo.config import ViTConfig
from vit_zoo.model import build
from vit_zoo.resample import resample_position_embeddings

# Fields that define the architecture: a checkpoint must agree with name=/config= on all of them.
ARCHITECTURE_FIELDS = ("patch_size", "hidden_size", "mlp_size", "num_heads", "num_layers")


def load(name: Optional[str] = None, *, config: Optional[ViTConfig] = None, image_size=None,
         num_classes: Optional[int] = None, include_top: bool = True, pooling=None,
         include_preprocessing: bool = True, classifier_activation=None, dropout_rate=None,
         attention_dropout_rate=None, drop_path_rate=None, dtype=None, weights=None, pretrained=False,
         dynamic_size: bool = False, resampling: Optional[str] = None):
    """Build a ViT, optionally with weights from a checkpoint.

    Args:
        name: a variant name or alias (``"vit-base-16"``, ``"ViT-B_16"``, ``"vit_base_patch16_384"``);
            optional when ``weights`` is given (the variant is read off the checkpoint).
        config: a ``ViTConfig`` instead of a name.
        image_size: int or (h, w) in pixels; default: the checkpoint's (or the config's). A checkpoint
            of another size has its position embeddings resampled (``resampling``).
        num_classes: a new zero-initialised head of this many classes; None keeps the checkpoint's.
        include_top, pooling, include_preprocessing, classifier_activation: see ``vit_zoo.build``.
        dropout_rate, attention_dropout_rate, drop_path_rate: regularisation for fine-tuning.
        dtype: dtype or mixed-precision policy (``"mixed_bfloat16"``); outputs stay float32.
        weights: a checkpoint path: a vit_jax ``.npz``, a Hugging Face directory / ``model.safetensors``
            / ``tf_model.h5`` / ``pytorch_model.bin``, a timm ``model.safetensors``, or a vit_zoo
            ``.weights.h5``.
        pretrained: True or a manifest tag, for published weights (see ``vit_zoo.list_weights``).
        dynamic_size: input (None, None, 3); position embeddings resampled in the graph per input size.
        resampling: ``"bicubic"``, ``"bilinear"`` or ``"bilinear-corners"``; default: the source's.

    Returns:
        keras.Model taking (B, H, W, 3) images (RGB in [0, 255] with include_preprocessing).
    """
    if name is not None and config is not None:
        raise ValueError("pass name= or config=, not both (config already fixes the architecture)")
    if pretrained and weights is not None:
        raise ValueError("pass pretrained= or weights=, not both")
    if pretrained:
        raise NotImplementedError(
            "pretrained weights are not available yet in this version of vit_zoo; load a local checkpoint "
            "with vit_zoo.load(name, weights=PATH) (vit_jax .npz, Hugging Face or timm safetensors, or a "
            "vit_zoo .weights.h5)")
    requested = config if config is not None else (ViTConfig.from_name(name) if name is not None else None)
    overrides = _overrides(dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate,
                           drop_path_rate=drop_path_rate, position_embedding_resampling=resampling)
    build_options = dict(include_top=include_top, pooling=pooling, include_preprocessing=include_preprocessing,
                         classifier_activation=classifier_activation, dynamic_size=dynamic_size, dtype=dtype)
    if weights is None:
        if requested is None:
            raise ValueError("load needs a model name (e.g. 'vit-base-16'), a config= or weights=; "
                             "see vit_zoo.list_models()")
        target = requested.replace(**overrides, **_overrides(image_size=image_size, num_classes=num_classes))
        return build(target, **build_options)
    return _load_checkpoint(weights, requested, name, image_size, num_classes, overrides, build_options)


def _overrides(**values) -> dict:
    return {key: value for key, value in values.items() if value is not None}


def _load_checkpoint(path, requested, name, image_size, num_classes, overrides, build_options):
    with converters.open_checkpoint(path) as checkpoint:
        source_format = converters.detect_format(checkpoint)
        fields = dict(source_format.config_fields(checkpoint))
        source_classes = fields.pop("num_classes", None)
        base = requested if requested is not None else ViTConfig()
        source = base.replace(**fields, num_classes=source_classes or base.num_classes)
        if requested is not None:
            _check_same_architecture(checkpoint, source, requested, name)
        new_head = num_classes is not None and num_classes != source_classes
        if build_options["include_top"] and source_classes is None and num_classes is None:
            raise ValueError(f"checkpoint {checkpoint.path.name!r} has no classification head; pass "
                             f"num_classes=N for a new head, or include_top=False for features")
        target = source.replace(**overrides, **_overrides(image_size=image_size, num_classes=num_classes))
        model = build(target, **build_options)
        rows = _mapping(source_format, source, checkpoint)
        if source_classes is None:
            rows = [r for r in rows if not r.target.startswith("head/")]
        rows = [_resampled(r, source, target) if r.target == "pos_embed/embeddings" else r for r in rows]
        model_layers = {variable.path.split("/")[0] for variable in model.weights}
        absent = {r.target.split("/")[0] for r in rows} - model_layers
        fresh_head = {"head/kernel", "head/bias"} & {v.path for v in model.weights} \
            if (new_head or source_classes is None) else set()
        converters.apply_rows(model, rows, checkpoint, ignored=source_format.IGNORED, absent_layers=absent,
                              keep_initialised=fresh_head,
                              description=f"{source_format.NAME} checkpoint {checkpoint.path.name!r}")
    for variable in model.weights:
        if variable.path in fresh_head:  # the ViT fine-tuning recipe starts a new head at zero
            variable.assign(np.zeros(variable.shape, "float32"))
    return model


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
    label = config.variant or "a custom ViT"  # e.g. "vit-base-16 (patch 16, width 768, ...)"
    return (f"{label} (patch {config.patch_size}, width {config.hidden_size}, MLP {config.mlp_size}, "
            f"{config.num_heads} heads, {config.num_layers} blocks)")


def _check_same_architecture(checkpoint, source: ViTConfig, requested: ViTConfig, name):
    differing = [f for f in ARCHITECTURE_FIELDS if getattr(source, f) != getattr(requested, f)]
    if differing:
        suggestion = f"pass {source.variant!r}" if source.variant else "pass a matching config"
        raise ValueError(f"checkpoint {checkpoint.path.name!r} is {describe_architecture(source)}, not "
                         f"{describe_architecture(requested)}; drop name= or {suggestion}")
