"""PyTorch ``.bin`` / ``.pth`` state dicts, only through ``torch.load(weights_only=True)`` (torch optional).

A state dict wrapped as ``{"model": state_dict}`` (the original DeiT / DeiT-III releases, and the training
checkpoints of facebookresearch's code) is unwrapped; ``metadata["state_dict_key"]`` then says so, and
``metadata["other_entries"]`` names the wrapper's other entries (optimizer state and the like), not read.
"""
from __future__ import annotations

from pathlib import Path

from vit_zoo.converters.errors import CheckpointError
from vit_zoo.converters.readers import Contents

WRAPPER_KEY = "model"


def require_torch(message: str):
    """The torch module (optional: only for PyTorch and TorchScript files), or a CheckpointError with
    ``message``, which says why torch is needed and what to read instead."""
    try:
        import torch
    except ImportError:
        raise CheckpointError(message) from None
    return torch


def read(path: Path) -> Contents:
    torch = require_torch(f"{path.name} is a PyTorch pickle file; reading it safely needs torch "
                          f"(torch.load(weights_only=True)): pip install torch, or use "
                          f"{_safetensors_alternative(path)} instead")
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"  # torch.save's format since 1.6; older files cannot be mapped
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path.name} holds a {type(state).__name__}, not a state dict")
    metadata = {}
    if isinstance(state.get(WRAPPER_KEY), dict):
        metadata = {"state_dict_key": WRAPPER_KEY, "other_entries": sorted(k for k in state if k != WRAPPER_KEY)}
        state = state[WRAPPER_KEY]
    entries = {}
    for key, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            where = f"{path.name}[{WRAPPER_KEY!r}]" if metadata else path.name
            raise CheckpointError(f"{where}: entry {key!r} is a {type(tensor).__name__}, not a tensor; expected a "
                                  f"state dict (name → tensor), or one under the key {WRAPPER_KEY!r}")
        entries[key] = tensor_entry(tensor)
    return Contents(entries, metadata)


def tensor_entry(tensor):
    """(shape, dtype name, loader) of a torch tensor; bf16, which NumPy lacks, loads widened to float32."""
    import torch

    dtype = "bfloat16" if tensor.dtype == torch.bfloat16 else str(tensor.dtype).replace("torch.", "")
    return (tuple(tensor.shape), dtype, lambda t=tensor: t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy())


def _safetensors_alternative(path: Path) -> str:
    """Where the same weights are published as safetensors, for the error without torch."""
    if path.name.startswith("dinov2_"):  # Meta's DINOv2 torch.hub files
        return ("the same DINOv2 weights as safetensors: timm's 'timm/vit_{small,base,large,giant}_patch14"
                "[_reg4]_dinov2.lvd142m' or Hugging Face's 'facebook/dinov2-{small,base,large,giant}' / "
                "'facebook/dinov2-with-registers-*' repos")
    return "the repo's model.safetensors"
