"""Features from any encoder block -- the token sequence, the patch map, the class token, or every part
with the prefix tokens split off -- or the pooled features a classifier's head sees, as Keras models that
share the original model's weights and carry its identity. What a model holds (its prefix tokens, depth,
final norm, head) is read from its identity and build record, never from its layer names."""
from __future__ import annotations

from typing import List, Sequence, Union

import keras
from keras import ops

# vision_transformer as a module, not its class: this module registers a Keras class, so it is imported
# while Keras itself loads, which can be in the middle of importing vision_transformer (model.keras_classes)
from vit_zoo.model import vision_transformer
from vit_zoo.model.build_record import BuildRecord, build_record_of
from vit_zoo.model.identity import Identity, identity_of
from vit_zoo.model import tokens as token_layers
from vit_zoo.model.names import block_name

OUTPUTS = ("tokens", "spatial", "cls", "parts")


@keras.saving.register_keras_serializable(package="vit_zoo")
class PatchTokensToGrid(keras.layers.Layer):
    """Called as ``layer([tokens, patch_grid])``: drops the ``num_prefix_tokens`` leading tokens and lays
    the patch tokens out on the grid of ``patch_grid``: (B, prefix + h*w, D), (B, h, w, ·) → (B, h, w, D).
    The grid is read at run time, so it works for ``dynamic_size`` models too."""

    def __init__(self, num_prefix_tokens=1, **kwargs):
        super().__init__(**kwargs)
        self.num_prefix_tokens = int(num_prefix_tokens)

    def call(self, inputs):
        tokens, grid = inputs
        height, width = ops.shape(grid)[1], ops.shape(grid)[2]
        return ops.reshape(tokens[:, self.num_prefix_tokens:], (-1, height, width, ops.shape(tokens)[-1]))

    def compute_output_shape(self, input_shape):
        tokens_shape, grid_shape = input_shape
        return (tokens_shape[0], grid_shape[1], grid_shape[2], tokens_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_prefix_tokens": self.num_prefix_tokens}


def vit_identity(model: keras.Model) -> Identity:
    """The identity of a vit_zoo model; a ValueError for a model that carries none."""
    identity = identity_of(model)
    if identity is None:
        raise ValueError(f"model {model.name!r} carries no vit_zoo identity (model.identity); expected a vit_zoo "
                         f"ViT (built by vit_zoo.build or vit_zoo.load; a keras.models.clone_model copy needs "
                         f"copy.identity = original.identity)")
    return identity


def block_count(model: keras.Model) -> int:
    """Number of encoder blocks of a vit_zoo model (its identity's ``num_layers``)."""
    return vit_identity(model).config.num_layers


def resolve_block_indices(model: keras.Model, layers: Union[int, Sequence[int], None]) -> List[int]:
    """Block indices as non-negative ints; negative ones count from the end (-1 is the last block);
    None means every block."""
    count = block_count(model)
    if layers is None:
        return list(range(count))
    requested = [layers] if isinstance(layers, int) else list(layers)
    if not requested:
        raise ValueError("layers is empty; give block indices such as [-1] or [3, 7, 11]")
    indices = []
    for index in requested:
        if isinstance(index, bool) or not isinstance(index, int) or not -count <= index < count:
            raise ValueError(f"block index {index!r} is out of range: the model has {count} blocks, so "
                             f"indices run from 0 to {count - 1} (or -{count} to -1 from the end)")
        indices.append(index % count)
    if len(set(indices)) != len(indices):
        raise ValueError(f"layers {requested} name the same block twice (the model has {count} blocks)")
    return indices


def has_class_token(model: keras.Model) -> bool:
    return vit_identity(model).config.class_token


@keras.saving.register_keras_serializable(package="vit_zoo")
class TokenRange(keras.layers.Layer):
    """Tokens ``start`` .. ``start + count - 1`` of the sequence: (B, T, D) → (B, count, D) (DINOv2's
    register tokens)."""

    def __init__(self, start=0, count=1, **kwargs):
        super().__init__(**kwargs)
        self.start, self.count = int(start), int(count)

    def call(self, tokens):
        return tokens[:, self.start:self.start + self.count]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.count, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "start": self.start, "count": self.count}


def token_parts(config, tokens, grid, name: str) -> dict:
    """(B, T, D) block tokens → their parts, each present where ``config`` has it:
    ``"class"`` (B, D), ``"distillation"`` (B, D), ``"registers"`` (B, R, D) and ``"patches"`` (B, h, w, D)
    on the grid of ``grid`` (the patch embedding's output (B, h, w, D)). ``name`` prefixes the layer names."""
    parts = {}
    prefix = config.num_prefix_tokens
    if config.class_token:
        parts["class"] = token_layers.TokenPooling("token", prefix, 0, name=f"{name}_class")(tokens)
    if config.distillation_token:
        parts["distillation"] = token_layers.TokenPooling("token", prefix, 1, name=f"{name}_distillation")(tokens)
    if config.register_tokens:
        start = int(config.class_token) + int(config.distillation_token)
        parts["registers"] = TokenRange(start, config.register_tokens, name=f"{name}_registers")(tokens)
    parts["patches"] = PatchTokensToGrid(prefix, name=f"{name}_patches")([tokens, grid])
    return parts


