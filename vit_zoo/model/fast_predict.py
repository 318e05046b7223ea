"""``predict`` without Keras' per-call input pipeline (TensorFlow backend).

``keras.Model.predict`` wraps even an in-memory array in a ``tf.data`` pipeline and a distribution
strategy on every call; on a small CPU its threads compete with the compiled forward pass (BENCHMARKS.md:
``predict`` ran 0.75-0.85x ``model(x)``). ``fast_predict`` keeps Keras' semantics -- ``batch_size``
(default 32), ``steps``, ``verbose`` progress bar, ``callbacks`` (``on_predict_begin/end``,
``on_predict_batch_begin/end`` with ``{"outputs": ...}``, ``model.stop_predicting``), the ragged last
batch, outputs concatenated as NumPy -- and runs each batch through the model's ``CompiledForward``.
A ragged last batch is padded to a batch size already compiled, so it compiles nothing new.

It handles NumPy arrays, eager tensors and ``tf.data.Dataset``s whose elements are an image batch or an
``(images, ...)`` tuple; ``predict_source`` says None for anything else (generators, ``PyDataset``,
dicts, lists), which ``VisionTransformer.predict`` leaves to Keras.
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Tuple

import numpy as np

DEFAULT_BATCH_SIZE = 32  # Keras' predict default


def predict_source(x, batch_size: Optional[int], steps: Optional[int]):
    """``(batches iterator, number of batches or None)`` for an array, eager tensor or ``tf.data.Dataset``
    of single-input image batches; None for inputs this fast path does not take."""
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        if isinstance(spec, tuple):
            spec = spec[0] if spec else None
        if not isinstance(spec, tf.TensorSpec) or spec.shape.rank != 4:
            return None
        count = int(x.cardinality())
        known = None if count < 0 else count
        limit = steps if steps is not None else known
        return _dataset_batches(x, steps), (min(limit, known) if None not in (limit, known) else limit)
    if isinstance(x, (list, tuple, dict)) or not (isinstance(x, tf.Tensor) or hasattr(x, "__array__")):
        return None
    if getattr(x, "ndim", len(getattr(x, "shape", ()))) != 4:
        return None
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    total = math.ceil(x.shape[0] / batch_size)
    count = min(total, steps) if steps is not None else total
    return _array_batches(x, batch_size, count), count


def _array_batches(x, batch_size: int, count: int) -> Iterator:
    for index in range(count):
        yield x[index * batch_size:(index + 1) * batch_size]


def _dataset_batches(dataset, steps: Optional[int]) -> Iterator:
    for index, element in enumerate(dataset):
        if steps is not None and index >= steps:
            return
        yield element[0] if isinstance(element, tuple) else element


def fast_predict(model, forward, source: Tuple[Iterator, Optional[int]], verbose="auto", callbacks=None):
    """Run ``forward(model, images, pad_to=None)`` (a ``CompiledForward``) over ``source`` (from
    ``predict_source``) with Keras' predict loop semantics; returns NumPy outputs (model's structure)."""
    import tensorflow as tf
    from keras.callbacks import CallbackList

    batches, count = source
    if not isinstance(callbacks, CallbackList):
        callbacks = CallbackList(callbacks, add_progbar=verbose != 0, verbose=verbose, epochs=1, steps=count,
                                 model=model)
    model.stop_predicting = False
    callbacks.on_predict_begin()
    outputs, full = [], None
    for step, images in enumerate(batches):
        callbacks.on_predict_batch_begin(step)
        images = images if isinstance(images, tf.Tensor) else tf.convert_to_tensor(images)
        rows = images.shape[0]
        full = full or rows
        batch_outputs = forward(model, images, pad_to=_ragged_bucket(forward, images, rows, full))
        outputs.append(tf.nest.map_structure(np.asarray, batch_outputs))
        callbacks.on_predict_batch_end(step, {"outputs": batch_outputs})
        if model.stop_predicting:
            break
    callbacks.on_predict_end()
    if not outputs:
        raise ValueError("predict got no data: the input has no batches (an empty array or dataset, or "
                         "steps=0)")
    return tf.nest.map_structure(lambda *parts: np.concatenate(parts, axis=0), *outputs)


def _ragged_bucket(forward, images, rows: int, full: int) -> Optional[int]:
    """For a batch smaller than the first one (the ragged last batch): the smallest batch size already
    compiled that holds it, so that it compiles nothing new; else None (``bucket_plan`` decides)."""
    if rows >= full:
        return None
    compiled = [size for size in forward.compiled_buckets(images) if size >= rows]
    return min(compiled) if compiled else None
