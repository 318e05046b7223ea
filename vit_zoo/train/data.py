"""Where fine-tuning data comes from: an image-folder tree, ``(images, labels)`` arrays, TFRecord files or
a ``tf.data.Dataset``, checked up front so that bad data fails (or warns) before training starts, naming
the files.

A ``Source`` is one split in a fixed order. Image folders are read by the scanner evaluation reads them
with (``vit_zoo.use.image_folders``: which files are images, hidden files, non-image files, ``train/`` and
``val/``). Every image is decoded by the one decoder of ``vit_zoo.use.images`` (Pillow; grayscale to RGB,
alpha composited over white), in training and in evaluation alike. ``vit_zoo.train.pipeline`` shuffles, crops and batches a source.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from vit_zoo.use.image_folders import (FolderFiles, class_folder_names, folder_files, listing, not_an_image,
                                      split_roots)
from vit_zoo.use.images import load_image

FULL_CHECK_LIMIT = 20_000  # folders up to this many files are fully decoded once by the check
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


@dataclasses.dataclass
class Source:
    """One split. ``kind``: ``"files"`` (``items``: paths), ``"arrays"`` (``items``: (N, H, W, 3) uint8),
    ``"tfrecord"`` (``items``: a ``vit_zoo.train.tfrecords.RecordIndex``) or ``"dataset"`` (``items``: an
    unbatched ``tf.data.Dataset`` of (image (H, W, C), label); read in order only). ``labels``: (N,) int64
    class indices (None for a dataset). ``class_names``: the names the data itself gives (folder names,
    TFRecord ``image/class/text``), else None."""
    kind: str
    items: object
    labels: Optional[np.ndarray]
    size: int
    where: str
    class_names: Optional[List[str]] = None
    notes: List[str] = dataclasses.field(default_factory=list)

    @property
    def random_access(self) -> bool:
        return self.kind != "dataset"

    def raw(self, index: int):
        """Example ``index`` as the decoder takes it: a path, an (H, W, 3) uint8 array or encoded bytes."""
        return self.items.image_bytes(index) if self.kind == "tfrecord" else self.items[index]

    def image(self, raw) -> np.ndarray:
        """A raw example → (H, W, 3) uint8 RGB (``vit_zoo.use.images.load_image``)."""
        image = load_image(raw, where=f"an image of {self.where}")
        return image if image.dtype == np.uint8 else np.round(image).astype(np.uint8)

    def pairs(self) -> Iterator[Tuple[object, int]]:
        """(raw example, label) in the split's order, once."""
        if self.random_access:
            return ((self.raw(i), int(label)) for i, label in enumerate(self.labels))
        return ((np.asarray(image), int(label)) for image, label in self.items.as_numpy_iterator())

    def summary(self) -> dict:
        return {"kind": self.kind, "where": self.where, "examples": self.size, "notes": self.notes}


@dataclasses.dataclass
class Splits:
    """What ``resolve_data`` found: the splits, the number of classes and their names (None: unknown)."""
    train: Source
    val: Optional[Source]
    num_classes: int
    class_names: Optional[List[str]]


def resolve_data(data, val_data=None, *, num_classes: Optional[int] = None,
                 class_names: Optional[Sequence[str]] = None, val_fraction: float = 0.1, seed: int = 0,
                 image_size: Optional[int] = None) -> Splits:
    """``data`` (and ``val_data``) → the splits, class count and class names.

    data: an image-folder root (``ROOT/CLASS/*.jpg``, or ``ROOT/train/CLASS`` with ``ROOT/val/CLASS``;
        the class names are the folder names), ``.tfrecord`` file(s) (a path, glob or list; see
        ``vit_zoo.train.tfrecords``), a ``(images, labels)`` pair of arrays ((N, H, W, 3) uint8 or float in
        [0, 255], (N,) ints) or an unbatched ``tf.data.Dataset`` of ``(image, label)``.
    class_names: the names of classes 0, 1, ... for arrays, datasets and TFRecords without
        ``image/class/text`` (one per class; fixes the class count).
    A folder without a ``val/`` split gives up a stratified ``val_fraction`` of its files (seeded).
    """
    if isinstance(data, (str, os.PathLike)) and Path(data).is_dir():
        return _folder_splits(Path(data), val_data, class_names, val_fraction, seed, image_size)
    train = _other_source(data, "data")
    val = _other_source(val_data, "val_data") if val_data is not None else None
    names = list(class_names) if class_names is not None else train.class_names
    count = len(names) if names is not None else (num_classes or _count_classes(train))
    if num_classes is not None and num_classes != count:
        raise ValueError(f"num_classes={num_classes} but {len(names)} class names are known "
                         f"({names[:5]}...); drop num_classes or pass matching class_names")
    for source in (train, val):
        if source is not None and source.labels is not None and int(source.labels.max()) >= count:
            raise ValueError(f"{source.where} has label {int(source.labels.max())}, but there are {count} "
                             f"classes; pass class_names (or num_classes) covering every label")
    if count < 2:
        raise ValueError(f"{train.where}: all labels are 0; classification needs at least 2 classes")
    return Splits(train, val, count, names)


