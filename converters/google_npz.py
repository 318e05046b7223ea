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
approximation), ``nn.LayerNorm`` epsilon 1e-6, inputs normalised as (x - 0.5) / 0.5.
"""
from __future__ import annotations

import math

from vit_zoo.converters.apply import row
from vit_zoo.converters.checkpoint import Checkpoint, CheckpointError
from vit_zoo.model.identity import source_preprocessing

NAME = "google-npz"
TELLTALE = "'embedding/kernel' with 'Transformer/encoder_norm/scale' (vit_jax .npz)"
IGNORED: dict = {}  # every tensor of a vit_jax ViT is used

BLOCK = "Transformer/encoderblock_{}/"
ATTENTION = "MultiHeadDotProductAttention_1/"
POSITION = "Transformer/posembed_input/pos_embedding"

# Layouts that look like vit_jax but that this module does not convert; each is named in the error.
_OTHER_LAYOUTS = {
    "opt/target/embedding/kernel": "a vit_jax training checkpoint (parameters under 'opt/target/', "
                                   "saved with the optimizer state)",
    "params/embedding/kernel": "a big_vision checkpoint (parameters under 'params/', position "
                               "embedding added before the class token)",
    "params/img/embedding/kernel": "a big_vision image-text (LiT/SigLIP) checkpoint",
    "conv_root/kernel": "a ResNet-hybrid ViT (R50+ViT-B/16, R26+S/32): vit_zoo builds plain ViTs only",
    "Transformer/encoderblock/LayerNorm_0/scale": "a scanned (lax.scan) big_vision checkpoint",
    "pos_embedding": "a big_vision checkpoint (position embedding at the top level, added before the "
                     "class token)",
    "Transformer/pos_embedding": "a big_vision checkpoint of 2021 (position embedding in the encoder)",
    "Transformer/encoderblock_0/LayerNorm_1/scale": "a big_vision checkpoint (block modules numbered "
                                                    "LayerNorm_0/1, MultiHeadDotProductAttention_0)",
    "MAPHead_0/probe": "a ViT with a MAP (attention-pooling) head",
}


def detect(checkpoint: Checkpoint) -> bool:
    """True for vit_jax-style keys (also for the related layouts ``config_fields`` refuses by name)."""
    if "embedding/kernel" in checkpoint and "Transformer/encoder_norm/scale" in checkpoint:
        return True
    return any(key in checkpoint for key in _OTHER_LAYOUTS if key.endswith("embedding/kernel"))


def config_fields(checkpoint: Checkpoint, hint=None) -> dict:
    """ViTConfig fields read off the tensor shapes; ``num_classes`` is None without a ``head``. (Every
    value is in the file or fixed by vit_jax, so ``hint`` is not needed.)

    Raises:
        CheckpointError for a related layout that is not converted (named), or inconsistent shapes.
    """
    where = f"checkpoint {checkpoint.path.name!r}"
    for key, what in _OTHER_LAYOUTS.items():
        if key in checkpoint:
            raise CheckpointError(f"{where} is {what} (found {key!r}); vit_zoo converts vit_jax ViT "
                                  f"checkpoints (keys 'embedding/kernel', 'Transformer/encoderblock_0/…'). "
                                  f"Export the plain ViT parameters in that layout, or use the timm / "
                                  f"Hugging Face conversion of the same weights")
    patch_h, patch_w, channels, width = checkpoint.required_shape("embedding/kernel", 4, "vit_jax")
    if patch_h != patch_w or channels != 3:
        raise CheckpointError(f"{where}: 'embedding/kernel' is {(patch_h, patch_w, channels, width)}; "
                              f"expected square patches over RGB, (P, P, 3, D)")
    depth = checkpoint.block_count(r"Transformer/encoderblock_(\d+)/LayerNorm_0/scale", where)
    first = BLOCK.format(0)
    _, heads, head_dim = checkpoint.required_shape(first + ATTENTION + "query/kernel", 3, "vit_jax")
    if heads * head_dim != width:
        raise CheckpointError(f"{where}: {first + ATTENTION}query/kernel has {heads} heads of {head_dim}, "
                              f"which does not make the width {width} of 'embedding/kernel'")
    mlp = checkpoint.required_shape(first + "MlpBlock_3/Dense_0/kernel", 2, "vit_jax")[1]
    class_token = "cls" in checkpoint
    tokens = checkpoint.required_shape(POSITION, 3, "vit_jax")[1]
    side = math.isqrt(tokens - int(class_token))
    if side * side != tokens - int(class_token):
        raise CheckpointError(
            f"{where}: {POSITION!r} holds {tokens} tokens, which is not "
            f"{'1 + ' if class_token else ''}a square grid; vit_jax checkpoints are square "
            f"(e.g. 197 = 1 + 14², 577 = 1 + 24²)")
    fields = dict(
        image_size=side * patch_h, patch_size=patch_h, hidden_size=width, mlp_size=mlp, num_heads=heads,
        num_layers=depth, class_token=class_token, pooling="token" if class_token else "gap",
        representation_size=(checkpoint.required_shape("pre_logits/kernel", 2, "vit_jax")[1]
                             if "pre_logits/kernel" in checkpoint else None),
        gelu="tanh", layer_norm_epsilon=1e-6, qkv_bias=first + ATTENTION + "query/bias" in checkpoint,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        num_classes=(checkpoint.required_shape("head/kernel", 2, "vit_jax")[1] if "head/kernel" in checkpoint
                     else None),
        position_embedding_resampling="bilinear-corners",  # vit_jax: scipy.ndimage.zoom(order=1)
    )
    return fields


def identity_fields(checkpoint: Checkpoint, config) -> dict:
    """vit_jax evaluates by resizing straight to the input size, bilinearly. The file names no classes
    (no "labels": the loader assumes the ImageNet set of the head's size, and says so)."""
    return {"preprocessing": source_preprocessing(NAME, config.image_size)}


def mapping(config, checkpoint: Checkpoint = None) -> list:
    """Rows ``our variable ← vit_jax key`` for the whole model (Flax shapes are Keras shapes)."""
    if config.pooling == "avg-fcnorm":
        raise CheckpointError("vit_jax checkpoints have no fc_norm; pooling 'avg-fcnorm' is timm's. Use "
                              "pooling 'token' (class-token models) or 'gap'")
    rows = [row("patch_embed/kernel", "embedding/kernel"), row("patch_embed/bias", "embedding/bias"),
            row("pos_embed/embeddings", POSITION)]
    if config.class_token:
        rows.append(row("class_token/token", "cls"))
    for i in range(config.num_layers):
        src, dst = BLOCK.format(i), f"block_{i:02d}_"
        rows += _layer_norm(dst + "norm1", src + "LayerNorm_0")
        for part in ("query", "key", "value"):
            rows.append(row(f"{dst}attn/{part}_kernel", f"{src}{ATTENTION}{part}/kernel"))
            if config.qkv_bias:
                rows.append(row(f"{dst}attn/{part}_bias", f"{src}{ATTENTION}{part}/bias"))
        rows += [row(f"{dst}attn/output_kernel", f"{src}{ATTENTION}out/kernel"),
                 row(f"{dst}attn/output_bias", f"{src}{ATTENTION}out/bias")]
        rows += _layer_norm(dst + "norm2", src + "LayerNorm_2")
        rows += _dense(dst + "mlp_fc1", src + "MlpBlock_3/Dense_0") + _dense(dst + "mlp_fc2",
                                                                            src + "MlpBlock_3/Dense_1")
    rows += _layer_norm("encoder_norm", "Transformer/encoder_norm")
    if config.representation_size:
        rows += _dense("pre_logits", "pre_logits")
    return rows + _dense("head", "head")


def _layer_norm(target, source):
    return [row(f"{target}/gamma", f"{source}/scale"), row(f"{target}/beta", f"{source}/bias")]


def _dense(target, source):
    return [row(f"{target}/kernel", f"{source}/kernel"), row(f"{target}/bias", f"{source}/bias")]
