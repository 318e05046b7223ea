"""ViTConfig fields from a Hugging Face ``config.json``, per ``model_type``, cross-checked against the tensors.

The architecture and numerics come from config.json (heads, LayerNorm eps, GELU flavour and LayerScale's
initial value cannot be read off tensor shapes); fields a file omits take the defaults of transformers'
config class of that model_type (``ViTConfig``, ``DeiTConfig``, ``Dinov2Config``,
``Dinov2WithRegistersConfig`` of transformers 5). Model types of other architectures are refused by name.
"""
from __future__ import annotations

import re
from typing import Dict

from vit_zoo.converters import huggingface_layout as hf_layout
from vit_zoo.converters import huggingface_processor as processor
from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError

# hidden_act of config.json → our GELU flavour. gelu_python is erf written out; gelu_new, gelu_fast and
# gelu_pytorch_tanh are the tanh approximation (the same formula, differently computed).
GELU_FLAVOURS = {"gelu": "exact", "gelu_python": "exact",
                 "gelu_new": "tanh", "gelu_fast": "tanh", "gelu_pytorch_tanh": "tanh"}

# transformers' ViTConfig defaults (DeiTConfig's are the same), for config.json files that omit a field
# (old repos lack qkv_bias).
HF_DEFAULTS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
               "hidden_act": "gelu", "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16,
               "num_channels": 3, "qkv_bias": True, "pooler_act": "tanh"}
DINOV2_DEFAULTS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "mlp_ratio": 4,
                   "hidden_act": "gelu", "layer_norm_eps": 1e-6, "image_size": 224, "patch_size": 14,
                   "num_channels": 3, "qkv_bias": True, "layerscale_value": 1.0, "use_swiglu_ffn": False}
DEFAULTS = {"vit": HF_DEFAULTS, "deit": HF_DEFAULTS, "dinov2": DINOV2_DEFAULTS,
            "dinov2_with_registers": {**DINOV2_DEFAULTS, "patch_size": 16, "num_register_tokens": 4}}

# model_types of Hugging Face vision towers vit_zoo does not model → what differs from the ViTs read here.
REFUSED = {
    "vit_mae": "ViTMAE: its encoder masks and shuffles the patches at random on every call (pre-training); "
               "load a ViT fine-tuned from it (model_type 'vit')",
    "vit_msn": "ViTMSN", "vit_hybrid": "ViT-hybrid (a BiT ResNet stem)", "dinov3_vit": "DINOv3 (RoPE)",
    "beit": "BEiT (relative position bias)", "data2vec-vision": "data2vec-vision (BEiT's architecture)",
    "swin": "Swin Transformer", "dpt": "DPT", "ijepa": "I-JEPA", "vitdet": "ViTDet",
}
# transformers Dinov2MLP's hidden width.
_RATIO_WIDTH = "int(hidden_size * mlp_ratio)"


def config_path(checkpoint: Checkpoint, name: str = "config.json") -> str:
    return repr(str(checkpoint.path.parent / name))


def model_type(checkpoint: Checkpoint) -> str:
    """config.json's model_type ("vit" where it has none); refused model types raise, named."""
    kind = _config_json(checkpoint).get("model_type", "vit")
    if kind in REFUSED:
        raise UnsupportedLayoutError(f"{config_path(checkpoint)} says model_type {kind!r} ({REFUSED[kind]}), "
                                     f"which vit_zoo does not model; this converter reads model_type "
                                     f"{', '.join(map(repr, DEFAULTS))}", f"Hugging Face model_type {kind!r}")
    if kind not in DEFAULTS:
        raise UnsupportedLayoutError(f"{config_path(checkpoint)} says model_type {kind!r}; this converter reads "
                                     f"model_type {', '.join(map(repr, DEFAULTS))} checkpoints only",
                                     f"Hugging Face model_type {kind!r}")
    return kind


def hf_config(checkpoint: Checkpoint) -> dict:
    """config.json with the defaults of its model_type's transformers config class filled in."""
    return {**DEFAULTS[model_type(checkpoint)], **_config_json(checkpoint)}


def _config_json(checkpoint: Checkpoint) -> dict:
    config = {key: value for key, value in checkpoint.metadata.items() if key != "preprocessor_config"}
    if not config:
        raise CheckpointError(
            f"{str(checkpoint.path)!r} is a Hugging Face checkpoint without its config.json: the number of "
            f"attention heads, the LayerNorm epsilon and the GELU flavour cannot be inferred from tensor "
            f"shapes. Put the repo's config.json in {str(checkpoint.path.parent)!r} beside the weights file")
    return config


