"""Where a Hugging Face checkpoint keeps each tensor: the layouts and module names of the model types read.

Two on-disk layouts of the same modules:
    PyTorch (safetensors, .bin)  ``vit.encoder.layer.3.attention.attention.query.weight`` (out, in): the
                                 body under the class's ``base_model_prefix`` ("vit.", "deit.", "dinov2.",
                                 "dinov2_with_registers."; a bare ``ViTModel`` / ``DeiTModel`` /
                                 ``Dinov2Model`` saves without it), heads at the top (``classifier``,
                                 DeiT's ``cls_classifier`` + ``distillation_classifier``). transformers 5
                                 renames modules in memory (``attention.q_proj``) and back on save, so
                                 files hold these published names.
    TensorFlow (tf_model.h5,     ViT only. Keras 2 ``save_weights``: one group per top-level layer ("vit",
    transformers 4.x)            "classifier"), each dataset named by its variable, whose first scope is
                                 the model's own name: ``vit/tf_vi_t_for_image_classification/vit/encoder/
                                 layer_._3/attention/attention/query/kernel:0`` (in, out). Conv kernels
                                 are already (P, P, 3, D), LayerNorms ``gamma``/``beta``.
``modules(model_type, config)`` names each slot's module once, in PyTorch terms below the body
(``encoder.layer.{i}.intermediate.dense``); the layout turns it into the file's key, and its container's
convention per slot kind gives the transform.

Blocks: ViT and DeiT (``ViTLayer``) ``layernorm_before``, ``attention.attention.{query,key,value}``,
``attention.output.dense``, ``layernorm_after``, ``intermediate.dense``, ``output.dense``. DINOv2 (both
model types, ``Dinov2Layer``) ``norm1``, the same attention, ``layer_scale1.lambda1`` (D,), ``norm2``,
``mlp.fc1`` / ``mlp.fc2`` -- or the fused SwiGLU ``mlp.weights_in`` (2M, D: the SiLU half first) /
``mlp.weights_out`` (D, M) --, ``layer_scale2.lambda1``.
"""
from __future__ import annotations

import re
from typing import List, NamedTuple, Optional

from vit_zoo.converters import targets
from vit_zoo.converters.apply import Row
from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError
from vit_zoo.converters.transforms import pytorch_kinds, split_heads_bias, to_shape

# model_type of config.json → the body's key prefix in a task model's file (transformers base_model_prefix).
BODY_PREFIXES = {"vit": "vit.", "deit": "deit.", "dinov2": "dinov2.",
                 "dinov2_with_registers": "dinov2_with_registers."}
DINOV2_TYPES = ("dinov2", "dinov2_with_registers")
# Modules saved at the top level, beside the body: the heads.
HEADS = ("classifier", "cls_classifier", "distillation_classifier")
PATCH_EMBEDDING = "embeddings.patch_embeddings.projection"
TELLTALE = (f"'{{vit,deit,dinov2,dinov2_with_registers}}.{PATCH_EMBEDDING}.weight' (a bare model: without "
            f"the prefix), or in tf_model.h5 'vit/<model name>/vit/embeddings/cls_token:0'")

_TF_CLASS_TOKEN = re.compile(r"vit/([^/]+)/vit/embeddings/cls_token:0")


class Layout(NamedTuple):
    """Where a checkpoint keeps its tensors: ``kind`` "torch" or "tf"; ``scope`` the key prefix of the
    body ("vit.", "deit.", …, or "" for a bare model) or the model-name scope of a tf_model.h5."""

    kind: str
    scope: str

    def key(self, module: str, param: Optional[str]) -> str:
        """File key of ``module`` (torch dotted path below the body, or a head) + ``param``."""
        if self.kind == "torch":
            prefix = "" if module in HEADS else self.scope
            return f"{prefix}{module}" + (f".{param}" if param else "")
        path = re.sub(r"\blayer/(\d+|\{i\})", r"layer_._\1", module.replace(".", "/"))  # Keras 2 list items
        group = "classifier" if module == "classifier" else "vit"
        body = "" if module == "classifier" else "vit/"
        return f"{group}/{self.scope}/{body}{path}" + (f"/{param}" if param else "") + ":0"


def layout(checkpoint: Checkpoint) -> Optional[Layout]:
    """The layout of ``checkpoint``, or None when it is not one of the Hugging Face models read here."""
    for prefix in (*BODY_PREFIXES.values(), ""):
        if f"{prefix}{PATCH_EMBEDDING}.weight" in checkpoint:
            return Layout("torch", prefix)
    for key in checkpoint.keys():
        match = _TF_CLASS_TOKEN.fullmatch(key)
        if match:
            return Layout("tf", match.group(1))
    return None


