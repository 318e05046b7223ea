"""``finetune``: the ViT paper's fine-tuning recipe through Keras' own ``compile`` / ``fit``, on every Keras
backend, on one device or many.

Defaults follow Dosovitskiy et al. 2021 (appendix B.1.1) and vit_jax: SGD with momentum 0.9, linear
warm-up then cosine decay, gradient clipping at global norm 1, no weight decay, a new zero-initialised
head on pretrained weights, and fine-tuning at the resolution asked for with resampled position
embeddings (``vit_zoo.load``). A step means the same on one device and on many, with or without
gradient accumulation (``vit_zoo.train.optimizers``); the input is the same whatever the number of
devices (``vit_zoo.train.pipeline``).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Callable, Optional

import keras

from vit_zoo.files import replace_atomically, write_json
from vit_zoo.model.identity import identity_of
from vit_zoo.train import distribute, losses, optimizers, pipeline, start, state
from vit_zoo.train import plan as sizing
from vit_zoo.train.data import resolve_data
from vit_zoo.train.log import TrainLog
from vit_zoo.use.evaluation import BATCH_SIZE, evaluate_examples

PRECISIONS = (None, "float32", "mixed_bfloat16", "mixed_float16")


def finetune(data, model="vit-tiny-16", *, val_data=None, num_classes: Optional[int] = None, class_names=None,
             image_size=None, batch_size: Optional[int] = None, steps: Optional[int] = None,
             epochs: Optional[float] = None, recipe: str = "auto",
             optimizer: str = "sgd", learning_rate: float = 0.01, warmup_steps: Optional[int] = None,
             momentum: float = 0.9, grad_clip_norm: Optional[float] = 1.0, weight_decay: float = 0.0,
             label_smoothing: float = 0.0, mixup: float = 0.0, cutmix: float = 0.0,
             layer_decay: Optional[float] = None, freeze_backbone: bool = False,
             drop_path_rate: Optional[float] = None, precision: Optional[str] = None,
             grad_accumulation: Optional[int] = None,
             crop_area=(0.08, 1.0), checkpoint_every: int = 500, eval_every: Optional[int] = None,
             output_dir="vit-finetune", resume: bool = True, strategy="none", seed: int = 0,
             val_fraction: float = 0.1, log_every: int = 10, progress: bool = True, workers: Optional[int] = None,
             jit_compile="auto", memory="auto", on_step: Optional[Callable[[int, dict], None]] = None) -> dict:
    """Fine-tune (or train) a ViT classifier; returns what ``run.json`` holds, and the model.

    Args:
        data: an image-folder root (one sub-folder per class, named after it; optional ``train/`` and
            ``val/`` splits), TFRecord file(s), an ``(images, labels)`` pair or an unbatched
            ``tf.data.Dataset`` (see ``vit_zoo.train.data.resolve_data``). Images are RGB, any size.
        model: ``"NAME"`` (random init; a warning says so), ``"NAME:TAG"`` (published weights), a
            ``ViTConfig``, a ``keras.Model`` with as many outputs as classes, or a checkpoint path in any
            format ``vit_zoo.load`` reads; a new zero-initialised head is sized to the data's classes.
        class_names: names of classes 0, 1, ... for arrays, datasets and TFRecords without names.
        image_size: training resolution in pixels (position embeddings resampled); default the model's.
        batch_size: images per optimizer step (all devices and accumulation micro-batches together);
            default: what ``recipe`` picks for the data and the memory (``vit_zoo.train.plan``). A batch
            whose micro-batch would not fit the memory is refused (``MemoryError`` naming one that fits).
        steps / epochs: length of the run in optimizer steps (or epochs of ``data``); default 10 epochs.
        recipe: ``"auto"`` (a batch of at most 64 that fits the data and the memory) or ``"paper"`` (the
            ViT paper's batch of 512, in micro-batches where 512 images do not fit); see ``vit_zoo.train.plan``.
        optimizer: ``"sgd"`` (momentum) or ``"adamw"``; learning_rate: the peak after ``warmup_steps``
            (default 5% of the steps, at most 500); then cosine decay to 0.
        grad_clip_norm: clip the global gradient norm (None: no clipping).
        weight_decay: decoupled, not on biases/norms/embeddings. layer_decay: per-block learning-rate
            factor ``layer_decay ** (depth from the top)``. label_smoothing, mixup, cutmix: as usual
            (mixup/cutmix are alphas of Beta(alpha, alpha); images mixed within each micro-batch).
        freeze_backbone: train the head only (linear probe).
        precision: None/"float32", "mixed_bfloat16" (CPU/TPU) or "mixed_float16" (GPU, dynamic loss scaling).
        grad_accumulation: micro-batches per step (Keras' ``gradient_accumulation_steps``); default 1, or
            what the ``"paper"`` recipe needs to fit the memory.
        crop_area: (min, max) area fraction of the random-resized crop.
        checkpoint_every: steps between checkpoints in ``output_dir/checkpoints`` (and one at the end).
        eval_every: steps between evaluations on the validation split (default: at the end only).
        resume: continue from the newest checkpoint in ``output_dir`` (exactly: same data, same RNG).
        strategy: see ``vit_zoo.train.distribute`` (``"mirrored"`` ... on TensorFlow, ``"data-parallel"``
            ... on JAX), a ``tf.distribute.Strategy`` or a ``keras.distribution`` distribution.
        workers: image-decoding threads. jit_compile: ``model.compile``'s (vit_zoo models resolve "auto" to
            XLA on TensorFlow; False skips the compilation, which pays off only for long runs).
        memory: the host memory (bytes) the batch must fit in; "auto": what is available when training on
            the CPU (``vit_zoo.train.plan.memory_available``; no check on an accelerator); None: no check.
        on_step: called as ``on_step(step, scalars)`` after every step.

    Returns:
        dict with ``config``, ``classes`` (names, or None), ``num_classes``, ``identity``, ``data``,
        ``metrics`` (``val_top1``, ``val_top5``, ``val_loss``, ``val_examples``, ``train_loss``),
        ``history``, ``steps``, ``seconds``, ``model_path`` (``output_dir/model.keras``), and ``model``:
        the trained model (not in run.json). The run is reproducible: ``keras.utils.set_random_seed(seed)``.
    """
    settings = {k: v for k, v in locals().items() if k not in ("data", "val_data", "model", "on_step")}
    settings["model"] = str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
    plan = distribute.make_plan(strategy)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if recipe not in sizing.RECIPES:
        raise ValueError(f"recipe must be one of {list(sizing.RECIPES)}, got {recipe!r}")
    if batch_size is not None:  # checked before the data is read and the model built
        sizing.check_divisible(batch_size, grad_accumulation or 1, plan.replicas)
    splits = resolve_data(data, val_data, num_classes=num_classes, class_names=class_names, seed=seed,
                          val_fraction=val_fraction, image_size=image_size if isinstance(image_size, int) else None)
    train, val = splits.train, splits.val
    output_dir = Path(output_dir)

    keras.utils.set_random_seed(seed)  # the same initial head / dropout seeds in every run and worker
    with plan.scope():
        net = start.starting_model(model, splits.num_classes, image_size=image_size, drop_path_rate=drop_path_rate,
                                   dtype=None if precision in (None, "float32") else precision)
    size = tuple(net.input_shape[1:3])
    if None in size:
        raise ValueError("finetune needs a model with a fixed input size; pass image_size=")
    run = sizing.plan_run(train.size, *_memory(net, memory), recipe=recipe, batch_size=batch_size,
                          grad_accumulation=grad_accumulation, steps=steps, epochs=epochs, replicas=plan.replicas,
                          image_size="x".join(map(str, size)))
    batch_size, grad_accumulation, total = run.batch_size, run.grad_accumulation, run.steps
    warmup = min(500, total // 20) if warmup_steps is None else int(warmup_steps)
    schedule = optimizers.warmup_cosine(learning_rate, total, warmup)
    if progress and plan.chief:  # before anything slow: what the run will do, and what was changed to fit
        print(sizing.plan_line(run, model=settings["model"], image_size=size, optimizer=optimizer,
                               learning_rate=learning_rate, warmup=warmup, classes=splits.num_classes,
                               val_size=val.size if val is not None else None), flush=True)
        for note in run.notes:
            print(f"plan: {note}", flush=True)
    settings.update(batch_size=batch_size, grad_accumulation=grad_accumulation, steps=total)
    with plan.scope():
        if freeze_backbone:
            for layer in net.layers:
                layer.trainable = layer.name in start.head_layers(net)
        opt = optimizers.make_optimizer(optimizer, schedule, momentum=momentum, weight_decay=weight_decay,
                                        clip_norm=grad_clip_norm, accumulation=grad_accumulation,
                                        layer_decay=layer_decay, loss_scaling=precision == "mixed_float16")
        # integer labels and one-hot targets alike: a reloaded model.keras keeps training on either
        net.compile(optimizer=opt, metrics=[losses.ClassificationAccuracy()],
                    loss=losses.ClassificationCrossentropy(label_smoothing=label_smoothing), jit_compile=jit_compile)
        opt.build(net.trainable_variables)  # so that a checkpoint can be restored into it
    identity = start.finetuned_identity(net, splits.class_names, output_dir.resolve() / "model.keras")
    if identity is not None:
        net.identity = identity

    checkpoint_dir = output_dir / "checkpoints"
    if not resume and plan.chief:
        state.remove_checkpoints(checkpoint_dir)  # a fresh run: no stale state to resume later
    latest = state.latest_checkpoint(checkpoint_dir) if resume else None
    fingerprint = state.data_fingerprint(train)  # a checkpoint resumes only on the data it was written on
    first = state.restore_checkpoint(latest, net, opt, fingerprint) if latest is not None else 0
    if first > total:
        raise ValueError(f"the checkpoint '{latest}' is at step {first}, past the {total} steps asked for")

    interpolation = identity.preprocessing.interpolation if identity is not None else "bilinear"
    micro_batch = batch_size // grad_accumulation
    batches = pipeline.TrainingBatches(train, num_classes=splits.num_classes, image_size=size, seed=seed,
                                       batch_size=micro_batch, first_batch=first * grad_accumulation,
                                       crop_area=crop_area, interpolation=interpolation, mixup=mixup, cutmix=cutmix,
                                       workers=workers)
    log = TrainLog(output_dir if plan.chief else None, first_step=first, total_steps=total, batch_size=batch_size,
                   accumulation=grad_accumulation, every=log_every, progress=progress, schedule=schedule,
                   on_step=on_step if plan.chief else None)
    evaluation_batch = math.ceil(BATCH_SIZE / plan.replicas) * plan.replicas

    def evaluation(step):
        if step < total:  # the final evaluation follows the training
            log.evaluation(step, evaluate_examples(net, val.pairs(), val.size, batch_size=evaluation_batch,
                                                   workers=workers))
    timing = dict(first_step=first, total_steps=total, accumulation=grad_accumulation)
    save = lambda step: state.save_checkpoint(checkpoint_dir, step, net, opt, data=fingerprint)  # noqa: E731
    callbacks = [log] + ([state.EverySteps(save, every=checkpoint_every, at_end=True, **timing)] if plan.chief else [])
    if eval_every and val is not None:
        callbacks.append(state.EverySteps(evaluation, every=eval_every, **timing))
    if latest is not None:
        log.note(f"resumed from {latest} (step {first} of {total})")
    for note in train.notes:
        log.note(f"data: {note}")
    with plan.scope(), _alpha_warnings_once():
        if first < total:
            with distribute.multiworker_fit(net, plan, [(micro_batch, *size, 3), (micro_batch, splits.num_classes)]):
                net.fit(batches, epochs=1, steps_per_epoch=(total - first) * grad_accumulation, shuffle=False,
                        verbose=0, callbacks=callbacks)
        metrics = {"train_loss": next((h["loss"] for h in reversed(log.history) if "loss" in h), None)}
        if val is not None:
            result = evaluate_examples(net, val.pairs(), val.size, batch_size=evaluation_batch, workers=workers)
            log.evaluation(total, result)
            metrics.update({f"val_{k}": result[k] for k in ("top1", "top5", "loss", "examples")})
        else:
            warnings.warn("no validation data (pass val_data=): the final evaluation is skipped", stacklevel=2)
    log.close()
    summary = {"config": _jsonable(settings), "backend": keras.backend.backend(), "model_name": net.name,
               "classes": splits.class_names, "num_classes": splits.num_classes,
               "identity": identity.to_dict() if identity is not None else None,
               "data": {"train": train.summary(), "val": val.summary() if val else None},
               "strategy": plan.name, "replicas": plan.replicas, "steps": total,
               "resumed_from_step": first or None, "seconds": round(log.seconds, 1),
               "metrics": metrics, "history": log.history, "model_path": str(output_dir / "model.keras")}
    if plan.chief:
        replace_atomically(output_dir / "model.keras", net.save)  # a plain keras.Model too
        write_json(output_dir / "run.json", summary)
    return {**summary, "model": net}


@contextlib.contextmanager
def _alpha_warnings_once():
    """The data check noted how many images have an alpha channel; do not warn once per image read."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".* has an alpha channel; composited over a white background")
        yield


def _memory(net, memory):
    """(``MemoryEstimate`` of training ``net``, or None; the bytes it must fit in, or None: no check)."""
    if memory is None or (memory == "auto" and not sizing.trains_on_cpu()):
        return None, None
    identity = identity_of(net)
    if identity is None:  # a plain keras.Model: its activations are unknown
        return None, None
    estimate = sizing.estimate_memory(identity.config.replace(image_size=tuple(net.input_shape[1:3])),
                                      net.count_params())
    return estimate, sizing.memory_available() if memory == "auto" else int(memory)


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda v: v if isinstance(v, (int, float, str)) else str(v)))
