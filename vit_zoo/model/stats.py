"""Parameter and FLOP counts computed from a config, without building the model."""
from __future__ import annotations

from vit_zoo.model.config import ViTConfig


def count_parameters(config: ViTConfig, include_top: bool = True) -> int:
    """Trainable parameters of ``build(config, include_top=include_top)`` with pooled outputs."""
    d, m = config.hidden_size, config.mlp_size
    attention = 4 * d * d + d + (3 * d if config.qkv_bias else 0)
    block = attention + (d * m + m) + (m * d + d) + 2 * 2 * d
    total = (config.patch_size ** 2 * 3 * d + d) + config.num_tokens * d + (d if config.class_token else 0)
    total += config.num_layers * block + 2 * d  # final norm or fc_norm
    width = d
    if config.representation_size:
        total += d * config.representation_size + config.representation_size
        width = config.representation_size
    if include_top:
        total += width * config.num_classes + config.num_classes
    return total


def flops_per_image(config: ViTConfig, image_size=None) -> int:
    """Floating-point operations (2 per multiply-add) of one forward pass at ``image_size``
    (default: the config's). Counts the matrix products; norms, softmax and GELU are a few percent."""
    if image_size is not None:
        config = config.replace(image_size=image_size)
    d, m, t = config.hidden_size, config.mlp_size, config.num_tokens
    patch_embed = config.num_patches * (config.patch_size ** 2 * 3) * d
    attention = t * d * 3 * d + 2 * t * t * d + t * d * d  # qkv, QKᵀ and AV, output projection
    mlp = 2 * t * d * m
    head = (d * (config.representation_size or 0) + (config.representation_size or d) * config.num_classes)
    return 2 * (patch_embed + config.num_layers * (attention + mlp) + head)
