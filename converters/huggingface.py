"""Hugging Face ``google/vit-*`` checkpoints: ``model.safetensors``, ``pytorch_model.bin``, ``tf_model.h5``.

The architecture and numerics come from the repo's ``config.json`` (heads, LayerNorm eps and GELU flavour
cannot be read off tensor shapes), the normalisation from ``preprocessor_config.json`` when present.

Two on-disk layouts of the same modules:
    PyTorch (safetensors, .bin)  ``vit.encoder.layer.3.attention.attention.query.weight`` (out, in);
                                 a bare ``ViTModel`` saves without the ``vit.`` prefix; ``classifier.*``.
    TensorFlow (tf_model.h5,     Keras 2 ``save_weights``: one group per top-level layer ("vit",
    transformers 4.x)            "classifier"), each dataset named by its variable, whose first scope is
                                 the model's own name: ``vit/tf_vi_t_for_image_classification/vit/encoder/
                                 layer_._3/attention/attention/query/kernel:0`` (in, out). Conv kernels
                                 are already (P, P, 3, D), LayerNorms ``gamma``/``beta``.
``MODULES`` names each slot's module once, in PyTorch terms (``encoder.layer.{i}.intermediate.dense``); the
layout turns it into the file's key, and its container's convention per slot kind gives the transform.
"""
from __future__ import annotations

import re
from typing import Dict, List, NamedTuple, Optional, Tuple

from vit_zoo.converters import targets
from vit_zoo.converters.apply import Row
from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError
from vit_zoo.converters.transforms import pytorch_kinds, split_heads_bias, to_shape
from vit_zoo.model.identity import Preprocessing

NAME = "hf"
TELLTALE = ("'vit.embeddings.patch_embeddings.projection.weight' (bare ViTModel: without 'vit.'), "
            "or in tf_model.h5 'vit/<model name>/vit/embeddings/cls_token:0'")
IGNORED = {r"(vit\.)?embeddings\.mask_token": "the mask token of masked-image-modelling pre-training "
                                              "(ViTModel(use_mask_token=True)); unused on whole images"}

# hidden_act of config.json → our GELU flavour. gelu_python is erf written out; gelu_new, gelu_fast and
# gelu_pytorch_tanh are the tanh approximation (the same formula, differently computed).
GELU_FLAVOURS = {"gelu": "exact", "gelu_python": "exact",
                 "gelu_new": "tanh", "gelu_fast": "tanh", "gelu_pytorch_tanh": "tanh"}

# transformers' ViTConfig defaults, for config.json files that omit a field (old repos lack qkv_bias).
HF_DEFAULTS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
               "hidden_act": "gelu", "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16,
               "num_channels": 3, "qkv_bias": True, "pooler_act": "tanh"}

# PIL resampling filters of ViTImageProcessor's ``resample`` (PIL.Image.Resampling values).
_PIL_RESAMPLE = {2: "bilinear", 3: "bicubic"}

_TF_CLASS_TOKEN = re.compile(r"vit/([^/]+)/vit/embeddings/cls_token:0")


class Layout(NamedTuple):
    """Where a checkpoint keeps its tensors: ``kind`` "torch" or "tf"; ``scope`` the key prefix of the
    ViT body ("vit." or "" for torch) or the model-name scope of a tf_model.h5."""

    kind: str
    scope: str

    def key(self, module: str, param: Optional[str]) -> str:
        """File key of ``module`` (torch dotted path below the ViT body, or "classifier") + ``param``."""
        if self.kind == "torch":
            prefix = "" if module == "classifier" else self.scope
            return f"{prefix}{module}" + (f".{param}" if param else "")
        path = re.sub(r"\blayer/(\d+|\{i\})", r"layer_._\1", module.replace(".", "/"))  # Keras 2 list items
        group = "classifier" if module == "classifier" else "vit"
        body = "" if module == "classifier" else "vit/"
        return f"{group}/{self.scope}/{body}{path}" + (f"/{param}" if param else "") + ":0"


def layout(checkpoint: Checkpoint) -> Optional[Layout]:
    """The layout of ``checkpoint``, or None when it is not a Hugging Face ViT."""
    for prefix in ("vit.", ""):
        if f"{prefix}embeddings.patch_embeddings.projection.weight" in checkpoint:
            return Layout("torch", prefix)
    for key in checkpoint.keys():
        match = _TF_CLASS_TOKEN.fullmatch(key)
        if match:
            return Layout("tf", match.group(1))
    return None


def detect(checkpoint: Checkpoint) -> bool:
    return layout(checkpoint) is not None


LAYER = "encoder.layer.{i}."
# slot (less its parameter) → the ViT module, in PyTorch's dotted path below the ViT body ("vit.").
MODULES = {
    "patch_embed": "embeddings.patch_embeddings.projection",
    "class_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
    "norm1": LAYER + "layernorm_before",
    "attn.query": LAYER + "attention.attention.query", "attn.key": LAYER + "attention.attention.key",
    "attn.value": LAYER + "attention.attention.value", "attn.out": LAYER + "attention.output.dense",
    "norm2": LAYER + "layernorm_after",
    "mlp.fc1": LAYER + "intermediate.dense", "mlp.fc2": LAYER + "output.dense",
    "encoder_norm": "layernorm",
    "pre_logits": "pooler.dense",  # ViTModel's pooler: Dense + tanh on the class token
    "head": "classifier",
}


