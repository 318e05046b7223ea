"""Classify images with a model: preprocessing, forward pass and named top-k classes in one call
(the library function behind ``vit-zoo predict``)."""
from __future__ import annotations

import os
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from vit_zoo.model.build_record import build_record_of, has_preprocessing
from vit_zoo.model.identity import identity_of
from vit_zoo.use.images import ImageReadError, tensor_to_numpy
from vit_zoo.use.labels import decode_predictions
from vit_zoo.use.preprocessing import ImageTransform, resolve_settings
from vit_zoo.use.streaming import BatchStream


def model_labels(model, labels: Union[str, Sequence[str], None] = None) -> Union[str, Sequence[str]]:
    """The class names for ``model``'s head: ``labels`` if given, else its identity's
    (``model.identity.labels``); an error saying what to pass when neither knows them."""
    if labels is not None:
        return labels
    identity = identity_of(model)
    if identity is not None and identity.labels is not None:
        return identity.labels
    num_classes = model.output_shape[-1]
    raise ValueError(f"model {model.name!r} has {num_classes} classes and no class names in its identity "
                     f"(model.identity.labels); pass labels= 'imagenet1k', 'imagenet21k' or a list of "
                     f"{num_classes} class names")


def predict(model, images, *, top: int = 5, labels: Union[str, Sequence[str], None] = None,
            recipe: Optional[str] = None, batch_size: int = 32,
            strict: bool = True) -> List[Optional[List[Tuple[int, str, float]]]]:
    """The ``top`` classes of each image.

    Args:
        model: a vit_zoo classifier (built with ``include_top=True``).
        images: anything ``vit_zoo.preprocess`` accepts (paths, PIL images, arrays, a list of them).
        top: classes per image.
        labels: ``"imagenet1k"``, ``"imagenet21k"`` or a list of names; default: see ``model_labels``.
        recipe: preprocessing recipe (``"google"``, ``"timm"``, ``"hf"``); default: the model's weights'.
        batch_size: images per forward pass. Files are decoded in a thread pool while the model runs,
            at most a few batches at a time (``vit_zoo.use.streaming``): memory does not grow with the
            number of images.
        strict: an image that cannot be read (``ImageReadError``, ``OSError``) raises; False: it is
            skipped (its result is None) and one warning names every skipped image.

    Returns:
        Per image, ``top`` tuples ``(class index, class name, softmax probability)``, most likely first
        (None for an image skipped with ``strict=False``).
    """
    record = build_record_of(model)
    if record is None or not record.include_top:
        raise ValueError(f"model {model.name!r} has no classification head (built with include_top=False); "
                         f"load it with include_top=True, or use vit_zoo.feature_extractor / vit_zoo.use.embedding")
    names = model_labels(model, labels)
    from_logits = record.outputs == "logits"
    transform = image_transform(model, recipe=recipe)

    def load(numbered):  # an image is named by its place in the whole input
        index, item = numbered
        return transform(item, f"image {index}")

    results, failures = [], {}
    items = list(enumerate(image_items(images)))
    with BatchStream(items, load, batch_size, skip=() if strict else (ImageReadError, OSError)) as stream:
        for batch in stream:
            decoded = iter(decode_predictions(np.asarray(model.predict_on_batch(batch.pixels)), labels=names,
                                              top=top, from_logits=from_logits) if batch.ok.any() else [])
            results += [next(decoded) if ok else None for ok in batch.ok]
            failures.update({batch.start + i: message for i, message in batch.errors.items()})
    warn_skipped(failures, [item for _, item in items])
    return results


def image_transform(model, *, recipe: Optional[str] = None) -> ImageTransform:
    """``model``'s inputs from one image (``transform(item, where) -> (H, W, 3) float32``): its weights'
    settings (``resolve_settings``; ``recipe`` overrides their recipe), normalised unless the model normalises
    inside (``include_preprocessing=True``). The one transform of ``predict`` and ``evaluate``."""
    return ImageTransform(resolve_settings(model, recipe=recipe), normalize=not has_preprocessing(model))


def warn_skipped(failures: dict, items: list) -> None:
    """One warning naming the images (``{position: why}``) a non-strict run skipped, with the count scored;
    an error when none could be read."""
    if not failures:
        return
    if len(failures) == len(items):
        position, why = next(iter(failures.items()))
        raise ValueError(f"none of the {len(items)} image(s) could be read; the first: {why}")
    shown = "\n  ".join(why for _, why in sorted(failures.items())[:5])
    more = f"\n  ... and {len(failures) - 5} more" if len(failures) > 5 else ""
    warnings.warn(f"skipped {len(failures)} unreadable image(s) of {len(items)}; classified "
                  f"{len(items) - len(failures)}:\n  {shown}{more}", stacklevel=3)


def image_items(images) -> list:
    """The single images of anything ``preprocess`` accepts: a list's items, a batch array's rows, or
    the one image (path, PIL image, (H, W[, C]) array) in a list."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no images given (an empty list)")
        return list(images)
    if isinstance(images, (str, os.PathLike)) or not hasattr(images, "shape"):
        return [images]
    array = tensor_to_numpy(images)  # a tensor of any backend (a torch one may track gradients)
    if array.ndim == 4 and array.shape[0] == 0:
        raise ValueError("no images given (a batch of size 0)")
    return list(array) if array.ndim == 4 else [array]
