"""The optimizers and learning-rate schedule of the fine-tuning recipe, as Keras optimizers.

The ViT paper's recipe (Dosovitskiy et al. 2021, appendix B.1.1; vit_jax ``train.py``): SGD with
momentum 0.9, a linear warm-up then cosine decay to zero (``keras.optimizers.schedules.CosineDecay`` with
``warmup_target`` / ``warmup_steps``), gradient clipping at global norm 1, no weight decay. AdamW and
layer-wise learning-rate decay (BEiT / MAE fine-tuning) are options.

``ViTSGD`` and ``ViTAdamW`` are Keras' ``SGD`` and ``AdamW`` with three changes, so that a step means the
same whatever the accumulation and the number of devices:

- ``layer_decay``: each weight's learning rate is scaled by ``layer_decay ** (depth from the top)``
  (``layer_depth``), in the public ``update_step(gradient, variable, learning_rate)``; decoupled weight
  decay keeps the base rate (Keras' ``w -= lr * wd * w``).
- With ``gradient_accumulation_steps = k``, Keras counts ``iterations`` in micro-batches and applies
  ``mean(k micro-batch gradients)``, clipped, once every k. The schedule is wrapped in
  ``PerOptimizerStep``, a public ``LearningRateSchedule`` evaluated at ``iterations // k``, i.e. in
  optimizer steps, as without accumulation.
- Under ``tf.distribute`` Keras clips (and accumulates) each replica's gradient *before* summing the
  replicas (``TFOptimizer._backend_update_step`` all-reduces last), so a clipped step differs from the
  one-device step. These optimizers sum the gradients over the replicas first, in ``apply``, and skip
  Keras' later all-reduce: accumulation, clipping and the update then see the one-device gradient.
  (Keras divides each replica's loss by the number of replicas, so the sum is the global mean.)
  This is the one part on Keras internals (``_DistributedUpdates``): Keras has no public hook between
  the replicas' gradients and clipping. On JAX with ``keras.distribution`` the train step is one SPMD
  program over the global batch, so the gradient, its clipping and the update are the one-device ones
  already, and PyTorch trains on one device; neither touches those internals.

Weight decay (AdamW, or SGD's ``weight_decay``) skips biases, LayerNorm scales/offsets, position
embeddings and the class token.
"""
from __future__ import annotations

import re
from typing import List, Optional, Sequence

import keras
from keras import ops

OPTIMIZERS = ("sgd", "adamw")
# Variables that never get weight decay: biases, LayerNorm scales/offsets, position embeddings, class token.
NO_DECAY_PATTERNS = ("bias", "gamma", "beta", "embeddings", "token")
_BLOCK = re.compile(r"block_(\d+)_")


def warmup_cosine(peak: float, total_steps: int, warmup_steps: int = 0):
    """``peak * step / warmup_steps`` during the warm-up, then ``peak * 0.5 * (1 + cos(pi * t))`` with t
    from 0 to 1 over the remaining steps (0 at ``total_steps``). Steps count optimizer updates."""
    warmup_steps = min(int(warmup_steps), int(total_steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else float(peak), decay_steps=max(total_steps - warmup_steps, 1),
        alpha=0.0, warmup_target=float(peak) if warmup_steps else None, warmup_steps=warmup_steps)


def layer_depth(variable_path: str, num_layers: int) -> int:
    """Depth of a weight for layer-wise decay: 0 for the embeddings (``patch_embed``, ``class_token``,
    ``pos_embed``, and a tower's ``norm_pre`` before the blocks: timm's group matcher puts it with the final
    norm), i + 1 for ``block_{i}``, num_layers + 1 for everything after the blocks (norms, a tower's MAP head
    and projection, pre-logits, head)."""
    found = _BLOCK.search(variable_path)
    if found:
        return int(found.group(1)) + 1
    if any(name in variable_path for name in ("patch_embed", "class_token", "pos_embed", "norm_pre",
                                              "preprocessing")):
        return 0
    return num_layers + 1


def layer_decay_multipliers(variable_paths: Sequence[str], decay: Optional[float],
                            num_layers: Optional[int] = None) -> List[float]:
    """Learning-rate factor per weight: ``decay ** (num_layers + 1 - depth)`` (1 for the head).
    ``num_layers`` defaults to the number of ``block_{i}_`` indices found in the paths."""
    if decay is None:
        return [1.0] * len(variable_paths)
    if not 0 < decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1] (e.g. 0.75), got {decay!r}")
    if num_layers is None:
        num_layers = 1 + max((int(m.group(1)) for p in variable_paths for m in [_BLOCK.search(p)] if m),
                             default=-1)
    return [float(decay ** (num_layers + 1 - layer_depth(path, num_layers))) for path in variable_paths]


@keras.saving.register_keras_serializable(package="vit_zoo")
class PerOptimizerStep(keras.optimizers.schedules.LearningRateSchedule):
    """``schedule(iterations // accumulation)``: a schedule written in optimizer steps, for an optimizer
    whose ``iterations`` counts ``accumulation`` micro-batches per step."""

    def __init__(self, schedule, accumulation: int):
        self.schedule = schedule
        self.accumulation = int(accumulation)

    def __call__(self, step):
        return self.schedule(ops.floor_divide(step, self.accumulation))

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "accumulation": self.accumulation}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["schedule"]), config["accumulation"])