def _tf_kinds(heads: int, width: int) -> dict:
    """Slot kind → (Keras 2 variable name, transform): kernels are (in, out) and conv kernels (P, P, 3, D)
    already; the attention's Dense layers are flat (D, D)."""
    head_dim = width // heads
    return {"tensor": (None, None), "conv_kernel": ("kernel", None), "dense_kernel": ("kernel", None),
            "bias": ("bias", None), "norm_scale": ("gamma", None), "norm_bias": ("beta", None),
            "heads_in_kernel": ("kernel", to_shape(width, heads, head_dim)),
            "heads_bias": ("bias", split_heads_bias(heads)),
            "heads_out_kernel": ("kernel", to_shape(heads, head_dim, width))}


def mapping(config, checkpoint: Optional[Checkpoint] = None) -> List[Row]:
    """Rows for the whole model, in the layout of ``checkpoint`` (without one: PyTorch
    ``ViTForImageClassification``, keys with the ``vit.`` prefix). The head rows (``classifier``) are
    always there; a caller loading a checkpoint without a classifier drops them or keeps a new head."""
    where = layout(checkpoint) if checkpoint is not None else Layout("torch", "vit.")
    if where is None:
        raise CheckpointError(f"{checkpoint.path.name!r} is not a Hugging Face ViT checkpoint: "
                              f"looked for {TELLTALE}")
    kinds = (pytorch_kinds(config.num_heads) if where.kind == "torch"
             else _tf_kinds(config.num_heads, config.hidden_size))
    return targets.rows(config, targets.table(MODULES, kinds, where.key), "Hugging Face ViT")


# ------------------------------------------------------------------------------------------------------
def config_fields(checkpoint: Checkpoint, hint=None) -> Dict[str, object]:
    """ViTConfig fields from ``config.json`` (and ``preprocessor_config.json``) beside the checkpoint,
    cross-checked against the tensors; ``num_classes`` is None when the checkpoint has no classifier.
    Without a preprocessor_config.json, mean/std are assumed 0.5 (every google/vit-* repo's), listed
    under ``"assumed"``. (config.json states everything else, so ``hint`` is not needed.)"""
    where = layout(checkpoint)
    if where is None:
        raise CheckpointError(f"{checkpoint.path.name!r} is not a Hugging Face ViT checkpoint: "
                              f"looked for {TELLTALE}")
    hf = _hf_config(checkpoint)
    model_type = hf.get("model_type", "vit")
    if model_type != "vit":
        raise UnsupportedLayoutError(f"{_config_path(checkpoint)} says model_type {model_type!r}; this "
                                     f"converter reads ViT (model_type 'vit') checkpoints only",
                                     f"Hugging Face model_type {model_type!r}")
    act = hf["hidden_act"]
    if act not in GELU_FLAVOURS:
        raise UnsupportedLayoutError(f"{_config_path(checkpoint)}: hidden_act {act!r} is not supported; a "
                                     f"ViT uses one of {sorted(GELU_FLAVOURS)} (exact or tanh GELU)",
                                     f"Hugging Face hidden_act {act!r}")
    if hf["num_channels"] != 3:
        raise UnsupportedLayoutError(f"{_config_path(checkpoint)}: num_channels {hf['num_channels']}; only "
                                     f"RGB (3 channels) models are supported",
                                     f"Hugging Face num_channels {hf['num_channels']}")
    patch = _square_patch(hf["patch_size"], checkpoint)
    image = hf["image_size"]
    image = (image, image) if isinstance(image, int) else tuple(image)
    hidden, heads, layers = hf["hidden_size"], hf["num_attention_heads"], hf["num_hidden_layers"]

    def stored(module, param=None):
        key = where.key(module, param)
        return checkpoint.shape(key) if key in checkpoint else None

    _agree(checkpoint, "hidden_size", hidden, "a class token of width",
           (stored("embeddings.cls_token") or (None,))[-1])
    found_layers = sum(1 for key in checkpoint.keys() if re.search(r"layer(_\._|\.)\d+\W+layernorm_before\W+"
                                                                    r"(weight|gamma)", key))
    _agree(checkpoint, "num_hidden_layers", layers, "encoder layers", found_layers)
    positions = stored("embeddings.position_embeddings")
    _agree(checkpoint, f"image_size {list(image)} with patch_size {patch}, i.e.",
           f"{(image[0] // patch) * (image[1] // patch) + 1} tokens", "position embeddings for",
           positions and f"{positions[1]} tokens")

    pooler = stored("pooler.dense", "weight" if where.kind == "torch" else "kernel")
    if pooler is not None and hf["pooler_act"] != "tanh":
        raise UnsupportedLayoutError(f"{_config_path(checkpoint)}: pooler_act {hf['pooler_act']!r}; the "
                                     f"pre-logits layer is Dense + tanh", f"Hugging Face pooler_act "
                                     f"{hf['pooler_act']!r}")
    classifier = stored("classifier", "weight" if where.kind == "torch" else "kernel")
    mean, std = _normalisation(checkpoint)
    assumed = {} if _processor(checkpoint) is not None else {"mean": mean, "std": std}
    return {"assumed": assumed,
        "image_size": image, "patch_size": patch, "hidden_size": hidden,
        "mlp_size": hf["intermediate_size"], "num_heads": heads, "num_layers": layers,
        "class_token": True, "pooling": "token",
        "representation_size": None if pooler is None else _out_width(pooler, where),
        "gelu": GELU_FLAVOURS[act], "layer_norm_epsilon": float(hf["layer_norm_eps"]),
        "qkv_bias": bool(hf["qkv_bias"]), "mean": mean, "std": std,
        "num_classes": None if classifier is None else _out_width(classifier, where),
        "position_embedding_resampling": "bicubic",  # HF's interpolate_pos_encoding is bicubic
    }


