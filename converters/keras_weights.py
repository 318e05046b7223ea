"""Format "keras": a Keras 3 ``.weights.h5`` file saved from a vit_zoo model (``model.save_weights``).

Keras stores each layer's variables by position (``head/vars/0`` = kernel, after ``checkpoint.py``
restores the layer names), so the mapping is our layer's variable order. Shapes give the architecture;
numerics that weights cannot show (GELU flavour, LayerNorm epsilon, mean/std) come from the name or
config passed to ``load``, or from a ``vit_zoo_config`` entry in a ``config.json`` beside the file.
"""
from __future__ import annotations

from vit_zoo.model.config import ViTConfig
from vit_zoo.converters.apply import row
from vit_zoo.converters.checkpoint import CheckpointError
from vit_zoo.model.builder import block_name

NAME = "keras"
TELLTALE = "'patch_embed/vars/0' and 'pos_embed/vars/0' (a vit_zoo .weights.h5)"
IGNORED = {}

_KERNEL_BIAS = ("kernel", "bias")
_NORM = ("gamma", "beta")


def detect(checkpoint) -> bool:
    return "patch_embed/vars/0" in checkpoint and "pos_embed/vars/0" in checkpoint


def _attention_variables(qkv_bias: bool):
    parts = []
    for name in ("query", "key", "value"):
        parts += [f"{name}_kernel"] + ([f"{name}_bias"] if qkv_bias else [])
    return tuple(parts + ["output_kernel", "output_bias"])


def config_fields(checkpoint) -> dict:
    shape = checkpoint.shape
    patch, _, _, width = shape("patch_embed/vars/0")
    num_layers = sum(1 for key in checkpoint.keys() if key.endswith("_norm1/vars/0"))
    _, heads, _ = shape(f"{block_name(0, 'attn')}/vars/0")
    class_token = "class_token/vars/0" in checkpoint
    tokens = shape("pos_embed/vars/0")[1] - int(class_token)
    side = int(round(tokens ** 0.5))
    saved = dict(checkpoint.metadata.get("vit_zoo_config", {}))
    image_size = tuple(saved.get("image_size", (side * patch, side * patch)))
    if (image_size[0] // patch) * (image_size[1] // patch) != tokens:
        raise CheckpointError(f"{checkpoint.path.name}: {tokens} position embeddings form no square grid; "
                              f"put its ViTConfig as 'vit_zoo_config' in a config.json beside it")
    has_head = "head/vars/0" in checkpoint
    fields = dict(saved, image_size=image_size, patch_size=patch, hidden_size=width,
                  mlp_size=shape(f"{block_name(0, 'mlp_fc1')}/vars/0")[1], num_heads=heads,
                  num_layers=num_layers, class_token=class_token,
                  qkv_bias=f"{block_name(0, 'attn')}/vars/7" in checkpoint,
                  representation_size=shape("pre_logits/vars/0")[1] if "pre_logits/vars/0" in checkpoint
                  else None,
                  num_classes=shape("head/vars/0")[1] if has_head else None)
    if "fc_norm/vars/0" in checkpoint:
        fields["pooling"] = "avg-fcnorm"
    elif not class_token:
        fields["pooling"] = "gap"
    return fields


def mapping(config: ViTConfig):
    layers = [("patch_embed", _KERNEL_BIAS)]
    if config.class_token:
        layers.append(("class_token", ("token",)))
    layers.append(("pos_embed", ("embeddings",)))
    for index in range(config.num_layers):
        layers += [(block_name(index, "norm1"), _NORM),
                   (block_name(index, "attn"), _attention_variables(config.qkv_bias)),
                   (block_name(index, "norm2"), _NORM),
                   (block_name(index, "mlp_fc1"), _KERNEL_BIAS),
                   (block_name(index, "mlp_fc2"), _KERNEL_BIAS)]
    layers.append(("fc_norm" if config.pooling == "avg-fcnorm" else "encoder_norm", _NORM))
    if config.representation_size:
        layers.append(("pre_logits", _KERNEL_BIAS))
    layers.append(("head", _KERNEL_BIAS))
    return [row(f"{layer}/{variable}", f"{layer}/vars/{index}")
            for layer, variables in layers for index, variable in enumerate(variables)]
