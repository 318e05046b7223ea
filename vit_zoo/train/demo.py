"""The offline demo: a small data set of generated shapes, and the run ``vit-zoo finetune --demo`` makes.

Each image is one shape (a class) drawn at a random position, size and colour on a random background
colour, with pixel noise: nothing but the shape tells the class, so chance is 1 / number of classes.
"""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image

SHAPES = ("circle", "square", "triangle", "cross", "ring", "bar")


def shapes(count: int, size: int = 32, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """(images (count, size, size, 3) uint8 RGB, labels (count,) int64 indexing ``SHAPES``), balanced."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(SHAPES)
    rng.shuffle(labels)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    images = np.empty((count, size, size, 3), np.uint8)
    for index, label in enumerate(labels):
        radius = rng.uniform(0.22, 0.4) * size
        cy, cx = rng.uniform(radius, size - radius, 2)
        y, x = (rows - cy) / radius, (cols - cx) / radius
        mask = _mask(SHAPES[label], y, x, rng)
        background = rng.uniform(0, 255, 3)
        foreground = (background + rng.choice([-1, 1], 3) * rng.uniform(90, 160, 3)) % 256
        image = np.where(mask[..., None], foreground, background) + rng.normal(0, 12, (size, size, 3))
        images[index] = np.clip(image, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def _mask(shape: str, y, x, rng):
    """Boolean (size, size) mask of a shape of radius 1 centred at 0 (y, x in radius units)."""
    if shape == "circle":
        return x ** 2 + y ** 2 <= 1
    if shape == "square":
        return (np.abs(x) <= 0.8) & (np.abs(y) <= 0.8)
    if shape == "triangle":
        return (y <= 0.8) & (y >= -1 + 2 * np.abs(x))
    if shape == "cross":
        return ((np.abs(x) <= 0.3) | (np.abs(y) <= 0.3)) & (np.abs(x) <= 1) & (np.abs(y) <= 1)
    if shape == "ring":
        return (x ** 2 + y ** 2 <= 1) & (x ** 2 + y ** 2 >= 0.4)
    # "bar": a thin bar, horizontal or vertical
    return (np.abs(y) <= 0.25) & (np.abs(x) <= 1) if rng.random() < 0.5 else (np.abs(x) <= 0.25) & (np.abs(y) <= 1)


DEMO = dict(model="vit-tiny-16", image_size=32, batch_size=64, steps=400, optimizer="adamw",
            learning_rate=1e-3, warmup_steps=40, weight_decay=0.05, crop_area=(0.7, 1.0), log_every=40,
            checkpoint_every=100)


def write_shapes(root, count: int, size: int = 32, seed: int = 0) -> Path:
    """``shapes(count, size, seed)`` as PNG files ``root/SHAPE/NNNNN.png`` (lossless: the same pixels),
    written under a temporary name and renamed; an existing complete ``root`` is kept as it is."""
    root = Path(root)
    if root.is_dir():
        return root
    temporary = root.with_name(f".{root.name}.{os.getpid()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    images, labels = shapes(count, size, seed)
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = temporary / SHAPES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:05d}.png")
    os.replace(temporary, root)
    return root


def run_demo(output_dir="vit-finetune-demo", *, train_images: int = 3000, val_images: int = 600,
             progress: bool = True, **overrides) -> dict:
    """Train vit-tiny-16 from scratch at 32 x 32 px (a 2 x 2 grid of 16-px patches) on generated shapes
    written as an image folder (``output_dir/data/train`` and ``data/val``, one folder per shape), with
    AdamW; a few minutes on 2 CPU cores. The model's classes are the shape names, and
    ``vit-zoo evaluate output_dir/model.keras output_dir/data/val`` reproduces the final top-1. Returns
    ``finetune``'s result (see ``DEMO``)."""
    from vit_zoo.train.finetuning import finetune

    settings = {**DEMO, **overrides}
    size = settings["image_size"]
    data = Path(output_dir) / "data"
    write_shapes(data / "train", train_images, size, seed=0)
    write_shapes(data / "val", val_images, size, seed=1)
    if progress:
        print(f"demo: {len(SHAPES)} classes of generated shapes ({', '.join(SHAPES)}), {train_images} training "
              f"and {val_images} validation images of {size}x{size} px in {data}; chance is {1 / len(SHAPES):.1%}")
        print(f"demo: training {settings['model']} from scratch, {settings['steps']} steps of "
              f"{settings['batch_size']} images, {settings['optimizer']} lr {settings['learning_rate']}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="model .* without a weights tag")
        return finetune(data, output_dir=output_dir, progress=progress, **settings)
