"""The one reading of an image-folder tree, shared by fine-tuning (``vit_zoo.train.data``) and evaluation
(``vit_zoo.use.evaluation_data``), so that both see the same classes and the same files.

Layout: ``ROOT/CLASS/**/IMAGE`` (one folder per class, images anywhere below it), or split for
fine-tuning: ``ROOT/train/CLASS/...`` with ``ROOT/val/CLASS/...`` (``validation/`` is read as ``val/``).
The rules:
    images      files whose suffix, in any case, is one of ``vit_zoo.use.images.IMAGE_SUFFIXES``;
    hidden      anything whose name starts with "." below ROOT — files (``.DS_Store``, macOS ``._IMG.jpg``)
                and folders (``.ipynb_checkpoints/``, ``.git/``) — is left out silently: it is a tool's
                bookkeeping, never data;
    other files (``notes.txt``, ``IMG.heic``) are left out, but counted and reported (``FolderFiles.ignored``,
                which both callers warn about, naming them): a photo in a format Pillow cannot take must
                not drop out of a data set unnoticed;
    splits      ``train``, ``val`` and ``validation`` are split names, never class names. Fine-tuning trains
                on ``ROOT/train`` (else ROOT) and validates on ``ROOT/val`` when present; evaluation of a
                folder that has ``val/`` scores ``val/`` — the split fine-tuning validates on — and refuses
                a folder that has ``train/`` but no ``val/`` (``evaluation_root``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional, Tuple

from vit_zoo.use.images import IMAGE_SUFFIXES

VAL_FOLDERS = ("val", "validation")
SPLIT_FOLDERS = ("train",) + VAL_FOLDERS


@dataclasses.dataclass
class FolderFiles:
    """The files of one folder: ``images`` and ``others`` (the non-image files, left out), paths sorted.
    ``ignored``: one line per other file, ``"PATH (not an image file: .txt; expected one of .jpg, ...)"``."""
    images: List[Path]
    others: List[Path]

    @property
    def ignored(self) -> List[str]:
        return [not_an_image(path) for path in self.others]


def not_an_image(path: Path) -> str:
    """The line that reports a left-out non-image file."""
    return f"{path} (not an image file: {path.suffix or 'no suffix'}; expected one of {', '.join(IMAGE_SUFFIXES)})"


def split_roots(root: Path) -> Tuple[Path, Optional[Path]]:
    """(the training root: ``ROOT/train`` if it is a folder, else ROOT; the validation root: ``ROOT/val`` or
    ``ROOT/validation``, or None)."""
    root = Path(root)
    train = root / "train" if (root / "train").is_dir() else root
    return train, next((root / name for name in VAL_FOLDERS if (root / name).is_dir()), None)


def evaluation_root(root: Path) -> Path:
    """The folder of class folders that evaluating ``root`` scores: ``ROOT/val`` (or ``validation``) when it
    has one, else ROOT; an error for a fine-tuning folder with ``train/`` but no ``val/``."""
    train, val = split_roots(root)
    if val is not None:
        return val
    if train != Path(root):
        raise ValueError(f"'{root}' is split for fine-tuning (it has train/) but has no val/ folder to evaluate; "
                         f"pass '{train}' to score the training images, or add '{Path(root) / 'val'}'")
    return Path(root)


def class_folder_names(root: Path) -> List[str]:
    """Sorted names of ``root``'s class folders: its sub-folders less hidden ones and the split names."""
    return sorted(p.name for p in Path(root).iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name not in SPLIT_FOLDERS)


def folder_files(folder: Path, recursive: bool = True) -> FolderFiles:
    """The images and the ignored non-image files in ``folder`` (below it too when ``recursive``), hidden
    files and everything in hidden folders left out."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(p for p in found if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return FolderFiles([p for p in files if p.suffix.lower() in IMAGE_SUFFIXES],
                       [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES])


def listing(lines: List[str], count: int = 5) -> str:
    """The first ``count`` lines, indented, and how many more: the body of a warning that names files."""
    more = f"\n  ... and {len(lines) - count} more" if len(lines) > count else ""
    return "\n  " + "\n  ".join(lines[:count]) + more
