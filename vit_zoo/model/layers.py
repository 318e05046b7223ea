"""The few layers a ViT needs beyond Keras' own; each registered so ``keras.models.load_model`` finds it
after ``import vit_zoo``. Everything is written with ``keras.ops`` (backend-agnostic, XLA-compilable)."""
from __future__ import annotations

import math

import keras
from keras import ops

from vit_zoo.model import resample  # a module, not its names (see vit_zoo.model.keras_classes)

_register = keras.saving.register_keras_serializable(package="vit_zoo")


def _leading_shape(x):
    """(B, T) of a (B, T, ...) tensor: static sizes where known, else dynamic."""
    return tuple(size if size is not None else ops.shape(x)[axis] for axis, size in enumerate(x.shape[:2]))


@_register
class Normalize(keras.layers.Layer):
    """RGB in [0, 255] → ``(x / 255 - mean) / std``. (B, H, W, 3) → same shape."""

    def __init__(self, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        scale = ops.convert_to_tensor([1.0 / (255.0 * s) for s in self.std], self.compute_dtype)
        offset = ops.convert_to_tensor([-m / s for m, s in zip(self.mean, self.std)], self.compute_dtype)
        return images * scale + offset

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@_register
class ClassToken(keras.layers.Layer):
    """Prepends a learned token: (B, N, D) → (B, 1 + N, D). Weight ``token`` (1, 1, D)."""

    def build(self, input_shape):
        self.token = self.add_weight(name="token", shape=(1, 1, input_shape[-1]),
                                     initializer=keras.initializers.RandomNormal(stddev=1e-6))

    def call(self, tokens):
        batch = ops.shape(tokens)[0]
        token = ops.broadcast_to(ops.cast(self.token, tokens.dtype), (batch, 1, ops.shape(tokens)[-1]))
        return ops.concatenate([token, tokens], axis=1)

    def compute_output_shape(self, input_shape):
        length = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], length, input_shape[2])


@_register
class PositionEmbedding(keras.layers.Layer):
    """Adds learned position embeddings, resampled to the patch grid the input actually has.

    Called as ``layer([tokens, patch_grid])`` with tokens (B, prefix + h*w, D) and the patch grid
    (B, h, w, D) it came from. Weight ``embeddings`` (1, prefix + gh*gw, D) for the stored ``grid_size``;
    when (h, w) differs (``dynamic_size`` models, or a stored ``position_grid``) the patch part is resampled
    inside the graph with ``resample_position_embeddings`` — the function a checkpoint is resampled with at
    load time; (h, w) may then be known only at run time.
    """

    def __init__(self, grid_size, num_prefix_tokens=1, resampling="bicubic", **kwargs):
        super().__init__(**kwargs)
        self.grid_size = tuple(int(g) for g in grid_size)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.resampling = resampling

    def build(self, input_shape):
        tokens = self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]
        self.embeddings = self.add_weight(name="embeddings", shape=(1, tokens, input_shape[0][-1]),
                                          initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def call(self, inputs):
        tokens, grid = inputs
        static_grid = tuple(grid.shape[1:3])
        target = static_grid if None not in static_grid else tuple(ops.shape(grid)[1:3])
        embeddings = resample.resample_position_embeddings(ops.cast(self.embeddings, tokens.dtype), self.grid_size,
                                                           target, self.num_prefix_tokens, self.resampling)
        return tokens + embeddings

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "grid_size": self.grid_size,
                "num_prefix_tokens": self.num_prefix_tokens, "resampling": self.resampling}


