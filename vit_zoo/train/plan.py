"""How big a fine-tuning run is: the batch size and number of steps that fit the data and the machine,
the memory a batch needs, and the plan line printed before the first step.

Recipes (``finetune(recipe=...)``, ``vit-zoo finetune --recipe``):
    "auto"   (default) a batch of at most 64 and at most an eighth of the training images (a power of
             two, so an epoch has 8 steps or more), lowered until the estimated peak memory fits the memory
             available; 10 epochs.
    "paper"  the ViT paper's batch of 512 (Dosovitskiy et al. 2021, appendix B.1.1); when 512 images do
             not fit, the step is split into micro-batches (gradient accumulation) that do, so a step is
             still 512 images.
An explicit ``batch_size`` (with its ``grad_accumulation``) whose micro-batch would not fit is refused,
naming a batch that would.

Memory model (host RAM, training on the CPU), calibrated on TensorFlow with XLA by the peak RSS of 2-step
fine-tunes in fresh processes (``resource.getrusage``, AMD EPYC, 2 cores, Keras 3.15, TF 2.21):
vit-tiny-16 at 224 px, batch 4 / 16 / 32: 1.28 / 1.99 / 2.95 GiB (61 MiB per image, 1.04 GiB at batch 0);
vit-tiny-16 at 112 px, batch 32: 1.41 GiB (11.9 MiB per image); vit-small-16 at 224 px, batch 16:
3.24 GiB. Fitting per-image bytes = 4 x blocks x (24 x tokens x width + 3.6 x heads x tokens^2) to the two
tiny sizes, and 4 copies of the parameters (weights, gradients, momentum, one more) to the small run,
predicts all five within 4% (above by up to 3.4%, below by 0.7%).
vit-tiny-16 at 224 px, batch 512 comes out at 31 GiB; it was killed at 19.2 GiB resident on a 24 GiB machine.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import List, Optional

RECIPES = ("auto", "paper")
PAPER_BATCH = 512
AUTO_MAX_BATCH = 64
DEFAULT_EPOCHS = 10
MEMORY_SHARE = 0.8  # of the memory available a run may plan to use (the rest: page cache, other programs)

GIB = 2 ** 30
RUNTIME_BYTES = int(1.0 * GIB)    # Python, Keras, TensorFlow and XLA's compiler before any batch
PARAMETER_COPIES = 4              # weights, gradients, momentum and one more copy, float32
TOKEN_FACTOR = 24.0               # float32 values kept per token, channel and block (activations, grads)
ATTENTION_FACTOR = 3.6            # float32 values kept per attention weight (head, query, key) and block


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Peak host memory of a training step: ``fixed`` bytes plus ``per_image`` bytes per micro-batch image."""
    fixed: int
    per_image: int

    def peak(self, batch: int) -> int:
        return self.fixed + batch * self.per_image

    def largest_batch(self, budget: int) -> int:
        """The most images per micro-batch within ``budget`` bytes (0: not even one)."""
        return max(0, (budget - self.fixed) // self.per_image)


def estimate_memory(config, parameters: int) -> MemoryEstimate:
    """The ``MemoryEstimate`` of training a model of ``config`` (a ``ViTConfig`` at the training size) with
    ``parameters`` weights (see the module docstring for the calibration)."""
    tokens, width, blocks, heads = config.num_tokens, config.hidden_size, config.num_layers, config.num_heads
    per_image = 4 * blocks * (TOKEN_FACTOR * tokens * width + ATTENTION_FACTOR * heads * tokens ** 2)
    return MemoryEstimate(RUNTIME_BYTES + PARAMETER_COPIES * 4 * int(parameters), int(per_image))


def memory_available() -> int:
    """Bytes this process may still use: ``MemAvailable`` of ``/proc/meminfo``, or less where a cgroup
    (a container's memory limit) allows less."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:  # not Linux: physical memory
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            available = 16 * GIB
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit != "max" and int(limit) < 2 ** 60:
                available = min(available, int(limit) - int(Path(usage_file).read_text().strip()))
            break
        except (OSError, ValueError):
            continue
    return max(0, available)


@dataclasses.dataclass
class Plan:
    """What a run will do: ``batch_size`` images per step in ``grad_accumulation`` micro-batches of
    ``micro_batch``, ``steps`` steps (``epochs`` of ``train_size`` images), the estimated ``peak`` bytes
    (None: not estimated) of the ``available`` ones, and ``notes`` on what was changed to fit."""
    recipe: str
    batch_size: int
    grad_accumulation: int
    steps: int
    train_size: int
    peak: Optional[int] = None
    available: Optional[int] = None
    notes: List[str] = dataclasses.field(default_factory=list)

    @property
    def micro_batch(self) -> int:
        return self.batch_size // self.grad_accumulation

    @property
    def epochs(self) -> float:
        return self.steps * self.batch_size / max(1, self.train_size)


def plan_run(train_size: int, estimate: Optional[MemoryEstimate], available: Optional[int], *,
             recipe: str = "auto", batch_size: Optional[int] = None, grad_accumulation: Optional[int] = None,
             steps: Optional[int] = None, epochs: Optional[float] = None, replicas: int = 1,
             image_size=None) -> Plan:
    """The batch size, accumulation and steps of a run on ``train_size`` images.

    ``estimate`` (None: no memory check, e.g. a plain ``keras.Model``) and ``available`` bytes decide
    what fits (``MEMORY_SHARE`` of it); ``batch_size`` / ``grad_accumulation`` / ``steps`` / ``epochs``
    given explicitly are kept or refused, never changed. ``image_size`` only names the size in messages.
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {list(RECIPES)}, got {recipe!r}")
    if train_size < 1:
        raise ValueError("no training images")
    budget = int(MEMORY_SHARE * available) if estimate is not None and available is not None else None
    fits = estimate.largest_batch(budget) // replicas * replicas if budget is not None else None
    at = f" at {image_size} px" if image_size else ""
    notes = []
    if budget is not None and fits < replicas:
        raise MemoryError(f"even one image per replica{at} needs about {_gib(estimate.peak(replicas))} to "
                          f"train, more than the {_gib(budget)} this run may use ({MEMORY_SHARE:.0%} of "
                          f"{_gib(available)} available); pass a smaller image_size= or a smaller model")
    if batch_size is not None:
        accumulation = grad_accumulation or 1
        check_divisible(batch_size, accumulation, replicas)
        micro = batch_size // accumulation
        if budget is not None and micro > fits:
            needed = math.ceil(batch_size / fits)
            raise MemoryError(
                f"batch_size={batch_size}" + (f" in {accumulation} micro-batches" if accumulation > 1 else "")
                + f" needs about {_gib(estimate.peak(micro))}{at}, more than the {_gib(budget)} this run may "
                f"use ({MEMORY_SHARE:.0%} of {_gib(available)} available); pass batch_size={_power_below(fits)}, "
                f"or grad_accumulation={_accumulation_for(batch_size, fits, replicas) or needed} to keep "
                f"{batch_size} images per step")
    elif recipe == "paper":
        batch_size = PAPER_BATCH
        accumulation = grad_accumulation or 1
        check_divisible(batch_size, accumulation, replicas)
        if budget is not None and batch_size // accumulation > fits and grad_accumulation is None:
            accumulation = _accumulation_for(batch_size, fits, replicas)
            if accumulation is None:
                raise MemoryError(f"no micro-batch of the paper's batch {batch_size} fits the {_gib(budget)} "
                                  f"this run may use{at}; pass a smaller image_size=")
            notes.append(f"the paper's batch of {batch_size} runs as {accumulation} micro-batches of "
                         f"{batch_size // accumulation} (gradient accumulation): {batch_size} images at once "
                         f"would need about {_gib(estimate.peak(batch_size))}")
        elif budget is not None and batch_size // accumulation > fits:
            raise MemoryError(f"the paper's batch of {batch_size} in {accumulation} micro-batches needs about "
                              f"{_gib(estimate.peak(batch_size // accumulation))}{at}, more than the "
                              f"{_gib(budget)} this run may use; pass grad_accumulation="
                              f"{_accumulation_for(batch_size, fits, replicas)}")
    else:
        accumulation = grad_accumulation or 1
        wanted = _power_below(max(1, min(AUTO_MAX_BATCH, train_size // 8)))
        wanted = max(replicas * accumulation, wanted // (replicas * accumulation) * replicas * accumulation)
        batch_size = wanted
        if budget is not None and wanted // accumulation > fits:
            micro = max(replicas, _power_below(fits) // replicas * replicas)
            batch_size = micro * accumulation
            notes.append(f"batch lowered from {wanted} to {batch_size} to fit memory: {wanted} images{at} "
                         f"would need about {_gib(estimate.peak(wanted // accumulation))} of the {_gib(budget)} "
                         f"this run may use")
    if steps is None:
        steps = max(1, math.ceil((epochs or DEFAULT_EPOCHS) * train_size / batch_size))
    peak = estimate.peak(batch_size // accumulation) if estimate is not None else None
    return Plan(recipe, int(batch_size), int(accumulation), int(steps), train_size, peak, available, notes)


def trains_on_cpu() -> bool:
    """True when Keras sees no accelerator (training then uses host memory, which the estimate models)."""
    import keras

    try:
        return all(str(device).lower().startswith("cpu") for device in keras.distribution.list_devices())
    except Exception:  # noqa: BLE001 — a backend without device listing: assume the CPU
        return True


def check_divisible(batch_size: int, accumulation: int, replicas: int) -> None:
    if accumulation < 1 or batch_size % accumulation or (batch_size // accumulation) % replicas:
        raise ValueError(f"batch_size {batch_size} must be divisible by grad_accumulation ({accumulation}) x "
                         f"the number of replicas ({replicas})")


def _power_below(n: int) -> int:
    return 1 << (max(1, int(n)).bit_length() - 1)


def _accumulation_for(batch_size: int, fits: int, replicas: int) -> Optional[int]:
    """The fewest micro-batches that split ``batch_size`` evenly into micro-batches of at most ``fits``
    images (each a multiple of ``replicas``); None if none does."""
    for accumulation in range(1, batch_size + 1):
        if batch_size % accumulation == 0:
            micro = batch_size // accumulation
            if micro <= fits and micro % replicas == 0:
                return accumulation
    return None


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def plan_line(plan: Plan, *, model: str, image_size, optimizer: str, learning_rate: float, warmup: int,
              classes: int, val_size: Optional[int]) -> str:
    """The one line ``finetune`` prints before its first step, e.g. ``plan: vit-tiny-16 at 224x224 px,
    3 classes | batch 8 | 102 steps = 10.1 epochs of 81 images | sgd lr 0.01, warm-up 5, cosine |
    memory about 1.5 GiB of 20.3 GiB available``."""
    size = "x".join(str(s) for s in image_size)
    batch = f"batch {plan.batch_size}" + (f" ({plan.grad_accumulation} x {plan.micro_batch})"
                                          if plan.grad_accumulation > 1 else "")
    val = f", {val_size} validation" if val_size else ""
    memory = (f"memory about {_gib(plan.peak)} of {_gib(plan.available)} available" if plan.peak is not None
              else "memory not estimated")
    return (f"plan: {model} at {size} px, {classes} classes | {batch} | {plan.steps} steps = {plan.epochs:.1f} "
            f"epochs of {plan.train_size} images{val} | {optimizer} lr {learning_rate:g}, warm-up {warmup}, "
            f"cosine | {memory} | recipe {plan.recipe}")
