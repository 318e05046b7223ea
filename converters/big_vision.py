"""Google ``big_vision`` ViT ``.npz`` checkpoints (``big_vision/models/vit.py``, unrolled encoder).

Layout (parameters under ``params/`` in a training checkpoint, at the top level in a released one):
    embedding/{kernel (P, P, 3, D), bias}          patch embedding (Conv, VALID, stride P)
    pos_embedding (1, h*w, D)                      learned, added to the patches BEFORE the class token;
                                                   releases before 2022 keep it at Transformer/pos_embedding
    cls (1, 1, D)                                  class token, pool_type "tok" only
    Transformer/encoderblock_{i}/
        LayerNorm_0, MultiHeadDotProductAttention_0/{query,key,value,out}, LayerNorm_1,
        MlpBlock_0/Dense_0, MlpBlock_0/Dense_1     (Flax shapes as in vit_jax)
    Transformer/encoder_norm
    pre_logits/{kernel (D, R), bias}               rep_size: Dense + tanh
    head/{kernel, bias}

One fix makes it a vit_zoo model: vit_zoo adds the position embedding after the class token (as vit_jax),
so a "tok" checkpoint's h*w position rows get a zero row in front -- the class token plus zero is the
class token big_vision feeds. (Checkpoints of big_vision's old vit.py, which added a 1 + h*w embedding
after the class token, load as they are.) pool_type "gap" (no ``cls``; its default) is our "gap": the
mean of all tokens after the final norm. Numerics: ``flax.linen.gelu`` (tanh), LayerNorm epsilon 1e-6.
The normalisation is set by each training config's input pipeline, not stored: value_range(-1, 1), i.e.
mean = std = 0.5, is assumed (and listed as assumed).

Refused by name (``UnsupportedLayoutError``): the MAP (attention-pooling) head, the scanned encoder
(``scan=True``: one ``encoderblock`` with stacked parameters), image-text towers (LiT, SigLIP: ``img/``),
and fixed sin-cos position embeddings (``posemb="sincos2d"``: no ``pos_embedding`` tensor).
"""
from __future__ import annotations

import numpy as np

from vit_zoo.converters import targets
from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError
from vit_zoo.converters.google_npz import BLOCK, flax_fields, flax_table, square_side
from vit_zoo.model.identity import source_preprocessing

NAME = "big-vision-npz"
TELLTALE = ("'embedding/kernel' with 'Transformer/encoderblock_0/MultiHeadDotProductAttention_0/…', "
            "optionally under 'params/' (big_vision .npz)")
IGNORED = {r"opt/.*": "the optimizer state of a big_vision training checkpoint (not a weight)"}

PREFIXES = ("params/", "")
MODULES = {
    "patch_embed": "embedding",
    "norm1": BLOCK + "LayerNorm_0",
    "attn.query": BLOCK + "MultiHeadDotProductAttention_0/query",
    "attn.key": BLOCK + "MultiHeadDotProductAttention_0/key",
    "attn.value": BLOCK + "MultiHeadDotProductAttention_0/value",
    "attn.out": BLOCK + "MultiHeadDotProductAttention_0/out",
    "norm2": BLOCK + "LayerNorm_1",
    "mlp.fc1": BLOCK + "MlpBlock_0/Dense_0",
    "mlp.fc2": BLOCK + "MlpBlock_0/Dense_1",
    "encoder_norm": "Transformer/encoder_norm",
    "pre_logits": "pre_logits",
    "head": "head",
}
# Where big_vision releases kept the position embedding, newest first (fix_old_checkpoints reads all).
POSITIONS = ("pos_embedding", "Transformer/pos_embedding", "Transformer/posembed_input/pos_embedding")

# Related layouts, not converted: {tell-tale key below the prefix: name}.
UNSUPPORTED = {
    "MAPHead_0/probe": "big_vision MAP head (pool_type='map', attention pooling)",
    "probe": "big_vision MAP head (pool_type='map', inlined by the ViT-G development code)",
    "Transformer/encoderblock/LayerNorm_0/scale": "big_vision scanned encoder (scan=True, stacked blocks)",
    "img/embedding/kernel": "big_vision image-text towers (LiT / SigLIP two_towers)",
}


