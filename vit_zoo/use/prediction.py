"""Classify images with a model: preprocessing, forward pass and named top-k classes in one call
(the library function behind ``vit-zoo predict``)."""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from vit_zoo.use.labels import LABEL_SETS, decode_predictions
from vit_zoo.use.preprocessing import preprocess
from vit_zoo.use.streaming import BatchStream


def model_labels(model, labels: Union[str, Sequence[str], None] = None) -> Union[str, Sequence[str]]:
    """The label set for ``model``'s head: ``labels`` if given, else its manifest entry's ``labels``
    (``model.vit_zoo_weights``), else the ImageNet set with as many classes as the head has."""
    if labels is not None:
        return labels
    entry = getattr(model, "vit_zoo_weights", None) or {}
    if entry.get("labels"):
        return entry["labels"]
    num_classes = model.output_shape[-1]
    for name, (_, count) in LABEL_SETS.items():
        if count == num_classes:
            return name
    raise ValueError(f"model {model.name!r} has {num_classes} classes, which match no known label set "
                     f"({', '.join(f'{n}: {c}' for n, (_, c) in LABEL_SETS.items())}); pass labels= a list of "
                     f"{num_classes} class names")


def predict(model, images, *, top: int = 5, labels: Union[str, Sequence[str], None] = None,
            recipe: Optional[str] = None, batch_size: int = 32) -> List[List[Tuple[int, str, float]]]:
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

    Returns:
        Per image, ``top`` tuples ``(class index, class name, softmax probability)``, most likely first.
    """
    if not any(layer.name == "head" for layer in model.layers):
        raise ValueError(f"model {model.name!r} has no classification head (built with include_top=False); "
                         f"load it with include_top=True, or use vit_zoo.feature_extractor / vit_zoo.use.embedding")
    names = model_labels(model, labels)
    has_preprocessing = any(layer.name == "preprocessing" for layer in model.layers)
    activation = getattr(model.get_layer("predictions"), "activation", None)
    from_logits = getattr(activation, "__name__", "linear") != "softmax"

    def load(numbered):
        index, item = numbered
        try:
            return preprocess([item], weights=model, recipe=recipe, normalize=not has_preprocessing)[0]
        except (ValueError, TypeError) as error:  # name the item by its place in the whole input
            message = str(error)
            if message.startswith("image 0 "):
                raise type(error)(f"image {index} {message[len('image 0 '):]}") from None
            raise

    results = []
    with BatchStream(list(enumerate(image_items(images))), load, batch_size) as stream:
        for batch in stream:
            outputs = np.asarray(model.predict_on_batch(batch.pixels))
            results += decode_predictions(outputs, labels=names, top=top, from_logits=from_logits)
    return results


def image_items(images) -> list:
    """The single images of anything ``preprocess`` accepts: a list's items, a batch array's rows, or
    the one image (path, PIL image, (H, W[, C]) array) in a list."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no images given (an empty list)")
        return list(images)
    if isinstance(images, (str, os.PathLike)) or not hasattr(images, "shape"):
        return [images]
    array = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    if array.ndim == 4 and array.shape[0] == 0:
        raise ValueError("no images given (a batch of size 0)")
    return list(array) if array.ndim == 4 else [array]
