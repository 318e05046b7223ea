"""Hugging Face ViT checkpoints for tests, written by transformers itself (safetensors, .bin) or, for
``tf_model.h5``, by h5py in the layout transformers 4.x's TF ViT saved (transformers 5 has no TF code).

Every model is random with non-trivial LayerNorm scales, biases and embeddings, so a swapped or missed
tensor shows in the outputs. Needs torch and transformers (the test extra).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             image_size=32, patch_size=8)


def hf_config(num_labels=5, **changes):
    """A transformers ViTConfig: the small one above with ``changes``; ``hf_config(**BASE)`` for ViT-B/16."""
    from transformers import ViTConfig

    return ViTConfig(**{**SMALL, "num_labels": num_labels, **changes})


BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            image_size=224, patch_size=16)


def random_model(config, kind="classifier", seed=0):
    """A random ``ViTForImageClassification`` (kind "classifier") or ``ViTModel`` with pooler ("base"),
    in eval mode. LayerNorm scales ~ 1 ± 0.2, every bias and embedding ~ N(0, 0.1²), Linear and Conv
    weights ~ N(0, 1/fan_in): pre-activations of order 1, where the GELU flavours differ (HF's own init,
    N(0, 0.02²), leaves them so small that tanh and exact GELU agree to 1e-6)."""
    import torch
    from transformers import ViTForImageClassification, ViTModel

    torch.manual_seed(seed)
    model = (ViTForImageClassification(config) if kind == "classifier"
             else ViTModel(config, add_pooling_layer=True))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "layernorm" in name and name.endswith("weight"):
                parameter.copy_(1 + 0.2 * torch.randn_like(parameter))
            elif name.endswith("bias") or "cls_token" in name or "position_embeddings" in name:
                parameter.copy_(0.1 * torch.randn_like(parameter))
            elif name.endswith("weight"):
                fan_in = parameter[0].numel()
                parameter.copy_(torch.randn_like(parameter) / fan_in ** 0.5)
    return model.eval()


def save(model, directory, dtype=None, preprocessor=None) -> Path:
    """``save_pretrained`` into ``directory`` (model.safetensors + config.json), optionally cast to
    ``dtype`` (torch.float16 / torch.bfloat16) first; ``preprocessor`` is written as
    preprocessor_config.json."""
    import copy

    directory = Path(directory)
    saved = copy.deepcopy(model).to(dtype) if dtype is not None else model
    saved.save_pretrained(directory)
    if preprocessor is not None:
        (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return directory


def original_state_dict(model) -> dict:
    """The state dict under the published (transformers 4.x) names, as save_pretrained writes it:
    transformers 5 renames modules in memory (``attention.q_proj``) and back on save."""
    import tempfile

    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        return load_file(Path(directory) / "model.safetensors")


def save_bin(model, directory) -> Path:
    """A legacy ``pytorch_model.bin`` + config.json, pickled with torch.save as transformers 4.x did."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(str(directory / "config.json"))
    torch.save(original_state_dict(model), directory / "pytorch_model.bin")
    return directory


def rounded(model, dtype):
    """The float32 torch model that a ``dtype`` (half-precision) save of ``model`` stands for."""
    import copy

    return copy.deepcopy(model).to(dtype).float().eval()


# ---- tf_model.h5 ------------------------------------------------------------------------------------
# transformers 4.x, models/vit/modeling_tf_vit.py: TFViTMainLayer(name="vit") holds embeddings
# (cls_token, position_embeddings, patch_embeddings/projection = Conv2D), encoder/layer_._{i} (Keras
# names list members "layer_._i"), layernorm, pooler/dense; TFViTForImageClassification adds
# Dense "classifier". Keras 2 save_weights (legacy h5): root attr layer_names, one group per top-level
# layer, attr weight_names, one dataset per variable named by variable.name, whose first scope is the
# model's name (transformers ignores it when loading).
TF_MODEL_NAMES = {"classifier": "tf_vi_t_for_image_classification", "base": "tf_vi_t_model"}


def _tf_name(torch_key: str) -> tuple:
    """(top-level layer, variable name without the model scope, is a Linear/Conv weight)."""
    key = torch_key if torch_key.startswith(("vit.", "classifier.")) else "vit." + torch_key
    parts = key.split(".")
    module, param = parts[:-1], parts[-1]
    path = "/".join(module)
    path = re.sub(r"layer/(\d+)", r"layer_._\1", path)
    if param in ("cls_token", "position_embeddings"):
        return parts[0], f"{path}/{param}:0", False
    norm = module[-1].startswith("layernorm")
    if param == "weight":
        return parts[0], f"{path}/{'gamma' if norm else 'kernel'}:0", not norm
    return parts[0], f"{path}/{'beta' if norm else 'bias'}:0", False


def write_tf_h5(model, path, kind="classifier", model_name=None) -> Path:
    """``tf_model.h5`` of the TF twin of the torch ``model`` (ViTForImageClassification or ViTModel),
    plus config.json beside it."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(str(path.parent / "config.json"))
    scope = model_name or TF_MODEL_NAMES[kind]
    groups = {}
    for key, tensor in original_state_dict(model).items():
        value = tensor.float().numpy()
        layer, name, is_kernel = _tf_name(key)
        if is_kernel:
            value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T  # Conv2D / Dense kernels
        groups.setdefault(layer, []).append((f"{scope}/{name}", np.ascontiguousarray(value)))
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in groups]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.15.0"
        for layer in sorted(groups):
            group = f.create_group(layer)
            group.attrs["weight_names"] = [name.encode() for name, _ in groups[layer]]
            for name, value in groups[layer]:
                group.create_dataset(name, data=value)
    return path
