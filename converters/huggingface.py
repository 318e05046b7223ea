"""Hugging Face checkpoints: ``model.safetensors``, ``pytorch_model.bin`` and (ViT) ``tf_model.h5`` of
transformers' ViT, DeiT and DINOv2 classes, read as transformers 5 computes them.

    model_type "vit"       ViTModel (with its pooler), ViTForImageClassification (google/vit-*, and
                           facebook/deit-*-patch16-224: DeiT without distillation is a ViT)
    model_type "deit"      DeiTModel, DeiTForImageClassification (the class token's head; the distillation
                           token is there, unused by the head), DeiTForImageClassificationWithTeacher
                           (``cls_classifier`` and ``distillation_classifier``, logits averaged)
    model_type "dinov2", "dinov2_with_registers"
                           Dinov2Model, Dinov2ForImageClassification (classifier on class token ‖ mean of
                           the patch tokens, registers excluded) and the with-registers classes: LayerScale,
                           GELU or fused SwiGLU MLP, the 518 px position table resampled to the input in
                           the graph (Dinov2: bicubic; with registers: bicubic with antialiasing)
CLIP's and SigLIP's image towers are read by ``converters.huggingface_tower``; other model types (ViTMAE, BEiT,
…) are refused by name. The layouts and module
names are in ``converters.huggingface_layout``; config.json is read by ``converters.huggingface_config``,
preprocessor_config.json by ``converters.huggingface_processor``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from vit_zoo.converters import huggingface_config as hf_config
from vit_zoo.converters import huggingface_processor as processor
from vit_zoo.converters.apply import Row
from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.huggingface_layout import (TELLTALE, Layout, checked_layout,  # noqa: F401
                                                   layout, rows)
from vit_zoo.model import checkpoint_formats as formats

NAME = formats.HF
IGNORED = {r"(vit\.|deit\.|dinov2\.|dinov2_with_registers\.)?embeddings\.mask_token":
           "the mask token of masked-image-modelling pre-training (ViTModel(use_mask_token=True), DINOv2's "
           "iBOT masking); unused on whole images"}


def detect(checkpoint: Checkpoint) -> bool:
    """A layout read here, or a config.json naming a model type refused by name."""
    return layout(checkpoint) is not None or checkpoint.metadata.get("model_type") in hf_config.REFUSED


def mapping(config, checkpoint: Optional[Checkpoint] = None) -> List[Row]:
    """Rows for the whole model, in the layout of ``checkpoint`` (without one: PyTorch
    ``ViTForImageClassification``, keys with the ``vit.`` prefix). The head rows (``classifier``; DeiT's
    ``cls_classifier`` + ``distillation_classifier``) are always there; a caller loading a checkpoint
    without a head drops them or keeps a new head."""
    if checkpoint is None:
        return rows(config, Layout("torch", "vit."), "vit")
    return rows(config, checked_layout(checkpoint), hf_config.model_type(checkpoint))


def config_fields(checkpoint: Checkpoint, hint=None) -> Dict[str, object]:
    """ViTConfig fields from ``config.json`` (and ``preprocessor_config.json``) beside the checkpoint,
    cross-checked against the tensors; ``num_classes`` is None when the checkpoint has no classifier.
    Without a preprocessor_config.json, mean/std are the published repos' (google/vit-*: 0.5; DeiT and
    DINOv2: ImageNet's), and a DINOv2's input size config.json's image_size: each listed under
    ``"assumed"``. (config.json states everything else, so ``hint`` is not needed.)"""
    return hf_config.config_fields(checkpoint)


def identity_fields(checkpoint: Checkpoint, config) -> dict:
    """The image processor's transform (``preprocessor_config.json``, see
    ``converters.huggingface_processor``) and the class names (``config.json`` ``id2label``, unless
    transformers' placeholders ``LABEL_0``…)."""
    found, assumed = processor.preprocessing(checkpoint, hf_config.model_type(checkpoint), config.image_size)
    names = class_names(checkpoint)
    return {"preprocessing": found, "assumed": assumed, **({"labels": names} if names is not None else {})}


def class_names(checkpoint: Checkpoint) -> Optional[Tuple[str, ...]]:
    """The classifier's labels from config.json ``id2label``, in index order, or None (absent, or only
    transformers' ``LABEL_{i}`` placeholders)."""
    labels = checkpoint.metadata.get("id2label") or {}
    try:
        names = tuple(str(labels[key]) for key in sorted(labels, key=int))
    except ValueError:
        return None
    if not names or names == tuple(f"LABEL_{i}" for i in range(len(names))):
        return None
    return names