class _DistributedUpdates:
    """One-device gradients under a several-replica ``tf.distribute`` strategy (module docstring): the only
    code here on Keras internals. Elsewhere it is Keras' own ``apply``."""

    def apply(self, grads, trainable_variables=None):
        context = _replica_context()
        if context is None:
            return super().apply(grads, trainable_variables)
        grads = _sum_over_replicas(context, list(grads))
        apply = super().apply

        def once(strategy, grads):  # cross-replica: every replica holds the same sum
            apply([None if g is None else strategy.experimental_local_results(g)[0] for g in grads],
                  trainable_variables)
        context.merge_call(once, args=(grads,))

    def _all_reduce_sum_gradients(self, grads_and_vars):  # TensorFlow hook: summed in ``apply`` already
        return list(grads_and_vars)

    # Keras' TensorFlow versions of these go through ``merge_call``, which cross-replica code must not;
    # the backend-generic ones are plain per-variable updates, whose assigns reach every replica's copy.
    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if _in_cross_replica_context():
            return _generic()._backend_update_step(self, grads, trainable_variables, learning_rate)
        return super()._backend_update_step(grads, trainable_variables, learning_rate)

    def _apply_weight_decay(self, variables):
        if _in_cross_replica_context():
            return _generic()._apply_weight_decay(self, variables)
        return super()._apply_weight_decay(variables)

    def _backend_increment_gradient_accumulators(self, grads, acc_grads):
        if _in_cross_replica_context():
            return _generic()._backend_increment_gradient_accumulators(self, grads, acc_grads)
        return super()._backend_increment_gradient_accumulators(grads, acc_grads)


class _RecipeOptimizer(_DistributedUpdates):
    """The three changes of the module docstring, mixed into a Keras optimizer class."""

    def __init__(self, *args, layer_decay: Optional[float] = None, **kwargs):
        steps, rate = kwargs.get("gradient_accumulation_steps"), kwargs.get("learning_rate")
        if steps and isinstance(rate, keras.optimizers.schedules.LearningRateSchedule) \
                and not isinstance(rate, PerOptimizerStep):
            kwargs["learning_rate"] = PerOptimizerStep(rate, steps)
        super().__init__(*args, **kwargs)
        self.layer_decay = layer_decay
        layer_decay_multipliers([], layer_decay)  # validates
        if self.weight_decay:
            self.exclude_from_weight_decay(var_names=list(NO_DECAY_PATTERNS))

    def build(self, variables):
        super().build(variables)
        factors = layer_decay_multipliers([v.path for v in variables], self.layer_decay)
        # update_step sees the Keras variable, or on TensorFlow the tf.Variable under it (or one of a
        # MirroredVariable's per-device copies): each is a key
        self._lr_factors = {id(key): factor for variable, factor in zip(variables, factors)
                            for key in _variable_keys(variable)}

    def update_step(self, gradient, variable, learning_rate):
        factor = self._lr_factors[id(variable)]
        if factor != 1.0:
            learning_rate = ops.multiply(learning_rate, factor)
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "layer_decay": self.layer_decay}


@keras.saving.register_keras_serializable(package="vit_zoo")
class ViTSGD(_RecipeOptimizer, keras.optimizers.SGD):
    """Keras SGD with layer decay, accumulation-aware schedule and one-device clipping (module docstring)."""


@keras.saving.register_keras_serializable(package="vit_zoo")
class ViTAdamW(_RecipeOptimizer, keras.optimizers.AdamW):
    """Keras AdamW with layer decay, accumulation-aware schedule and one-device clipping (module docstring)."""


def _variable_keys(variable) -> list:
    """The objects ``update_step`` may receive for a Keras variable: itself, and on TensorFlow its
    ``tf.Variable`` and that variable's per-device copies (a ``tf.distribute`` variable's ``values``)."""
    if keras.backend.backend() != "tensorflow":
        return [variable]
    value = variable.value
    return [variable, value, *getattr(value, "values", ())]


def _generic():
    """Keras' backend-generic optimizer (``keras.src``: imported only under a several-replica strategy)."""
    from keras.src.optimizers.base_optimizer import BaseOptimizer

    return BaseOptimizer


def _replica_context():
    """The ``tf.distribute`` replica context of a strategy with several replicas, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return context if context is not None and context.num_replicas_in_sync > 1 else None


def _in_cross_replica_context() -> bool:
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context()


def _sum_over_replicas(context, grads):
    import tensorflow as tf

    summed = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, [g for g in grads if g is not None]))
    return [None if g is None else next(summed) for g in grads]


def make_optimizer(name: str, schedule, *, momentum: float = 0.9, weight_decay: float = 0.0,
                   clip_norm: Optional[float] = 1.0, accumulation: int = 1, layer_decay: Optional[float] = None,
                   loss_scaling: bool = False):
    """``"sgd"`` (momentum, the ViT recipe) or ``"adamw"`` (beta 0.9 / 0.999) on ``schedule``, clipping the
    global gradient norm at ``clip_norm`` (None: no clipping), averaging ``accumulation`` micro-batches
    per step; ``loss_scaling`` wraps it in a dynamic ``LossScaleOptimizer`` (mixed_float16)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")
    if int(accumulation) < 1:
        raise ValueError(f"grad_accumulation must be a positive integer, got {accumulation!r}")
    common = dict(learning_rate=schedule, global_clipnorm=clip_norm or None, layer_decay=layer_decay,
                  gradient_accumulation_steps=int(accumulation) if accumulation > 1 else None)
    if name == "sgd":
        optimizer = ViTSGD(momentum=momentum, weight_decay=float(weight_decay) or None, **common)
    else:
        optimizer = ViTAdamW(weight_decay=float(weight_decay), **common)
    return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scaling else optimizer
