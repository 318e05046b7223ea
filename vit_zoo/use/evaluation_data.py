"""Labelled images for ``vit_zoo.evaluate``: an image folder matched to a model's class names, or a flat
folder with a ground-truth file.

Class folders (``ROOT/CLASS/*.jpg``, searched recursively; ``ROOT/val/CLASS`` for a fine-tuning folder
with a ``val/`` split) are read by the scanner fine-tuning reads them with (``vit_zoo.use.image_folders``:
hidden files left out, other non-image files left out with a warning naming them) and matched by name to
the model's class names; for a model whose labels are an ImageNet set (``"imagenet1k"`` /
``"imagenet21k"``, or the same names as a list) WordNet-id folders (``n01440764/``, the ILSVRC layout) match too, through
``vit_zoo.use.labels.imagenet1k_wnids()`` / ``imagenet21k_wnids()``. A folder may hold a subset of the
classes.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from vit_zoo.use import labels as label_sets
from vit_zoo.use.image_folders import class_folder_names, evaluation_root, folder_files, listing, not_an_image
from vit_zoo.use.images import IMAGE_SUFFIXES

GROUND_TRUTH_FORMAT = (
    "one line per image of the folder, in the order of the sorted file names, each the image's class: "
    "an integer class index (0-based, in the model's class order; for ImageNet-1k models the order of "
    "the sorted WordNet ids, vit_zoo.use.labels.imagenet1k_wnids()) or a WordNet id such as n01440764 "
    "(TF-slim's imagenet_2012_validation_synset_labels.txt); or lines 'FILE LABEL' (Caffe's val.txt), "
    "matched by file name. Blank lines are ignored. The ImageNet devkit's "
    "ILSVRC2012_validation_ground_truth.txt numbers classes 1..1000 by ILSVRC2012_ID, another order: "
    "convert it with the devkit's meta.mat first")
_WNID = re.compile(r"^n\d{8}$")


def labelled_images(data, class_names: Union[str, Sequence[str], None], ground_truth=None
                    ) -> Tuple[list, np.ndarray, str]:
    """(images: paths or arrays, labels (N,) int64 class indices, a description) for ``data``: a folder of
    class folders, a flat folder with ``ground_truth`` (see ``GROUND_TRUTH_FORMAT``), or an ``(images,
    labels)`` pair (any images ``vit_zoo.use.images.load_image`` takes; labels are class indices)."""
    if isinstance(data, tuple) and len(data) == 2:
        labels = np.asarray(data[1])
        if labels.ndim != 1 or len(labels) != len(data[0]) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be (N,) integer class indices with N = {len(data[0])} images, got "
                             f"{labels.dtype} {labels.shape}")
        return list(data[0]), labels.astype(np.int64), f"{len(labels)} images"
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"evaluation data not found: '{root}' (expected a folder of class folders, "
                                f"or a folder of images with ground_truth=)")
    if ground_truth is not None:
        found = folder_files(root, recursive=False)
        truth = Path(ground_truth).resolve()
        _warn_ignored([not_an_image(path) for path in found.others if path.resolve() != truth], root, 4)
        return [str(f) for f in found.images], read_ground_truth(ground_truth, found.images, class_names), str(root)
    return _class_folders(evaluation_root(root), class_names)


def class_index(class_names: Union[str, Sequence[str], None]) -> Dict[str, int]:
    """Name → class index: the names, and the WordNet ids where the names are an ImageNet label set."""
    if class_names is None:
        raise ValueError("the model's class names are unknown (its identity has no labels), so folder names "
                         "cannot be matched to its outputs; pass labels= (a list of names in class order, or "
                         "'imagenet1k'), or a flat folder with ground_truth= (class indices)")
    names = label_sets.label_names(class_names)
    index = {name: i for i, name in enumerate(names)}
    for set_name, wnids in (("imagenet1k", label_sets.imagenet1k_wnids), ("imagenet21k", label_sets.imagenet21k_wnids)):
        count = label_sets.LABEL_SETS[set_name][1]
        if class_names == set_name or (len(names) == count and names == label_sets.label_names(set_name)):
            index.update({wnid: i for i, wnid in enumerate(wnids())})
    return index


def _class_folders(root: Path, class_names) -> Tuple[list, np.ndarray, str]:
    folders = [root / name for name in class_folder_names(root)]
    if not folders:
        loose = len(folder_files(root, recursive=False).images)
        hint = f" ({loose} images lie in it: pass ground_truth= for a flat folder)" if loose else ""
        raise ValueError(f"'{root}' has no class folders{hint}; expected ROOT/CLASS/IMAGE.jpg with CLASS one of "
                         f"the model's class names")
    index = class_index(class_names)
    unmatched = [f.name for f in folders if f.name not in index]
    if unmatched:
        names = label_sets.label_names(class_names)
        wnids = " or WordNet ids (n01440764)" if any(_WNID.match(k) for k in index) else ""
        raise ValueError(f"{len(unmatched)} of the {len(folders)} class folders of '{root}' match none of the "
                         f"model's {len(names)} class names{wnids}: folders {_first(unmatched)}; class names "
                         f"{_first(names)}. Rename the folders, or pass labels= with the names of the outputs")
    paths, labels, ignored = [], [], []
    for folder in folders:
        found = folder_files(folder)
        paths += [str(f) for f in found.images]
        labels += [index[folder.name]] * len(found.images)
        ignored += found.ignored
    _warn_ignored(ignored, root, 5)
    if not paths:
        raise ValueError(f"the class folders of '{root}' hold no image files ({', '.join(IMAGE_SUFFIXES)})")
    return paths, np.asarray(labels, np.int64), str(root)


def _warn_ignored(ignored: List[str], root: Path, stacklevel: int) -> None:
    """One warning naming the non-image files left out (``stacklevel``: the caller of ``evaluate``)."""
    if ignored:
        warnings.warn(f"left out {len(ignored)} file(s) of '{root}' that are not images:{listing(ignored)}",
                      stacklevel=stacklevel)


def read_ground_truth(path, files: List[Path], class_names=None) -> np.ndarray:
    """Class indices of ``files`` (sorted, one folder) from a ground-truth file (``GROUND_TRUTH_FORMAT``)."""
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if not files:
        raise ValueError(f"no image files in the folder of the images for ground truth '{path}'")
    if lines and all(len(parts) == 2 for parts in lines):
        by_name = {Path(name).name: label for name, label in lines}
        missing = [f.name for f in files if f.name not in by_name]
        if missing:
            raise ValueError(f"ground truth '{path}' names no label for {len(missing)} image(s): {_first(missing)}")
        tokens = [by_name[f.name] for f in files]
    elif all(len(parts) == 1 for parts in lines):
        if len(lines) != len(files):
            raise ValueError(f"ground truth '{path}' has {len(lines)} labels for {len(files)} images; expected "
                             f"{GROUND_TRUTH_FORMAT}")
        tokens = [parts[0] for parts in lines]
    else:
        raise ValueError(f"cannot read ground truth '{path}': expected {GROUND_TRUTH_FORMAT}")
    return np.asarray([_label(token, path, class_names) for token in tokens], np.int64)


def _label(token: str, path, class_names) -> int:
    if token.lstrip("-").isdigit():
        value = int(token)
        count = len(label_sets.label_names(class_names)) if class_names is not None else None
        if value < 0 or (count is not None and value >= count):
            raise ValueError(f"ground truth '{path}': class index {value} is outside 0..{count - 1 if count else '?'}"
                             f"{'; 1-based ILSVRC2012_IDs? ' if count and value == count else '; '}expected "
                             f"{GROUND_TRUTH_FORMAT}")
        return value
    index = class_index(class_names)
    if token not in index:
        raise ValueError(f"ground truth '{path}': {token!r} is neither a class index nor one of the model's "
                         f"class names or WordNet ids")
    return index[token]


def _first(values: Sequence[str], count: int = 8) -> str:
    shown = ", ".join(repr(v) for v in values[:count])
    return shown + (f" ... ({len(values)} in all)" if len(values) > count else "")
