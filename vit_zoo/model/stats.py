"""Parameter and FLOP counts computed from a config, without building the model."""
from __future__ import annotations

import math

from vit_zoo.model import spec
from vit_zoo.model.config import ViTConfig


def count_parameters(config: ViTConfig, include_top: bool = True) -> int:
    """Trainable parameters of ``build(config, include_top=include_top)`` with pooled outputs: the sizes of
    the architecture spec's variables (``vit_zoo.model.spec``), summed."""
    return sum(math.prod(variable.shape) for variable in spec.variables(config, include_top))


def flops_per_image(config: ViTConfig, image_size=None) -> int:
    """Floating-point operations (2 per multiply-add) of one forward pass at ``image_size``
    (default: the config's). Counts the matrix products; norms, softmax, GELU/SwiGLU gates and the
    in-graph resampling of stored position embeddings are a few percent at most. The MAP head's probe
    attends like one more query token; the projection and the classifier count for the model's top."""
    if image_size is not None:
        config = config.replace(image_size=image_size)
    d, m, t = config.hidden_size, config.mlp_size, config.num_tokens
    patch_embed = config.num_patches * (config.patch_size ** 2 * 3) * d
    attention = t * d * 3 * d + 2 * t * t * d + t * d * d  # qkv, QKᵀ and AV, output projection
    mlp = t * d * m * (3 if config.mlp == "swiglu" else 2)  # fc1 (2M wide for SwiGLU) and fc2
    heads = 2 if config.head == "distilled" else 1
    map_head = (d * d + t * 2 * d * d + 2 * t * d + d * d + 2 * d * m) if config.pooling == "map" else 0
    width = config.representation_size or config.pooled_width
    top = config.pooled_width * (config.representation_size or 0) + width * (config.projection_size or 0)
    head = map_head + top + heads * config.embedding_width * config.num_classes
    return 2 * (patch_embed + config.num_layers * (attention + mlp) + head)