def _prefix(checkpoint: Checkpoint) -> str:
    for prefix in PREFIXES:
        if prefix + "embedding/kernel" in checkpoint or prefix + "img/embedding/kernel" in checkpoint:
            return prefix
    return ""


def detect(checkpoint: Checkpoint) -> bool:
    """True for big_vision block names, a scanned encoder, a ``params/`` tree or a top-level
    ``pos_embedding`` (also for the related layouts ``config_fields`` refuses by name)."""
    prefix = _prefix(checkpoint)
    if prefix + "embedding/kernel" not in checkpoint:
        return prefix + "img/embedding/kernel" in checkpoint
    tells = ["Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel", "pos_embedding",
             *UNSUPPORTED]
    return prefix == "params/" or any(prefix + key in checkpoint for key in tells)


def config_fields(checkpoint: Checkpoint, hint=None) -> dict:
    """ViTConfig fields read off the tensor shapes; ``num_classes`` is None without a ``head``; mean/std
    assumed (listed under ``"assumed"``).

    Raises:
        UnsupportedLayoutError naming a related layout; CheckpointError for inconsistent shapes.
    """
    where = f"big_vision checkpoint {checkpoint.path.name!r}"
    prefix = _prefix(checkpoint)
    for key, layout in UNSUPPORTED.items():
        if prefix + key in checkpoint:
            raise UnsupportedLayoutError(f"{where} is a {layout} (found {prefix + key!r}), which vit_zoo does "
                                         f"not convert; it converts big_vision ViTs with pool_type 'tok' or "
                                         f"'gap' and an unrolled encoder", layout)
    position = _position_key(checkpoint, prefix, where)
    fields = flax_fields(checkpoint, MODULES, prefix, "big_vision")
    class_token = prefix + "cls" in checkpoint
    tokens = checkpoint.required_shape(position, 3, "big_vision")[1]
    side = square_side(tokens) or (square_side(tokens - 1) if class_token else None)
    if side is None:
        raise CheckpointError(f"{where}: {position!r} holds {tokens} tokens, which is not a square grid"
                              f"{' (nor 1 + one)' if class_token else ''}")
    mean = std = (0.5, 0.5, 0.5)
    return dict(fields, image_size=side * fields["patch_size"], class_token=class_token,
                pooling="token" if class_token else "gap", gelu="tanh", layer_norm_epsilon=1e-6,
                mean=mean, std=std, position_embedding_resampling="bilinear-corners",  # resample_posemb
                assumed={"mean": mean, "std": std})


def identity_fields(checkpoint: Checkpoint, config) -> dict:
    """big_vision evaluates by resizing straight to the input size, bilinearly, like vit_jax; the file
    names no classes."""
    return {"preprocessing": source_preprocessing(NAME, config.image_size)}


def mapping(config, checkpoint: Checkpoint) -> list:
    """Rows ``our variable ← big_vision key``; the position embedding gains the class token's zero row
    where big_vision added it before the class token."""
    prefix = _prefix(checkpoint)
    position = _position_key(checkpoint, prefix, f"big_vision checkpoint {checkpoint.path.name!r}")
    table = flax_table(MODULES, {"class_token": "cls", "pos_embed": position[len(prefix):]}, prefix)
    rows_before = checkpoint.shape(position)[1]
    if config.class_token and rows_before == config.num_patches:
        table["pos_embed"] = (position, zero_class_position)
    return targets.rows(config, table, "big_vision")


def zero_class_position(embeddings: np.ndarray) -> np.ndarray:
    """(1, h*w, D) → (1, 1 + h*w, D): a zero embedding for the class token in front of the patches'."""
    return np.concatenate([np.zeros_like(embeddings[:, :1]), embeddings], axis=1)


def _position_key(checkpoint: Checkpoint, prefix: str, where: str) -> str:
    for key in POSITIONS:
        if prefix + key in checkpoint:
            return prefix + key
    raise UnsupportedLayoutError(f"{where} has no position embedding (looked for "
                                 f"{[prefix + k for k in POSITIONS]}): a big_vision ViT with fixed sin-cos "
                                 f"position embeddings (posemb='sincos2d'), which vit_zoo does not convert",
                                 "big_vision sin-cos position embeddings (posemb='sincos2d')")
