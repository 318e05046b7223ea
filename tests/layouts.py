"""The on-disk layouts of the published checkpoint formats, written once for every test and benchmark.

A model's weights are named here by *part* (``parts(config)``: "embed.kernel", "3.q.kernel", "head.bias",
each with its shape in the Flax orientation and how to draw it at random). A format's layout is one table,
``LAYOUT(config) → [Tensor(key, parts, make)]``: each source key, the parts it holds and how it holds them
(``make(*parts)``: a transpose, a reshape, a fused concatenation). Every writer -- the synthetic
checkpoints of the tests, the checkpoints fed to transformers, the tf_model.h5 writer, the benchmarks --
goes through these tables, so a format's key names and shapes are written once.

The tables are read off each source's own code (vit_jax ``models_vit.py``, big_vision ``models/vit.py``,
timm ``vision_transformer.py``, transformers ``modeling_vit.py``), never off vit_zoo's converters, which are
held to them. The ``tf_model.h5`` names are pinned to a list recorded from transformers' own TF code
(``tests/fixtures/tf_model_h5_keys.json``; a test compares).

Random values: kernels N(0, 1/fan_in), biases N(0, 0.05²), LayerNorm scales 1 ± 0.2 and biases N(0, 0.1²),
the class token N(0, 0.5²), position embeddings N(0, 0.3²): activations stay O(1) through the blocks, so a
wrong transpose, head split or epsilon shows in the outputs.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, List, NamedTuple, Tuple

import numpy as np

SCALES = {"bias": 0.05, "norm_bias": 0.1, "cls": 0.5, "pos": 0.3}


class Part(NamedTuple):
    """One weight of the model: its name, Flax-orientation shape and draw ("kernel:FAN_IN", "scale", or a
    key of SCALES)."""

    name: str
    shape: tuple
    draw: str


class Tensor(NamedTuple):
    """One tensor of a checkpoint: its key and how it is made of parts (identity for Flax layouts)."""

    key: str
    parts: Tuple[str, ...]
    make: Callable[..., np.ndarray] = lambda array: array


def parts(config) -> List[Part]:
    """The weights of a ViT of ``config`` (Flax orientation, as vit_jax stores them). ``pos`` has the class
    token's row first where the config has one; "norm" is the final norm (timm's fc_norm for pooling
    "avg-fcnorm"); the head is left out for ``num_classes=0``."""
    d, m, h, p = config.hidden_size, config.mlp_size, config.num_heads, config.patch_size
    grid = (config.image_size[0] // p) * (config.image_size[1] // p)
    found = [Part("embed.kernel", (p, p, 3, d), f"kernel:{p * p * 3}"), Part("embed.bias", (d,), "bias")]
    if config.class_token:
        found.append(Part("cls", (1, 1, d), "cls"))
    found.append(Part("pos", (1, grid + int(config.class_token), d), "pos"))
    for i in range(config.num_layers):
        found += _norm(f"{i}.ln1", d)
        for name in ("q", "k", "v"):
            found.append(Part(f"{i}.{name}.kernel", (d, h, d // h), f"kernel:{d}"))
            if config.qkv_bias:
                found.append(Part(f"{i}.{name}.bias", (h, d // h), "bias"))
        found += [Part(f"{i}.out.kernel", (h, d // h, d), f"kernel:{d}"), Part(f"{i}.out.bias", (d,), "bias")]
        found += _norm(f"{i}.ln2", d) + _dense(f"{i}.fc1", d, m) + _dense(f"{i}.fc2", m, d)
    found += _norm("norm", d)
    width = config.representation_size or d
    if config.representation_size:
        found += _dense("pre_logits", d, width)
    return found + (_dense("head", width, config.num_classes) if config.num_classes else [])


def _norm(name, d):
    return [Part(f"{name}.scale", (d,), "scale"), Part(f"{name}.bias", (d,), "norm_bias")]


def _dense(name, fan_in, out):
    return [Part(f"{name}.kernel", (fan_in, out), f"kernel:{fan_in}"), Part(f"{name}.bias", (out,), "bias")]


def draw(part: Part, rng) -> np.ndarray:
    x = rng.standard_normal(part.shape, dtype=np.float32)
    if part.draw.startswith("kernel:"):
        return x * np.float32(1 / np.sqrt(int(part.draw.split(":")[1])))
    if part.draw == "scale":
        return 1 + x * np.float32(0.2)
    return x * np.float32(SCALES[part.draw])


def weights(config, seed=0) -> Dict[str, np.ndarray]:
    """``{part name: float32 array}`` drawn at random for ``config``."""
    rng = np.random.default_rng(seed)
    return {part.name: draw(part, rng) for part in parts(config)}


def tensors(layout: List[Tensor], values: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """``{key: array}`` of ``layout`` made from the parts ``values``."""
    return {t.key: np.ascontiguousarray(t.make(*(values[p] for p in t.parts)), np.float32) for t in layout}


def shapes(layout: List[Tensor], config) -> Dict[str, tuple]:
    """``{key: shape}`` of ``layout``, made from zero stand-ins (one tensor at a time)."""
    by_name = {part.name: part.shape for part in parts(config)}
    return {t.key: np.shape(t.make(*(np.zeros(by_name[p], np.float32) for p in t.parts))) for t in layout}


def stream(layout: List[Tensor], config, seed=0) -> Iterator[Tuple[str, np.ndarray]]:
    """``(key, array)`` one at a time, each drawn when it is made (for checkpoints too big to hold)."""
    rng, shapes = np.random.default_rng(seed), {part.name: part for part in parts(config)}
    for t in layout:
        yield t.key, np.ascontiguousarray(t.make(*(draw(shapes[p], rng) for p in t.parts)), np.float32)


# ---- Flax: vit_jax and big_vision -------------------------------------------------------------------
def _flax(config, prefix, block_modules, position, position_make=None) -> List[Tensor]:
    ln1, attention, ln2, mlp = block_modules
    layout = [Tensor(prefix + "embedding/kernel", ("embed.kernel",)),
              Tensor(prefix + "embedding/bias", ("embed.bias",))]
    if config.class_token:
        layout.append(Tensor(prefix + "cls", ("cls",)))
    layout.append(Tensor(prefix + position, ("pos",), *([position_make] if position_make else [])))
    names = [("ln1", ln1)] + [(n, f"{attention}/{m}") for n, m in zip(("q", "k", "v", "out"),
                                                                     ("query", "key", "value", "out"))]
    names += [("ln2", ln2), ("fc1", f"{mlp}/Dense_0"), ("fc2", f"{mlp}/Dense_1")]
    present = {part.name for part in parts(config)}
    for i in range(config.num_layers):
        for ours, module in names:
            for param in ("scale", "kernel", "bias"):
                if f"{i}.{ours}.{param}" in present:
                    layout.append(Tensor(f"{prefix}Transformer/encoderblock_{i}/{module}/{param}",
                                         (f"{i}.{ours}.{param}",)))
    for ours, module in (("norm", "Transformer/encoder_norm"), ("pre_logits", "pre_logits"), ("head", "head")):
        for param in ("scale", "kernel", "bias"):
            if f"{ours}.{param}" in present:
                layout.append(Tensor(f"{prefix}{module}/{param}", (f"{ours}.{param}",)))
    return layout


def vit_jax(config) -> List[Tensor]:
    """Google vit_jax ``.npz`` (models_vit.py, pre-Linen module numbering of the published files)."""
    return _flax(config, "", ("LayerNorm_0", "MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3"),
                 "Transformer/posembed_input/pos_embedding")


def big_vision(config, prefix="params/", position="pos_embedding") -> List[Tensor]:
    """big_vision ViT ``.npz`` (models/vit.py): the position embedding has no class-token row (it is
    added before the class token), so the part's first row is left out where the config has one."""
    drop_class_row = (lambda pos: pos[:, 1:]) if config.class_token else None
    return _flax(config, prefix, ("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0"),
                 position, drop_class_row)


