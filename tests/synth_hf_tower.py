"""Random transformers CLIP and SigLIP models for parity tests, tiny, saved as the Hub holds them.

The image tower's parameters are redrawn away from transformers' init as ``synth_hf_family.perturbed`` does
(LayerNorm scales 1 ± 0.2, biases and tokens N(0, 0.1²), Linear and Conv weights N(0, 1/fan_in)), so a swapped,
missed or misplaced tensor shows; the text tower of a full model keeps its init (it is set aside at load).
Needs torch and transformers.
"""
from __future__ import annotations

import synth_hf_family as family

# A 4x4 patch grid at 32 px; 4 heads of 16; an embedding of 24 for CLIP's projection.
VISION = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, image_size=32,
              patch_size=8)
TEXT = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2, vocab_size=64,
            max_position_embeddings=16)
PROJECTION = 24


def clip_vision_config(**changes):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(**{**VISION, "projection_dim": PROJECTION, **changes})


def clip_config(**vision_changes):
    from transformers import CLIPConfig

    return CLIPConfig(vision_config={**VISION, **vision_changes}, text_config=TEXT, projection_dim=PROJECTION)


def siglip_vision_config(**changes):
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(**{**VISION, **changes})


def siglip_config(**vision_changes):
    from transformers import SiglipConfig

    return SiglipConfig(vision_config={**VISION, **vision_changes}, text_config=TEXT)


def model(cls_name: str, config, seed=0):
    """A ``transformers.<cls_name>(config)`` with its image tower (and projection) perturbed, in eval mode."""
    import torch
    import transformers

    reference = getattr(transformers, cls_name)(config)
    family.perturbed(getattr(reference, "vision_model", reference), seed)  # transformers 5's bare towers
    projection = getattr(reference, "visual_projection", None)
    if projection is not None:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(seed + 1)
            projection.weight.copy_(torch.randn(projection.weight.shape, generator=generator)
                                    * projection.weight.shape[1] ** -0.5)
    return reference.eval()