def feature_extractor(model: keras.Model, layers: Union[int, Sequence[int]] = -1, output: str = "tokens",
                      norm: bool = False, name: str = None) -> keras.Model:
    """A Keras model from ``model``'s input to the outputs of the chosen encoder blocks.

    It is built from the same layer objects, so it shares their weights (no copy): training or loading
    weights into one changes the other. Works for models built with or without the head and the
    preprocessing layer; it takes the same input as ``model``.

    Args:
        model: a vit_zoo ViT.
        layers: a block index or a list of them; negative indices count from the end (-1: the last block).
        output: per block, ``"tokens"``: the block's output (B, T, D): the prefix tokens first (class,
            then DeiT's distillation token, then registers: ``config.num_prefix_tokens`` of them), then
            the h*w patches row by row;
            ``"spatial"``: the patch tokens laid out on the patch grid (B, h, w, D), e.g. for dense tasks;
            ``"cls"``: the class token (B, D) (an error for models without one);
            ``"parts"``: a dict of the parts the model has: ``"class"`` (B, D), ``"distillation"``
            (B, D), ``"registers"`` (B, R, D) and ``"patches"`` (B, h, w, D). The grid (h, w) is the
            input's: (H / patch, W / patch), also for a ``dynamic_size`` model called at another size.
        norm: apply the model's final LayerNorm (``encoder_norm``) to each chosen block's output, as its
            last block's output is normed before pooling (an error for models that norm after pooling).

    Returns:
        A ``VisionTransformer`` (a functional keras.Model carrying ``model``'s identity, which
        ``save``/``load_model`` keep) with one output per entry of ``layers``; one block (an int, or a
        list of one — Keras unwraps one-element output lists) gives a single output tensor.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {list(OUTPUTS)}, got {output!r}")
    indices = resolve_block_indices(model, layers)
    config = vit_identity(model).config
    if output == "cls" and not config.class_token:
        raise ValueError(f"output='cls' needs a class token and model {model.name!r} has none; use "
                         f"output='tokens', 'spatial' or 'parts'")
    if norm and config.pooling == "avg-fcnorm":
        raise ValueError(f"norm=True applies the final LayerNorm 'encoder_norm', and model {model.name!r} "
                         f"has none (it norms after pooling, with 'fc_norm'); use norm=False")
    final_norm = model.get_layer("encoder_norm") if norm else None
    grid = model.get_layer("patch_embed").output
    outputs = []
    for index in indices:
        features = model.get_layer(block_name(index, "add2")).output
        if norm:
            features = final_norm(features)
        if output == "spatial":
            features = PatchTokensToGrid(config.num_prefix_tokens, name=f"features_{block_name(index, 'spatial')}")(
                [features, grid])
        elif output == "cls":
            features = token_layers.TokenPooling("token", config.num_prefix_tokens,
                                                 name=f"features_{block_name(index, 'cls')}")(features)
        elif output == "parts":
            features = token_parts(config, features, grid, f"features_{block_name(index, 'parts')}")
        outputs.append(features)
    return _sub_model(model, outputs[0] if len(outputs) == 1 else outputs, name or f"{model.name}_features")


def pooled_features(model: keras.Model, name: str = None) -> keras.Model:
    """The pooled features of a vit_zoo model: (B, D) float32 per image, what its head sees.

    For an image tower (``num_classes=0``: CLIP, SigLIP) its top's output, the image embedding; for a
    classifier, the input of its ``head`` (after the pooling, ``fc_norm`` and ``pre_logits`` its
    weights were trained with: (B, 2D) for "token-mean"; the class token's for DeiT's distilled head,
    whose ``head_dist`` sees the distillation token), as a model sharing its weights and carrying its
    identity; a model built with ``include_top=False`` and a pooling already outputs them and is returned
    as it is. A model that outputs the token sequence (``pooling=None``) is an error saying how to build a
    pooled one.
    """
    record = build_record_of(model)
    identity = identity_of(model)
    if record is not None and record.include_top and identity is not None and not identity.config.num_classes:
        return model  # an image tower (CLIP, SigLIP): its top outputs the image embedding
    if record is not None and record.include_top:
        return _sub_model(model, model.get_layer("head").input, name or f"{model.name}_features",
                          pooling=record.pooling)
    if record is not None and record.pooling is not None:
        return model
    raise ValueError(f"model {model.name!r} outputs {model.output_shape}, not pooled features (B, D): load it "
                     f"with include_top=False and pooling='token' or 'gap', or with its classification head")


def _sub_model(model: keras.Model, outputs, name: str, pooling=None) -> keras.Model:
    """A model from ``model``'s input to ``outputs`` (its own tensors), with ``model``'s identity; its build
    record says: features (no head) of ``pooling`` (None: blocks' outputs), ``model``'s input side."""
    parent = build_record_of(model) or BuildRecord()
    record = BuildRecord(include_top=False, pooling=pooling, include_preprocessing=parent.include_preprocessing,
                         dynamic_size=parent.dynamic_size)
    return vision_transformer.VisionTransformer(model.input, outputs, name=name, identity=identity_of(model),
                                                build_record=record)