# ---- PyTorch: timm and Hugging Face ----------------------------------------------------------------
def _linear(kernel):
    """Flax (in, out) or (D, H, Dh) → PyTorch Linear (out, in)."""
    return kernel.reshape(kernel.shape[0], -1).T


def _heads_out(kernel):
    """Flax (H, Dh, D) → PyTorch Linear (D, H*Dh)."""
    return kernel.reshape(-1, kernel.shape[-1]).T


def _flat(bias):
    return bias.reshape(-1)


def _conv(kernel):
    """Flax Conv (P, P, 3, D) → PyTorch Conv2d (D, 3, P, P)."""
    return kernel.transpose(3, 2, 0, 1)


def _torch_modules(config, modules: Dict[str, str]) -> List[Tensor]:
    """``{our part prefix: module}`` → weight/bias tensors in PyTorch's orientation (``i`` in names)."""
    present = {part.name for part in parts(config)}
    layout = []
    for ours, module in modules.items():
        for param, theirs in (("scale", "weight"), ("kernel", "weight"), ("bias", "bias")):
            if f"{ours}.{param}" in present:
                make = {"kernel": _linear, "scale": None, "bias": _flat}[param]
                if ours.endswith("out") and param == "kernel":
                    make = _heads_out
                layout.append(Tensor(f"{module}.{theirs}", (f"{ours}.{param}",), *([make] if make else [])))
    return layout


