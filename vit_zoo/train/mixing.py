"""Batch-level regularisers of fine-tuning: label smoothing, mixup and cutmix (stateless, seeded per step).

Every function takes a batch ``images`` (b, H, W, 3) float32 and ``targets`` (b, C) float32 (one-hot or
soft) and returns new ones of the same shapes. Each image is mixed with the image at the mirrored
position of the batch (``b - 1 - i``), so no extra examples are read.
"""
from __future__ import annotations

import tensorflow as tf


def smooth_labels(labels, num_classes: int, smoothing: float):
    """(b,) int labels → (b, C) targets: ``(1 - smoothing) * one_hot + smoothing / C``."""
    targets = tf.one_hot(labels, num_classes, dtype=tf.float32)
    if smoothing:
        targets = targets * (1.0 - smoothing) + smoothing / num_classes
    return targets


def mix_batch(images, targets, key, mixup: float = 0.0, cutmix: float = 0.0):
    """Mixup (``lam * x + (1 - lam) * x_mirror``) or cutmix (a box of area ``1 - lam`` from the mirror
    image), ``lam ~ Beta(alpha, alpha)``; with both alphas set, one of the two per batch, each with
    probability 1/2. ``key``: (2,) int64 seed, e.g. (seed, step)."""
    if not mixup and not cutmix:
        return images, targets
    key = tf.cast(key, tf.int64)
    use_cutmix = tf.constant(bool(cutmix)) if not (mixup and cutmix) else \
        tf.random.stateless_uniform([], seed=key + 7) < 0.5
    mixed_up = _mixup(images, targets, key, mixup) if mixup else (images, targets)
    cut = _cutmix(images, targets, key, cutmix) if cutmix else (images, targets)
    return tf.cond(use_cutmix, lambda: cut, lambda: mixed_up)


def _beta(key, alpha: float):
    a = tf.random.stateless_gamma([], seed=key, alpha=alpha)
    b = tf.random.stateless_gamma([], seed=key + 1, alpha=alpha)
    return a / (a + b)


def _mixup(images, targets, key, alpha):
    lam = _beta(key, alpha)
    return (lam * images + (1.0 - lam) * tf.reverse(images, [0]),
            lam * targets + (1.0 - lam) * tf.reverse(targets, [0]))


def _cutmix(images, targets, key, alpha):
    lam = _beta(key + 3, alpha)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    ratio = tf.sqrt(1.0 - lam)
    box_h = tf.cast(ratio * tf.cast(height, tf.float32), tf.int32)
    box_w = tf.cast(ratio * tf.cast(width, tf.float32), tf.int32)
    centre = tf.random.stateless_uniform([2], seed=key + 5)
    cy = tf.cast(centre[0] * tf.cast(height, tf.float32), tf.int32)
    cx = tf.cast(centre[1] * tf.cast(width, tf.float32), tf.int32)
    top, bottom = tf.maximum(cy - box_h // 2, 0), tf.minimum(cy + box_h // 2, height)
    left, right = tf.maximum(cx - box_w // 2, 0), tf.minimum(cx + box_w // 2, width)
    rows, cols = tf.range(height)[:, None], tf.range(width)[None, :]
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    mask = tf.cast(inside, images.dtype)[None, :, :, None]
    area = tf.cast((bottom - top) * (right - left), tf.float32) / tf.cast(height * width, tf.float32)
    mixed = images * (1.0 - mask) + tf.reverse(images, [0]) * mask
    return mixed, (1.0 - area) * targets + area * tf.reverse(targets, [0])
