"""``evaluate``: top-1, top-5, loss and throughput of a classifier on labelled images, preprocessed as
its weights' own evaluation (the identity's recipe, ``vit_zoo.use.preprocessing``).

Images stream through in batches (``vit_zoo.use.streaming.BatchStream``): worker threads decode and
preprocess the next batches while the model runs the current one, so memory stays bounded whatever the
number of images. Each image is prepared as ``predict`` prepares it (``prediction.image_transform``). Fine-tuning evaluates its
validation split with ``evaluate_examples`` too, so the top-1 it prints is what ``vit-zoo evaluate``
of the saved model on the same images prints.
"""
from __future__ import annotations

import csv
import io
import time
import warnings
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import numpy as np

from vit_zoo.files import write_atomically
from vit_zoo.model.build_record import build_record_of
from vit_zoo.model.identity import identity_of
from vit_zoo.use import evaluation_data
from vit_zoo.use.images import ImageReadError
from vit_zoo.use.prediction import image_transform
from vit_zoo.use.streaming import BatchStream

BATCH_SIZE = 64
RESULTS_COLUMNS = ("model", "tag", "img_size", "top1", "top5", "images_per_second", "examples")


def evaluate(model, data, *, ground_truth=None, labels=None, batch_size: int = BATCH_SIZE,
             workers: Optional[int] = None, progress: bool = True, results=None, strict: bool = False) -> dict:
    """Evaluate a classifier on labelled images.

    Args:
        model: a vit_zoo classifier (``include_top=True``), e.g. ``vit_zoo.load(...)`` or a saved
            ``.keras`` model; its identity gives the preprocessing and the class names.
        data: a folder of class folders (``ROOT/CLASS/*.jpg``; CLASS a class name of the model, or a
            WordNet id such as ``n01440764`` for ImageNet models; a fine-tuning folder with ``val/`` is
            scored on ``val/``, read as ``vit_zoo.use.image_folders`` says); a folder of images with
            ``ground_truth``; or an ``(images, labels)`` pair (paths or arrays, class indices).
        ground_truth: a text file of the flat folder's labels; the exact format is
            ``vit_zoo.use.evaluation_data.GROUND_TRUTH_FORMAT`` (one integer class index per line, in
            file-name order, is ImageNet's validation label list).
        labels: the model's class names (a list in class order, or ``"imagenet1k"``); default its identity's.
        batch_size: images per forward pass (the last batch is padded, so one compiled shape serves all).
        workers: decoding threads (default: the machine's cores, at most 16).
        progress: show a progress bar. results: a CSV file to append a row to (``RESULTS_COLUMNS``).
        strict: stop at the first image that cannot be read (``ImageReadError``, ``OSError``); default: skip
            it, with one warning naming the skipped images, and score the rest.

    Returns:
        dict: ``top1``, ``top5`` (fractions; top-k with ``k`` = min(5, classes)), ``k``, ``loss`` (mean
        cross-entropy, nats), ``examples`` (images scored), ``skipped`` (unreadable images: path or index,
        and why), ``images_per_second`` (decode + preprocessing + forward, wall
        clock), ``seconds``, ``model``, ``tag``, ``image_size``, ``published_top1`` (fraction, or None when
        the manifest has none for the weights) and ``manifest_key``.
    """
    identity = identity_of(model)
    names = labels if labels is not None else (identity.labels if identity is not None else None)
    images, targets, where = evaluation_data.labelled_images(data, names, ground_truth)
    result = evaluate_examples(model, zip(images, targets), len(targets), batch_size=batch_size,
                               workers=workers, progress=progress, description=f"evaluating on {where}",
                               skip_unreadable=not strict)
    if result["skipped"]:
        shown = "\n  ".join(f"{item}: {why}" for item, why in result["skipped"][:5])
        more = f"\n  ... and {len(result['skipped']) - 5} more" if len(result["skipped"]) > 5 else ""
        warnings.warn(f"skipped {len(result['skipped'])} unreadable image(s) of {len(targets)}; scored "
                      f"{result['examples']}:\n  {shown}{more}", stacklevel=2)
    result.update(describe_weights(model))
    if results is not None:
        append_results(results, result)
    return result