def identity_fields(checkpoint: Checkpoint, config) -> dict:
    """The image processor's transform (``preprocessor_config.json``: ``ViTImageProcessor`` resizes
    straight to the input size with Pillow, ``resample`` 2 = bilinear, 3 = bicubic) and the class names
    (``config.json`` ``id2label``, unless transformers' placeholders ``LABEL_0``…)."""
    processor = _processor(checkpoint)
    assumed = {}
    if processor is None:
        assumed["preprocessing"] = "transformers ViTImageProcessor: resize to the input size, bilinear"
        interpolation = "bilinear"
    else:
        resample = processor.get("resample", 2)
        if resample not in _PIL_RESAMPLE:
            raise CheckpointError(f"{_config_path(checkpoint, 'preprocessor_config.json')}: resample "
                                  f"{resample!r}; vit_zoo resizes with 2 (bilinear) or 3 (bicubic)")
        interpolation = _PIL_RESAMPLE[resample]
    names = class_names(checkpoint)
    return {"preprocessing": Preprocessing("hf", 1.0, interpolation), "assumed": assumed,
            **({"labels": names} if names is not None else {})}


def class_names(checkpoint: Checkpoint) -> Optional[Tuple[str, ...]]:
    """The classifier's labels from config.json ``id2label``, in index order, or None (absent, or only
    transformers' ``LABEL_{i}`` placeholders)."""
    labels = _hf_config(checkpoint).get("id2label") or {}
    try:
        names = tuple(str(labels[key]) for key in sorted(labels, key=int))
    except ValueError:
        return None
    if not names or names == tuple(f"LABEL_{i}" for i in range(len(names))):
        return None
    return names


def _out_width(shape, where: Layout) -> int:
    return int(shape[0] if where.kind == "torch" else shape[-1])


def _config_path(checkpoint: Checkpoint, name: str = "config.json") -> str:
    return repr(str(checkpoint.path.parent / name))


def _hf_config(checkpoint: Checkpoint) -> dict:
    config = {key: value for key, value in checkpoint.metadata.items() if key != "preprocessor_config"}
    if not config:
        raise CheckpointError(
            f"{str(checkpoint.path)!r} is a Hugging Face checkpoint without its config.json: the number of "
            f"attention heads, the LayerNorm epsilon and the GELU flavour cannot be inferred from tensor "
            f"shapes. Put the repo's config.json in {str(checkpoint.path.parent)!r} beside the weights file")
    return {**HF_DEFAULTS, **config}


def _square_patch(patch, checkpoint) -> int:
    if isinstance(patch, int):
        return patch
    if len(patch) == 2 and patch[0] == patch[1]:
        return int(patch[0])
    raise UnsupportedLayoutError(f"{_config_path(checkpoint)}: patch_size {patch} is not square; only "
                                 f"square patches are supported", "Hugging Face non-square patches")


def _agree(checkpoint, field, declared, what, found):
    if found is not None and declared != found:
        raise CheckpointError(f"{_config_path(checkpoint)} says {field} {declared}, but "
                              f"{checkpoint.path.name!r} has {what}: {found}; config.json and the weights "
                              f"are from different models")


def _processor(checkpoint: Checkpoint) -> Optional[dict]:
    """preprocessor_config.json beside the weights (read by ``open_checkpoint``), or None."""
    return checkpoint.metadata.get("preprocessor_config")


def _normalisation(checkpoint: Checkpoint):
    """(mean, std) of [0, 1] pixels from preprocessor_config.json; 0.5/0.5 (every google/vit-*) without it."""
    processor = _processor(checkpoint)
    if processor is None:
        return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    if not processor.get("do_normalize", True):
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def three(name):
        value = processor.get(name, 0.5)
        return (value,) * 3 if isinstance(value, (int, float)) else tuple(value)

    return three("image_mean"), three("image_std")
