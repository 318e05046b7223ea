"""The layers that place and pool a ViT's tokens (class, distillation, register tokens; the MAP head's
attention pooling); each registered so ``keras.models.load_model`` finds it after ``import vit_zoo``.
Written with ``keras.ops``."""
from __future__ import annotations

import math

import keras
from keras import ops

from vit_zoo.model import layers  # a module, not its names (see vit_zoo.model.keras_classes)

_register = keras.saving.register_keras_serializable(package="vit_zoo")


@_register
class InsertTokens(keras.layers.Layer):
    """Inserts ``count`` learned tokens at sequence position ``index``: (B, N, D) → (B, N + count, D).
    Weight ``tokens`` (1, count, D). DeiT's distillation token (index 1, after the class token) and
    DINOv2's register tokens (after the class token, once the position embeddings are added)."""

    def __init__(self, count=1, index=0, **kwargs):
        super().__init__(**kwargs)
        self.count, self.index = int(count), int(index)

    def build(self, input_shape):
        self.tokens = self.add_weight(name="tokens", shape=(1, self.count, input_shape[-1]),
                                      initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def call(self, sequence):
        batch = ops.shape(sequence)[0]
        tokens = ops.broadcast_to(ops.cast(self.tokens, sequence.dtype),
                                  (batch, self.count, ops.shape(sequence)[-1]))
        return ops.concatenate([sequence[:, : self.index], tokens, sequence[:, self.index:]], axis=1)

    def compute_output_shape(self, input_shape):
        length = None if input_shape[1] is None else input_shape[1] + self.count
        return (input_shape[0], length, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "count": self.count, "index": self.index}


@_register
class TokenPooling(keras.layers.Layer):
    """(B, T, D) → (B, D) or (B, 2D): ``"token"`` takes token ``token_index`` (0: the class token, 1: DeiT's
    distillation token); ``"mean"`` averages the patch tokens, those after the ``num_prefix_tokens`` prefix
    (class, distillation, register) ones; ``"token-mean"`` concatenates token 0 and that mean (DINOv2's
    linear head)."""

    MODES = ("token", "mean", "token-mean")

    def __init__(self, mode="token", num_prefix_tokens=1, token_index=0, **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"TokenPooling mode must be one of {list(self.MODES)}, got {mode!r}")
        self.mode, self.num_prefix_tokens, self.token_index = mode, int(num_prefix_tokens), int(token_index)

    def call(self, tokens):
        if self.mode == "token":
            return tokens[:, self.token_index]
        mean = ops.mean(tokens[:, self.num_prefix_tokens:], axis=1)
        return mean if self.mode == "mean" else ops.concatenate([tokens[:, 0], mean], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2] * (2 if self.mode == "token-mean" else 1))

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "num_prefix_tokens": self.num_prefix_tokens,
                "token_index": self.token_index}


@_register
class AttentionPooling(layers.SelfAttention):
    """Multi-head attention pooling (the attention of SigLIP's MAP head): a learned probe attends over every
    token, (B, T, D) → (B, D). Weights: ``probe`` (1, 1, D), then the query, key, value and output weights
    of ``SelfAttention`` (the probe is projected to the query, the tokens to the keys and values)."""

    def build(self, input_shape):
        self.probe = self.add_weight(name="probe", shape=(1, 1, input_shape[-1]),
                                     initializer=keras.initializers.GlorotUniform())
        super().build(input_shape)

    def _query(self, tokens):
        """The probe, one per image, projected to the query: (B, 1, H, Dh)."""
        probe = ops.broadcast_to(ops.cast(self.probe, tokens.dtype), (ops.shape(tokens)[0], 1, tokens.shape[-1]))
        return self._project(probe, "query")

    def call(self, tokens, training=None):
        key, value = self._project(tokens, "key"), self._project(tokens, "value")
        attended = ops.dot_product_attention(self._query(tokens), key, value, scale=1.0 / math.sqrt(self.head_dim))
        return self._output(attended)[:, 0]

    def attention_probabilities(self, tokens):
        """The probe's softmax(q Kᵀ / √Dh) over the tokens per head: (B, T, D) → (B, H, 1, T), float32."""
        return self._probabilities(self._query(tokens), self._project(tokens, "key"))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