def evaluate_examples(model, examples: Iterable[Tuple[object, int]], total: Optional[int] = None, *,
                      batch_size: int = BATCH_SIZE, workers: Optional[int] = None, progress: bool = False,
                      description: str = "evaluating", skip_unreadable: bool = False) -> dict:
    """The counts of ``evaluate`` over ``(image, class index)`` pairs (an image: a path, array or encoded
    bytes); ``total`` sizes the progress bar. ``skip_unreadable``: an image that cannot be read is left
    out (listed in ``skipped``) instead of raising. Returns ``top1``, ``top5``, ``k``, ``loss``,
    ``examples``, ``skipped`` ([(image, why)]), ``images_per_second``, ``seconds``."""
    from tqdm import tqdm

    transform = image_transform(model)
    classes = int(model.output_shape[-1])
    k = min(5, classes)
    from_probabilities = _outputs_probabilities(model)
    sums = np.zeros(3)  # loss, top-1 hits, top-k hits
    count, skipped, started = 0, [], time.perf_counter()
    stream = BatchStream(examples, lambda example: transform(example[0]), batch_size, workers,
                         skip=(ImageReadError, OSError) if skip_unreadable else ())
    with tqdm(total=total, unit="img", desc=description, disable=not progress, leave=False) as bar, stream:
        for batch in stream:
            skipped += [(_name(batch.items[i][0]), why) for i, why in sorted(batch.errors.items())]
            bar.update(len(batch.errors))
            labels = np.asarray([label for (_, label), ok in zip(batch.items, batch.ok) if ok], np.int64)
            if not len(labels):
                continue
            if labels.min() < 0 or labels.max() >= classes:
                raise ValueError(f"class index {int(labels.max())} is outside the model's {classes} classes")
            pixels = batch.pixels
            padded = np.concatenate([pixels, np.zeros((batch_size - len(pixels), *pixels.shape[1:]), pixels.dtype)])
            outputs = np.asarray(model.predict_on_batch(padded), np.float64)[:len(pixels)]
            sums += _counts(outputs, labels, k, from_probabilities)
            count += len(labels)
            bar.update(len(labels))
    if count == 0:
        if skipped:
            raise ValueError(f"none of the {len(skipped)} images could be read; the first: {skipped[0][0]}: "
                             f"{skipped[0][1]}")
        raise ValueError("no images to evaluate")
    seconds = time.perf_counter() - started
    loss, top1, topk = sums / count
    return {"top1": float(top1), "top5": float(topk), "k": k, "loss": float(loss), "examples": count,
            "skipped": skipped, "images_per_second": count / seconds, "seconds": seconds,
            "image_size": list(transform.settings.image_size)}


def _counts(outputs: np.ndarray, labels: np.ndarray, k: int, from_probabilities: bool) -> np.ndarray:
    """(summed cross-entropy, top-1 hits, top-k hits) of a batch; ties go to the lower class index."""
    if from_probabilities:
        log_probabilities = np.log(np.clip(outputs, 1e-12, None))
    else:
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(labels))
    ranked = np.argsort(-outputs, axis=1, kind="stable")[:, :k]
    return np.array([-log_probabilities[rows, labels].sum(), (ranked[:, 0] == labels).sum(),
                     (ranked == labels[:, None]).any(axis=1).sum()], np.float64)


def _outputs_probabilities(model) -> bool:
    record = build_record_of(model)
    return record is not None and record.outputs == "probabilities"


def _name(item) -> str:
    return str(item) if isinstance(item, (str, Path)) else f"an image of type {type(item).__name__}"


def describe_weights(model) -> dict:
    """``model``, ``tag``, ``manifest_key`` and ``published_top1`` (a fraction, or None) of the weights."""
    identity = identity_of(model)
    key = identity.provenance.manifest_key if identity is not None else None
    if key:
        name, _, tag = key.partition(".")
    else:
        source = identity.provenance.source if identity is not None else None
        name, tag = (identity.config.variant if identity is not None else None) or model.name, \
            Path(source).name if source else ""
    return {"model": name, "tag": tag, "manifest_key": key, "published_top1": _published_top1(key)}


def _published_top1(key: Optional[str]) -> Optional[float]:
    if not key:
        return None
    from vit_zoo.weights import manifest

    name, _, tag = key.partition(".")
    try:
        entry = manifest.resolve(name, tag or True)
    except (KeyError, ValueError):
        return None
    return entry["top1"] / 100.0 if entry.get("top1") is not None else None


def format_report(result: dict) -> List[str]:
    """The lines ``vit-zoo evaluate`` prints."""
    size = "x".join(str(s) for s in result["image_size"])
    skipped = f" ({len(result['skipped'])} unreadable skipped)" if result.get("skipped") else ""
    lines = [f"{result['model']} {result['tag']}".rstrip() + f" at {size} px: {result['examples']} images "
             f"scored{skipped}, {result['images_per_second']:.1f} images/s",
             f"top-1 {result['top1']:.3%}  top-{result['k']} {result['top5']:.3%}  loss {result['loss']:.4f}"]
    if result.get("published_top1") is not None:
        published = result["published_top1"]
        lines.append(f"published top-1 {published:.3%} ({result['manifest_key']}); measured - published = "
                     f"{100 * (result['top1'] - published):+.3f} points")
    return lines


def append_results(path, result: dict) -> Path:
    """Append a row (``RESULTS_COLUMNS``; top-1/top-5 in percent, as timm's results tables) to a CSV file,
    writing the header when the file is new. The file is rewritten atomically."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    if old and old.splitlines()[0].split(",") != list(RESULTS_COLUMNS):
        raise ValueError(f"'{path}' is not a vit-zoo results table (its header is {old.splitlines()[0]!r}, "
                         f"expected {','.join(RESULTS_COLUMNS)}); pass another file")
    size = result["image_size"]
    row = {"model": result["model"], "tag": result["tag"], "img_size": size[0] if size[0] == size[1] else
           f"{size[0]}x{size[1]}", "top1": f"{100 * result['top1']:.3f}", "top5": f"{100 * result['top5']:.3f}",
           "images_per_second": f"{result['images_per_second']:.2f}", "examples": result["examples"]}
    text = io.StringIO()
    writer = csv.DictWriter(text, RESULTS_COLUMNS, lineterminator="\n")
    if not old:
        writer.writeheader()
    writer.writerow(row)
    return write_atomically(path, lambda handle: handle.write((old + text.getvalue()).encode("utf-8")))