def _folder_splits(root: Path, val_data, class_names, val_fraction, seed, image_size) -> Splits:
    if class_names is not None:
        raise ValueError(f"class_names= is for arrays, datasets and TFRecords; the classes of the image "
                         f"folder '{root}' are its sub-folder names")
    train_root, val_root = split_roots(root)
    classes = class_folders(train_root)
    train = scan_folder(train_root, classes, image_size)
    if val_data is not None:
        val = _folder_splits(Path(val_data), None, None, val_fraction, seed, image_size).train \
            if Path(val_data).is_dir() else _other_source(val_data, "val_data")
    elif val_root is not None:
        unknown = sorted(set(class_folders(val_root, minimum=1)) - set(classes))
        if unknown:
            raise ValueError(f"'{val_root}' has class folders that '{train_root}' lacks: {unknown}; the "
                             f"validation classes must be a subset of the training classes {classes}")
        val = scan_folder(val_root, classes, image_size, allow_missing=True)
    else:
        train, val = split_off(train, val_fraction, seed)
    return Splits(train, val, len(classes), classes)


def class_folders(root: Path, minimum: int = 2) -> List[str]:
    """Sorted class sub-folder names of ``root``; errors for a missing or empty folder and for fewer than
    ``minimum`` classes."""
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: '{root}'")
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    classes = class_folder_names(root)
    if not entries:
        raise ValueError(f"data folder '{root}' is empty; expected one sub-folder of images per class "
                         f"('{root}/cat/1.jpg', '{root}/dog/2.jpg', ...)")
    if not classes:
        loose = sum(1 for p in entries if p.is_file())
        raise ValueError(f"data folder '{root}' has {loose} file(s) but no class sub-folders; expected one "
                         f"sub-folder of images per class ('{root}/CLASS/IMAGE.jpg')")
    if len(classes) < minimum:
        raise ValueError(f"data folder '{root}' has {len(classes)} class folder ({classes[0]!r}); "
                         f"classification needs at least 2 classes: add a sub-folder per class")
    return classes


def scan_folder(root: Path, classes: Sequence[str], image_size=None, allow_missing=False) -> Source:
    """List and check the images of ``root/CLASS/``: unreadable or undecodable files and unsupported
    formats are skipped with one warning that names them; a class left without images is an error
    (or, in a validation split, ``allow_missing``, a note)."""
    from PIL import Image

    paths, labels, skipped, sizes, notes, alpha = [], [], [], [], [], 0
    full_check = sum(1 for _ in root.rglob("*")) <= FULL_CHECK_LIMIT
    for label, name in enumerate(classes):
        folder = root / name
        found = folder_files(folder) if folder.is_dir() else FolderFiles([], [])
        files, others, kept, skipped_before = sorted(found.images + found.others), set(found.others), 0, len(skipped)
        for path in files:
            if path in others:
                skipped.append(not_an_image(path))
                continue
            try:
                with Image.open(path) as image:
                    sizes.append(image.size)
                    alpha += image.mode in _ALPHA_MODES or "transparency" in image.info
                    if full_check:
                        image.load()
            except Exception as error:  # noqa: BLE001 — any decoder failure means the same to the user
                skipped.append(f"{path} (cannot decode: {type(error).__name__}: {error})")
                continue
            paths.append(str(path))
            labels.append(label)
            kept += 1
        if kept == 0:
            if not allow_missing:
                reason = f": {skipped[skipped_before]}" if len(skipped) > skipped_before else ""
                raise ValueError(f"class folder '{folder}' has no usable images ({len(files)} file(s)"
                                 f"{reason}); add images or remove the folder")
            notes.append(f"class {name!r} has no images in '{root}'")
    if skipped:
        warnings.warn(f"skipped {len(skipped)} file(s) in '{root}' that cannot be used:{listing(skipped)}",
                      stacklevel=3)
        notes.append(f"skipped {len(skipped)} unusable file(s)")
    if not paths:
        raise ValueError(f"no usable images in '{root}'")
    if alpha:
        notes.append(f"{alpha} image(s) have an alpha channel: composited over white")
    notes.extend(_size_notes(sizes, image_size, root))
    return Source("files", paths, np.asarray(labels, np.int64), len(paths), str(root), list(classes), notes)


