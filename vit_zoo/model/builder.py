"""The one ViT builder: a ``ViTConfig`` in, a Keras functional model out. It creates exactly the variables
of the architecture spec (``vit_zoo.model.spec``), in its order.

Layer names (stable; converters address weights through them with ``get_layer``):
    preprocessing            Normalize, only with include_preprocessing
    patch_embed              Conv2D, kernel (P, P, 3, D), bias (D,) [patch_bias]
    patch_flatten            (B, h, w, D) → (B, h*w, D)
    class_token              ClassToken, token (1, 1, D)               [class_token models]
    distillation_token       InsertTokens at 1, tokens (1, 1, D)       [distillation_token]
    pos_embed                PositionEmbedding, embeddings (1, E + gh*gw, D), resampled in the graph to
                             the input's grid where that differs from the stored one
    register_tokens          InsertTokens after the class/distillation tokens, tokens (1, R, D) [registers]
    norm_pre                 LayerNormalization before the blocks        [pre_norm]
    pos_dropout
    block_{i:02d}_norm1      LayerNormalization, gamma/beta (D,)
    block_{i:02d}_attn       SelfAttention, {query,key,value}_kernel (D, H, Dh), ..._bias (H, Dh),
                             output_kernel (H, Dh, D), output_bias (D,)
    block_{i:02d}_ls1        LayerScale, gamma (D,)                     [layer_scale]
    block_{i:02d}_drop_path1, block_{i:02d}_add1
    block_{i:02d}_norm2
    block_{i:02d}_mlp_flatten  (B, T, D) → (B·T, D): the MLP runs 2-D matmuls (oneDNN fuses bias + GELU)
    block_{i:02d}_mlp_fc1    Dense (D, M), or (D, 2M) for SwiGLU
    block_{i:02d}_mlp_gelu   Gelu, or block_{i:02d}_mlp_swiglu SwiGlu (2M → M);  block_{i:02d}_mlp_dropout1
    block_{i:02d}_mlp_fc2    Dense (M, D);  block_{i:02d}_mlp_unflatten (back to (B, T, D))
    block_{i:02d}_mlp_dropout2
    block_{i:02d}_ls2        LayerScale                                 [layer_scale]
    block_{i:02d}_drop_path2, block_{i:02d}_add2
    encoder_norm             LayerNormalization                         [not for "avg-fcnorm"]
    pool                     TokenPooling (token, mean or token-mean)   [pooled outputs]
    fc_norm                  LayerNormalization after pooling           ["avg-fcnorm" pooled outputs]
    map_attn                 AttentionPooling (probe + attention): (B, T, D) → (B, D)    [pooling "map"]
    map_norm, map_mlp_fc1, map_mlp_gelu, map_mlp_fc2, map_add: y = a + MLP(LN(a))  [pooling "map"]
    pre_logits               Dense (D, R) + tanh                        [representation_size]
    projection               Dense (D or R, E), no bias: the image embedding [projection_size, include_top]
    head                     Dense (D, 2D, R or E; C)                   [include_top, num_classes > 0]
    pool_dist, head_dist     the distillation token and its Dense (D, C) [head "distilled"]
    head_average             the mean of the two heads' logits          [head "distilled"]
    predictions              activation, float32 output

The model is a ``VisionTransformer``: a functional ``keras.Model`` whose inference is XLA-compiled by
default on the TensorFlow backend (see the class); layers, weights and outputs are the plain graph's.
"""
from __future__ import annotations

import keras

from vit_zoo.model import layers as vit_layers
from vit_zoo.model import tokens as token_layers
from vit_zoo.model.build_record import BuildRecord, activation_name
from vit_zoo.model.config import ViTConfig
from vit_zoo.model.identity import Identity
from vit_zoo.model.names import (MAP_ATTENTION_LAYER, PREPROCESSING_LAYER, block_name,  # noqa: F401 (re-exported)
                                 has_preprocessing)
from vit_zoo.model.vision_transformer import VisionTransformer

OUTPUT_POOLINGS = (None, "token", "gap", "token-mean", "map")


