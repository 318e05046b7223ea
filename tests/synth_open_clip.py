"""Tiny real OpenCLIP models (open_clip.model.CLIP), perturbed away from init and saved in OpenCLIP's
published layout: ``open_clip_model.safetensors`` with ``open_clip_config.json`` beside it."""
from __future__ import annotations

import json
from pathlib import Path

from tests.reference_frameworks import require

TEXT_CFG = dict(context_length=8, vocab_size=50, width=32, heads=2, layers=1)


def model_cfg(quick_gelu=False, ls_init_value=None, **vision):
    """``model_cfg`` of a 2-block, width-64 tower on 32 px images (patch 8, head width 32)."""
    vision_cfg = dict(layers=2, width=64, patch_size=8, image_size=32, head_width=32, mlp_ratio=2.0,
                      ls_init_value=ls_init_value, **vision)
    return dict(embed_dim=24, vision_cfg=vision_cfg, text_cfg=TEXT_CFG, quick_gelu=quick_gelu)


def perturbed(model, seed=0):
    """Every parameter redrawn: LayerNorm / LayerScale 1 ± 0.2, biases and tokens N(0, 0.1²), position
    embeddings N(0, 0.5²), weights N(0, 1/fan_in); eval mode."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            draw = torch.randn(parameter.shape, generator=generator)
            if "positional_embedding" in name:
                parameter.copy_(draw * 0.5)
            elif parameter.ndim == 1 and (name.endswith("weight") or name.endswith("gamma")):
                parameter.copy_(1 + draw * 0.2)
            elif name.endswith("bias") or "class_embedding" in name or parameter.ndim == 0:
                parameter.copy_(draw * 0.1)
            else:
                parameter.copy_(draw * parameter[0].numel() ** -0.5)
    return model.eval()


def build(cfg, seed=0):
    """A perturbed open_clip CLIP from ``cfg`` (see ``model_cfg``)."""
    open_clip = require("open_clip")
    return perturbed(open_clip.model.CLIP(**cfg), seed)


CLIP_PREPROCESS = dict(mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711],
                       interpolation="bicubic", resize_mode="shortest")
# open_clip's SigLIP configs (ViT-B-16-SigLIP ...): mean / std 0.5, squashed to the size
SIGLIP_PREPROCESS = dict(mean=[0.5] * 3, std=[0.5] * 3, interpolation="bicubic", resize_mode="squash")


def save(model, cfg, directory, file_name="open_clip_model.safetensors", preprocess=CLIP_PREPROCESS) -> Path:
    """The state dict as OpenCLIP publishes it, with ``open_clip_config.json`` (model_cfg, preprocess_cfg)."""
    import torch
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = directory / file_name
    if file_name.endswith(".safetensors"):
        save_file(state, str(path))
    else:
        torch.save(state, path)
    (directory / "open_clip_config.json").write_text(json.dumps(dict(model_cfg=cfg, preprocess_cfg=preprocess)))
    return path


def openai_clip(seed=0):
    """A perturbed OpenAI ``clip.model.CLIP``: 2 blocks of width 64 (1 head: OpenAI's width // 64), patch 8,
    32 px images, a tiny text tower."""
    from tests.reference_frameworks import stub_torchvision

    stub_torchvision()  # clip/clip.py imports torchvision's transforms; clip.model does not use them
    clip_model = require("clip.model")
    model = clip_model.CLIP(embed_dim=24, image_resolution=32, vision_layers=2, vision_width=64,
                            vision_patch_size=8, context_length=8, vocab_size=50, transformer_width=32,
                            transformer_heads=2, transformer_layers=1)
    return perturbed(model.float(), seed)


def save_torchscript(model, directory, file_name="ViT-T-8.pt") -> Path:
    """``model`` traced and saved as OpenAI's releases are: a TorchScript archive of the whole CLIP."""
    import torch

    path = Path(directory) / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    example = (torch.zeros(1, 3, 32, 32), torch.zeros(1, 8, dtype=torch.long))
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, example, check_trace=False), str(path))
    return path
