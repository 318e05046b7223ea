"""Learning-rate schedule, layer-wise learning-rate decay and the optimizers of the fine-tuning recipe.

The ViT paper's fine-tuning recipe (Dosovitskiy et al. 2021, appendix B.1.1; vit_jax ``train.py``):
SGD with momentum 0.9, a linear warm-up then cosine decay to zero, gradient clipping at global norm 1,
no weight decay. AdamW and layer-wise decay (BEiT / MAE fine-tuning) are options.

Gradients reach these optimizers already summed over replicas and clipped (``vit_zoo.finetune`` does
both in its train step, so clipping sees the global gradient); the optimizers therefore do no all-reduce
of their own.
"""
from __future__ import annotations

import math
import re
from typing import List, Optional, Sequence

import keras
from keras import ops

OPTIMIZERS = ("sgd", "adamw")
# Variables that never get weight decay: biases, LayerNorm scales/offsets, position embeddings, class token.
NO_DECAY_PATTERNS = ("bias", "gamma", "beta", "embeddings", "token")


@keras.saving.register_keras_serializable(package="vit_zoo")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """``peak * step / warmup`` for ``step < warmup``, then ``peak * 0.5 * (1 + cos(pi * t))`` with ``t``
    going from 0 to 1 over the remaining steps (0 at ``total_steps``). Steps count optimizer updates."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, end_value: float = 0.0):
        self.peak, self.total_steps = float(peak), int(total_steps)
        self.warmup_steps, self.end_value = int(warmup_steps), float(end_value)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = ops.cast(max(self.warmup_steps, 1), "float32")
        decay_steps = ops.cast(max(self.total_steps - self.warmup_steps, 1), "float32")
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        cosine = self.end_value + (self.peak - self.end_value) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        if self.warmup_steps == 0:
            return cosine
        return ops.where(step < self.warmup_steps, self.peak * step / warmup, cosine)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "end_value": self.end_value}


def layer_depth(variable_path: str, num_layers: int) -> int:
    """Depth of a weight for layer-wise decay: 0 for the embeddings (``patch_embed``, ``class_token``,
    ``pos_embed``), i + 1 for ``block_{i}``, num_layers + 1 for everything after the blocks (norms,
    pre-logits, head)."""
    found = re.search(r"block_(\d+)_", variable_path)
    if found:
        return int(found.group(1)) + 1
    if any(name in variable_path for name in ("patch_embed", "class_token", "pos_embed", "preprocessing")):
        return 0
    return num_layers + 1


def layer_decay_multipliers(variables: Sequence, num_layers: int, decay: Optional[float]) -> List[float]:
    """Learning-rate multiplier per variable: ``decay ** (num_layers + 1 - depth)`` (1 for the head)."""
    if decay is None:
        return [1.0] * len(variables)
    if not 0 < decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1] (e.g. 0.75), got {decay!r}")
    return [float(decay ** (num_layers + 1 - layer_depth(v.path, num_layers))) for v in variables]


def _pre_reduced(base):
    """A subclass of a Keras optimizer that (1) scales each variable's learning rate by a multiplier
    (layer decay) and (2) skips Keras' own all-reduce: the train step has summed the gradients over
    replicas already and clipped the global gradient, exactly as a single device would."""

    class PreReducedOptimizer(base):
        lr_multipliers = None  # list aligned with the variables the optimizer is built with

        def update_step(self, gradient, variable, learning_rate):
            if self.lr_multipliers is not None:
                factor = self.lr_multipliers[self._get_variable_index(variable)]
                if factor != 1.0:
                    learning_rate = ops.multiply(learning_rate, factor)
            return super().update_step(gradient, variable, learning_rate)

        def _all_reduce_sum_gradients(self, grads_and_vars):  # TF backend hook; see the docstring
            return grads_and_vars

    PreReducedOptimizer.__name__ = f"PreReduced{base.__name__}"
    return PreReducedOptimizer


def make_optimizer(name: str, schedule, *, momentum: float = 0.9, weight_decay: float = 0.0,
                   precision: Optional[str] = None):
    """``"sgd"`` (momentum, the ViT recipe) or ``"adamw"`` (beta 0.9 / 0.999) on ``schedule``; with
    ``precision="mixed_float16"`` wrapped in a dynamic ``LossScaleOptimizer``. Clipping is done by the
    caller on the all-reduced gradient. Weight decay is decoupled and skips biases, norms, position
    embeddings and the class token."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")
    decay = float(weight_decay) or None
    if name == "sgd":
        optimizer = _pre_reduced(keras.optimizers.SGD)(learning_rate=schedule, momentum=momentum,
                                                       weight_decay=decay)
    else:
        optimizer = _pre_reduced(keras.optimizers.AdamW)(learning_rate=schedule, weight_decay=decay or 0.0)
    if decay:
        optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_PATTERNS))
    if precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def inner_optimizer(optimizer):
    """The optimizer that updates the weights (inside a LossScaleOptimizer, or itself)."""
    return getattr(optimizer, "inner_optimizer", optimizer)