@_register
class SelfAttention(keras.layers.Layer):
    """Multi-head self-attention: (B, T, D) → (B, T, D).

    Weights have the shapes of Flax's ``MultiHeadDotProductAttention`` and Keras' ``MultiHeadAttention``:
    ``{query,key,value}_kernel`` (D, H, Dh), ``{query,key,value}_bias`` (H, Dh), ``output_kernel``
    (H, Dh, D), ``output_bias`` (D,). Inference uses ``keras.ops.dot_product_attention`` (fused where the
    backend has it); training with attention dropout takes the explicit softmax path.
    """

    def __init__(self, num_heads, use_bias=True, dropout_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.use_bias, self.dropout_rate = int(num_heads), bool(use_bias), float(dropout_rate)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy)

    def build(self, input_shape):
        width = input_shape[-1]
        self.head_dim = width // self.num_heads
        heads = (self.num_heads, self.head_dim)
        init = keras.initializers.GlorotUniform()
        for name in ("query", "key", "value"):
            setattr(self, f"{name}_kernel", self.add_weight(name=f"{name}_kernel", shape=(width, *heads),
                                                            initializer=init))
            if self.use_bias:
                setattr(self, f"{name}_bias", self.add_weight(name=f"{name}_bias", shape=heads,
                                                              initializer="zeros"))
        self.output_kernel = self.add_weight(name="output_kernel", shape=(*heads, width), initializer=init)
        self.output_bias = self.add_weight(name="output_bias", shape=(width,), initializer="zeros")

    # The projections run as 2-D matmuls over (B*T, D) (oneDNN fuses each with its bias add; XLA does not care);
    # False keeps the tokens' (B, T) axes through them, the layout OpenVINO's int8 transformations expect
    # (the OpenVINO export sets it on its copy of the model).
    flat_matmuls = True

    def _project(self, x, name):
        """(B, T, D) → (B, T, H, Dh): one matmul + bias add."""
        heads = self.num_heads * self.head_dim
        if not self.flat_matmuls:
            y = ops.einsum("btd,dhk->bthk", x, getattr(self, f"{name}_kernel"))
            return ops.add(y, getattr(self, f"{name}_bias")) if self.use_bias else y
        y = ops.matmul(ops.reshape(x, (-1, x.shape[-1])), ops.reshape(getattr(self, f"{name}_kernel"), (-1, heads)))
        if self.use_bias:
            y = ops.add(y, ops.reshape(getattr(self, f"{name}_bias"), (heads,)))
        return ops.reshape(y, (*_leading_shape(x), self.num_heads, self.head_dim))

    def _output(self, attended):
        """(B, T, H, Dh) → (B, T, D) through the output projection: one matmul + bias add."""
        if not self.flat_matmuls:
            return ops.add(ops.einsum("bthk,hkd->btd", attended, self.output_kernel), self.output_bias)
        heads = self.num_heads * self.head_dim
        y = ops.matmul(ops.reshape(attended, (-1, heads)), ops.reshape(self.output_kernel, (heads, -1)))
        y = ops.add(y, self.output_bias)
        return ops.reshape(y, (*_leading_shape(attended), y.shape[-1]))

    def attention_probabilities(self, x):
        """Softmax(Q Kᵀ / √Dh) per head: (B, T, D) → (B, H, T, T), float32."""
        return self._probabilities(self._project(x, "query"), self._project(x, "key"))

    def _probabilities(self, query, key):
        """(B, Q, H, Dh) queries, (B, T, H, Dh) keys → (B, H, Q, T) softmax over T, in float32."""
        logits = ops.einsum("bqhk,bthk->bhqt", ops.cast(query, "float32"), ops.cast(key, "float32"))
        return ops.softmax(logits / math.sqrt(self.head_dim), axis=-1)

    def call(self, x, training=None):
        query, key, value = (self._project(x, name) for name in ("query", "key", "value"))
        if training and self.dropout_rate > 0:
            logits = ops.einsum("bqhk,bthk->bhqt", query, key) / math.sqrt(self.head_dim)
            probs = self.dropout(ops.softmax(ops.cast(logits, "float32"), axis=-1), training=training)
            attended = ops.einsum("bhqt,bthk->bqhk", ops.cast(probs, value.dtype), value)
        else:
            attended = ops.dot_product_attention(query, key, value, scale=1.0 / math.sqrt(self.head_dim))
        return self._output(attended)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "use_bias": self.use_bias,
                "dropout_rate": self.dropout_rate}


