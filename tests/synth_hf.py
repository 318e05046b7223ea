"""Hugging Face ViT checkpoints for tests, written by transformers itself (safetensors, .bin), from the
layout tables of ``tests/layouts.py`` (``from_weights``: given weights in the published layout, loaded by
transformers) or, for ``tf_model.h5``, by h5py in the layout transformers 4.x's TF ViT saved (transformers
5 has no TF code; the key names are pinned to a file its TF code wrote).

Every model is random with non-trivial LayerNorm scales, biases and embeddings, so a swapped or missed
tensor shows in the outputs. Needs transformers (the test extra); ``write`` and ``write_random`` need no
torch, everything that makes a transformers model does.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import layouts
from synth_checkpoints import write_safetensors

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
    return copy.deepcopy(model).to(dtype).float().eval()


def spec_of(config, **changes):
    """The vit_zoo ViTConfig of the architecture of transformers ``config`` (a classifier of num_labels)."""
    import vit_zoo

    return vit_zoo.ViTConfig(image_size=config.image_size, patch_size=config.patch_size,
                             hidden_size=config.hidden_size, mlp_size=config.intermediate_size,
                             num_heads=config.num_attention_heads, num_layers=config.num_hidden_layers,
                             num_classes=config.num_labels, **changes)


def write(values, spec, config, directory, bare=False, preprocessor=None) -> Path:
    """The Hub's files of a repo holding the weights ``values`` (``layouts.weights`` of ``spec``), without
    torch: ``model.safetensors`` in the published layout (``layouts.hf_torch``; a bare ``ViTModel`` with
    pooler when ``bare``), ``config`` (a transformers ViTConfig) as config.json, and ``preprocessor`` as
    preprocessor_config.json. Returns ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_safetensors(directory / "model.safetensors", layouts.tensors(layouts.hf_torch(spec, bare), values))
    config = copy.deepcopy(config)  # config.json as a model's save_pretrained writes it:
    config.architectures, config.dtype = ["ViTModel" if bare else "ViTForImageClassification"], "float32"
    config.save_pretrained(directory)
    if preprocessor is not None:
        (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return directory


def write_random(config, directory, bare=False, seed=0, preprocessor=None) -> Path:
    """``write`` with random weights (``layouts.weights``) for transformers ``config`` (a bare model's
    pooler as wide as the model): a checkpoint on disk for tests that need no torch."""
    spec = spec_of(config, representation_size=config.hidden_size if bare else None)
    return write(layouts.weights(spec, seed), spec, config, directory, bare, preprocessor)


def from_weights(values, spec, config, directory, bare=False):
    """A transformers model holding the weights ``values`` (``layouts.weights``): written by ``write``
    into ``directory`` and loaded back with ``from_pretrained``, which must use every tensor. A
    ``ViTModel`` with pooler when ``bare``, else a ``ViTForImageClassification``; in eval mode."""
    from transformers import ViTForImageClassification, ViTModel

    directory = write(values, spec, config, directory, bare)
    model, info = (ViTModel if bare else ViTForImageClassification).from_pretrained(directory,
                                                                                  output_loading_info=True)
    assert not any(info.values()), info  # every tensor loaded, none left over
    return model.eval()


# ---- tf_model.h5 ------------------------------------------------------------------------------------
# transformers 4.x (modeling_tf_vit.py) saved with Keras 2 save_weights (legacy h5): root attrs
# layer_names (one group per top-level layer: "vit", "classifier"), backend, keras_version; each group's
# attr weight_names; one dataset per variable at GROUP/<its name>, whose first scope is the model's name.
# Key names: layouts.hf_tf, checked against the file transformers wrote (tests/fixtures).
TF_RECORD = Path(__file__).parent / "fixtures" / "tf_model_h5_keys.json"


def write_tf_h5(values, spec, config, path, kind="classifier", model_name=None) -> Path:
    """``tf_model.h5`` holding the weights ``values`` (``layouts.weights`` of ``spec``) as transformers'
    TFViTForImageClassification (kind "classifier") or TFViTModel ("base") saves them, plus ``config``
    as config.json beside it. ``model_name``: the model's scope (Keras numbers a second instance's)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config.to_json_file(str(path.parent / "config.json"))
    groups = {}
    for key, value in layouts.tensors(layouts.hf_tf(spec, kind, model_name), values).items():
        group, _, name = key.partition("/")
        groups.setdefault(group, []).append((name, value))
    recorded = json.loads(TF_RECORD.read_text())["models"]["TFViTModel"]["root_attrs"]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in groups]
        for attribute, value in recorded.items():
            f.attrs[attribute] = value.encode()
        for group_name, weights in groups.items():
            group = f.create_group(group_name)
            group.attrs["weight_names"] = [name.encode() for name, _ in weights]
            for name, value in weights:
                group.create_dataset(name, data=value)
    return path
