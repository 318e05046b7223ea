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

SigLIP image towers (``proj/image_text/two_towers.py``: the image tower under ``img/``, e.g.
``params/img/embedding/kernel``) load their image tower; the text tower (``txt/``) and the sigmoid loss's
temperature ``t`` and bias ``b`` are set aside (``SET_ASIDE``), with one warning at load. Their pooling is the MAP
head (pool_type "map"), whose output is the image embedding (``num_classes=0``):
    MAPHead_0/probe (1, 1, D)                          the learned query
    MAPHead_0/MultiHeadDotProductAttention_0/{query,key,value,out}     (Flax shapes as the blocks')
    MAPHead_0/LayerNorm_0, MAPHead_0/MlpBlock_0/Dense_0 (D, M), Dense_1 (M, D)   y = a + MLP(LN(a))
A classic ViT with pool_type "map" and a ``head`` loads as a classifier on the MAP output. The scanned encoder
(``scan=True``: one ``Transformer/encoderblock/...`` whose tensors stack the blocks on axis 0) is read block by
block: its shapes through an unrolled view, each block's rows taking their slice of the stacked tensor (the stacked
tensor is read once per block, so a scanned file converts more slowly than an unrolled one).

Refused by name (``UnsupportedLayoutError``): the MAP head inlined by the ViT-G development code (a top-level
``probe``), an image tower with a ``head`` (a LiT-style projection with bias), a MAP head with a class token, and
fixed sin-cos position embeddings (``posemb="sincos2d"``: no ``pos_embedding`` tensor).
"""
from __future__ import annotations

import re
from functools import partial

import numpy as np

from vit_zoo.converters import targets
from vit_zoo.converters.apply import Row
from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError
from vit_zoo.converters.google_npz import BLOCK, flax_fields, flax_table, square_side
from vit_zoo.model import checkpoint_formats as formats
from vit_zoo.model.identity import source_preprocessing

NAME = formats.BIG_VISION_NPZ
TELLTALE = ("'embedding/kernel' with 'Transformer/encoderblock_0/MultiHeadDotProductAttention_0/…', "
            "optionally under 'params/' (big_vision .npz)")
IGNORED = {r"opt/.*": "the optimizer state of a big_vision training checkpoint (not a weight)"}
TEXT_REASON = ("the text tower of a SigLIP / LiT checkpoint (txt/*) and its loss's temperature t and bias b: vit_zoo "
               "models the image tower")
SET_ASIDE = {r"(params/)?(txt/.*|t|b)": TEXT_REASON}

# the roots of the image ViT: a training checkpoint's params/, a two-tower model's img/, or the top level
PREFIXES = ("params/img/", "img/", "params/", "")
MAP = "MAPHead_0/"
STACKED = "Transformer/encoderblock/"  # the scanned encoder's one block, its tensors stacked on axis 0
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
    "map.attn.query": MAP + "MultiHeadDotProductAttention_0/query",
    "map.attn.key": MAP + "MultiHeadDotProductAttention_0/key",
    "map.attn.value": MAP + "MultiHeadDotProductAttention_0/value",
    "map.attn.out": MAP + "MultiHeadDotProductAttention_0/out",
    "map.norm": MAP + "LayerNorm_0",
    "map.mlp.fc1": MAP + "MlpBlock_0/Dense_0",
    "map.mlp.fc2": MAP + "MlpBlock_0/Dense_1",
}
# Where big_vision releases kept the position embedding, newest first (fix_old_checkpoints reads all).
POSITIONS = ("pos_embedding", "Transformer/pos_embedding", "Transformer/posembed_input/pos_embedding")

# Related layouts, not converted: {tell-tale key below the prefix: name}.
UNSUPPORTED = {
    "probe": "big_vision MAP head (pool_type='map', inlined by the ViT-G development code)",
}


def _prefix(checkpoint: Checkpoint) -> str:
    for prefix in PREFIXES:
        if prefix + "embedding/kernel" in checkpoint:
            return prefix
    return ""


def detect(checkpoint: Checkpoint) -> bool:
    """True for big_vision block names, a scanned encoder, a ``params/`` or ``img/`` tree or a top-level
    ``pos_embedding`` (also for the related layouts ``config_fields`` refuses by name)."""
    prefix = _prefix(checkpoint)
    if prefix + "embedding/kernel" not in checkpoint:
        return False
    tells = ["Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel", STACKED + "LayerNorm_0/scale",
             "pos_embedding", MAP + "probe", *UNSUPPORTED]
    return prefix != "" or any(prefix + key in checkpoint for key in tells)


def config_fields(checkpoint: Checkpoint, hint=None) -> dict:
    """ViTConfig fields read off the tensor shapes; ``num_classes`` is None without a ``head`` (0 for a
    two-tower image model: its MAP head's output is the embedding); mean/std assumed (listed under
    ``"assumed"``).

    Raises:
        UnsupportedLayoutError naming a related layout; CheckpointError for inconsistent shapes.
    """
    where = f"big_vision checkpoint {checkpoint.path.name!r}"
    prefix = _prefix(checkpoint)
    for key, layout in UNSUPPORTED.items():
        if prefix + key in checkpoint:
            raise UnsupportedLayoutError(f"{where} is a {layout} (found {prefix + key!r}), which vit_zoo does "
                                         f"not convert; it converts big_vision ViTs with pool_type 'tok', 'gap' "
                                         f"or 'map' (MAPHead_0)", layout)
    checkpoint = _unrolled(checkpoint, prefix)
    position = _position_key(checkpoint, prefix, where)
    fields = flax_fields(checkpoint, MODULES, prefix, "big_vision")
    class_token = prefix + "cls" in checkpoint
    map_head = prefix + MAP + "probe" in checkpoint
    if map_head:
        _check_map_head(checkpoint, prefix, fields, class_token, where)
    tower = prefix.endswith("img/")
    if tower:
        if fields["num_classes"] is not None:
            raise UnsupportedLayoutError(f"{where} has {prefix + 'head/kernel'!r}: an image tower with a head (a "
                                         f"LiT-style projection with bias, out_dim), which vit_zoo does not model; "
                                         f"it converts SigLIP image towers, whose embedding is the MAP head's output",
                                         "big_vision image tower with a head")
        fields["num_classes"] = 0
    tokens = checkpoint.required_shape(position, 3, "big_vision")[1]
    side = square_side(tokens) or (square_side(tokens - 1) if class_token else None)
    if side is None:
        raise CheckpointError(f"{where}: {position!r} holds {tokens} tokens, which is not a square grid"
                              f"{' (nor 1 + one)' if class_token else ''}")
    mean = std = (0.5, 0.5, 0.5)
    return dict(fields, image_size=side * fields["patch_size"], class_token=class_token,
                pooling="map" if map_head else "token" if class_token else "gap", gelu="tanh",
                layer_norm_epsilon=1e-6, mean=mean, std=std,
                position_embedding_resampling="bilinear-corners",  # resample_posemb
                assumed={"mean": mean, "std": std})


def _check_map_head(checkpoint: Checkpoint, prefix: str, fields: dict, class_token: bool, where: str) -> None:
    """big_vision's MAPHead: one probe of the width, the blocks' head count and MLP width, no class token."""
    width, heads, mlp = fields["hidden_size"], fields["num_heads"], fields["mlp_size"]
    expected = {MAP + "probe": (1, 1, width), MAP + "MultiHeadDotProductAttention_0/query/kernel":
                (width, heads, width // heads), MAP + "MlpBlock_0/Dense_0/kernel": (width, mlp)}
    for key, shape in expected.items():
        found = tuple(checkpoint.required_shape(prefix + key, len(shape), "big_vision MAP-head"))
        if found != shape:
            raise CheckpointError(f"{where}: {prefix + key!r} is {found}; big_vision's MAPHead of this ViT has "
                                  f"{shape} (one probe, the blocks' {heads} heads and MLP width {mlp})")
    if class_token:
        raise UnsupportedLayoutError(f"{where} has both 'cls' and {prefix + MAP + 'probe'!r}: a MAP head over a class "
                                     f"token, which big_vision does not build and vit_zoo does not model",
                                     "big_vision MAP head with a class token")


def _unrolled(checkpoint: Checkpoint, prefix: str) -> Checkpoint:
    """``checkpoint`` itself, or for a scanned encoder a view with the blocks unrolled:
    ``Transformer/encoderblock_{i}/X`` ← slice i of ``Transformer/encoderblock/X`` (read when asked)."""
    stacked = prefix + STACKED
    if not any(key.startswith(stacked) for key in checkpoint.keys()):
        return checkpoint
    entries = {}
    for key in checkpoint.keys():
        shape, dtype = tuple(checkpoint.shape(key)), checkpoint.dtype(key)
        if key.startswith(stacked):
            for block in range(shape[0]):
                entries[f"{prefix}Transformer/encoderblock_{block}/{key[len(stacked):]}"] = (
                    shape[1:], "float32", partial(_layer, checkpoint, key, block))
        else:
            entries[key] = (shape, dtype, partial(checkpoint.load, key))
    return Checkpoint(checkpoint.path, entries, checkpoint.metadata)


def _layer(checkpoint: Checkpoint, key: str, block: int) -> np.ndarray:
    return checkpoint.load(key)[block]


def _scanned_rows(rows: list, prefix: str) -> list:
    """Rows of an unrolled view back on the scanned file: ``.../encoderblock_{i}/X`` becomes the stacked
    ``.../encoderblock/X``, its transform applied to slice i."""
    block_key = re.compile(re.escape(prefix) + r"Transformer/encoderblock_(\d+)/(.*)")
    found = []
    for row in rows:
        match = block_key.fullmatch(row.sources[0])
        if match is None:
            found.append(row)
            continue
        block, rest = int(match[1]), match[2]
        found.append(Row(row.target, (prefix + STACKED + rest,),
                         lambda array, then=row.transform, block=block: then(array[block])))
    return found


def identity_fields(checkpoint: Checkpoint, config) -> dict:
    """big_vision evaluates by resizing straight to the input size, bilinearly, like vit_jax; the file
    names no classes."""
    return {"preprocessing": source_preprocessing(NAME, config.image_size)}


def mapping(config, checkpoint: Checkpoint) -> list:
    """Rows ``our variable ← big_vision key``; the position embedding gains the class token's zero row
    where big_vision added it before the class token."""
    prefix = _prefix(checkpoint)
    position = _position_key(checkpoint, prefix, f"big_vision checkpoint {checkpoint.path.name!r}")
    table = flax_table(MODULES, {"class_token": "cls", "pos_embed": position[len(prefix):],
                                 "map.probe": MAP + "probe"}, prefix)
    rows_before = checkpoint.shape(position)[1]
    if config.class_token and rows_before == config.num_patches:
        table["pos_embed"] = (position, zero_class_position)
    rows = targets.rows(config, table, "big_vision")
    scanned = any(key.startswith(prefix + STACKED) for key in checkpoint.keys())
    return _scanned_rows(rows, prefix) if scanned else rows


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
