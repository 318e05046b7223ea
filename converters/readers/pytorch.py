"""PyTorch ``.bin`` / ``.pth`` state dicts, only through ``torch.load(weights_only=True)`` (torch optional)."""
from __future__ import annotations

from pathlib import Path

from vit_zoo.converters.errors import CheckpointError
from vit_zoo.converters.readers import Contents


def read(path: Path) -> Contents:
    try:
        import torch  # optional: only for pytorch_model.bin files
    except ImportError:
        raise CheckpointError(f"{path.name} is a PyTorch pickle file; reading it safely needs torch "
                              f"(torch.load(weights_only=True)): pip install torch, or use "
                              f"{_safetensors_alternative(path)} instead") from None
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path.name} holds a {type(state).__name__}, not a state dict")
    entries = {}
    for key, tensor in state.items():
        dtype = "bfloat16" if tensor.dtype == torch.bfloat16 else str(tensor.dtype).replace("torch.", "")
        entries[key] = (tuple(tensor.shape), dtype, (lambda t=tensor: t.float().numpy()
                                                     if t.dtype == torch.bfloat16 else t.numpy()))
    return Contents(entries)


def _safetensors_alternative(path: Path) -> str:
    """Where the same weights are published as safetensors, for the error without torch."""
    if path.name.startswith("dinov2_"):  # Meta's DINOv2 torch.hub files
        return ("the same DINOv2 weights as safetensors: timm's 'timm/vit_{small,base,large,giant}_patch14"
                "[_reg4]_dinov2.lvd142m' or Hugging Face's 'facebook/dinov2-{small,base,large,giant}' / "
                "'facebook/dinov2-with-registers-*' repos")
    return "the repo's model.safetensors"
