"""Hugging Face checkpoints of the CLIP and SigLIP image towers (``model.safetensors``, ``pytorch_model.bin``),
read as transformers 5 computes them; provenance format "hf".

    model_type "clip"                 CLIPModel: ``vision_model.*`` + ``visual_projection`` (the image tower) and
                                      ``text_model.*``, ``text_projection``, ``logit_scale`` (set aside)
    model_type "clip_vision_model"    CLIPVisionModel (``vision_model.*``: the embedding is ``pooler_output``,
                                      the class token through ``post_layernorm``) and
                                      CLIPVisionModelWithProjection (+ ``visual_projection``: ``image_embeds``)
    model_type "siglip"               SiglipModel (``vision_model.*``, ``text_model.*``, ``logit_scale``,
                                      ``logit_bias``); SigLIP 2's fixed-resolution repos are SiglipModels
    model_type "siglip_vision_model"  SiglipVisionModel: the embedding is its MAP head's ``pooler_output``
A tower's default output is its image embedding: CLIP's projection of the pooled class token (``pre_layrnorm``
before the blocks, ``post_layernorm`` on the pooled token: ours is ``encoder_norm``, which normalises every
token, so ``include_top=False, pooling=None`` gives the normed tokens where transformers' ``last_hidden_state``
is not normed), SigLIP's attention-pooling head after ``post_layernorm``. SigLIP 2's NaFlex towers
(model_type "siglip2": a Linear patch embedding over variable-size patch sequences) are refused by name, as
are SigLIP towers without their head (``vision_use_head: false``).
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional

from vit_zoo.converters import huggingface_config as hf_config
from vit_zoo.converters import huggingface_processor as processor
from vit_zoo.converters import targets
from vit_zoo.converters.apply import Row
from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError
from vit_zoo.converters.transforms import fused_qkv_part, pytorch_kinds, split_heads_bias, split_heads_in, to_shape
from vit_zoo.model import checkpoint_formats as formats

NAME = formats.HF
# The tower's key prefix: "vision_model." in a full model, a ...WithProjection and every transformers 4 file; none
# in a bare CLIPVisionModel / SiglipVisionModel saved by transformers 5.
BODIES = ("vision_model.", "")
PATCH_EMBEDDING = "embeddings.patch_embedding.weight"
TELLTALE = f"'vision_model.{PATCH_EMBEDDING}' (transformers' CLIP and SigLIP image towers; bare: without the prefix)"
IGNORED = {r"(vision_model\.)?embeddings\.position_ids": "the buffer of positions 0..N-1 older transformers saved"}
# The text tower of a full CLIPModel / SiglipModel: set aside deliberately, announced once at load.
SET_ASIDE = {r"text_model\..*|text_projection\.weight|logit_scale|logit_bias":
             "the text tower (text_model.*, text_projection, logit_scale, logit_bias): vit_zoo models the image "
             "tower"}
CLIP_TYPES, SIGLIP_TYPES = ("clip", "clip_vision_model"), ("siglip", "siglip_vision_model")
# transformers 5 CLIPVisionConfig / SiglipVisionConfig defaults, for config.json files that omit a field.
DEFAULTS = {
    "clip": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3),
    "siglip": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                   image_size=224, patch_size=16, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
                   num_channels=3, vision_use_head=True),
}
# hidden_act → our GELU flavour: the ViTs' table, and OpenAI CLIP's quick_gelu.
GELU_FLAVOURS = {**hf_config.GELU_FLAVOURS, "quick_gelu": "quick"}
REFUSED = {"siglip2": "SigLIP 2 NaFlex (variable resolution and aspect ratio, a Linear patch embedding over "
                      "packed patches); its fixed-resolution repos (model_type 'siglip') load"}
LAYER = "encoder.layers.{i}."
_where = hf_config.config_path  # config.json beside the weights, quoted, for the errors


def detect(checkpoint: Checkpoint) -> bool:
    kind = checkpoint.metadata.get("model_type")
    return (f"{BODIES[0]}{PATCH_EMBEDDING}" in checkpoint or kind in REFUSED
            or (PATCH_EMBEDDING in checkpoint and kind in CLIP_TYPES + SIGLIP_TYPES))


def body(checkpoint: Checkpoint) -> str:
    """The tower's key prefix in ``checkpoint`` ("vision_model." or "")."""
    return next((prefix for prefix in BODIES if f"{prefix}{PATCH_EMBEDDING}" in checkpoint), BODIES[0])


