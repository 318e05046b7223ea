"""Format "keras": a vit_zoo model's own weights, from ``model.save_weights`` (``.weights.h5``) or
``model.save`` (``.keras``).

Keras stores each layer's variables by position (``head/vars/0`` = kernel, after ``checkpoint.py``
restores the layer names), so the mapping is our layer's variable order. A vit_zoo file carries the
model's identity record (``VisionTransformer.save_weights`` writes it as an HDF5 attribute; a ``.keras``
archive has it in its config), which states every config field, the preprocessing, the class names and
the provenance. Without it (a ``.weights.h5`` written by plain Keras or an older vit_zoo) the shapes give
the architecture, and the numerics weights cannot show (GELU flavour, LayerNorm epsilon, mean/std,
pooling) come from the config asked for: ``config=`` states them, ``name=`` assumes vit_zoo's defaults
(with a warning), and with neither the file is refused.
"""
from __future__ import annotations

from collections import Counter

from vit_zoo.converters import targets
from vit_zoo.converters.apply import row
from vit_zoo.converters.errors import CheckpointError
from vit_zoo.model import checkpoint_formats as formats
from vit_zoo.model.builder import block_name
from vit_zoo.model.config import ViTConfig
from vit_zoo.model.identity import Identity, source_preprocessing
from vit_zoo.model.saved_identity import IDENTITY_KEY

NAME = formats.KERAS
TELLTALE = "'patch_embed/vars/0' and 'pos_embed/vars/0' (a vit_zoo .weights.h5)"
IGNORED = {r"optimizer/.*": "the optimizer state of a model saved after compile (not a weight)",
           r"(compile_)?metrics/.*|loss/.*": "metric and loss trackers of a compiled model (not weights)"}
# Config fields the tensors of a vit_zoo model cannot show.
NUMERICS = ("gelu", "layer_norm_epsilon", "mean", "std", "pooling", "position_embedding_resampling")

def detect(checkpoint) -> bool:
    return "patch_embed/vars/0" in checkpoint and "pos_embed/vars/0" in checkpoint


def config_fields(checkpoint, hint=None) -> dict:
    """The identity record's config, checked against the shapes; without a record, the shapes plus
    ``hint``'s numerics (listed under ``"assumed"``), or a CheckpointError when there is no hint."""
    fields = _shape_fields(checkpoint)
    record = checkpoint.metadata.get(IDENTITY_KEY)
    if record is not None:
        saved = Identity.from_dict(record).config
        # what the record's config shows in the shapes: a fused SwiGLU fc1 is 2M wide; the position
        # embeddings are stored for the stored grid (prefix tokens other than the class token make
        # _shape_fields' image_size None)
        shown = {"mlp_size": saved.mlp_size * (2 if saved.mlp == "swiglu" else 1),
                 "image_size": tuple(side * saved.patch_size for side in saved.stored_position_grid)}
        differing = {k: (shown.get(k, getattr(saved, k)), v) for k, v in fields.items()
                     if k != "num_classes" and v is not None and shown.get(k, getattr(saved, k)) != v}
        if differing:
            raise CheckpointError(f"{checkpoint.path.name}: its identity record and its weights disagree on "
                                  + ", ".join(f"{k} (record {a}, weights {b})" for k, (a, b) in differing.items())
                                  + "; the file was edited after it was written")
        # an image tower's top is complete without a head: num_classes 0 where the record says so
        classes = 0 if saved.num_classes == 0 and fields["num_classes"] is None else fields["num_classes"]
        return {**saved.to_dict(), "num_classes": classes}
    if hint is None:
        raise CheckpointError(
            f"{checkpoint.path.name!r} holds vit_zoo weights without their identity record (written by plain "
            f"Keras save_weights or an older vit_zoo): its numerics ({', '.join(NUMERICS)}) cannot be read "
            f"off the weights. Pass config=ViTConfig(...) with the values it was trained with, or name= to "
            f"assume vit_zoo's defaults for that variant")
    if fields["image_size"] is None:
        fields["image_size"] = hint.image_size
    assumed = {key: getattr(hint, key) for key in NUMERICS if key not in fields}
    return {**assumed, **fields, "assumed": assumed}


def identity_fields(checkpoint, config) -> dict:
    """Preprocessing, class names and provenance from the identity record; without one, vit_zoo's own
    evaluation transform (assumed) and no class names."""
    record = checkpoint.metadata.get(IDENTITY_KEY)
    if record is None:
        preprocessing = source_preprocessing(NAME, config.image_size)
        return {"preprocessing": preprocessing, "labels": None,
                "assumed": {"preprocessing": f"{preprocessing.recipe} recipe, {preprocessing.interpolation}"}}
    saved = Identity.from_dict(record)
    return {"preprocessing": saved.preprocessing, "labels": saved.labels, "provenance": saved.provenance}


def _shape_fields(checkpoint) -> dict:
    """Config fields the tensors show; ``image_size`` None when the grid is not square."""
    shape = checkpoint.shape
    patch, _, _, width = shape("patch_embed/vars/0")
    class_token = "class_token/vars/0" in checkpoint
    tokens = shape("pos_embed/vars/0")[1] - int(class_token)
    side = int(round(tokens ** 0.5))
    fields = dict(image_size=(side * patch, side * patch) if side * side == tokens else None,
                  patch_size=patch, hidden_size=width,
                  mlp_size=shape(f"{block_name(0, 'mlp_fc1')}/vars/0")[1],
                  num_heads=shape(f"{block_name(0, 'attn')}/vars/0")[1],
                  num_layers=sum(1 for key in checkpoint.keys() if key.endswith("_norm1/vars/0")),
                  class_token=class_token, qkv_bias=f"{block_name(0, 'attn')}/vars/7" in checkpoint,
                  representation_size=shape("pre_logits/vars/0")[1] if "pre_logits/vars/0" in checkpoint
                  else None,
                  num_classes=shape("head/vars/0")[1] if "head/vars/0" in checkpoint else None)
    if "projection/vars/0" in checkpoint:
        fields["projection_size"] = shape("projection/vars/0")[1]
    if "map_attn/vars/0" in checkpoint:
        fields["pooling"] = "map"
    elif "fc_norm/vars/0" in checkpoint:
        fields["pooling"] = "avg-fcnorm"
    elif not class_token:
        fields["pooling"] = "gap"
    return fields


def mapping(config: ViTConfig, checkpoint=None):
    """Rows ``our variable ← LAYER/vars/N``: N counts the layer's variables in the order Keras created
    them, the order of ``converters.targets``."""
    counts = Counter()
    found = []
    for target in targets.model_targets(config):
        layer = target.path.split("/")[0]
        found.append(row(target.path, f"{layer}/vars/{counts[layer]}"))
        counts[layer] += 1
    return found