def config_fields(checkpoint: Checkpoint) -> Dict[str, object]:
    """ViTConfig fields of the checkpoint (see ``converters.huggingface.config_fields``)."""
    kind = model_type(checkpoint)  # a refused model type is named before its layout is looked for
    where = hf_layout.checked_layout(checkpoint)
    hf_layout.check_prefix(where, kind, config_path(checkpoint), checkpoint)
    hf = hf_config(checkpoint)
    if hf["num_channels"] != 3:
        raise UnsupportedLayoutError(f"{config_path(checkpoint)}: num_channels {hf['num_channels']}; only "
                                     f"RGB (3 channels) models are supported",
                                     f"Hugging Face num_channels {hf['num_channels']}")
    stored = lambda module, param=None: _stored(checkpoint, where, module, param)  # noqa: E731
    patch = _square_patch(hf["patch_size"], checkpoint)
    image = _pair(hf["image_size"])
    hidden, layers = hf["hidden_size"], hf["num_hidden_layers"]
    _agree(checkpoint, "hidden_size", hidden, "a class token of width", (stored("embeddings.cls_token") or (None,))[-1])
    block_norm = "norm1" if kind in hf_layout.DINOV2_TYPES else "layernorm_before"
    found_layers = sum(1 for key in checkpoint.keys()
                       if re.search(rf"layer(_\._|\.)\d+\W+{block_norm}\W+(weight|gamma)", key))
    _agree(checkpoint, "num_hidden_layers", layers, "encoder layers", found_layers)
    mean, std = processor.normalisation(checkpoint, kind)
    fields = {"patch_size": patch, "hidden_size": hidden, "num_heads": hf["num_attention_heads"],
              "num_layers": layers, "class_token": True, "layer_norm_epsilon": float(hf["layer_norm_eps"]),
              "qkv_bias": bool(hf["qkv_bias"]), "mean": mean, "std": std,
              "assumed": {} if processor.processor_config(checkpoint) is not None else {"mean": mean, "std": std}}
    if kind in hf_layout.DINOV2_TYPES:
        fields.update(_dinov2_fields(checkpoint, hf, kind, image, stored, fields["assumed"]))
    else:
        fields.update(_vit_fields(checkpoint, hf, kind, image, stored, where))
    return fields


def _vit_fields(checkpoint, hf, kind, image, stored, where) -> dict:
    """ViT and DeiT: classic blocks, GELU MLP; DeiT adds the distillation token and, in
    ``DeiTForImageClassificationWithTeacher``, the second head (the two logits averaged)."""
    patch, distilled = _square_patch(hf["patch_size"], checkpoint), kind == "deit"
    prefix = 2 if distilled else 1
    positions = stored("embeddings.position_embeddings")
    _agree(checkpoint, f"image_size {list(image)} with patch_size {patch}, i.e.",
           f"{(image[0] // patch) * (image[1] // patch) + prefix} tokens", "position embeddings for",
           positions and f"{positions[1]} tokens")
    weight = "weight" if where.kind == "torch" else "kernel"
    pooler = stored("pooler.dense", weight)
    if pooler is not None and hf["pooler_act"] != "tanh":
        raise UnsupportedLayoutError(f"{config_path(checkpoint)}: pooler_act {hf['pooler_act']!r}; the "
                                     f"pre-logits layer is Dense + tanh", f"Hugging Face pooler_act "
                                     f"{hf['pooler_act']!r}")
    teacher = stored("cls_classifier", weight)
    if (teacher is None) != (stored("distillation_classifier", weight) is None):
        raise CheckpointError(f"{checkpoint.path.name!r} has only one of 'cls_classifier' and "
                              f"'distillation_classifier'; a DeiTForImageClassificationWithTeacher has both")
    classifier = teacher if teacher is not None else stored("classifier", weight)
    return {"image_size": image, "mlp_size": hf["intermediate_size"], "pooling": "token",
            "distillation_token": distilled, "head": "distilled" if teacher is not None else "linear",
            "representation_size": None if pooler is None else _out_width(pooler, where),
            "gelu": _gelu(checkpoint, hf["hidden_act"]),
            "num_classes": None if classifier is None else _out_width(classifier, where),
            "position_embedding_resampling": "bicubic"}  # ViT/DeiT interpolate_pos_encoding: bicubic, size=