def _size_notes(sizes, image_size, root) -> List[str]:
    """Mixed sizes are fine (every image is cropped and resized); say so, and warn about upscaling."""
    widths, heights = zip(*sizes)
    notes = []
    if len(set(sizes)) > 1:
        notes.append(f"image sizes vary from {min(widths)}x{min(heights)} to {max(widths)}x{max(heights)} "
                     f"(w x h); each is cropped and resized to the training size")
    if image_size:
        small = sum(1 for w, h in sizes if min(w, h) < image_size / 2)
        if small:
            warnings.warn(f"{small} image(s) in '{root}' are smaller than half the training size "
                          f"{image_size} px and will be upscaled more than 2x; consider a smaller "
                          f"image_size", stacklevel=4)
            notes.append(f"{small} image(s) upscaled more than 2x")
    return notes


def split_off(source: Source, fraction: float, seed: int):
    """A stratified, seeded ``fraction`` of a file source as validation (at least 1 per class with 2+)."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    val_index = []
    for label in np.unique(source.labels):
        members = np.flatnonzero(source.labels == label)
        if len(members) >= 2:
            count = max(1, int(round(fraction * len(members))))
            val_index.extend(rng.choice(members, count, replace=False).tolist())
    is_val = np.zeros(source.size, bool)
    is_val[val_index] = True
    pick = lambda mask: [p for p, m in zip(source.items, mask) if m]  # noqa: E731
    note = f"no val/ folder: held out {is_val.sum()} of {source.size} images ({fraction:.0%}, stratified)"
    train = dataclasses.replace(source, items=pick(~is_val), labels=source.labels[~is_val],
                                size=int((~is_val).sum()), notes=source.notes + [note])
    val = dataclasses.replace(source, items=pick(is_val), labels=source.labels[is_val],
                              size=int(is_val.sum()), notes=[note])
    return train, val


def _other_source(data, argument: str) -> Source:
    if isinstance(data, tuple) and len(data) == 2:
        return _array_source(*data, argument)
    if isinstance(data, (str, os.PathLike, list)):
        from vit_zoo.train.tfrecords import tfrecord_source

        return tfrecord_source(data, argument)
    if type(data).__module__.startswith("tensorflow") and hasattr(data, "element_spec"):
        return _dataset_source(data, argument)
    raise TypeError(f"{argument} must be an image folder, TFRecord file(s), an (images, labels) pair or a "
                    f"tf.data.Dataset, got {type(data).__name__}")


def _dataset_source(data, argument: str) -> Source:
    spec = data.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError(f"{argument}: a tf.data.Dataset must yield (image, label) pairs, got {spec}")
    if spec[0].shape.rank != 3:
        raise ValueError(f"{argument}: the dataset yields images of shape {spec[0].shape}; expected "
                         f"unbatched (H, W, C) images — call .unbatch() (the batch size is finetune's)")
    size = int(data.cardinality())
    if size < 0:  # unknown: count the labels (the images are not decoded)
        size = sum(1 for _ in data.map(lambda image, label: label).as_numpy_iterator())
    return Source("dataset", data, None, size, f"a tf.data.Dataset ({argument})")


def _array_source(images, labels, argument: str) -> Source:
    if isinstance(images, (list, tuple)):
        shapes = sorted({np.shape(image) for image in images})
        if len(shapes) > 1:
            raise ValueError(f"{argument}: the images have different sizes {shapes[:4]}; arrays must share one "
                             f"size — resize them, or pass a folder or a tf.data.Dataset (cropped per image)")
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{argument}: images must be (N, H, W, 3), got shape {images.shape}")
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"{argument}: labels must be (N,) integers >= 0 with N = {images.shape[0]}, got "
                         f"{labels.dtype} {labels.shape}")
    if images.dtype != np.uint8:
        if images.min() < 0 or images.max() > 255:
            raise ValueError(f"{argument}: images must hold RGB values in [0, 255], found "
                             f"{images.min():g}..{images.max():g}")
        images = np.round(images).astype(np.uint8)
    return Source("arrays", images, labels.astype(np.int64), len(labels), f"arrays ({argument})")


def _count_classes(source: Source) -> int:
    """Number of classes = largest label + 1 (one pass over a Dataset source)."""
    if source.labels is not None:
        return int(source.labels.max()) + 1
    return 1 + max(int(label) for label in source.items.map(lambda image, label: label).as_numpy_iterator())
