"""OpenCLIP checkpoints (``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin`` with
``open_clip_config.json`` beside) and OpenAI CLIP state dicts: the image tower (``visual.*``) of a ViT CLIP.

Layout (PyTorch shapes; D width, E embedding width, N = 1 + h*w tokens):
    visual.conv1.weight (D, 3, P, P)                    patch embedding, no bias
    visual.class_embedding (D,)                         class token
    visual.positional_embedding (N, D)
    visual.ln_pre.{weight, bias}                        LayerNorm before the blocks
    visual.transformer.resblocks.{i}.ln_1, .ln_2        LayerNorms (eps 1e-5)
    visual.transformer.resblocks.{i}.attn.in_proj_weight (3D, D), in_proj_bias (3D,)   packed q, k, v
    visual.transformer.resblocks.{i}.attn.out_proj.{weight, bias}
    visual.transformer.resblocks.{i}.ls_1.gamma, ls_2.gamma (D,)                     LayerScale (optional)
    visual.transformer.resblocks.{i}.mlp.c_fc (M, D), mlp.c_proj (D, M)
    visual.ln_post.{weight, bias}                       on the class token (pool_type "tok")
    visual.proj (D, E)                                  used as x @ proj: already our (D, E) kernel

Numerics: OpenAI CLIP uses quick GELU; OpenCLIP uses quick GELU when ``model_cfg.quick_gelu`` is true
(the ``-quickgelu`` model names), else exact GELU. Position embeddings at another size: open_clip's
``resize_pos_embed`` (bicubic, antialias=True, align_corners=False). The text tower's tensors are set aside
(``SET_ASIDE``), with one warning at load. Towers whose trunk is a timm ViT (``visual.trunk.*``: the SigLIP
configs) convert through ``converters.open_clip_trunk``. Towers not modelled (attentional pooler, average
pooling, ModifiedResNet) are refused by name.
"""
from __future__ import annotations

import json

from vit_zoo.converters import open_clip_trunk, targets, transforms as T
from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError
from vit_zoo.model import checkpoint_formats as formats
from vit_zoo.model.identity import Preprocessing, Provenance
from vit_zoo.model.variants import CLIP_MEAN, CLIP_STD

NAME = formats.OPEN_CLIP
OPENAI_FORMAT = formats.OPENAI_CLIP
RECORDED_FORMATS = (NAME, OPENAI_FORMAT)  # OpenAI's files: no open_clip_config.json
TELLTALE = "'visual.conv1.weight' or 'visual.trunk.*' / 'visual.layer1.*' (OpenCLIP / OpenAI CLIP state dict)"
CONFIG_FILE = "open_clip_config.json"
TEXT_REASON = ("the text tower (transformer.*, token_embedding, ln_final, text_projection, logit_scale; OpenAI's "
               "attn_mask and sizes): vit_zoo models the image tower")
IGNORED: dict = {}
# The text tower, set aside deliberately and announced once at load (vit_zoo.weights.convert).
SET_ASIDE = {r"(transformer|token_embedding|positional_embedding|ln_final|text_projection|text)(\..*)?": TEXT_REASON,
             r"logit_scale|logit_bias|attn_mask|input_resolution|context_length|vocab_size": TEXT_REASON}

BLOCK = "visual.transformer.resblocks.{i}."
MODULES = {"patch_embed": "visual.conv1", "norm_pre": "visual.ln_pre", "norm1": BLOCK + "ln_1",
           "attn.out": BLOCK + "attn.out_proj", "ls1": BLOCK + "ls_1.gamma", "norm2": BLOCK + "ln_2",
           "ls2": BLOCK + "ls_2.gamma", "mlp.fc1": BLOCK + "mlp.c_fc", "mlp.fc2": BLOCK + "mlp.c_proj",
           "encoder_norm": "visual.ln_post"}


def detect(checkpoint: Checkpoint) -> bool:
    """A CLIP-style ``visual.*`` image tower (ViT, timm trunk or ModifiedResNet)."""
    return any(key.startswith(("visual.conv1.", "visual.trunk.", "visual.layer1.")) for key in checkpoint.keys())