def _dinov2_fields(checkpoint, hf, kind, image, stored, assumed: dict) -> dict:
    """DINOv2 (with registers): LayerScale, GELU or fused SwiGLU MLP, the position table stored for
    config.json's image_size (518 px: 37x37) and resampled to each input's grid in the graph, as
    transformers' ``interpolate_pos_encoding`` does on every call; class token ‖ mean of the patch tokens
    (registers excluded) for ``…ForImageClassification``'s (C, 2D) classifier."""
    patch, hidden = _square_patch(hf["patch_size"], checkpoint), hf["hidden_size"]
    positions = stored("embeddings.position_embeddings")
    grid = (image[0] // patch, image[1] // patch)
    _agree(checkpoint, f"image_size {list(image)} with patch_size {patch}, i.e.", f"{grid[0] * grid[1] + 1} tokens",
           "position embeddings for", positions and f"{positions[1]} tokens")
    if grid[0] != grid[1]:  # transformers reshapes the table to sqrt(N) x sqrt(N)
        raise UnsupportedLayoutError(f"{config_path(checkpoint)}: image_size {list(image)} stores a "
                                     f"{grid[0]}x{grid[1]} position grid; transformers' DINOv2 resamples a "
                                     f"square one only", "Hugging Face DINOv2 with a non-square position grid")
    width = int(hidden * hf["mlp_ratio"])
    if hf["use_swiglu_ffn"]:  # transformers Dinov2SwiGLUFFN: 2/3 of the width, rounded up to a multiple of 8
        mlp, width, rule = "swiglu", (int(width * 2 / 3) + 7) // 8 * 8, f"({_RATIO_WIDTH} * 2/3) rounded up to 8"
        gelu = "exact"  # unused: SwiGLU's SiLU is fixed, hidden_act is not read
    else:
        mlp, rule, gelu = "gelu", _RATIO_WIDTH, _gelu(checkpoint, hf["hidden_act"])
    first = hf_layout.VIT_LAYER.format(i=0) + "mlp."
    ours, other = ("weights_out", "fc2") if mlp == "swiglu" else ("fc2", "weights_out")
    if stored(first + ours, "weight") is None and stored(first + other, "weight") is not None:
        raise CheckpointError(f"{config_path(checkpoint)} says use_swiglu_ffn {bool(hf['use_swiglu_ffn'])}, but "
                              f"{checkpoint.path.name!r} has '{first + other}' (a "
                              f"{'SwiGLU' if other == 'weights_out' else 'GELU'} MLP's); config.json and the "
                              f"weights are from different models")
    fc2 = stored(first + ours, "weight")
    _agree(checkpoint, f"an MLP width of {rule}, i.e.", width, "an MLP width (fc2 inputs) of", fc2 and fc2[1])
    registers = int(hf.get("num_register_tokens", 0))
    found_registers = stored("embeddings.register_tokens")
    _agree(checkpoint, "num_register_tokens", registers, "register tokens",
           found_registers[1] if found_registers else (0 if kind == "dinov2" else None))
    size, assumed_size = processor.model_image_size(checkpoint, image)
    if assumed_size:
        assumed["image_size"] = assumed_size
    classifier = stored("classifier", "weight")
    return {"image_size": size, "position_grid": grid, "mlp_size": width, "mlp": mlp, "gelu": gelu,
            "register_tokens": registers, "layer_scale": float(hf["layerscale_value"]),
            "pooling": "token" if classifier is None else "token-mean", "representation_size": None,
            "num_classes": None if classifier is None else int(classifier[0]),
            # Dinov2: interpolate(size=, bicubic); Dinov2WithRegisters adds antialias=True
            "position_embedding_resampling": "bicubic" if kind == "dinov2" else "bicubic-antialias"}


def _stored(checkpoint, where, module, param=None):
    key = where.key(module, param)
    return checkpoint.shape(key) if key in checkpoint else None


def _gelu(checkpoint: Checkpoint, act) -> str:
    if act not in GELU_FLAVOURS:
        raise UnsupportedLayoutError(f"{config_path(checkpoint)}: hidden_act {act!r} is not supported; a "
                                     f"ViT uses one of {sorted(GELU_FLAVOURS)} (exact or tanh GELU)",
                                     f"Hugging Face hidden_act {act!r}")
    return GELU_FLAVOURS[act]


def _out_width(shape, where) -> int:
    return int(shape[0] if where.kind == "torch" else shape[-1])


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def _square_patch(patch, checkpoint) -> int:
    if isinstance(patch, int):
        return patch
    if len(patch) == 2 and patch[0] == patch[1]:
        return int(patch[0])
    raise UnsupportedLayoutError(f"{config_path(checkpoint)}: patch_size {patch} is not square; only "
                                 f"square patches are supported", "Hugging Face non-square patches")


def _agree(checkpoint, field, declared, what, found):
    if found is not None and declared != found:
        raise CheckpointError(f"{config_path(checkpoint)} says {field} {declared}, but "
                              f"{checkpoint.path.name!r} has {what}: {found}; config.json and the weights "
                              f"are from different models")
