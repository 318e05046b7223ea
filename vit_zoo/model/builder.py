"""The one ViT builder: a ``ViTConfig`` in, a Keras functional model out.

Layer names (stable; converters address weights through them with ``get_layer``):
    preprocessing            Normalize, only with include_preprocessing
    patch_embed              Conv2D, kernel (P, P, 3, D), bias (D,)
    patch_flatten            (B, h, w, D) → (B, h*w, D)
    class_token              ClassToken, token (1, 1, D)               [class_token models]
    pos_embed                PositionEmbedding, embeddings (1, T, D)
    pos_dropout
    block_{i:02d}_norm1      LayerNormalization, gamma/beta (D,)
    block_{i:02d}_attn       SelfAttention, {query,key,value}_kernel (D, H, Dh), ..._bias (H, Dh),
                             output_kernel (H, Dh, D), output_bias (D,)
    block_{i:02d}_drop_path1, block_{i:02d}_add1
    block_{i:02d}_norm2
    block_{i:02d}_mlp_flatten  (B, T, D) → (B·T, D): the MLP runs 2-D matmuls (oneDNN fuses bias + GELU)
    block_{i:02d}_mlp_fc1    Dense (D, M);  block_{i:02d}_mlp_gelu;  block_{i:02d}_mlp_dropout1
    block_{i:02d}_mlp_fc2    Dense (M, D);  block_{i:02d}_mlp_unflatten (back to (B, T, D))
    block_{i:02d}_mlp_dropout2
    block_{i:02d}_drop_path2, block_{i:02d}_add2
    encoder_norm             LayerNormalization                         [not for "avg-fcnorm"]
    pool                     TokenPooling                               [pooled outputs]
    fc_norm                  LayerNormalization after pooling           ["avg-fcnorm" pooled outputs]
    pre_logits               Dense (D, R) + tanh                        [representation_size]
    head                     Dense (D or R, C)                          [include_top]
    predictions              activation, float32 output

The model is a ``VisionTransformer``: a functional ``keras.Model`` whose inference is XLA-compiled by
default on the TensorFlow backend (see the class); layers, weights and outputs are the plain graph's.
"""
from __future__ import annotations

import keras

from vit_zoo.model import layers as vit_layers
from vit_zoo.model.config import ViTConfig
from vit_zoo.model.identity import Identity
from vit_zoo.model.names import PREPROCESSING_LAYER, block_name, has_preprocessing  # noqa: F401 (re-exported)
from vit_zoo.model.vision_transformer import VisionTransformer

OUTPUT_POOLINGS = (None, "token", "gap")
def resolve_pooling(config: ViTConfig, include_top: bool, pooling):
    """The pooling a model outputs with: one of config.POOLINGS, or None for the token sequence.

    ``"gap"`` names the family: for an ``"avg-fcnorm"`` config it is mean-then-fc_norm.
    """
    if pooling not in OUTPUT_POOLINGS + ("avg-fcnorm",):
        raise ValueError(f"pooling must be None, 'token' or 'gap', got {pooling!r}")
    if pooling == "gap" and config.pooling == "avg-fcnorm":
        pooling = "avg-fcnorm"
    if include_top:
        if pooling is not None and pooling != config.pooling:
            raise ValueError(f"pooling {pooling!r} differs from the pooling {config.pooling!r} that the "
                             f"head of this config was trained with; use include_top=False for "
                             f"{pooling!r} features, or build a config with pooling={pooling!r}")
        return config.pooling
    if pooling == "token" and not config.class_token:
        raise ValueError("pooling 'token' needs a class token, and this config has none "
                         "(class_token=False); use pooling='gap' or None")
    return pooling


