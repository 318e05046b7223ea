"""Google ``vit_jax`` ``.npz`` checkpoints: flat ``/``-separated Flax parameter names.

Layout (``vit_jax/models_vit.py``; the block module names are those of the published files, which were
written by the pre-Linen code and keep its auto-numbering):
    embedding/{kernel (P, P, 3, D), bias}          patch embedding (Conv, VALID, stride P)
    cls (1, 1, D)                                  class token ("token" classifier only)
    Transformer/posembed_input/pos_embedding       (1, T, D); T = 1 + h*w ("token") or h*w ("gap")
    Transformer/encoderblock_{i}/
        LayerNorm_0/{scale, bias}
        MultiHeadDotProductAttention_1/{query,key,value}/{kernel (D, H, Dh), bias (H, Dh)}
        MultiHeadDotProductAttention_1/out/{kernel (H, Dh, D), bias (D,)}
        LayerNorm_2/{scale, bias}
        MlpBlock_3/Dense_0/{kernel (D, M), bias}, MlpBlock_3/Dense_1/{kernel (M, D), bias}
    Transformer/encoder_norm/{scale, bias}
    pre_logits/{kernel (D, R), bias}               original ImageNet-21k checkpoints: Dense + tanh
    head/{kernel (D or R, C), bias}

Covers the original ImageNet-21k files (pre-logits, 21,843 classes, often an all-zero head), the
21k→1k fine-tuned ones (224 and 384 px), the AugReg files (Ti…L; no pre-logits) and the "gap" models
(no class token: mean of the tokens after the final norm). Numerics: ``flax.linen.gelu`` (tanh
approximation), ``nn.LayerNorm`` epsilon 1e-6, inputs normalised as (x - 0.5) / 0.5. Flax shapes are
Keras shapes, so the table has no transforms. ``flax_table`` and ``flax_fields`` serve big_vision too.
"""
from __future__ import annotations

import math
import re

from vit_zoo.converters import targets, transforms as T
from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError
from vit_zoo.model import checkpoint_formats as formats
from vit_zoo.model.identity import source_preprocessing

NAME = formats.GOOGLE_NPZ
TELLTALE = "'embedding/kernel' with 'Transformer/encoder_norm/scale' (vit_jax .npz)"
IGNORED: dict = {}  # every tensor of a vit_jax ViT is used

BLOCK = "Transformer/encoderblock_{i}/"
POSITION = "Transformer/posembed_input/pos_embedding"
# slot (less its parameter) → Flax module; the keys are MODULE/kernel and /bias (norms: /scale, /bias).
MODULES = {
    "patch_embed": "embedding",
    "norm1": BLOCK + "LayerNorm_0",
    "attn.query": BLOCK + "MultiHeadDotProductAttention_1/query",
    "attn.key": BLOCK + "MultiHeadDotProductAttention_1/key",
    "attn.value": BLOCK + "MultiHeadDotProductAttention_1/value",
    "attn.out": BLOCK + "MultiHeadDotProductAttention_1/out",
    "norm2": BLOCK + "LayerNorm_2",
    "mlp.fc1": BLOCK + "MlpBlock_3/Dense_0",
    "mlp.fc2": BLOCK + "MlpBlock_3/Dense_1",
    "encoder_norm": "Transformer/encoder_norm",
    "pre_logits": "pre_logits",
    "head": "head",
}
TENSORS = {"class_token": "cls", "pos_embed": POSITION}  # slot → a parameter of the model itself

# Layouts that look like vit_jax but that this module does not convert: {tell-tale key: (name, what)}.
OTHER_LAYOUTS = {
    "opt/target/embedding/kernel": ("vit_jax training checkpoint", "a vit_jax training checkpoint "
                                    "(parameters under 'opt/target/', saved with the optimizer state)"),
    "conv_root/kernel": ("ResNet-hybrid ViT", "a ResNet-hybrid ViT (R50+ViT-B/16, R26+S/32): vit_zoo builds "
                         "plain ViTs only"),
}


def flax_table(modules: dict, tensors: dict, prefix: str = "") -> dict:
    """The table ``slot → (key, None)`` of a Flax ViT whose modules are named by ``modules`` (see
    ``MODULES``) and whose own parameters by ``tensors``, all under ``prefix``."""
    return targets.table({**modules, **tensors}, T.FLAX_KINDS,
                         lambda module, param: prefix + module + (f"/{param}" if param else ""))


