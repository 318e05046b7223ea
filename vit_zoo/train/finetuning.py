"""``finetune``: the ViT paper's fine-tuning recipe as one function, on one device or many.

Defaults follow Dosovitskiy et al. 2021 (appendix B.1.1) and vit_jax: SGD with momentum 0.9, linear
warm-up then cosine decay, gradient clipping at global norm 1, no weight decay, a new zero-initialised
head on pretrained weights, and fine-tuning at the resolution asked for with resampled position
embeddings (``vit_zoo.load``). Gradients are summed over replicas and micro-batches, then clipped, then
applied once per step, so a step means the same on one device and on many.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from vit_zoo.train import distribute
from vit_zoo.train import data as finetune_data
from vit_zoo.train import pipeline as input_pipeline
from vit_zoo.train import mixing
from vit_zoo.train import schedules
from vit_zoo.train import state as train_state
from vit_zoo.model.config import ViTConfig
from vit_zoo.train.log import TrainLog

PRECISIONS = (None, "float32", "mixed_bfloat16", "mixed_float16")


def finetune(data, model="vit-tiny-16", *, val_data=None, num_classes: Optional[int] = None, image_size=None,
             batch_size: int = 512, steps: Optional[int] = None, epochs: Optional[float] = None,
             optimizer: str = "sgd", learning_rate: float = 0.01, warmup_steps: Optional[int] = None,
             momentum: float = 0.9, grad_clip_norm: Optional[float] = 1.0, weight_decay: float = 0.0,
             label_smoothing: float = 0.0, mixup: float = 0.0, cutmix: float = 0.0,
             layer_decay: Optional[float] = None, freeze_backbone: bool = False,
             drop_path_rate: Optional[float] = None, precision: Optional[str] = None, grad_accumulation: int = 1,
             crop_area=(0.08, 1.0), checkpoint_every: int = 500, eval_every: Optional[int] = None,
             output_dir="vit-finetune", resume: bool = True, strategy="none", seed: int = 0,
             val_fraction: float = 0.1, log_every: int = 10, progress: bool = True,
             on_step: Optional[Callable[[int, dict], None]] = None) -> dict:
    """Fine-tune (or train) a ViT classifier; returns what ``run.json`` holds.

    Args:
        data: an image-folder root (one sub-folder per class; optional ``train/`` and ``val/`` splits),
            TFRecord file(s), an ``(images, labels)`` pair or an unbatched ``tf.data.Dataset``
            (see ``vit_zoo.train.data.resolve_data``). Images are RGB, any size, [0, 255].
        model: ``"NAME"`` (random init; a warning says so), ``"NAME:TAG"`` (published weights, a new
            zero-initialised head), a ``ViTConfig``, a ``.keras`` file or a ``keras.Model``.
        image_size: training resolution in pixels (position embeddings resampled); default the model's.
        batch_size: global batch (all replicas and accumulation micro-batches together).
        steps / epochs: length of the run in optimizer steps (or epochs of ``data``); default 10 epochs.
        optimizer: ``"sgd"`` (momentum) or ``"adamw"``; learning_rate: the peak after ``warmup_steps``
            (default 5% of the steps, at most 500); then cosine decay to 0.
        grad_clip_norm: clip the global gradient norm (None: no clipping).
        weight_decay: decoupled, not on biases/norms/embeddings. layer_decay: per-block learning-rate
            factor ``layer_decay ** (depth from the top)``. label_smoothing, mixup, cutmix: as usual
            (mixup/cutmix are alphas of Beta(alpha, alpha); images mixed within each replica's batch).
        freeze_backbone: train the head only (linear probe).
        precision: None/"float32", "mixed_bfloat16" (CPU/TPU) or "mixed_float16" (GPU, dynamic loss scaling).
        grad_accumulation: micro-batches per step (each replica's batch is split this many ways).
        crop_area: (min, max) area fraction of the random-resized crop.
        checkpoint_every: steps between checkpoints in ``output_dir/checkpoints`` (and one at the end).
        eval_every: steps between evaluations on the validation split (default: at the end only).
        resume: continue from the newest checkpoint in ``output_dir`` (exactly: same data, same RNG).
        strategy: ``"none"``, ``"mirrored"``, ``"multiworker"``, ``"tpu"`` or a ``tf.distribute.Strategy``.
        on_step: called as ``on_step(step, scalars)`` after every step (from the chief).

    Returns:
        dict with ``config``, ``classes``, ``data``, ``metrics`` (``val_top1``, ``val_top5``, ``val_loss``,
        ``train_loss``), ``history``, ``steps``, ``seconds``, ``model_path`` (``output_dir/model.keras``),
        and ``model``: the trained ``keras.Model`` (not in run.json). Seeds Python, NumPy and TensorFlow
        with ``seed`` (``keras.utils.set_random_seed``) so that a run is reproducible.
    """
    settings = {k: v for k, v in locals().items() if k not in ("data", "val_data", "model", "on_step")}
    settings["model"] = model if isinstance(model, str) else type(model).__name__
    strategy = distribute.make_strategy(strategy)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    replicas = strategy.num_replicas_in_sync
    if grad_accumulation < 1 or batch_size % (replicas * grad_accumulation):
        raise ValueError(f"batch_size {batch_size} must be divisible by replicas ({replicas}) x "
                         f"grad_accumulation ({grad_accumulation})")
    size_hint = image_size if isinstance(image_size, int) else None
    train, val, classes = finetune_data.resolve_data(data, val_data, num_classes=num_classes, seed=seed,
                                                     val_fraction=val_fraction, image_size=size_hint)
    total = int(steps) if steps else max(1, int(round((epochs or 10) * train.size / batch_size)))
    warmup = min(500, total // 20) if warmup_steps is None else int(warmup_steps)
    output_dir = Path(output_dir)
    chief = distribute.is_chief(strategy)

    keras.utils.set_random_seed(seed)  # the same initial head / dropout seeds in every run and worker
    with strategy.scope():
        net = _model(model, len(classes), image_size, drop_path_rate, precision)
        if freeze_backbone:
            for layer in net.layers:
                layer.trainable = layer.name == "head"
        schedule = schedules.WarmupCosine(learning_rate, total, warmup)
        opt = schedules.make_optimizer(optimizer, schedule, momentum=momentum, weight_decay=weight_decay,
                                       precision=precision)
        inner = schedules.inner_optimizer(opt)
        inner.global_clipnorm = grad_clip_norm  # applied to the all-reduced gradient (see schedules)
        opt.build(net.trainable_variables)
        num_layers = sum(1 for layer in net.layers if layer.name.endswith("_attn"))
        inner.lr_multipliers = schedules.layer_decay_multipliers(net.trainable_variables, num_layers, layer_decay)
    size = tuple(net.input_shape[1:3])
    if None in size:
        raise ValueError("finetune needs a model with a fixed input size; pass image_size=")

    checkpoint_dir = output_dir / "checkpoints"
    start = 0
    if not resume and chief:
        train_state.remove_checkpoints(checkpoint_dir)  # a fresh run: no stale state to resume later
    latest = train_state.latest_checkpoint(checkpoint_dir) if resume else None
    if latest is not None:
        start = train_state.restore_checkpoint(latest, net, opt)
    if start > total:
        raise ValueError(f"the checkpoint '{latest}' is at step {start}, past the {total} steps asked for")

    dataset = strategy.distribute_datasets_from_function(
        lambda context: input_pipeline.training_stream(train, image_size=size, global_batch=batch_size,
                                                       start_step=start, seed=seed, crop_area=crop_area,
                                                       input_context=context))
    step_fn = _train_step(net, opt, strategy, len(classes), batch_size, grad_accumulation, label_smoothing,
                          mixup, cutmix, seed, precision == "mixed_float16")
    log = TrainLog(output_dir if chief else None, start, total, batch_size, log_every, progress)
    if latest is not None:
        log.note(f"resumed from {latest} (step {start} of {total})")
    for warning in train.notes:
        log.note(f"data: {warning}")
    iterator = iter(dataset)
    loss = float("nan")
    for step in range(start, total):
        loss_sum, correct = step_fn(iterator, tf.constant(step, tf.int64))
        loss, accuracy = float(loss_sum), float(correct) / batch_size
        if not np.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at step {step + 1}; lower learning_rate "
                                     f"(now {learning_rate}) or keep grad_clip_norm on")
        scalars = {"loss": loss, "accuracy": accuracy, "lr": float(schedule(step))}
        log.update(step + 1, **scalars)
        done = step + 1
        if chief and (done == total or (checkpoint_every and done % checkpoint_every == 0)):
            train_state.save_checkpoint(checkpoint_dir, done, net, opt)
        if eval_every and done % eval_every == 0 and done != total and val is not None:
            log.evaluation(done, evaluate(net, val, image_size=size, batch_size=batch_size))
        if on_step is not None and chief:
            on_step(done, scalars)

    metrics = {"train_loss": loss}
    if val is not None:
        result = evaluate(net, val, image_size=size, batch_size=batch_size)
        log.evaluation(total, result)
        metrics.update({f"val_{k}": v for k, v in result.items()})
    else:
        warnings.warn("no validation data (pass val_data=): the final evaluation is skipped", stacklevel=2)
    log.close()
    summary = {"config": _jsonable(settings), "model_name": net.name, "classes": classes,
               "data": {"train": train.summary(), "val": val.summary() if val else None},
               "strategy": type(strategy).__name__, "replicas": replicas, "steps": total,
               "resumed_from_step": start or None, "seconds": round(log.seconds, 1),
               "metrics": metrics, "history": log.history,
               "model_path": str(output_dir / "model.keras")}
    if chief:
        output_dir.mkdir(parents=True, exist_ok=True)
        net.save(output_dir / "model.keras")
        (output_dir / "run.json").write_text(json.dumps(summary, indent=2))
    return {**summary, "model": net}


def evaluate(model, source, *, image_size, batch_size: int = 256) -> dict:
    """Top-1 / top-5 accuracy and mean cross-entropy of ``model`` on a split (images resized to
    ``image_size``): {"top1", "top5", "loss", "examples"}; top-5 is top-k with k = min(5, classes)."""
    batches = input_pipeline.eval_batches(source, image_size=image_size, batch_size=batch_size)

    @tf.function(autograph=False)
    def counts(images, labels):
        logits = tf.cast(model(images, training=False), tf.float32)
        k = min(5, logits.shape[-1])
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        top1 = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32))
        topk = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, k), tf.float32))
        return tf.reduce_sum(losses), top1, topk

    totals = np.zeros(3)
    examples = 0
    for images, labels in batches:
        totals += [float(v) for v in counts(images, labels)]
        examples += int(labels.shape[0])
    loss, top1, topk = (float(v) for v in totals / max(examples, 1))
    return {"top1": top1, "top5": topk, "loss": loss, "examples": examples}


def _train_step(model, optimizer, strategy, num_classes, global_batch, accumulation, smoothing, mixup,
                cutmix, seed, scale_loss):
    variables = model.trainable_variables

    def replica_step(images, labels, step):
        replica = tf.distribute.get_replica_context()
        targets = mixing.smooth_labels(labels, num_classes, smoothing)
        key = tf.stack([tf.cast(seed, tf.int64), step]) + tf.cast(replica.replica_id_in_sync_group, tf.int64) * 7919
        images, targets = mixing.mix_batch(images, targets, key, mixup, cutmix)
        grads = [tf.zeros_like(v) for v in variables]
        loss_sum, correct = tf.constant(0.0), tf.constant(0.0)
        for micro_images, micro_targets, micro_labels in zip(tf.split(images, accumulation),
                                                             tf.split(targets, accumulation),
                                                             tf.split(labels, accumulation)):
            with tf.GradientTape() as tape:
                logits = tf.cast(model(micro_images, training=True), tf.float32)
                loss = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(micro_targets, logits)) / global_batch
                scaled = optimizer.scale_loss(loss) if scale_loss else loss
            grads = [g + tf.convert_to_tensor(d) for g, d in zip(grads, tape.gradient(scaled, variables))]
            loss_sum += loss
            correct += tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), micro_labels), tf.float32))
        grads = replica.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        optimizer.apply(grads, variables)
        return loss_sum, correct

    @tf.function
    def step_fn(iterator, step):
        images, labels = next(iterator)
        loss, correct = strategy.run(replica_step, args=(images, labels, step))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None))
    return step_fn


def _model(model, num_classes, image_size, drop_path_rate, precision):
    import vit_zoo

    options = dict(num_classes=num_classes, image_size=image_size, drop_path_rate=drop_path_rate,
                   dtype=None if precision in (None, "float32") else precision)
    if isinstance(model, ViTConfig):
        return vit_zoo.load(config=model, **options)
    if isinstance(model, (str, Path)) and str(model).endswith(".keras"):
        model = keras.models.load_model(model)
    if isinstance(model, str):
        name, _, tag = model.partition(":")
        if not tag:
            warnings.warn(f"model {name!r} without a weights tag starts from random weights (training from "
                          f"scratch); pass '{name}:TAG' for published weights (vit_zoo.list_weights)",
                          stacklevel=3)
        return vit_zoo.load(name, pretrained=tag or False, **options)
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a name, 'NAME:TAG', a ViTConfig, a .keras file or a keras.Model, "
                        f"got {type(model).__name__}")
    if model.output_shape[-1] != num_classes:
        raise ValueError(f"the model has {model.output_shape[-1]} outputs but the data has {num_classes} "
                         f"classes; pass a name or ViTConfig (a new head is made) or a matching model")
    if tf.distribute.has_strategy():
        clone = keras.models.clone_model(model)  # variables must be created under the strategy's scope
        clone.set_weights(model.get_weights())
        return clone
    return model


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda v: v if isinstance(v, (int, float, str)) else str(v)))