def resolve_pooling(config: ViTConfig, include_top: bool, pooling):
    """The pooling a model outputs with: one of config.POOLINGS, or None for the token sequence.

    ``"gap"`` names the family: for an ``"avg-fcnorm"`` config it is mean-then-fc_norm.
    """
    if pooling not in OUTPUT_POOLINGS + ("avg-fcnorm",):
        raise ValueError(f"pooling must be None, 'token', 'gap', 'token-mean' or 'map', got {pooling!r}")
    if pooling == "gap" and config.pooling == "avg-fcnorm":
        pooling = "avg-fcnorm"
    if include_top:
        if pooling is not None and pooling != config.pooling:
            raise ValueError(f"pooling {pooling!r} differs from the pooling {config.pooling!r} that the "
                             f"head of this config was trained with; use include_top=False for "
                             f"{pooling!r} features, or build a config with pooling={pooling!r}")
        return config.pooling
    if pooling == "map" and config.pooling != "map":
        raise ValueError(f"pooling 'map' needs the MAP head's weights, and this config pools with "
                         f"{config.pooling!r}; use pooling={config.pooling!r}, 'gap' or None")
    if pooling in ("token", "token-mean") and not config.class_token:
        raise ValueError(f"pooling {pooling!r} needs a class token, and this config has none "
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
        classifier_activation: None (logits) or e.g. "softmax"; needs a classifier (num_classes > 0).
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
    if classifier_activation is not None and not (include_top and config.num_classes):
        raise ValueError("classifier_activation applies to the classifier head; it needs include_top=True and "
                         "num_classes > 0 (a model with num_classes=0 outputs its image embedding)")
    d = dict(dtype=dtype)
    height, width = (None, None) if dynamic_size else config.image_size
    images = keras.Input((height, width, 3), name="images")

    x = images
    if include_preprocessing:
        x = vit_layers.Normalize(config.mean, config.std, name=PREPROCESSING_LAYER, **d)(x)
    grid = keras.layers.Conv2D(config.hidden_size, config.patch_size, strides=config.patch_size,
                               padding="valid", use_bias=config.patch_bias, name="patch_embed", **d)(x)
    x = keras.layers.Reshape((-1, config.hidden_size), name="patch_flatten", **d)(grid)
    x = _prefix_and_positions(x, grid, config, d)
    if config.pre_norm:
        x = layer_norm(config, "norm_pre", d)(x)
    x = keras.layers.Dropout(config.dropout_rate, name="pos_dropout", **d)(x)

    for index in range(config.num_layers):
        drop_path = config.drop_path_rate * index / max(config.num_layers - 1, 1)
        x = _encoder_block(x, config, index, drop_path, d)

    if config.pooling != "avg-fcnorm":
        x = layer_norm(config, "encoder_norm", d)(x)
    if pooling is not None:
        x = _pooled_output(x, config, pooling, include_top, d)
    x = keras.layers.Activation(classifier_activation or "linear", dtype="float32", name="predictions")(x)
    record = BuildRecord(include_top, pooling, include_preprocessing, activation_name(classifier_activation),
                         dynamic_size)
    return VisionTransformer(images, x, name=name or (config.variant or "vit"), identity=identity,
                             build_record=record)


def _prefix_and_positions(patches, grid, config: ViTConfig, d: dict):
    """(B, h*w, D) patch tokens → (B, prefix + h*w, D): the class and distillation tokens join before the
    position embeddings are added when they carry one, after otherwise; registers join last, after the
    class/distillation tokens."""
    def join_class_tokens(x):
        if config.class_token:
            x = vit_layers.ClassToken(name="class_token", **d)(x)
        if config.distillation_token:
            x = token_layers.InsertTokens(1, 1, name="distillation_token", **d)(x)
        return x

    x = join_class_tokens(patches) if config.prefix_position_embeddings else patches
    x = vit_layers.PositionEmbedding(config.stored_position_grid, config.num_embedded_prefix_tokens,
                                     config.position_embedding_resampling, name="pos_embed", **d)([x, grid])
    if not config.prefix_position_embeddings:
        x = join_class_tokens(x)
    if config.register_tokens:
        index = int(config.class_token) + int(config.distillation_token)
        x = token_layers.InsertTokens(config.register_tokens, index, name="register_tokens", **d)(x)
    return x


def _pooled_output(x, config: ViTConfig, pooling: str, include_top: bool, d: dict):
    """(B, T, D) normed tokens → the pooled representation (B, D or 2D), or the logits with the head(s)."""
    tokens = x
    if pooling == "map":
        x = _map_head(tokens, config, d)
    else:
        mode = {"gap": "mean", "avg-fcnorm": "mean"}.get(pooling, pooling)
        x = token_layers.TokenPooling(mode, config.num_prefix_tokens, name="pool", **d)(tokens)
    if pooling == "avg-fcnorm":
        x = layer_norm(config, "fc_norm", d)(x)
    if config.representation_size:
        x = keras.layers.Dense(config.representation_size, activation="tanh", name="pre_logits", **d)(x)
    if not include_top:
        return x
    if config.projection_size:
        x = keras.layers.Dense(config.projection_size, use_bias=False, name="projection", **d)(x)
    if not config.num_classes:
        return x
    x = _head(config, "head", d)(x)
    if config.head == "distilled":  # DeiT: the two heads' logits averaged (timm, transformers at inference)
        distilled = token_layers.TokenPooling("token", config.num_prefix_tokens, 1, name="pool_dist", **d)(tokens)
        x = keras.layers.Average(name="head_average", **d)([x, _head(config, "head_dist", d)(distilled)])
    return x


def _map_head(tokens, config: ViTConfig, d: dict):
    """SigLIP's MAP head: (B, T, D) normed tokens → (B, D), a probe's attention ``a`` then ``a + MLP(LN(a))``."""
    pooled = token_layers.AttentionPooling(config.num_heads, True, name=MAP_ATTENTION_LAYER, **d)(tokens)
    y = layer_norm(config, "map_norm", d)(pooled)
    y = keras.layers.Dense(config.mlp_size, name="map_mlp_fc1", **d)(y)
    y = vit_layers.gelu_layer(config.gelu, name="map_mlp_gelu", **d)(y)
    y = keras.layers.Dense(config.hidden_size, name="map_mlp_fc2", **d)(y)
    return keras.layers.Add(name="map_add", **d)([pooled, y])


def _head(config: ViTConfig, name: str, d: dict):
    return keras.layers.Dense(config.num_classes, name=name,
                              kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02), **d)