@_register
class FlattenTokens(keras.layers.Layer):
    """(B, T, D) → (B·T, D), so that the MLP's Dense layers run plain 2-D matmuls: TensorFlow's oneDNN
    path then fuses matmul + bias + GELU into one kernel (a 3-D Dense is reshape-matmul-reshape, which it
    cannot fuse). No weights; XLA and the other backends compute the same thing either way."""

    flat_matmuls = True  # False: pass the tokens through (the OpenVINO export's copy; see SelfAttention)

    def call(self, tokens):
        return ops.reshape(tokens, (-1, tokens.shape[-1])) if self.flat_matmuls else tokens

    def compute_output_shape(self, input_shape):
        if not self.flat_matmuls:
            return input_shape
        batch, length = input_shape[:2]
        return (None if batch is None or length is None else batch * length, input_shape[-1])


@_register
class UnflattenTokens(keras.layers.Layer):
    """Called as ``layer([flat, like])``: flat (B·T, D') back to (B, T, D') for ``like`` (B, T, D)."""

    flat_matmuls = True  # False: ``flat`` is already (B, T, D') (FlattenTokens passed the tokens through)

    def call(self, inputs):
        flat, like = inputs
        return ops.reshape(flat, (*_leading_shape(like), flat.shape[-1])) if self.flat_matmuls else flat

    def compute_output_shape(self, input_shape):
        flat, like = input_shape
        return (*like[:2], flat[-1])


@_register
class Gelu(keras.layers.Layer):
    """GELU, exact (erf) or with the tanh approximation (Flax's default, SigLIP)."""

    def __init__(self, approximate=False, **kwargs):
        super().__init__(**kwargs)
        self.approximate = bool(approximate)

    def call(self, x):
        return keras.activations.gelu(x, approximate=self.approximate)

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}


@_register
class QuickGelu(keras.layers.Layer):
    """OpenAI CLIP's GELU approximation ``x * sigmoid(1.702 x)``. Any shape → same."""

    def call(self, x):
        return x * ops.sigmoid(ops.cast(1.702, x.dtype) * x)


def gelu_layer(flavour: str, **kwargs) -> keras.layers.Layer:
    """The layer of a ``ViTConfig.gelu`` flavour: ``"exact"``, ``"tanh"`` or ``"quick"``."""
    return QuickGelu(**kwargs) if flavour == "quick" else Gelu(approximate=flavour == "tanh", **kwargs)


@_register
class DropPath(keras.layers.Layer):
    """Stochastic depth: in training, zeroes whole samples of a residual branch with probability
    ``rate`` and rescales the rest by 1 / (1 - rate); the identity at inference. (B, ...) → same."""

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = float(rate), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype))
        return x * mask / keep

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@_register
class LayerScale(keras.layers.Layer):
    """LayerScale (Touvron et al. 2021, "Going deeper with Image Transformers"): a learned per-channel scale
    of a residual branch. (B, T, D) → same. Weight ``gamma`` (D,), initialised to ``init_value``."""

    def __init__(self, init_value=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],),
                                     initializer=keras.initializers.Constant(self.init_value))

    def call(self, x):
        return x * ops.cast(self.gamma, x.dtype)

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value}


@_register
class SwiGlu(keras.layers.Layer):
    """The gate of a fused SwiGLU MLP: (..., 2M) → (..., M), ``silu(x[..., :M]) * x[..., M:]`` (the first half
    is gated, as Meta's ``SwiGLUFFNFused``, transformers' ``Dinov2SwiGLUFFN`` and timm's ``SwiGLUPacked``)."""

    def call(self, x):
        gate, value = ops.split(x, 2, axis=-1)
        return ops.silu(gate) * value

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // 2)
