"""``load``: a named variant, a config or a checkpoint in, a ready Keras model out."""
from __future__ import annotations

from typing import Optional

from vit_zoo.weights import pretrained as published
from vit_zoo.model.config import ViTConfig
from vit_zoo.weights.convert import load_checkpoint
from vit_zoo.model.builder import build


def load(name: Optional[str] = None, *, config: Optional[ViTConfig] = None, image_size=None,
         num_classes: Optional[int] = None, include_top: bool = True, pooling=None,
         include_preprocessing: bool = True, classifier_activation=None, dropout_rate=None,
         attention_dropout_rate=None, drop_path_rate=None, dtype=None, weights=None, pretrained=False,
         dynamic_size: bool = False, resampling: Optional[str] = None, head: Optional[str] = None):
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
        weights: a checkpoint path: a vit_jax or big_vision ``.npz``, a Hugging Face directory /
            ``model.safetensors`` / ``tf_model.h5`` / ``pytorch_model.bin``, a timm ``model.safetensors``, a
            vit_zoo ``.weights.h5`` or ``.keras`` file; or ``"hf-hub:REPO[@REVISION]"`` for a Hugging Face repo.
        pretrained: True (the manifest's default for ``name``) or a tag, for published weights: downloaded
            once, converted once, cached under ``VIT_ZOO_HOME`` (see ``vit_zoo.list_weights``).
        dynamic_size: input (None, None, 3); position embeddings resampled in the graph per input size.
        resampling: a ``ViTConfig.position_embedding_resampling`` mode (``"bicubic"``, ``"bicubic-antialias"``,
            ...); default: the source's.
        head: the head kind of the built model; default: the checkpoint's. ``"linear"`` on a distilled
            DeiT gives one head on the class token (the distillation token stays in the sequence;
            ``head_dist`` is dropped): with ``num_classes`` to fine-tune one head, without it to keep the
            checkpoint's class-token head alone. The default fine-tunes both heads, their logits averaged.

    Returns:
        A ``VisionTransformer`` (a functional keras.Model) taking (B, H, W, 3) images (RGB in [0, 255]
        with include_preprocessing); ``model.identity`` says what its weights are: config, preprocessing,
        class names and provenance. Values a checkpoint cannot tell are assumed with one warning that lists
        them (``model.identity.provenance.assumed``), or the load is refused with the argument to pass.
    """
    if name is not None and config is not None:
        raise ValueError("pass name= or config=, not both (config already fixes the architecture)")
    if pretrained and weights is not None:
        raise ValueError("pass pretrained= or weights=, not both")
    requested = config if config is not None else (ViTConfig.from_name(name) if name is not None else None)
    overrides = _overrides(dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate,
                           drop_path_rate=drop_path_rate, position_embedding_resampling=resampling, head=head)
    build_options = dict(include_top=include_top, pooling=pooling, include_preprocessing=include_preprocessing,
                         classifier_activation=classifier_activation, dynamic_size=dynamic_size, dtype=dtype)
    if not pretrained and weights is None:
        if requested is None:
            raise ValueError("load needs a model name (e.g. 'vit-base-16'), a config= or weights=; "
                             "see vit_zoo.list_models()")
        target = requested.replace(**overrides, **_overrides(image_size=image_size, num_classes=num_classes))
        return build(target, **build_options)
    known = None
    if pretrained:
        entry = published.resolve_entry(name, pretrained)
        published.warn_if_zero_head(entry, include_top, num_classes)
        weights = published.converted_checkpoint(entry)
        if name is None and config is None:
            name = entry["model"]
            requested = ViTConfig.from_name(name)
    elif isinstance(weights, str) and weights.startswith(published.HF_HUB_PREFIX):
        weights, known = published.hub_checkpoint(weights)
    model, _, _ = load_checkpoint(weights, requested=requested, name=name, explicit_config=config is not None,
                                  image_size=image_size, num_classes=num_classes, config_overrides=overrides,
                                  known=known, **build_options)
    return model


def _overrides(**values) -> dict:
    return {key: value for key, value in values.items() if value is not None}
