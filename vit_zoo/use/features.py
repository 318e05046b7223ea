"""Features from any encoder block, or the pooled features a classifier's head sees, as Keras models that
share the original model's weights and carry its identity."""
from __future__ import annotations

from typing import List, Sequence, Union

import keras
from keras import ops

# vision_transformer as a module, not its class: this module registers a Keras class, so it is imported
# while Keras itself loads, which can be in the middle of importing vision_transformer (model.keras_classes)
from vit_zoo.model import vision_transformer
from vit_zoo.model.identity import identity_of
from vit_zoo.model import tokens as token_layers
from vit_zoo.model.names import block_name

OUTPUTS = ("tokens", "spatial", "cls")


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


def block_count(model: keras.Model) -> int:
    """Number of encoder blocks of a vit_zoo model (counted from its ``block_{i:02d}_add2`` layers)."""
    names = {layer.name for layer in model.layers}
    count = 0
    while block_name(count, "add2") in names:
        count += 1
    if count == 0:
        raise ValueError(f"model {model.name!r} has no layers named 'block_00_add2'; expected a vit_zoo ViT "
                         f"(built by vit_zoo.build or vit_zoo.load)")
    return count


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
    return any(layer.name == "class_token" for layer in model.layers)


def feature_extractor(model: keras.Model, layers: Union[int, Sequence[int]] = -1, output: str = "tokens",
                      norm: bool = False, name: str = None) -> keras.Model:
    """A Keras model from ``model``'s input to the outputs of the chosen encoder blocks.

    It is built from the same layer objects, so it shares their weights (no copy): training or loading
    weights into one changes the other. Works for models built with or without the head and the
    preprocessing layer; it takes the same input as ``model``.

    Args:
        model: a vit_zoo ViT.
        layers: a block index or a list of them; negative indices count from the end (-1: the last block).
        output: per block, ``"tokens"``: the block's output (B, T, D) (class token first);
            ``"spatial"``: the patch tokens laid out on the patch grid (B, h, w, D), e.g. for dense tasks;
            ``"cls"``: the class token (B, D) (an error for models without one).
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
    prefix = 1 if has_class_token(model) else 0
    if output == "cls" and not prefix:
        raise ValueError(f"output='cls' needs a class token and model {model.name!r} has none; use "
                         f"output='tokens' or 'spatial'")
    if norm:
        try:
            final_norm = model.get_layer("encoder_norm")
        except ValueError:
            raise ValueError(f"norm=True applies the final LayerNorm 'encoder_norm', and model {model.name!r} "
                             f"has none (it norms after pooling, with 'fc_norm'); use norm=False") from None
    outputs = []
    for index in indices:
        features = model.get_layer(block_name(index, "add2")).output
        if norm:
            features = final_norm(features)
        if output == "spatial":
            grid = model.get_layer("patch_embed").output
            features = PatchTokensToGrid(prefix, name=f"features_{block_name(index, 'spatial')}")(
                [features, grid])
        elif output == "cls":
            features = token_layers.TokenPooling("token", prefix, name=f"features_{block_name(index, 'cls')}")(
                features)
        outputs.append(features)
    return _sub_model(model, outputs[0] if len(outputs) == 1 else outputs, name or f"{model.name}_features")


def pooled_features(model: keras.Model, name: str = None) -> keras.Model:
    """The pooled features of a vit_zoo model: (B, D) float32 per image, what its head sees.

    For a classifier, the input of its ``head`` (after the pooling, ``fc_norm`` and ``pre_logits`` its
    weights were trained with), as a model sharing its weights and carrying its identity; a model built
    with ``include_top=False`` and a pooling already outputs them and is returned as it is. A model that
    outputs the token sequence (``pooling=None``) is an error saying how to build a pooled one.
    """
    if any(layer.name == "head" for layer in model.layers):
        return _sub_model(model, model.get_layer("head").input, name or f"{model.name}_features")
    if len(model.output_shape) == 2:
        return model
    raise ValueError(f"model {model.name!r} outputs {model.output_shape}, not pooled features (B, D): load it "
                     f"with include_top=False and pooling='token' or 'gap', or with its classification head")


def _sub_model(model: keras.Model, outputs, name: str) -> keras.Model:
    """A model from ``model``'s input to ``outputs`` (its own tensors), with ``model``'s identity."""
    return vision_transformer.VisionTransformer(model.input, outputs, name=name, identity=identity_of(model))
