"""One folder scanner: fine-tuning and evaluation see the same classes and files of the same tree (a stray
non-image file reported by both, hidden files and folders by neither), and evaluation scores ``val/``."""
import warnings

import numpy as np
import pytest
from PIL import Image

from vit_zoo.train.data import resolve_data
from vit_zoo.use.evaluation_data import labelled_images
from vit_zoo.use.image_folders import class_folder_names, evaluation_root, folder_files


def write_png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def tree(tmp_path):
    """ROOT/{train,val}/{cat,dog}/ with, in val/cat, a stray notes.txt, a .DS_Store, a hidden ._b.png
    (macOS resource fork) and a hidden .ipynb_checkpoints/ folder holding a PNG."""
    for split, count in (("train", 3), ("val", 2)):
        for label, name in enumerate(("cat", "dog")):
            for index in range(count):
                write_png(tmp_path / split / name / f"{index}.png", seed=10 * label + index)
    stray = tmp_path / "val" / "cat"
    (stray / "notes.txt").write_text("shot on a phone")
    (stray / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    write_png(stray / "._b.png", seed=99)
    write_png(stray / ".ipynb_checkpoints" / "0-checkpoint.png", seed=98)
    (tmp_path / ".cache").mkdir()  # a hidden folder is no class either
    return tmp_path


def test_fine_tuning_and_evaluation_see_the_same_classes_and_files(tree):
    with pytest.warns(UserWarning, match=r"(?s)skipped 1 file\(s\) in '.*val' that cannot be used:.*notes.txt "
                                         r"\(not an image file: .txt") as training_warnings:
        splits = resolve_data(tree)
    with pytest.warns(UserWarning, match=r"(?s)left out 1 file\(s\) of '.*val' that are not images:.*notes.txt "
                                         r"\(not an image file: .txt") as evaluation_warnings:
        images, labels, where = labelled_images(tree, ["cat", "dog"])
    assert splits.class_names == class_folder_names(tree / "val") == ["cat", "dog"]
    assert where == str(tree / "val") and splits.val.where == str(tree / "val")
    assert images == splits.val.items == [str(tree / "val" / c / f"{i}.png") for c in ("cat", "dog") for i in (0, 1)]
    assert labels.tolist() == splits.val.labels.tolist() == [0, 0, 1, 1]
    assert splits.train.size == 6
    for caught in (training_warnings, evaluation_warnings):
        assert not any(hidden in str(w.message) for w in caught for hidden in (".DS_Store", "._b", "checkpoint"))


def test_the_scanner_rules(tree):
    found = folder_files(tree / "val" / "cat")
    assert [p.name for p in found.images] == ["0.png", "1.png"]
    assert [p.name for p in found.others] == ["notes.txt"]
    assert found.ignored == [f"{tree / 'val' / 'cat' / 'notes.txt'} (not an image file: .txt; expected one of "
                             f".jpg, .jpeg, .png, .bmp, .gif, .webp, .tif, .tiff, .ppm, .pgm, .pbm)"]
    assert class_folder_names(tree) == []  # train/ and val/ are splits, .cache is hidden
    assert evaluation_root(tree) == tree / "val"
    assert evaluation_root(tree / "train") == tree / "train"


def test_evaluation_refuses_a_fine_tuning_folder_without_val(tree):
    import shutil

    shutil.rmtree(tree / "val")
    with pytest.raises(ValueError, match=r"has train/\) but has no val/ folder to evaluate; pass '.*train' to "
                                         r"score the training images"):
        labelled_images(tree, ["cat", "dog"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # train/ alone has no stray files: nothing to report
        images, labels, _ = labelled_images(tree / "train", ["cat", "dog"])
    assert len(images) == 6 and labels.tolist() == [0, 0, 0, 1, 1, 1]