def family(checkpoint: Checkpoint) -> str:
    """"clip" or "siglip" from config.json's model_type; other model types raise, named."""
    kind = checkpoint.metadata.get("model_type")
    if kind in REFUSED:
        raise UnsupportedLayoutError(f"{_where(checkpoint)} says model_type {kind!r}: {REFUSED[kind]}",
                                     f"Hugging Face model_type {kind!r}")
    if kind in CLIP_TYPES:
        return "clip"
    if kind in SIGLIP_TYPES:
        return "siglip"
    if not checkpoint.metadata:
        raise CheckpointError(f"{str(checkpoint.path)!r} is a Hugging Face image tower without its config.json: "
                              f"the GELU flavour, LayerNorm epsilon and head count cannot be read off the tensors. "
                              f"Put the repo's config.json beside the weights file")
    raise UnsupportedLayoutError(f"{_where(checkpoint)} says model_type {kind!r}, but its tensors are an image "
                                 f"tower's ({body(checkpoint)}{PATCH_EMBEDDING}); this converter reads model_type "
                                 f"{', '.join(map(repr, CLIP_TYPES + SIGLIP_TYPES))}",
                                 f"Hugging Face model_type {kind!r}")


def vision_config(checkpoint: Checkpoint) -> dict:
    """The tower's config (``vision_config`` of a full model) with transformers' defaults filled in."""
    kind = family(checkpoint)
    meta = checkpoint.metadata
    found = meta.get("vision_config", {}) if meta.get("model_type") in ("clip", "siglip") else meta
    return {**DEFAULTS[kind], **found}