def checked_layout(checkpoint: Checkpoint) -> Layout:
    """``layout(checkpoint)``, or a CheckpointError naming the keys looked for."""
    where = layout(checkpoint)
    if where is None:
        raise CheckpointError(f"{checkpoint.path.name!r} is not a Hugging Face ViT, DeiT or DINOv2 checkpoint: "
                              f"looked for {TELLTALE}")
    return where


def check_prefix(where: Layout, model_type: str, config_path: str, checkpoint: Checkpoint) -> None:
    """A task model's body prefix must be its model_type's ("deit." for model_type "deit")."""
    expected = BODY_PREFIXES[model_type]
    if where.kind == "tf" and model_type != "vit":
        raise CheckpointError(f"{config_path} says model_type {model_type!r}, but {checkpoint.path.name!r} is a "
                              f"ViT's tf_model.h5; config.json and the weights are from different models")
    if where.kind == "torch" and where.scope not in ("", expected):
        owner = next(t for t, p in BODY_PREFIXES.items() if p == where.scope)
        raise CheckpointError(f"{config_path} says model_type {model_type!r}, whose weights are under "
                              f"{expected!r}, but {checkpoint.path.name!r} keeps them under {where.scope!r} (a "
                              f"model_type {owner!r} checkpoint); config.json and the weights are from "
                              f"different models")


VIT_LAYER = "encoder.layer.{i}."


def modules(model_type: str, config) -> dict:
    """slot (less its parameter) → the module of a ``model_type`` checkpoint of ``config``, in PyTorch's
    dotted path below the body (heads at the top level)."""
    layer = VIT_LAYER
    attention = {"attn.query": layer + "attention.attention.query", "attn.key": layer + "attention.attention.key",
                 "attn.value": layer + "attention.attention.value", "attn.out": layer + "attention.output.dense"}
    found = {"patch_embed": PATCH_EMBEDDING, "class_token": "embeddings.cls_token",
             "pos_embed": "embeddings.position_embeddings", **attention, "encoder_norm": "layernorm"}
    if model_type in DINOV2_TYPES:
        mlp = ("weights_in", "weights_out") if config.mlp == "swiglu" else ("fc1", "fc2")
        found.update({"register_tokens": "embeddings.register_tokens",
                      "norm1": layer + "norm1", "ls1": layer + "layer_scale1.lambda1", "norm2": layer + "norm2",
                      "mlp.fc1": layer + f"mlp.{mlp[0]}", "mlp.fc2": layer + f"mlp.{mlp[1]}",
                      "ls2": layer + "layer_scale2.lambda1", "head": "classifier"})
        return found
    found.update({"norm1": layer + "layernorm_before", "norm2": layer + "layernorm_after",
                  "mlp.fc1": layer + "intermediate.dense", "mlp.fc2": layer + "output.dense",
                  "pre_logits": "pooler.dense",  # ViTModel's / DeiTModel's pooler: Dense + tanh on the class token
                  "head": "cls_classifier" if config.head == "distilled" else "classifier"})
    if model_type == "deit":
        found.update({"distillation_token": "embeddings.distillation_token",
                      "head_dist": "distillation_classifier"})
    return found


def _tf_kinds(heads: int, width: int) -> dict:
    """Slot kind → (Keras 2 variable name, transform): kernels are (in, out) and conv kernels (P, P, 3, D)
    already; the attention's Dense layers are flat (D, D)."""
    head_dim = width // heads
    return {"tensor": (None, None), "conv_kernel": ("kernel", None), "dense_kernel": ("kernel", None),
            "bias": ("bias", None), "norm_scale": ("gamma", None), "norm_bias": ("beta", None),
            "heads_in_kernel": ("kernel", to_shape(width, heads, head_dim)),
            "heads_bias": ("bias", split_heads_bias(heads)),
            "heads_out_kernel": ("kernel", to_shape(heads, head_dim, width))}


def rows(config, where: Layout, model_type: str) -> List[Row]:
    """Rows for the whole model of ``config`` from a ``model_type`` checkpoint in layout ``where``. The head
    rows are always there; a caller loading a checkpoint without a head drops them or keeps a new head."""
    kinds = (pytorch_kinds(config.num_heads) if where.kind == "torch"
             else _tf_kinds(config.num_heads, config.hidden_size))
    table = targets.table(modules(model_type, config), kinds, where.key)
    return targets.rows(config, table, f"Hugging Face {model_type}")
