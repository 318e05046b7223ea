"""The training input of fine-tuning: an endless ``keras.utils.PyDataset`` whose batch k is a pure
function of (seed, k), for every Keras backend.

Stream position p (batch k holds positions ``[k * b, (k + 1) * b)``) is example ``order_e[p mod N]`` of
epoch ``e = p // N``, where ``order_e`` is a permutation drawn from a NumPy generator seeded by (seed, e);
its random-resized crop and flip are drawn from a generator seeded by (seed, p). So resuming at batch k
needs only k: nothing before it is read again. (A ``tf.data.Dataset`` source can only be read in order:
it is shuffled by a seeded ``tf.data`` buffer and, on resume, skipped to the position before decoding.)

Images are decoded by ``vit_zoo.use.images`` (Pillow) in a thread pool, cropped and resized with Pillow
(``Image.resize`` with a box: antialiased, as torchvision's ``RandomResizedCrop`` on PIL images), then
mixed (``vit_zoo.train.mixing``) per batch. Batches are ``(images (b, H, W, 3) float32 in [0, 255],
targets (b, C) float32)``: one-hot, or soft after mixup/cutmix.
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Tuple

import keras
import numpy as np
from PIL import Image

from vit_zoo.train import mixing
from vit_zoo.train.data import Source
from vit_zoo.use.images import decoding_threads

_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
_MIX_STREAM = 1  # the generator of a batch's mixing is seeded by (seed, batch, _MIX_STREAM)


class TrainingBatches(keras.utils.PyDataset):
    """Endless batches of ``batch_size`` from ``source``, starting at batch ``first_batch``.

    Args:
        source: the training split. num_classes: the width of the targets.
        image_size: (H, W) of the crops. crop_area: (min, max) area fraction of the random crop.
        flip: random horizontal flips. interpolation: "bilinear" or "bicubic" (Pillow).
        mixup, cutmix: Beta alphas (0: off).
        workers: decoding threads (default ``vit_zoo.use.images.decoding_threads()``).
    """

    def __init__(self, source: Source, *, num_classes: int, image_size: Tuple[int, int], batch_size: int,
                 seed: int = 0, first_batch: int = 0, crop_area=(0.08, 1.0), flip: bool = True,
                 interpolation: str = "bilinear", mixup: float = 0.0, cutmix: float = 0.0,
                 workers: Optional[int] = None, shuffle_buffer: int = 10_000):
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=2)
        self.source, self.num_classes, self.size = source, num_classes, tuple(image_size)
        self.batch_size, self.seed, self.first_batch = int(batch_size), int(seed), int(first_batch)
        self.crop_area, self.flip, self.mixup, self.cutmix = tuple(crop_area), flip, mixup, cutmix
        self.resample = _FILTERS[interpolation]
        self.pool = ThreadPoolExecutor(workers or decoding_threads(), thread_name_prefix="vit_zoo-decode")
        self.order = EpochOrder(source.size, seed) if source.random_access else None
        self.reader = None if source.random_access else _InOrder(
            source, seed, first_batch * batch_size, batch_size, shuffle_buffer)

    @property
    def num_batches(self):
        return None  # endless: fit's steps_per_epoch ends the run

    def __getitem__(self, index: int):
        batch = self.first_batch + int(index)
        positions = range(batch * self.batch_size, (batch + 1) * self.batch_size)
        if self.order is not None:
            examples = [(self.source.raw(i), self.source.labels[i]) for i in self.order.examples(positions)]
        else:
            examples = self.reader.batch(batch)
        images = np.stack(list(self.pool.map(self.augment, [raw for raw, _ in examples], positions)))
        targets = np.eye(self.num_classes, dtype=np.float32)[[label for _, label in examples]]
        rng = np.random.default_rng([self.seed, batch, _MIX_STREAM])
        return mixing.mix_batch(images, targets, rng, self.mixup, self.cutmix)

    def augment(self, raw, position: int) -> np.ndarray:
        """One example → its random-resized crop (and flip): (H, W, 3) float32 in [0, 255]."""
        image = self.source.image(raw)
        rng = np.random.default_rng([self.seed, position])
        top, left, height, width = crop_box(image.shape[0], image.shape[1], rng, self.crop_area)
        crop = Image.fromarray(image).resize(self.size[::-1], self.resample,
                                             box=(left, top, left + width, top + height))
        pixels = np.asarray(crop, np.float32)
        return pixels[:, ::-1] if self.flip and rng.random() < 0.5 else pixels

    def __del__(self):
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def crop_box(height: int, width: int, rng: np.random.Generator, area=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """The Inception random crop as torchvision's ``RandomResizedCrop.get_params`` draws it: (top, left,
    crop height, crop width) covering ``area`` of the image with aspect ``ratio`` (10 tries, then the
    central crop of the closest aspect)."""
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = height * width * rng.uniform(*area)
        aspect = math.exp(rng.uniform(*log_ratio))
        crop_w, crop_h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            return int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1)), crop_h, crop_w
    crop_w, crop_h = width, height
    if width / height < min(ratio):
        crop_h = int(round(width / min(ratio)))
    elif width / height > max(ratio):
        crop_w = int(round(height * max(ratio)))
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


class EpochOrder:
    """Stream position → example index: epoch e visits the split in a permutation seeded by (seed, e)."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed
        self.cache, self.lock = {}, threading.Lock()

    def permutation(self, epoch: int) -> np.ndarray:
        with self.lock:
            if epoch not in self.cache:
                self.cache = {e: p for e, p in self.cache.items() if e >= epoch - 1}
                self.cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            return self.cache[epoch]

    def examples(self, positions) -> list:
        return [int(self.permutation(p // self.size)[p % self.size]) for p in positions]


class _InOrder:
    """A ``tf.data.Dataset`` source read in order by whichever thread asks: batch k is the k-th group of
    ``batch_size`` examples of the seeded shuffle, whatever order the batches are asked for in. A batch
    asked for again after it was dropped (Keras re-reads the first batches under ``tf.distribute``) is
    read anew from a stream restarted at it."""

    def __init__(self, source: Source, seed: int, start: int, batch_size: int, shuffle_buffer: int):
        self.source, self.seed, self.buffer = source, seed, min(shuffle_buffer, source.size)
        self.batch_size, self.lock = batch_size, threading.Lock()
        self._restart(start // batch_size)

    def _restart(self, batch: int):
        # a new dataset each time: a second iterator over the same one would draw other shuffles
        stream = self.source.items.shuffle(self.buffer, seed=self.seed, reshuffle_each_iteration=True).repeat()
        self.examples = stream.skip(batch * self.batch_size).as_numpy_iterator()
        self.next_batch, self.batches = batch, {}

    def batch(self, index: int) -> list:
        with self.lock:
            if index < self.next_batch and index not in self.batches:
                self._restart(index)
            while self.next_batch <= index:
                self.batches[self.next_batch] = [(image, int(label)) for image, label in
                                                 (next(self.examples) for _ in range(self.batch_size))]
                self.next_batch += 1
            self.batches = {k: v for k, v in self.batches.items() if k >= index - 4}
            return self.batches[index]
