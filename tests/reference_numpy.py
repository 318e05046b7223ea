"""Reference forward passes written from each source's own code, in float64 NumPy, on its own tensors.

They never touch vit_zoo: each reads the checkpoint's keys in the source's layout and computes what the
source framework computes, so a converted vit_zoo model can be held to them.

- ``vit_jax_forward``: Google ``vit_jax/models_vit.py`` (Flax): ``nn.Conv`` patch embedding, class token
  concatenated, then ``AddPositionEmbs``; ``Encoder1DBlock`` = LN → ``MultiHeadDotProductAttention``
  (``DenseGeneral`` kernels (D, H, Dh), query scaled by 1/√Dh, output kernel (H, Dh, D)) → residual →
  LN → ``MlpBlock`` (Dense, ``nn.gelu`` = tanh approximation, Dense) → residual; ``encoder_norm``;
  classifier "token" (x[:, 0]) or "gap" (mean over all tokens); ``pre_logits`` Dense + tanh; ``head``.
  Flax ``nn.LayerNorm`` epsilon 1e-6.
- ``big_vision_forward``: ``big_vision/models/vit.py``: the same Flax modules, named LayerNorm_0/1,
  MultiHeadDotProductAttention_0, MlpBlock_0; the position embedding (h*w rows) added to the patches
  before the class token is concatenated; pool_type "tok" (x[:, 0]) or "gap" (mean of all tokens).
- ``timm_forward``: timm ``VisionTransformer`` (``forward_features`` + ``forward_head``): Conv2d patch
  embedding (NCHW), ``_pos_embed`` (class token, then ``pos_embed``), ``Block`` = x + attn(norm1(x)),
  x + mlp(norm2(x)) with the fused ``qkv`` Linear reshaped (B, N, 3, H, Dh), exact ``nn.GELU`` (erf);
  ``norm`` (or Identity), ``global_pool_nlc`` ("token" or "avg" over the non-prefix tokens), ``fc_norm``,
  ``pre_logits`` (timm < 0.6 in21k models: ``fc`` Linear + Tanh), ``head``. timm ``LayerNorm`` eps 1e-6.
"""
from __future__ import annotations

import numpy as np
from scipy.special import erf


def layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def gelu_tanh(x):
    """``flax.linen.gelu(approximate=True)`` / ``jax.nn.gelu``."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x * x * x)))


def gelu_exact(x):
    """``torch.nn.GELU()``: x Φ(x) with the error function."""
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def softmax(x, axis=-1):
    x = x - x.max(axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis, keepdims=True)


def _f64(tensors):
    return {k: np.asarray(v, np.float64) for k, v in tensors.items()}


# ------------------------------------------------------------------------------------------------
def vit_jax_forward(params: dict, images) -> dict:
    """Flax vit_jax ViT on ``images`` (B, H, W, 3), already normalised (x − 0.5) / 0.5.

    Returns dict: ``encoded`` (B, T, D) after ``encoder_norm``; ``pooled`` (B, D or R) after the
    classifier pooling and ``pre_logits``; ``logits`` (B, C) when the checkpoint has a ``head``.
    """
    p = _f64(params)
    x = _flax_patches(images, p["embedding/kernel"], p["embedding/bias"])
    classifier = "token" if "cls" in p else "gap"
    if classifier == "token":
        x = np.concatenate([np.tile(p["cls"], (x.shape[0], 1, 1)), x], axis=1)
    x = x + p["Transformer/posembed_input/pos_embedding"]
    x = _flax_encoder(x, p, "", ("LayerNorm_0", "MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3"))
    return _flax_head(x, p, "", classifier)


def big_vision_forward(params: dict, images) -> dict:
    """big_vision ViT (``big_vision/models/vit.py``, unrolled encoder) on ``images`` (B, H, W, 3), already
    normalised to [-1, 1] (``value_range(-1, 1)``); parameters flat or under ``params/``.

    ``_Model.__call__``: ``nn.Conv`` "embedding", reshape (n, h*w, c), ``x + pos_embedding`` BEFORE the class
    token, then (pool_type "tok") ``concatenate([cls, x])``; ``Encoder``: ``encoderblock_{i}`` =
    LayerNorm_0 → MultiHeadDotProductAttention_0 → residual → LayerNorm_1 → MlpBlock_0 (Dense_0,
    ``nn.gelu``, Dense_1) → residual; ``encoder_norm``; "tok": x[:, 0], "gap": mean over all tokens;
    ``pre_logits`` Dense + tanh (rep_size); ``head``. Returns the keys of ``vit_jax_forward``.
    """
    p = _f64(params)
    prefix = "params/" if "params/embedding/kernel" in p else ""
    x = _flax_patches(images, p[prefix + "embedding/kernel"], p[prefix + "embedding/bias"])
    x = x + p[prefix + "pos_embedding"]
    classifier = "token" if prefix + "cls" in p else "gap"
    if classifier == "token":
        x = np.concatenate([np.tile(p[prefix + "cls"], (x.shape[0], 1, 1)), x], axis=1)
    x = _flax_encoder(x, p, prefix, ("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1",
                                     "MlpBlock_0"))
    return _flax_head(x, p, prefix, classifier)


def _flax_patches(images, kernel, bias):
    """``nn.Conv(D, (P, P), strides=P, padding="VALID")`` then reshape to (B, h*w, D)."""
    x = np.asarray(images, np.float64)
    size = kernel.shape[0]
    n, height, width, _ = x.shape
    gh, gw = height // size, width // size
    patches = x[:, :gh * size, :gw * size].reshape(n, gh, size, gw, size, 3)
    x = np.einsum("nhawbc,abcd->nhwd", patches, kernel, optimize=True) + bias
    return x.reshape(n, gh * gw, -1)


def _flax_encoder(x, p, prefix, modules):
    """The pre-norm blocks ``Transformer/encoderblock_{i}`` named by ``modules`` (LN, attention, LN, MLP)."""
    ln1, attention, ln2, mlp = modules
    i = 0
    while f"{prefix}Transformer/encoderblock_{i}/{ln1}/scale" in p:
        b = f"{prefix}Transformer/encoderblock_{i}/"
        y = layer_norm(x, p[f"{b}{ln1}/scale"], p[f"{b}{ln1}/bias"])
        x = x + _flax_attention(y, p, f"{b}{attention}/")
        y = layer_norm(x, p[f"{b}{ln2}/scale"], p[f"{b}{ln2}/bias"])
        y = gelu_tanh(y @ p[f"{b}{mlp}/Dense_0/kernel"] + p[f"{b}{mlp}/Dense_0/bias"])
        x = x + (y @ p[f"{b}{mlp}/Dense_1/kernel"] + p[f"{b}{mlp}/Dense_1/bias"])
        i += 1
    return x


def _flax_head(x, p, prefix, classifier):
    encoded = layer_norm(x, p[prefix + "Transformer/encoder_norm/scale"], p[prefix + "Transformer/encoder_norm/bias"])
    pooled = encoded[:, 0] if classifier == "token" else encoded.mean(axis=1)
    if prefix + "pre_logits/kernel" in p:
        pooled = np.tanh(pooled @ p[prefix + "pre_logits/kernel"] + p[prefix + "pre_logits/bias"])
    out = {"encoded": encoded, "pooled": pooled}
    if prefix + "head/kernel" in p:
        out["logits"] = pooled @ p[prefix + "head/kernel"] + p[prefix + "head/bias"]
    return out


def _flax_attention(x, p, prefix):
    """flax.linen.MultiHeadDotProductAttention (self-attention, no mask, deterministic)."""
    def dense_general(name):
        y = np.einsum("btd,dhk->bthk", x, p[prefix + name + "/kernel"], optimize=True)
        return y + p[prefix + name + "/bias"] if prefix + name + "/bias" in p else y
    query, key, value = dense_general("query"), dense_general("key"), dense_general("value")
    query = query / np.sqrt(query.shape[-1])
    weights = softmax(np.einsum("bqhd,bkhd->bhqk", query, key, optimize=True))
    attended = np.einsum("bhqk,bkhd->bqhd", weights, value, optimize=True)
    output = np.einsum("bqhd,hdo->bqo", attended, p[prefix + "out/kernel"], optimize=True)
    return output + p[prefix + "out/bias"]


# ------------------------------------------------------------------------------------------------
def timm_forward(state: dict, images, num_heads: int, global_pool: str = "token") -> dict:
    """timm VisionTransformer on ``images`` (B, H, W, 3), already normalised; transposed to NCHW here.

    Returns dict: ``features`` (B, T, D) = ``forward_features`` (after ``norm``; the last block's
    output for fc_norm models, whose ``norm`` is Identity); ``pooled`` (B, D) = ``forward_head(...,
    pre_logits=True)``; ``logits`` (B, C) when the state dict has a ``head``.
    """
    s = _f64(state)
    x = np.asarray(images, np.float64).transpose(0, 3, 1, 2)  # NCHW, as timm takes it
    weight = s["patch_embed.proj.weight"]  # (D, 3, P, P) Conv2d, stride P
    size = weight.shape[-1]
    b, c, height, width = x.shape
    gh, gw = height // size, width // size
    patches = x.reshape(b, c, gh, size, gw, size)
    x = np.einsum("bchpwq,dcpq->bdhw", patches, weight, optimize=True)
    x = x + s["patch_embed.proj.bias"][:, None, None]
    x = x.reshape(b, -1, gh * gw).transpose(0, 2, 1)  # flatten(2).transpose(1, 2)
    prefix = 0
    if "cls_token" in s:
        x = np.concatenate([np.broadcast_to(s["cls_token"], (b, 1, x.shape[-1])), x], axis=1)
        prefix = 1
    x = x + s["pos_embed"]
    i = 0
    while f"blocks.{i}.norm1.weight" in s:
        p = f"blocks.{i}."
        x = x + _timm_attention(layer_norm(x, s[p + "norm1.weight"], s[p + "norm1.bias"]), s, p + "attn.",
                                num_heads)
        y = layer_norm(x, s[p + "norm2.weight"], s[p + "norm2.bias"])
        y = gelu_exact(_linear(y, s, p + "mlp.fc1"))
        x = x + _linear(y, s, p + "mlp.fc2")
        i += 1
    if "norm.weight" in s:
        x = layer_norm(x, s["norm.weight"], s["norm.bias"])
    features = x
    pooled = x[:, 0] if global_pool == "token" else x[:, prefix:].mean(axis=1)
    if "fc_norm.weight" in s:
        pooled = layer_norm(pooled, s["fc_norm.weight"], s["fc_norm.bias"])
    if "pre_logits.fc.weight" in s:
        pooled = np.tanh(_linear(pooled, s, "pre_logits.fc"))
    out = {"features": features, "pooled": pooled}
    if "head.weight" in s:
        out["logits"] = _linear(pooled, s, "head")
    return out


def _linear(x, s, name):
    y = x @ s[name + ".weight"].T
    return y + s[name + ".bias"] if name + ".bias" in s else y


def _timm_attention(x, s, prefix, num_heads):
    """timm Attention.forward: qkv → reshape(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4), softmax, proj."""
    b, n, d = x.shape
    qkv = _linear(x, s, prefix + "qkv").reshape(b, n, 3, num_heads, d // num_heads).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = softmax((q * (d // num_heads) ** -0.5) @ k.transpose(0, 1, 3, 2))
    x = (attn @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
    return _linear(x, s, prefix + "proj")
