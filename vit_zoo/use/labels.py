"""Class names of the ImageNet label spaces, and turning logits into named top-k predictions.

The lists ship as package data (``vit_zoo/data/*.tsv``: ``wnid <TAB> lemmas``, one class per line in
index order); where they come from and their licenses is in ``vit_zoo/data/SOURCES.md``.
"""
from __future__ import annotations

import functools
import importlib.resources
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from vit_zoo.use.images import tensor_to_numpy

# label-space name → (data file, number of classes)
LABEL_SETS = {
    "imagenet1k": ("imagenet1k.tsv", 1000),
    "imagenet21k": ("imagenet21k_goog.tsv", 21843),
}


@functools.lru_cache(maxsize=None)
def _read_label_table(label_set: str) -> Tuple[Tuple[str, str], ...]:
    """((wnid, lemmas), ...) of a label set, in class-index order."""
    if label_set not in LABEL_SETS:
        raise ValueError(f"unknown label set {label_set!r}; known: {sorted(LABEL_SETS)}, "
                         f"or pass a list of class names")
    filename, expected = LABEL_SETS[label_set]
    text = (importlib.resources.files("vit_zoo") / "data" / filename).read_text(encoding="utf-8")
    rows = tuple(tuple(line.split("\t", 1)) for line in text.splitlines() if line)
    if len(rows) != expected or any(len(row) != 2 for row in rows):
        raise RuntimeError(f"package data vit_zoo/data/{filename} is damaged: expected {expected} lines "
                           f"'wnid<TAB>name', found {len(rows)}; reinstall vit-zoo")
    return rows


def imagenet1k_labels() -> List[str]:
    """The 1,000 ILSVRC-2012 class names in index order, as WordNet lemmas
    (``[0] == "tench, Tinca tinca"``, the same strings as Hugging Face's ``id2label``)."""
    return [name for _, name in _read_label_table("imagenet1k")]


def imagenet1k_wnids() -> List[str]:
    """The 1,000 ILSVRC-2012 WordNet ids in index order (``[0] == "n01440764"``)."""
    return [wnid for wnid, _ in _read_label_table("imagenet1k")]


def imagenet21k_labels() -> List[str]:
    """The 21,843 class names of Google's ImageNet-21k (the label space of the original ViT in21k
    checkpoints) in index order, as WordNet lemmas (``[0] == "organism, being"``)."""
    return [name for _, name in _read_label_table("imagenet21k")]


def imagenet21k_wnids() -> List[str]:
    """The 21,843 WordNet ids of Google's ImageNet-21k in index order (``[0] == "n00004475"``)."""
    return [wnid for wnid, _ in _read_label_table("imagenet21k")]


def label_names(labels: Union[str, Sequence[str]]) -> List[str]:
    """Class names for ``labels``: ``"imagenet1k"``, ``"imagenet21k"`` or a sequence of names."""
    if isinstance(labels, str):
        return [name for _, name in _read_label_table(labels)]
    names = list(labels)
    if not all(isinstance(name, str) for name in names):
        raise TypeError("labels must be 'imagenet1k', 'imagenet21k' or a sequence of class-name strings")
    return names


def read_label_file(path, num_classes: Optional[int] = None) -> Tuple[str, ...]:
    """Class names from a text file: one name per line, in class-index order (line 1 is class 0), UTF-8;
    surrounding spaces and trailing empty lines are dropped. ``num_classes``: the head's size, which the
    count must match. Errors name the file and say what is wrong (an empty line inside, a wrong count).

    Example: a file ``circle\\nsquare\\n`` gives ``("circle", "square")``.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"labels file '{path}' not found; give a text file with one class name per "
                                f"line, in class-index order") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"labels file '{path}' is not UTF-8 text ({error.reason} at byte {error.start}); "
                         f"give one class name per line") from None
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ValueError(f"labels file '{path}' holds no class names; give one per line, in class-index order")
    empty = [number for number, name in enumerate(names, 1) if not name]
    if empty:
        raise ValueError(f"labels file '{path}' has empty lines inside (line {', '.join(map(str, empty[:5]))}); "
                         f"every line up to the last names one class, in class-index order")
    if num_classes is not None and len(names) != num_classes:
        raise ValueError(f"labels file '{path}' has {len(names)} class names (one per line), but the model's "
                         f"head has {num_classes} classes; give one name per class, in class-index order")
    return tuple(names)


def decode_predictions(logits, labels: Union[str, Sequence[str]] = "imagenet1k", top: int = 5,
                       from_logits: bool = True) -> List[List[Tuple[int, str, float]]]:
    """The ``top`` most likely classes of each sample.

    Args:
        logits: (B, C) or (C,) array-like (NumPy, a tf/Keras tensor, a list) of a model's outputs.
        labels: ``"imagenet1k"`` (1,000 classes), ``"imagenet21k"`` (21,843) or a list of C names.
        top: how many classes per sample (1 ≤ top ≤ C).
        from_logits: True: ``logits`` are unnormalised scores and the reported scores are their softmax;
            False: ``logits`` already are probabilities (a model built with
            ``classifier_activation="softmax"``) and are reported as they are.

    Returns:
        One list per sample of ``(class index, class name, probability)`` tuples, most likely first;
        probabilities are float in [0, 1] (softmax over all C classes).

    Example:
        >>> import numpy as np
        >>> logits = np.zeros((1, 1000), "float32"); logits[0, 207] = 10.0
        >>> decode_predictions(logits, top=1)[0][0][:2]
        (207, 'golden retriever')
    """
    scores = tensor_to_numpy(logits)
    if scores.ndim == 1:
        scores = scores[None]
    if scores.ndim != 2:
        raise ValueError(f"logits must have shape (batch, classes) or (classes,), got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.complexfloating):
        raise TypeError(f"logits must be real numbers, got dtype {scores.dtype}")
    names = label_names(labels)
    num_classes = scores.shape[1]
    if num_classes != len(names):
        known = {count: name for name, (_, count) in LABEL_SETS.items()}
        hint = (f"; logits of {num_classes} classes match labels={known[num_classes]!r}"
                if num_classes in known else "; pass labels= a list with one name per class")
        raise ValueError(f"logits have {num_classes} classes but labels {_describe(labels)} has "
                         f"{len(names)}{hint}")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= num_classes:
        raise ValueError(f"top must be an integer from 1 to {num_classes} (the number of classes), got {top!r}")
    scores = scores.astype(np.float64)
    bad_rows = np.flatnonzero(~np.isfinite(scores).all(axis=1))
    if bad_rows.size:
        raise ValueError(f"logits of samples {bad_rows[:5].tolist()} contain NaN or infinity; "
                         f"check the model's weights and inputs")
    if from_logits:
        flat_rows = np.flatnonzero(np.ptp(scores, axis=1) == 0)
        if flat_rows.size:
            warnings.warn(f"all {num_classes} logits are equal for samples {flat_rows[:5].tolist()}: the head "
                          f"is probably all zeros (the original ImageNet-21k ViT checkpoints ship a zero "
                          f"head, and a new head starts at zero); use its features, not its predictions",
                          stacklevel=2)
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    # stable sort on the negated scores: ties keep the lower class index first
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top]
    return [[(int(index), names[index], float(row[index])) for index in indices]
            for row, indices in zip(scores, order)]


def _describe(labels) -> str:
    return repr(labels) if isinstance(labels, str) else "(a list)"