def read_config(checkpoint: Checkpoint) -> dict:
    """``open_clip_config.json`` beside the file, or {} (OpenAI CLIP files have none)."""
    path = checkpoint.path.parent / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{str(path)!r} is not valid JSON: {error}") from error


def _refuse(where: str, what: str, short: str):
    raise UnsupportedLayoutError(f"{where} is {what}, which vit_zoo does not model; it converts OpenCLIP / "
                                 f"OpenAI CLIP ViT towers (visual.conv1, class-token pooling)", short)


def _check_modelled(checkpoint: Checkpoint, vision: dict, where: str) -> None:
    keys = list(checkpoint.keys())
    if any(k.startswith("visual.layer1.") for k in keys):
        _refuse(where, "a ResNet CLIP (ModifiedResNet image tower, 'visual.layer1.*')", "ResNet CLIP")
    if vision.get("attentional_pool") or any(k.startswith("visual.attn_pool.") for k in keys):
        _refuse(where, "an OpenCLIP tower with an attentional pooler (attentional_pool=True)",
                "OpenCLIP attentional_pool")
    pool = vision.get("pool_type", "avg" if vision.get("global_average_pool") else "tok")
    if pool != "tok":
        _refuse(where, f"an OpenCLIP tower pooled with pool_type={pool!r} (global_average_pool)",
                f"OpenCLIP pool_type={pool!r}")
    if vision.get("no_ln_pre") or "visual.ln_pre.weight" not in checkpoint:
        _refuse(where, "an OpenCLIP tower without ln_pre (no_ln_pre=True)", "OpenCLIP no_ln_pre")
    if "visual.proj" not in checkpoint:
        _refuse(where, "an OpenCLIP tower without 'visual.proj' (output_dim=None or a head)", "OpenCLIP no proj")


def config_fields(checkpoint: Checkpoint, hint=None) -> dict:
    """ViTConfig fields from the shapes and ``open_clip_config.json``'s ``model_cfg`` (head width 64 and
    mean/std CLIP's when absent, listed as assumed)."""
    where = f"CLIP checkpoint {checkpoint.path.name!r}"
    meta = read_config(checkpoint)
    model_cfg = meta.get("model_cfg") or {}
    vision = model_cfg.get("vision_cfg") or {}
    if open_clip_trunk.is_trunk(checkpoint):
        fields = open_clip_trunk.config_fields(checkpoint, vision, where)
        return _with_preprocess_normalisation(fields, meta)
    _check_modelled(checkpoint, vision, where)
    width, channels, patch, patch_w = checkpoint.required_shape("visual.conv1.weight", 4, "OpenCLIP")
    if channels != 3 or patch != patch_w:
        raise CheckpointError(f"{where}: 'visual.conv1.weight' is {(width, channels, patch, patch_w)}; expected "
                              f"(D, 3, P, P)")
    tokens = checkpoint.required_shape("visual.positional_embedding", 2, "OpenCLIP")[0]
    side = round((tokens - 1) ** 0.5)
    if side * side != tokens - 1:
        raise CheckpointError(f"{where}: 'visual.positional_embedding' has {tokens} rows, not 1 + a square grid")
    depth = checkpoint.block_count(r"visual\.transformer\.resblocks\.(\d+)\.ln_1\.weight", where)
    assumed = {}
    head_width = vision.get("head_width")
    if head_width is None:
        head_width = width // hint.num_heads if hint else 64
        if hint is None:
            assumed["num_heads"] = width // head_width
    openai = not meta
    quick = True if openai else bool(model_cfg.get("quick_gelu", False))
    if openai:
        assumed["gelu"] = "quick (OpenAI CLIP)"
    scaled = BLOCK.format(i=0) + "ls_1.gamma" in checkpoint
    if scaled and not vision.get("ls_init_value"):
        assumed["layer_scale"] = 1e-5  # the initial value only: the trained scales are loaded
    fields = dict(
        image_size=side * patch, patch_size=patch, hidden_size=width, num_layers=depth,
        mlp_size=checkpoint.required_shape(BLOCK.format(i=0) + "mlp.c_fc.weight", 2, "OpenCLIP")[0],
        num_heads=width // head_width, class_token=True, pooling="token", pre_norm=True, patch_bias=False,
        gelu="quick" if quick else "exact", layer_norm_epsilon=1e-5, qkv_bias=True,
        projection_size=checkpoint.required_shape("visual.proj", 2, "OpenCLIP")[1], num_classes=0,
        position_embedding_resampling="bicubic-antialias",  # open_clip resize_pos_embed
        layer_scale=float(vision.get("ls_init_value") or 1e-5) if scaled else None)
    if assumed:
        fields["assumed"] = assumed
    return _with_preprocess_normalisation(fields, meta)


