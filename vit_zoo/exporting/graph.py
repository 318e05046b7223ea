"""The graph an export writes: a float32 copy of a Keras ViT taking ``images`` (B, H, W, 3) uint8 and
returning ``{"predictions": (B, C) float32}``, with exact GELU written as ``0.5 x (1 + erf(x / √2))``
(TensorFlow lowers ``gelu(approximate=False)`` to ``Erfc``, which neither tf2onnx nor every TFLite runtime
supports; ``erf`` exports to ONNX ``Erf`` and the TFLite converter fuses it into its builtin ``GELU``)."""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops


class ErfGelu(keras.layers.Layer):
    """Exact GELU written with ``erf``: ``0.5 x (1 + erf(x / √2))``; exports to ONNX ``Erf`` and TFLite ``GELU``."""

    def call(self, x):
        return 0.5 * x * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))


def export_graph(model, input_dtype: str = "uint8", flat_matmuls: bool = True) -> keras.Model:
    """A float32 copy of ``model`` with export-friendly exact GELU, taking ``input_dtype`` images
    (B, H, W, 3) named ``images`` and returning ``predictions``.

    ``flat_matmuls=False`` (for OpenVINO) keeps the tokens' (B, T) axes through every projection: attention as
    einsums (``SelfAttention.flat_matmuls``), the MLP's Dense layers as ``EinsumDense`` on the tokens, no
    flattening of (B, T) into one axis, which OpenVINO's int8 transformations (its ReshapeTransformation,
    2026.4) cannot carry a per-channel scale through."""
    from vit_zoo.model.layers import FlattenTokens, Gelu, SelfAttention, UnflattenTokens

    def rebuild(layer):
        config = layer.get_config()
        if isinstance(layer, Gelu) and not config.get("approximate"):
            return ErfGelu(name=layer.name, dtype="float32")
        if isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(config)
        if not flat_matmuls and type(layer) is keras.layers.Dense:
            return keras.layers.EinsumDense("...d,dm->...m", output_shape=(layer.units,), name=layer.name,
                                            bias_axes="m" if layer.use_bias else None, dtype="float32",
                                            activation=layer.activation)
        copy = layer.__class__.from_config({**config, "dtype": "float32"})
        if isinstance(copy, (SelfAttention, FlattenTokens, UnflattenTokens)):
            copy.flat_matmuls = flat_matmuls
        return copy

    copy = keras.models.clone_model(model, clone_function=rebuild)
    copy.set_weights([np.asarray(w, np.float32) if np.issubdtype(np.asarray(w).dtype, np.floating) else w
                      for w in model.get_weights()])
    images = keras.Input(model.input_shape[1:], dtype=input_dtype, name="images")
    outputs = copy(ops.cast(images, "float32"))
    return keras.Model(images, {"predictions": outputs}, name=model.name)
