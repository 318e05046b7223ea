"""The rules a ``ViTConfig``'s fields obey: the values each choice may take, and ``validate``, which
raises a ``ValueError`` naming the field, what it got and what would be right."""
from __future__ import annotations

import math
from typing import Sequence, Tuple

POOLINGS = ("token", "gap", "avg-fcnorm", "token-mean", "map")
GELU_FLAVOURS = ("exact", "tanh", "quick")
RESAMPLING_MODES = ("bicubic", "bilinear", "bilinear-corners", "bicubic-antialias", "bicubic-offset")
MLP_KINDS = ("gelu", "swiglu")
HEAD_KINDS = ("linear", "distilled")


def validate(config) -> None:
    """ValueError for the first field of ``config`` (a ``ViTConfig`` after its ``__post_init__`` coercions)
    that breaks its rule, or for a combination of fields that is not modelled."""
    for name in ("patch_size", "hidden_size", "mlp_size", "num_heads", "num_layers"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(config.num_classes, int) or isinstance(config.num_classes, bool) or config.num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative integer (0: no classifier, the model outputs "
                         f"its image embedding), got {config.num_classes!r}")
    if min(config.image_size) < config.patch_size:
        raise ValueError(f"image_size {config.image_size} is smaller than one patch ({config.patch_size} px)")
    if config.hidden_size % config.num_heads:
        divisors = [h for h in range(1, min(config.hidden_size, 64) + 1) if config.hidden_size % h == 0]
        raise ValueError(
            f"num_heads {config.num_heads} does not divide hidden_size {config.hidden_size}; "
            f"num_heads must be a divisor of hidden_size, e.g. one of {divisors}")
    if config.pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {config.pooling!r}")
    if config.pooling in ("token", "token-mean") and not config.class_token:
        raise ValueError(f"pooling {config.pooling!r} needs class_token=True; use pooling 'gap' or "
                         "'avg-fcnorm' for a model without a class token")
    if config.distillation_token and not config.class_token:
        raise ValueError("distillation_token=True needs class_token=True (DeiT puts it after the class token)")
    if not isinstance(config.register_tokens, int) or isinstance(config.register_tokens, bool) \
            or config.register_tokens < 0:
        raise ValueError(f"register_tokens must be a non-negative integer, got {config.register_tokens!r}")
    if config.mlp not in MLP_KINDS:
        raise ValueError(f"mlp must be one of {list(MLP_KINDS)}, got {config.mlp!r}")
    if config.head not in HEAD_KINDS:
        raise ValueError(f"head must be one of {list(HEAD_KINDS)}, got {config.head!r}")
    if config.head == "distilled" and not (config.distillation_token and config.pooling == "token"):
        raise ValueError("head 'distilled' needs distillation_token=True and pooling 'token' (DeiT: one head "
                         "on the class token, one on the distillation token)")
    if config.head == "distilled" and config.representation_size:
        raise ValueError("head 'distilled' with a pre-logits layer (representation_size) is not modelled")
    if config.layer_scale is not None and not (isinstance(config.layer_scale, float) and config.layer_scale > 0):
        raise ValueError(f"layer_scale must be None or a positive initial value, got {config.layer_scale!r}")
    if config.gelu not in GELU_FLAVOURS:
        raise ValueError(f"gelu must be one of {list(GELU_FLAVOURS)}, got {config.gelu!r}")
    if config.position_embedding_resampling not in RESAMPLING_MODES:
        raise ValueError(f"position_embedding_resampling must be one of {list(RESAMPLING_MODES)}, "
                         f"got {config.position_embedding_resampling!r}")
    if not (isinstance(config.layer_norm_epsilon, (int, float)) and 0 < config.layer_norm_epsilon < 1):
        raise ValueError(f"layer_norm_epsilon must be a float in (0, 1), got {config.layer_norm_epsilon!r}")
    for name in ("representation_size", "projection_size"):
        if getattr(config, name) is not None and (isinstance(getattr(config, name), bool) or getattr(config, name) < 1):
            raise ValueError(f"{name} must be None or a positive integer, got {getattr(config, name)!r}")
    if config.head == "distilled" and config.projection_size:
        raise ValueError("head 'distilled' with a projection (projection_size) is not modelled")
    for name in ("pre_norm", "patch_bias"):
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{name} must be True or False, got {getattr(config, name)!r}")
    for name in ("dropout_rate", "attention_dropout_rate", "drop_path_rate"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and 0 <= value < 1):
            raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")
    if any(s <= 0 for s in config.std):
        raise ValueError(f"std must be positive for every channel, got {config.std}")


def check_patch_multiple(size: Tuple[int, int], patch_size: int, what: str) -> None:
    """ValueError unless ``patch_size`` divides both sides of ``size`` (height, width) in pixels; the
    message names the side and the nearest sizes that work. ``what`` names the size in the message."""
    for axis, value in zip(("height", "width"), size):
        if value % patch_size:
            lower = value // patch_size * patch_size
            nearest = [s for s in (lower, lower + patch_size) if s > 0]
            raise ValueError(f"{what} {axis} {value} is not divisible by patch_size {patch_size}; "
                             f"the nearest valid sizes are {' and '.join(map(str, nearest))}")


def image_size_pair(image_size) -> Tuple[int, int]:
    """An int or a (height, width) pair of positive ints → (height, width) in pixels."""
    if isinstance(image_size, (int,)) and not isinstance(image_size, bool):
        pair = (image_size, image_size)
    elif isinstance(image_size, Sequence) and len(image_size) == 2:
        pair = tuple(image_size)
    else:
        raise ValueError(f"image_size must be an int or a (height, width) pair, got {image_size!r}")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in pair):
        raise ValueError(f"image_size must hold positive integers, got {image_size!r}")
    return (int(pair[0]), int(pair[1]))


def three_floats(name: str, values) -> Tuple[float, float, float]:
    """Per-channel (R, G, B) values, e.g. ``mean`` or ``std``, as three finite floats."""
    try:
        floats = tuple(float(v) for v in values)
    except TypeError:
        raise ValueError(f"{name} must be three floats (R, G, B), got {values!r}") from None
    if len(floats) != 3 or not all(math.isfinite(v) for v in floats):
        raise ValueError(f"{name} must be three finite floats (R, G, B), got {values!r}")
    return floats