def timm(config) -> List[Tensor]:
    """timm ``vit_*`` state dict (vision_transformer.py): fused qkv, ``norm`` or ``fc_norm``."""
    layout = [Tensor("patch_embed.proj.weight", ("embed.kernel",), _conv),
              Tensor("patch_embed.proj.bias", ("embed.bias",))]
    if config.class_token:
        layout.append(Tensor("cls_token", ("cls",)))
    layout.append(Tensor("pos_embed", ("pos",)))
    for i in range(config.num_layers):
        b = f"blocks.{i}."
        qkv = tuple(f"{i}.{n}.kernel" for n in "qkv")
        block = [Tensor(b + "attn.qkv.weight", qkv, lambda *k: np.concatenate([_linear(x) for x in k]))]
        if config.qkv_bias:
            block.append(Tensor(b + "attn.qkv.bias", tuple(f"{i}.{n}.bias" for n in "qkv"),
                                lambda *v: np.concatenate([_flat(x) for x in v])))
        layout += _torch_modules(config, {f"{i}.ln1": b + "norm1"}) + block + _torch_modules(config, {
            f"{i}.out": b + "attn.proj", f"{i}.ln2": b + "norm2", f"{i}.fc1": b + "mlp.fc1",
            f"{i}.fc2": b + "mlp.fc2"})
    return layout + _torch_modules(config, {"norm": "fc_norm" if config.pooling == "avg-fcnorm" else "norm",
                                            "pre_logits": "pre_logits.fc", "head": "head"})


def hf_torch(config, bare=False) -> List[Tensor]:
    """transformers ``ViTForImageClassification`` as ``save_pretrained`` writes it (4.x names), or a bare
    ``ViTModel`` with its pooler (``bare``: no ``vit.`` prefix, no classifier)."""
    v = "" if bare else "vit."
    layout = [Tensor(v + "embeddings.cls_token", ("cls",)), Tensor(v + "embeddings.position_embeddings", ("pos",)),
              Tensor(v + "embeddings.patch_embeddings.projection.weight", ("embed.kernel",), _conv),
              Tensor(v + "embeddings.patch_embeddings.projection.bias", ("embed.bias",))]
    for i in range(config.num_layers):
        b = f"{v}encoder.layer.{i}."
        layout += _torch_modules(config, {
            f"{i}.q": b + "attention.attention.query", f"{i}.k": b + "attention.attention.key",
            f"{i}.v": b + "attention.attention.value", f"{i}.out": b + "attention.output.dense",
            f"{i}.fc1": b + "intermediate.dense", f"{i}.fc2": b + "output.dense",
            f"{i}.ln1": b + "layernorm_before", f"{i}.ln2": b + "layernorm_after"})
    top = {"norm": v + "layernorm"}
    top.update({"pre_logits": "pooler.dense"} if bare else {"head": "classifier"})
    return layout + _torch_modules(config, top)


# ---- TensorFlow: transformers 4.x tf_model.h5 ------------------------------------------------------
TF_MODEL_NAMES = {"classifier": "tf_vi_t_for_image_classification", "base": "tf_vi_t_model"}


def hf_tf(config, kind="classifier", scope=None) -> List[Tensor]:
    """``tf_model.h5`` of ``TFViTForImageClassification`` (kind "classifier") or ``TFViTModel`` ("base",
    with its pooler), in the order transformers writes the datasets: ``GROUP/SCOPE/…/NAME:0``, the Keras 2
    names (``layer_._{i}``, ``gamma``/``beta``, kernels (in, out)). ``scope``: the model's name scope."""
    scope = f"vit/{scope or TF_MODEL_NAMES[kind]}/vit/"
    e = scope + "embeddings/"
    layout = [Tensor(e + "cls_token:0", ("cls",)), Tensor(e + "position_embeddings:0", ("pos",)),
              Tensor(e + "patch_embeddings/projection/kernel:0", ("embed.kernel",)),
              Tensor(e + "patch_embeddings/projection/bias:0", ("embed.bias",))]
    modules = [("q", "attention/attention/query"), ("k", "attention/attention/key"),
               ("v", "attention/attention/value"), ("out", "attention/output/dense"),
               ("fc1", "intermediate/dense"), ("fc2", "output/dense"), ("ln1", "layernorm_before"),
               ("ln2", "layernorm_after")]
    for i in range(config.num_layers):
        for ours, module in modules:
            layout += _keras2(config, f"{i}.{ours}", f"{scope}encoder/layer_._{i}/{module}")
    layout += _keras2(config, "norm", scope + "layernorm")
    if kind == "base":
        return layout + _keras2(config, "pre_logits", scope + "pooler/dense")
    return layout + _keras2(config, "head", f"classifier/{scope.split('/')[1]}/classifier")


def _keras2(config, ours, module) -> List[Tensor]:
    """A Keras 2 Dense / LayerNorm: kernel (in, out) flattened over the heads, bias flat; gamma, beta."""
    names = (("scale", "gamma"), ("bias", "beta")) if ours.split(".")[-1].startswith(("ln", "norm")) \
        else (("kernel", "kernel"), ("bias", "bias"))
    layout = []
    for param, theirs in names:
        if f"{ours}.{param}" in {part.name for part in parts(config)}:
            flat = _flat if param != "kernel" else (_heads_out_keras if ours.endswith("out") else _in_keras)
            layout.append(Tensor(f"{module}/{theirs}:0", (f"{ours}.{param}",), flat))
    return layout


def _in_keras(kernel):
    """(D, H, Dh) or (in, out) → Keras 2 Dense (in, out)."""
    return kernel.reshape(kernel.shape[0], -1)


def _heads_out_keras(kernel):
    """(H, Dh, D) → Keras 2 Dense (H*Dh, D)."""
    return kernel.reshape(-1, kernel.shape[-1])
