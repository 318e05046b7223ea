"""Batch-level regularisers of fine-tuning: mixup and cutmix, in NumPy, drawn from a seeded generator.

Both take a batch ``images`` (b, H, W, 3) float32 and ``targets`` (b, C) float32 (one-hot or soft) and
return new ones of the same shapes. Each image is mixed with the image at the mirrored position of the
batch (``b - 1 - i``), so no extra examples are read. They run in the input pipeline on each batch that
``fit`` sees, before any split over devices, so a mixed batch is the same on one device and on many.
(Label smoothing is the loss's: ``vit_zoo.train.losses.ClassificationCrossentropy(label_smoothing=...)``.)
"""
from __future__ import annotations

import numpy as np


def mix_batch(images: np.ndarray, targets: np.ndarray, rng: np.random.Generator, mixup: float = 0.0,
              cutmix: float = 0.0):
    """Mixup (``lam * x + (1 - lam) * x_mirror``) or cutmix (a box of area ``1 - lam`` from the mirror
    image), ``lam ~ Beta(alpha, alpha)``; with both alphas set, one of the two per batch, each with
    probability 1/2."""
    if not mixup and not cutmix:
        return images, targets
    use_cutmix = bool(cutmix) and (not mixup or rng.random() < 0.5)
    if use_cutmix:
        return _cutmix(images, targets, rng, cutmix)
    lam = np.float32(rng.beta(mixup, mixup))
    return lam * images + (1 - lam) * images[::-1], lam * targets + (1 - lam) * targets[::-1]


def _cutmix(images, targets, rng, alpha):
    lam = rng.beta(alpha, alpha)
    height, width = images.shape[1:3]
    ratio = np.sqrt(1.0 - lam)
    box_h, box_w = int(ratio * height), int(ratio * width)
    cy, cx = int(rng.random() * height), int(rng.random() * width)
    top, bottom = max(cy - box_h // 2, 0), min(cy + box_h // 2, height)
    left, right = max(cx - box_w // 2, 0), min(cx + box_w // 2, width)
    mixed = images.copy()
    mixed[:, top:bottom, left:right] = images[::-1, top:bottom, left:right]
    area = np.float32((bottom - top) * (right - left) / (height * width))
    return mixed, (1 - area) * targets + area * targets[::-1]