def layer_norm(config: ViTConfig, name: str, d: dict):
    return keras.layers.LayerNormalization(epsilon=config.layer_norm_epsilon, name=name, **d)


def _encoder_block(x, config: ViTConfig, index: int, drop_path: float, d: dict):
    """Pre-norm block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x))). (B, T, D) → same."""
    n = lambda part: block_name(index, part)  # noqa: E731
    y = layer_norm(config, n("norm1"), d)(x)
    y = vit_layers.SelfAttention(config.num_heads, config.qkv_bias, config.attention_dropout_rate,
                                 name=n("attn"), **d)(y)
    y = keras.layers.Dropout(config.dropout_rate, name=n("attn_dropout"), **d)(y)
    y = _layer_scale(y, config, n("ls1"), d)
    y = vit_layers.DropPath(drop_path, name=n("drop_path1"), **d)(y)
    x = keras.layers.Add(name=n("add1"), **d)([x, y])

    y = layer_norm(config, n("norm2"), d)(x)
    y = vit_layers.FlattenTokens(name=n("mlp_flatten"), **d)(y)
    if config.mlp == "swiglu":
        y = keras.layers.Dense(2 * config.mlp_size, name=n("mlp_fc1"), **d)(y)
        y = vit_layers.SwiGlu(name=n("mlp_swiglu"), **d)(y)
    else:
        y = keras.layers.Dense(config.mlp_size, name=n("mlp_fc1"), **d)(y)
        y = vit_layers.gelu_layer(config.gelu, name=n("mlp_gelu"), **d)(y)
    y = keras.layers.Dropout(config.dropout_rate, name=n("mlp_dropout1"), **d)(y)
    y = keras.layers.Dense(config.hidden_size, name=n("mlp_fc2"), **d)(y)
    y = vit_layers.UnflattenTokens(name=n("mlp_unflatten"), **d)([y, x])
    y = keras.layers.Dropout(config.dropout_rate, name=n("mlp_dropout2"), **d)(y)
    y = _layer_scale(y, config, n("ls2"), d)
    y = vit_layers.DropPath(drop_path, name=n("drop_path2"), **d)(y)
    return keras.layers.Add(name=n("add2"), **d)([x, y])


def _layer_scale(y, config: ViTConfig, name: str, d: dict):
    return y if config.layer_scale is None else vit_layers.LayerScale(config.layer_scale, name=name, **d)(y)
