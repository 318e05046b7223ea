"""TorchScript archives (OpenAI CLIP's ``.pt`` releases: ``torch.jit.save`` zips holding ``code/`` and
``constants.pkl``): only their state dict is read, through ``torch.jit.load(map_location="cpu")``, and only
when torch is installed. Loading a TorchScript archive runs its serialized module code in TorchScript's
interpreter (not Python pickle); vit_zoo reads the parameters and buffers and nothing else.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from vit_zoo.converters.readers import Contents
from vit_zoo.converters.readers.pytorch import require_torch, tensor_entry

# Where OpenAI's CLIP weights are published as safetensors.
SAFETENSORS_COPIES = ("timm's 'timm/vit_base_patch16_clip_224.openai' (and vit_base_patch32_clip_224.openai, "
                      "vit_large_patch14_clip_224.openai, vit_large_patch14_clip_336.openai) or Hugging Face's "
                      "'openai/clip-vit-base-patch16' (clip-vit-base-patch32, clip-vit-large-patch14, "
                      "clip-vit-large-patch14-336) repos")


def is_torchscript(path: Path) -> bool:
    """A zip whose members include a TorchScript ``code/`` folder or ``constants.pkl``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read(path: Path) -> Contents:
    torch = require_torch(f"{path.name} is a TorchScript archive (an OpenAI CLIP .pt release); reading its "
                          f"state dict needs torch (torch.jit.load): pip install torch, or use the same "
                          f"weights as safetensors: {SAFETENSORS_COPIES}")
    state = torch.jit.load(str(path), map_location="cpu").state_dict()
    # half precision is widened by Checkpoint.load (bf16 by tensor_entry, which NumPy cannot hold)
    return Contents({key: tensor_entry(tensor) for key, tensor in state.items()}, {"container": "torchscript"})