def flax_fields(checkpoint: Checkpoint, modules: dict, prefix: str, layout: str) -> dict:
    """The architecture a Flax ViT's shapes show: patch, width, depth, heads, MLP width, qkv bias,
    pre-logits and classes (None without a head)."""
    where = f"{layout} checkpoint {checkpoint.path.name!r}"

    def key(part, param, block=0):
        return prefix + modules[part].format(i=block) + "/" + param

    patch_h, patch_w, channels, width = checkpoint.required_shape(key("patch_embed", "kernel"), 4, layout)
    if patch_h != patch_w or channels != 3:
        raise CheckpointError(f"{where}: {key('patch_embed', 'kernel')!r} is {(patch_h, patch_w, channels, width)};"
                              f" expected square patches over RGB, (P, P, 3, D)")
    first_norm = re.escape(key("norm1", "scale", "{i}")).replace(re.escape("{i}"), r"(\d+)")
    depth = checkpoint.block_count(first_norm, where)
    _, heads, head_dim = checkpoint.required_shape(key("attn.query", "kernel"), 3, layout)
    if heads * head_dim != width:
        raise CheckpointError(f"{where}: {key('attn.query', 'kernel')} has {heads} heads of {head_dim}, which "
                              f"does not make the width {width} of {key('patch_embed', 'kernel')!r}")

    def out_width(part):
        present = key(part, "kernel") in checkpoint
        return checkpoint.required_shape(key(part, "kernel"), 2, layout)[1] if present else None

    return dict(patch_size=patch_h, hidden_size=width, num_layers=depth, num_heads=heads,
                mlp_size=checkpoint.required_shape(key("mlp.fc1", "kernel"), 2, layout)[1],
                qkv_bias=key("attn.query", "bias") in checkpoint, representation_size=out_width("pre_logits"),
                num_classes=out_width("head"))


def square_side(tokens: int):
    """``s`` when ``tokens`` = s², else None."""
    side = math.isqrt(max(tokens, 0))
    return side if side and side * side == tokens else None


def detect(checkpoint: Checkpoint) -> bool:
    """True for vit_jax-style keys (also for the related layouts ``config_fields`` refuses by name)."""
    if "embedding/kernel" in checkpoint and "Transformer/encoder_norm/scale" in checkpoint:
        return True
    return "opt/target/embedding/kernel" in checkpoint


def config_fields(checkpoint: Checkpoint, hint=None) -> dict:
    """ViTConfig fields read off the tensor shapes; ``num_classes`` is None without a ``head``. (Every
    value is in the file or fixed by vit_jax, so ``hint`` is not needed.)

    Raises:
        UnsupportedLayoutError for a related layout that is not converted (named); CheckpointError for
        inconsistent shapes.
    """
    where = f"checkpoint {checkpoint.path.name!r}"
    for key, (layout, what) in OTHER_LAYOUTS.items():
        if key in checkpoint:
            raise UnsupportedLayoutError(
                f"{where} is {what} (found {key!r}); vit_zoo converts vit_jax ViT checkpoints (keys "
                f"'embedding/kernel', 'Transformer/encoderblock_0/…'). Export the plain ViT parameters in that "
                f"layout, or use the timm / Hugging Face conversion of the same weights", layout)
    fields = flax_fields(checkpoint, MODULES, "", "vit_jax")
    class_token = "cls" in checkpoint
    tokens = checkpoint.required_shape(POSITION, 3, "vit_jax")[1]
    side = square_side(tokens - int(class_token))
    if side is None:
        raise CheckpointError(
            f"{where}: {POSITION!r} holds {tokens} tokens, which is not "
            f"{'1 + ' if class_token else ''}a square grid; vit_jax checkpoints are square "
            f"(e.g. 197 = 1 + 14², 577 = 1 + 24²)")
    return dict(fields, image_size=side * fields["patch_size"], class_token=class_token,
                pooling="token" if class_token else "gap", gelu="tanh", layer_norm_epsilon=1e-6,
                mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                position_embedding_resampling="bilinear-corners")  # vit_jax: scipy.ndimage.zoom(order=1)


def identity_fields(checkpoint: Checkpoint, config) -> dict:
    """vit_jax evaluates by resizing straight to the input size, bilinearly. The file names no classes
    (no "labels": the loader assumes the ImageNet set of the head's size, and says so)."""
    return {"preprocessing": source_preprocessing(NAME, config.image_size)}


def mapping(config, checkpoint: Checkpoint = None) -> list:
    """Rows ``our variable ← vit_jax key`` for the whole model.

    Raises:
        ConversionError for a config with a slot vit_jax has no tensor for (fc_norm).
    """
    return targets.rows(config, flax_table(MODULES, TENSORS), "vit_jax")