def _with_preprocess_normalisation(fields: dict, meta: dict) -> dict:
    """``fields`` with ``preprocess_cfg``'s mean and std (CLIP's when absent, listed as assumed)."""
    pre = meta.get("preprocess_cfg") or {}
    fields.update(mean=tuple(pre.get("mean", CLIP_MEAN)), std=tuple(pre.get("std", CLIP_STD)))
    if "mean" not in pre:
        fields.setdefault("assumed", {}).update(mean=fields["mean"], std=fields["std"])
    return fields


# open_clip image_transform's resize_mode (eval) → our recipe: "shortest" is torchvision Resize(int) + CenterCrop
# (the "timm" recipe at crop 1.0), "squash" Resize((H, W)) (the "hf" recipe: Pillow, straight to the size).
RESIZE_MODES = {"shortest": ("timm", 1.0), "squash": ("hf", 1.0)}


def identity_fields(checkpoint: Checkpoint, config) -> dict:
    """open_clip's evaluation transform from ``preprocess_cfg`` (resize_mode, interpolation; CLIP's default:
    resize the short side bicubic, centre crop); provenance "open-clip", or "openai-clip" for a file without
    ``open_clip_config.json``."""
    meta = read_config(checkpoint)
    pre = meta.get("preprocess_cfg") or {}
    interpolation, mode = pre.get("interpolation", "bicubic"), pre.get("resize_mode", "shortest")
    if interpolation not in ("bicubic", "bilinear") or mode not in RESIZE_MODES:
        raise UnsupportedLayoutError(f"{checkpoint.path.name}: {CONFIG_FILE} preprocess_cfg asks for resize_mode "
                                     f"{mode!r} with interpolation {interpolation!r}; vit_zoo reproduces "
                                     f"resize_mode {sorted(RESIZE_MODES)} with 'bicubic' or 'bilinear'",
                                     f"OpenCLIP resize_mode {mode!r}, interpolation {interpolation!r}")
    recipe, crop = RESIZE_MODES[mode]
    found = {"preprocessing": Preprocessing(recipe, crop, interpolation),
             "provenance": Provenance(format=NAME if meta else OPENAI_FORMAT, source=str(checkpoint.path))}
    if not pre:
        found["assumed"] = {"preprocessing": "CLIP: short side resized bicubic, centre crop"}
    return found


def mapping(config, checkpoint: Checkpoint = None) -> list:
    """Rows ``our variable ← OpenCLIP key, transform`` (the text tower is ``SET_ASIDE``)."""
    if checkpoint is not None and open_clip_trunk.is_trunk(checkpoint):
        return open_clip_trunk.mapping(config, checkpoint)
    kinds = T.pytorch_kinds(config.num_heads)
    table = targets.table(MODULES, kinds, lambda module, param: module + (f".{param}" if param and
                                                                         not module.endswith("gamma") else ""))
    width = config.hidden_size
    table["class_token"] = ("visual.class_embedding", T.to_shape(1, 1, width))
    table["pos_embed"] = ("visual.positional_embedding", T.to_shape(1, -1, width))
    table["projection.kernel"] = ("visual.proj", None)
    for index, part in enumerate(("query", "key", "value")):
        table[f"attn.{part}.kernel"] = (BLOCK + "attn.in_proj_weight",
                                        T.fused_qkv_part(index, kinds["heads_in_kernel"][1]))
        table[f"attn.{part}.bias"] = (BLOCK + "attn.in_proj_bias", T.fused_qkv_part(index, kinds["heads_bias"][1]))
    return targets.rows(config, table, "OpenCLIP")