def build(config: ViTConfig, *, include_top: bool = True, pooling=None, include_preprocessing: bool = True,
          classifier_activation=None, name=None, dynamic_size: bool = False, dtype=None,
          identity: Identity = None) -> keras.Model:
    """Build a ViT as a Keras functional model.

    Args:
        config: the architecture and numerics.
        include_top: output logits (B, num_classes); else features (see ``pooling``).
        pooling: with include_top=False: None → token sequence (B, T, D) after the final norm;
            "token" or "gap" → pooled (B, D), through pre_logits where the config has it.
        include_preprocessing: inputs are RGB in [0, 255] (normalised inside with config.mean/std);
            else inputs are already normalised.
        classifier_activation: None (logits) or e.g. "softmax".
        dynamic_size: input (None, None, 3); position embeddings are resampled in the graph for the
            size the model is called with (divisible by the patch size).
        dtype: a dtype or mixed-precision policy name for all layers; outputs are always float32.
        identity: what the weights are (preprocessing, class names, provenance; ``vit_zoo.model.identity``)
            with ``config`` as its config; default: randomly initialised weights of ``config``, the
            "google" preprocessing recipe and no class names.

    Returns:
        VisionTransformer (a functional keras.Model) taking (B, H, W, 3) float32 images.
    """
    if not isinstance(config, ViTConfig):
        raise TypeError(f"config must be a vit_zoo.ViTConfig, got {type(config).__name__}")
    identity = Identity(config) if identity is None else identity
    if identity.config != config:
        raise ValueError(f"identity.config differs from config in "
                         f"{[k for k, v in config.to_dict().items() if identity.config.to_dict()[k] != v]}")
    pooling = resolve_pooling(config, include_top, pooling)
    if classifier_activation is not None and not include_top:
        raise ValueError("classifier_activation applies to the head; it needs include_top=True")
    d = dict(dtype=dtype)
    height, width = (None, None) if dynamic_size else config.image_size
    images = keras.Input((height, width, 3), name="images")

    x = images
    if include_preprocessing:
        x = vit_layers.Normalize(config.mean, config.std, name=PREPROCESSING_LAYER, **d)(x)
    grid = keras.layers.Conv2D(config.hidden_size, config.patch_size, strides=config.patch_size,
                               padding="valid", name="patch_embed", **d)(x)
    x = keras.layers.Reshape((-1, config.hidden_size), name="patch_flatten", **d)(grid)
    if config.class_token:
        x = vit_layers.ClassToken(name="class_token", **d)(x)
    x = vit_layers.PositionEmbedding(config.grid_size, config.num_prefix_tokens,
                                     config.position_embedding_resampling, name="pos_embed", **d)([x, grid])
    x = keras.layers.Dropout(config.dropout_rate, name="pos_dropout", **d)(x)

    for index in range(config.num_layers):
        drop_path = config.drop_path_rate * index / max(config.num_layers - 1, 1)
        x = _encoder_block(x, config, index, drop_path, d)

    if config.pooling != "avg-fcnorm":
        x = layer_norm(config, "encoder_norm", d)(x)
    if pooling is not None:
        mode = "token" if pooling == "token" else "mean"
        x = vit_layers.TokenPooling(mode, config.num_prefix_tokens, name="pool", **d)(x)
        if pooling == "avg-fcnorm":
            x = layer_norm(config, "fc_norm", d)(x)
        if config.representation_size:
            x = keras.layers.Dense(config.representation_size, activation="tanh", name="pre_logits", **d)(x)
    if include_top:
        x = keras.layers.Dense(config.num_classes, name="head",
                               kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02), **d)(x)
    x = keras.layers.Activation(classifier_activation or "linear", dtype="float32", name="predictions")(x)
    return VisionTransformer(images, x, name=name or (config.variant or "vit"), identity=identity)


def layer_norm(config: ViTConfig, name: str, d: dict):
    return keras.layers.LayerNormalization(epsilon=config.layer_norm_epsilon, name=name, **d)


def _encoder_block(x, config: ViTConfig, index: int, drop_path: float, d: dict):
    """Pre-norm block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x))). (B, T, D) → same."""
    n = lambda part: block_name(index, part)  # noqa: E731
    y = layer_norm(config, n("norm1"), d)(x)
    y = vit_layers.SelfAttention(config.num_heads, config.qkv_bias, config.attention_dropout_rate,
                                 name=n("attn"), **d)(y)
    y = keras.layers.Dropout(config.dropout_rate, name=n("attn_dropout"), **d)(y)
    y = vit_layers.DropPath(drop_path, name=n("drop_path1"), **d)(y)
    x = keras.layers.Add(name=n("add1"), **d)([x, y])

    y = layer_norm(config, n("norm2"), d)(x)
    y = vit_layers.FlattenTokens(name=n("mlp_flatten"), **d)(y)
    y = keras.layers.Dense(config.mlp_size, name=n("mlp_fc1"), **d)(y)
    y = vit_layers.Gelu(approximate=config.gelu == "tanh", name=n("mlp_gelu"), **d)(y)
    y = keras.layers.Dropout(config.dropout_rate, name=n("mlp_dropout1"), **d)(y)
    y = keras.layers.Dense(config.hidden_size, name=n("mlp_fc2"), **d)(y)
    y = vit_layers.UnflattenTokens(name=n("mlp_unflatten"), **d)([y, x])
    y = keras.layers.Dropout(config.dropout_rate, name=n("mlp_dropout2"), **d)(y)
    y = vit_layers.DropPath(drop_path, name=n("drop_path2"), **d)(y)
    return keras.layers.Add(name=n("add2"), **d)([x, y])