def config_fields(checkpoint: Checkpoint, hint=None) -> Dict[str, object]:
    """ViTConfig fields from config.json, cross-checked against the tensors; ``num_classes`` 0 (a tower's
    top is its embedding). Without a preprocessor_config.json the published repos' mean/std are assumed."""
    kind = family(checkpoint)
    hf = vision_config(checkpoint)
    if hf["num_channels"] != 3:
        raise UnsupportedLayoutError(f"{_where(checkpoint)}: num_channels {hf['num_channels']}; only RGB models "
                                     f"are supported", f"Hugging Face num_channels {hf['num_channels']}")
    act = hf["hidden_act"]
    if act not in GELU_FLAVOURS:
        raise UnsupportedLayoutError(f"{_where(checkpoint)}: hidden_act {act!r}; an image tower uses one of "
                                     f"{sorted(GELU_FLAVOURS)}", f"Hugging Face hidden_act {act!r}")
    patch, image = int(hf["patch_size"]), hf_config._pair(hf["image_size"])
    width, layers = int(hf["hidden_size"]), int(hf["num_hidden_layers"])
    prefix = body(checkpoint)
    patch_shape = checkpoint.shape(prefix + PATCH_EMBEDDING)
    hf_config._agree(checkpoint, "hidden_size", width, "a patch embedding of width", patch_shape[0])
    hf_config._agree(checkpoint, "patch_size", patch, "patches of", patch_shape[-1])
    found_layers = len({m.group(1) for m in map(re.compile(rf"{re.escape(prefix)}encoder\.layers\.(\d+)\.").match,
                                                 checkpoint.keys()) if m})
    hf_config._agree(checkpoint, "num_hidden_layers", layers, "encoder layers", found_layers)
    tokens = (image[0] // patch) * (image[1] // patch) + (1 if kind == "clip" else 0)
    hf_config._agree(checkpoint, f"image_size {list(image)} with patch_size {patch}, i.e.", f"{tokens} positions",
                     "position embeddings for",
                     f"{_shape(checkpoint, 'embeddings.position_embedding.weight')[0]} positions")
    mean, std = processor.normalisation(checkpoint, kind)
    fields = dict(image_size=image, patch_size=patch, hidden_size=width, mlp_size=int(hf["intermediate_size"]),
                  num_heads=int(hf["num_attention_heads"]), num_layers=layers, qkv_bias=True,
                  layer_norm_epsilon=float(hf["layer_norm_eps"]), gelu=GELU_FLAVOURS[act], mean=mean, std=std,
                  num_classes=0, representation_size=None, position_embedding_resampling="bicubic",
                  assumed={} if processor.processor_config(checkpoint) is not None else {"mean": mean, "std": std})
    if kind == "clip":
        projection = checkpoint.shape("visual_projection.weight") if "visual_projection.weight" in checkpoint else None
        fields.update(class_token=True, pre_norm=True, patch_bias=False, pooling="token",
                      projection_size=None if projection is None else int(projection[0]))
        return fields
    if not hf["vision_use_head"] or prefix + "head.probe" not in checkpoint:
        raise UnsupportedLayoutError(f"{_where(checkpoint)}: a SigLIP tower without its attention-pooling head "
                                     f"(vision_use_head false, no '{prefix}head.probe'); its tokens have no pooled "
                                     f"embedding vit_zoo models", "Hugging Face SigLIP tower without the MAP head")
    fields.update(class_token=False, pre_norm=False, patch_bias=True, pooling="map", projection_size=None)
    return fields


def identity_fields(checkpoint: Checkpoint, config) -> dict:
    """The image processor's transform (preprocessor_config.json; the published repos' without one); no labels."""
    found, assumed = processor.preprocessing(checkpoint, family(checkpoint), config.image_size)
    return {"preprocessing": found, "assumed": assumed, "labels": None}


def modules(config) -> dict:
    """slot (less its parameter) → the tower's module, as a dotted path below the tower's prefix (the projection
    at the top level)."""
    found = {"patch_embed": "embeddings.patch_embedding", "norm_pre": "pre_layrnorm",
             "norm1": LAYER + "layer_norm1", "attn.query": LAYER + "self_attn.q_proj",
             "attn.key": LAYER + "self_attn.k_proj", "attn.value": LAYER + "self_attn.v_proj",
             "attn.out": LAYER + "self_attn.out_proj", "norm2": LAYER + "layer_norm2",
             "mlp.fc1": LAYER + "mlp.fc1", "mlp.fc2": LAYER + "mlp.fc2", "encoder_norm": "post_layernorm",
             "projection": "visual_projection"}
    if config.pooling == "map":  # SiglipMultiheadAttentionPoolingHead
        found.update({"map.probe": "head.probe", "map.attn.out": "head.attention.out_proj",
                      "map.norm": "head.layernorm", "map.mlp.fc1": "head.mlp.fc1", "map.mlp.fc2": "head.mlp.fc2"})
    return found


def mapping(config, checkpoint: Optional[Checkpoint] = None) -> List[Row]:
    """Rows for the whole tower of ``config``: the module table with PyTorch's conventions, the class token
    (D,) and the position table (N, D) reshaped, and the MAP head's packed query/key/value split."""
    heads, width = config.num_heads, config.hidden_size
    prefix = body(checkpoint) if checkpoint is not None else BODIES[0]

    def _key(module: str, param: Optional[str]) -> str:
        return ("" if module == "visual_projection" else prefix) + module + (f".{param}" if param else "")
    table = targets.table(modules(config), pytorch_kinds(heads), _key)
    table["class_token"] = (_key("embeddings.class_embedding", None), to_shape(1, 1, width))
    table["pos_embed"] = (_key("embeddings.position_embedding", "weight"),
                          to_shape(1, config.num_position_embeddings, width))
    if config.pooling == "map":
        for index, part in enumerate(("query", "key", "value")):
            table[f"map.attn.{part}.kernel"] = (_key("head.attention", "in_proj_weight"),
                                                fused_qkv_part(index, split_heads_in(heads)))
            table[f"map.attn.{part}.bias"] = (_key("head.attention", "in_proj_bias"),
                                              fused_qkv_part(index, split_heads_bias(heads)))
    return targets.rows(config, table, "Hugging Face image tower")


def _shape(checkpoint: Checkpoint, module: str) -> tuple:
    key = body(checkpoint) + module
    if key not in checkpoint:
        raise CheckpointError(f"{checkpoint.path.name!r} has no '{key}'; an image tower's checkpoint has one")
    return checkpoint.shape(key)
