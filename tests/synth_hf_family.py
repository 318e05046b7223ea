"""Random transformers DeiT and DINOv2 models for parity tests, tiny, saved as the Hub holds them.

Every parameter is drawn away from transformers' init so that a swapped, missed or misplaced tensor shows:
LayerNorm scales ~ 1 ± 0.2, LayerScale ~ 0.6 ± 0.3 (init 1.0 or the config's value), biases and tokens ~
N(0, 0.1²), position embeddings ~ N(0, 0.5²) (a wrong interpolation shows), Linear and Conv weights ~
N(0, 1/fan_in). Needs torch and transformers.
"""
from __future__ import annotations

from pathlib import Path

# Tiny configs of each model type: a 4x4 patch grid at 56 px (patch 14) for DINOv2, 4x4 at 32 px for DeiT.
DINOV2 = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=56, patch_size=14)
DEIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
            patch_size=8)


def dinov2_config(registers=False, num_labels=5, **changes):
    """A transformers Dinov2Config (Dinov2WithRegistersConfig with ``registers``), tiny."""
    from transformers import Dinov2Config, Dinov2WithRegistersConfig

    config = Dinov2WithRegistersConfig if registers else Dinov2Config
    return config(**{**DINOV2, "num_labels": num_labels, "layerscale_value": 0.5, **changes})


def deit_config(num_labels=5, **changes):
    from transformers import DeiTConfig

    return DeiTConfig(**{**DEIT, "num_labels": num_labels, **changes})


def perturbed(model, seed=0):
    """``model`` (a transformers model) with every parameter redrawn as the module docstring says, in
    eval mode."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    draw = lambda p, scale: torch.randn(p.shape, generator=generator) * scale  # noqa: E731
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lambda1" in name:
                parameter.copy_(0.6 + draw(parameter, 0.3))
            elif "position_embeddings" in name:
                parameter.copy_(draw(parameter, 0.5))
            elif parameter.ndim == 1 and name.endswith("weight"):  # LayerNorm scales
                parameter.copy_(1 + draw(parameter, 0.2))
            elif name.endswith("bias") or parameter.ndim <= 3 and "embeddings." in name:  # tokens
                parameter.copy_(draw(parameter, 0.1))
            else:
                parameter.copy_(draw(parameter, parameter[0].numel() ** -0.5))
    return model.eval()


def model(cls_name: str, config, seed=0):
    """A perturbed ``transformers.<cls_name>(config)``."""
    import transformers

    return perturbed(getattr(transformers, cls_name)(config), seed)


def save(reference, directory, processor=None) -> Path:
    """``save_pretrained`` into ``directory`` (model.safetensors + config.json); ``processor``, a
    transformers image processor, saves its preprocessor_config.json there with its own ``save_pretrained``."""
    directory = Path(directory)
    reference.save_pretrained(directory)
    if processor is not None:
        processor.save_pretrained(directory)
    return directory
