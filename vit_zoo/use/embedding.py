"""Embeddings of many images into an HDF5 file, streamed (``vit_zoo.use.streaming``), resumable
(the library function behind ``vit-zoo embed DIR -o out.h5``).

File layout (h5py):
    embeddings   (N, D) float32, one row per image, chunked and growable
    filenames    (N,) UTF-8 strings, row i names the image of embeddings[i]; relative to the folder
                 when a folder was given, else the paths as given
    skipped      UTF-8 strings: the files of the last run that could not be read
    attributes   model (model name), tag, recipe, image_size (H, W), root (the folder, if any), l2_normalized,
                 identity (the model's identity record as JSON: config, preprocessing, class names,
                 provenance; "" for a model without one), complete (True once every file was processed)
A run that stops (interrupt, crash) leaves every finished batch on disk; running the same command again
skips the files already written and continues.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from vit_zoo.model.identity import identity_of
from vit_zoo.use.images import IMAGE_SUFFIXES, MAX_PIXELS, ImageReadError, read_image_file
from vit_zoo.use.image_folders import folder_files, listing
from vit_zoo.use.preprocessing import ImageTransform, resolve_settings
from vit_zoo.use.streaming import BatchStream


@dataclasses.dataclass
class EmbedResult:
    path: Path            # the HDF5 file
    total: int            # rows in the file now
    added: int            # rows written by this run
    skipped: List[str]    # unreadable files of this run


def list_images(paths_or_dir: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]):
    """(root or None, [names]): every image file (by suffix, recursively, sorted) of a folder, relative to
    it; or the given paths as strings (folders in the list are expanded). A folder without images, or no
    paths at all, is an error."""
    if isinstance(paths_or_dir, (str, os.PathLike)) and Path(paths_or_dir).is_dir():
        root = Path(paths_or_dir)
        names = [p.relative_to(root).as_posix() for p in _folder_images(root)]
        if not names:
            raise ValueError(f"no image files in folder '{root}' (searched it and its sub-folders for "
                             f"{', '.join(IMAGE_SUFFIXES)})")
        return root, names
    if isinstance(paths_or_dir, (str, os.PathLike)):
        if not Path(paths_or_dir).exists():
            raise FileNotFoundError(f"no such folder or file: '{paths_or_dir}'")
        paths_or_dir = [paths_or_dir]
    names = []
    for path in paths_or_dir:
        path = Path(path)
        names += [str(p) for p in _folder_images(path)] if path.is_dir() else [str(path)]
    if not names:
        raise ValueError(f"no image files given (the folders in the list hold none with the suffixes "
                         f"{', '.join(IMAGE_SUFFIXES)})")
    return None, names


def _folder_images(folder: Path) -> List[Path]:
    """The images below ``folder`` by the shared folder rules (``vit_zoo.use.image_folders``: hidden files
    left out); its non-image files are named in one warning."""
    files = folder_files(folder)
    if files.ignored:
        warnings.warn(f"left out {len(files.ignored)} non-image file(s) of '{folder}':{listing(files.ignored)}",
                      stacklevel=4)
    return files.images


def embed(model, paths_or_dir, output: Union[str, os.PathLike] = "embeddings.h5", batch_size: int = 32,
          tag: Optional[str] = None, progress: bool = True, recipe: Optional[str] = None, image_size=None,
          max_pixels: int = MAX_PIXELS, normalize: Optional[bool] = None) -> EmbedResult:
    """Embed every image of a folder (or a list of files) with ``model`` and write them to ``output``.

    Args:
        model: a model with a 2-D output (B, D), e.g. ``vit_zoo.load(..., include_top=False,
            pooling="token")``; its preprocessing settings come from the model (see ``vit_zoo.preprocess``).
        paths_or_dir: a folder (searched recursively for image files), or a list of image paths.
        output: the HDF5 file; if it exists (an interrupted or earlier run of the same model) the files
            already in it are skipped and the new ones appended.
        batch_size: images per forward pass and per write.
        tag: stored as the ``tag`` attribute (e.g. the weights' manifest key).
        progress: show a tqdm progress bar.
        recipe, image_size: override the preprocessing recipe / input size.
        normalize: L2-normalise each row (recorded as the ``l2_normalized`` attribute); default: for an image
            tower (CLIP, SigLIP: a model whose top is its embedding, compared by cosine), not otherwise.

    Returns:
        EmbedResult(path, total, added, skipped). Unreadable files are skipped with one warning listing them.
    """
    import h5py
    from tqdm.auto import tqdm

    from vit_zoo.model.builder import has_preprocessing

    width = model.output_shape[-1]
    if len(model.output_shape) != 2:
        raise ValueError(f"embed needs a model with one vector per image (B, D); model {model.name!r} outputs "
                         f"{model.output_shape}: build it with include_top=False and pooling='token' or 'gap'")
    settings = resolve_settings(model, recipe=recipe, image_size=image_size)
    normalized_inside = has_preprocessing(model)
    if not normalized_inside and (settings.mean is None or settings.std is None):
        raise ValueError("the model takes normalised inputs (include_preprocessing=False) and its mean/std are "
                         "unknown; build it with include_preprocessing=True")
    root, names = list_images(paths_or_dir)
    output = Path(output)
    if normalize is None:
        identity = identity_of(model)
        normalize = identity is not None and identity.config.num_classes == 0 and model.output_shape[-1] == \
            identity.config.embedding_width
    with h5py.File(output, "a") as store:
        done = _prepare_store(store, model, width, tag, settings, root)
        if store.attrs.setdefault("l2_normalized", bool(normalize)) != bool(normalize):
            raise ValueError(f"'{output}' holds rows with l2_normalized={not normalize}; pass normalize="
                             f"{not normalize} to add to it, or write another file")
        pending = [name for name in names if name not in done]
        failures = {}

        transform = ImageTransform(settings, normalize=not normalized_inside)

        def load(name):
            return transform.fit(read_image_file(root / name if root else name, max_pixels))

        added = 0
        with tqdm(total=len(names), initial=len(names) - len(pending), disable=not progress, unit="img",
                  desc=f"embed {output.name}") as bar, \
                BatchStream(pending, load, batch_size, skip=(OSError, ImageReadError)) as stream:
            for batch in stream:  # decoded in a thread pool while the model runs on the previous batch
                failures.update({batch.items[i]: message for i, message in batch.errors.items()})
                if batch.ok.any():
                    vectors = np.asarray(model.predict_on_batch(batch.pixels), dtype=np.float32)
                    if normalize:
                        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
                    kept = [name for name, good in zip(batch.items, batch.ok) if good]
                    _append(store, vectors, kept)
                    added += len(kept)
                bar.update(len(batch.items))
        skipped = sorted(failures)
        if "skipped" in store:
            del store["skipped"]
        store.create_dataset("skipped", data=skipped, dtype=h5py.string_dtype("utf-8"))
        store.attrs["complete"] = True
        total = store["embeddings"].shape[0]
    if skipped:
        listing = "; ".join(f"{name}: {failures[name]}" for name in skipped[:10])
        more = f"; and {len(skipped) - 10} more (see the 'skipped' dataset)" if len(skipped) > 10 else ""
        warnings.warn(f"skipped {len(skipped)} unreadable image(s): {listing}{more}", stacklevel=2)
    return EmbedResult(output, total, added, skipped)


def _prepare_store(store, model, width: int, tag, settings, root) -> set:
    """Create the datasets, or check an existing file belongs to this model and repair a torn last write.
    Returns the names already embedded."""
    import h5py

    if "embeddings" not in store:
        store.create_dataset("embeddings", shape=(0, width), maxshape=(None, width), dtype="float32",
                             chunks=(64, width))
        store.create_dataset("filenames", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"),
                             chunks=(256,))
        identity = identity_of(model)
        store.attrs.update({"model": model.name, "tag": tag or "", "recipe": settings.recipe.name,
                            "identity": json.dumps(identity.to_dict()) if identity is not None else "",
                            "image_size": list(settings.image_size),
                            "root": str(root.resolve()) if root else "",
                            "complete": False})
        return set()
    recorded = (store.attrs.get("model"), store.attrs.get("tag"), store["embeddings"].shape[1])
    if recorded != (model.name, tag or "", width):
        raise ValueError(f"'{store.filename}' holds embeddings of model {recorded[0]!r} (tag {recorded[1]!r}, "
                         f"width {recorded[2]}), not of {model.name!r} (tag {tag or ''!r}, width {width}); "
                         f"write to another file, or delete it to start over")
    names = [n.decode("utf-8") if isinstance(n, bytes) else n for n in store["filenames"][:]]
    rows = min(len(names), store["embeddings"].shape[0])
    while rows and not names[rows - 1]:  # a batch interrupted between its two writes
        rows -= 1
    store["embeddings"].resize(rows, axis=0)
    store["filenames"].resize(rows, axis=0)
    store.attrs["complete"] = False
    return set(names[:rows])


def _append(store, vectors: np.ndarray, names: List[str]):
    """Append one batch: embeddings first, then their names, then flush (a crash between the two leaves
    rows without names, which the next run drops)."""
    start = store["embeddings"].shape[0]
    store["embeddings"].resize(start + len(names), axis=0)
    store["embeddings"][start:] = vectors
    store["filenames"].resize(start + len(names), axis=0)
    store["filenames"][start:] = names
    store.flush()
