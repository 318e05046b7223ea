"""The ``tf.data`` pipeline of fine-tuning: an endless, exactly reproducible stream of augmented batches.

Every example of the stream is a pure function of (seed, its global position): epoch ``e`` visits the
split in a permutation seeded by (seed, e), and its random-resized crop and flip are drawn with stateless
ops seeded by (seed, position). So resuming at step ``s`` only needs ``s``: the stream restarts at
position ``s * global_batch`` without reading what came before (for folders and arrays; TFRecord and
Dataset sources are shuffled with a seeded buffer and skipped record by record, before decoding).

Distribution: global batch ``k`` holds positions ``[k * B, (k + 1) * B)`` whatever the number of
replicas; input pipeline ``w`` of ``W`` takes its contiguous share of each global batch and splits it
into per-replica batches, so the replicas together see exactly the single-device batch.
"""
from __future__ import annotations

from typing import Tuple

import tensorflow as tf

from vit_zoo.train.data import Source

AUTOTUNE = tf.data.AUTOTUNE


def training_stream(source: Source, *, image_size: Tuple[int, int], global_batch: int, start_step: int = 0,
                    seed: int = 0, crop_area=(0.08, 1.0), flip: bool = True, input_context=None,
                    shuffle_buffer: int = 10_000) -> tf.data.Dataset:
    """Endless (images (b, H, W, 3) float32 in [0, 255], labels (b,) int64) batches from step
    ``start_step`` on; b = global_batch, or the per-replica share with an ``input_context``."""
    start = start_step * global_batch
    indexed = _stream_from(source, seed, start, shuffle_buffer)
    stream = tf.data.Dataset.zip(tf.data.Dataset.range(start, 2 ** 62), indexed).map(
        lambda position, item: (position, item[0], item[1]))  # (position, raw, label)
    pipelines, pipeline_id, per_replica = 1, 0, global_batch
    if input_context is not None:
        pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
        per_replica = input_context.get_per_replica_batch_size(global_batch)
    share = global_batch // pipelines
    if pipelines > 1:  # this pipeline's contiguous slice of every global batch, before any decoding
        stream = stream.batch(global_batch, drop_remainder=True).map(
            lambda p, r, y: (p[pipeline_id * share:(pipeline_id + 1) * share],
                             r[pipeline_id * share:(pipeline_id + 1) * share],
                             y[pipeline_id * share:(pipeline_id + 1) * share])).unbatch()
    decode = _decoder(source)
    size = tf.constant(image_size, tf.int32)

    def example(position, raw, label):
        image = decode(raw)
        key = tf.stack([tf.cast(seed, tf.int64), position])
        image = random_resized_crop(image, size, key, crop_area)
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=key + 1)
        return image, label

    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return (stream.map(example, num_parallel_calls=AUTOTUNE, deterministic=True)
            .batch(per_replica, drop_remainder=True).prefetch(AUTOTUNE).with_options(options))


def eval_batches(source: Source, *, image_size: Tuple[int, int], batch_size: int) -> tf.data.Dataset:
    """One pass over the split: (images (b, H, W, 3) float32 in [0, 255], labels (b,)); each image
    resized straight to the model's size (the vit_jax evaluation transform); the last batch may be short."""
    decode = _decoder(source)
    size = tf.constant(image_size, tf.int32)
    resize = lambda raw, y: (tf.image.resize(tf.cast(decode(raw), tf.float32), size), y)  # noqa: E731
    return (_one_epoch(source).map(resize, num_parallel_calls=AUTOTUNE, deterministic=True)
            .batch(batch_size).prefetch(AUTOTUNE))


def random_resized_crop(image, size, key, area=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Inception-style crop (a random box of ``area`` of the image and aspect ``ratio``) resized to
    ``size`` bilinearly: (h, w, 3) uint8/float → (H, W, 3) float32 in [0, 255]; stateless in ``key``."""
    begin, box, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=key,
        min_object_covered=0.0, aspect_ratio_range=ratio, area_range=area, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, begin, box)
    return tf.image.resize(tf.cast(crop, tf.float32), size)


# --------------------------------------------------------------------------------------------------
def _one_epoch(source: Source) -> tf.data.Dataset:
    """The split in its fixed order as (raw, label): raw is a path, an image or a serialized record."""
    if source.kind in ("files", "arrays"):
        return tf.data.Dataset.from_tensor_slices((source.items, source.labels))
    if source.kind == "tfrecord":
        return tf.data.TFRecordDataset(source.items).map(_record_label(source))
    return source.items.map(lambda image, label: (image, tf.cast(label, tf.int64)))


def _stream_from(source: Source, seed: int, start: int, shuffle_buffer: int) -> tf.data.Dataset:
    """(raw, label) from stream position ``start`` on: the epochs concatenated, each in its own order."""
    if source.kind in ("files", "arrays"):
        items, labels = tf.constant(source.items), tf.constant(source.labels)

        def epoch(e):  # a permutation seeded by (seed, epoch): epoch e can start without epochs 0..e-1
            order = tf.argsort(tf.random.stateless_uniform([source.size], seed=tf.stack([seed, e])))
            return tf.data.Dataset.from_tensor_slices(order).map(
                lambda i: (tf.gather(items, i), tf.gather(labels, i)))
        return tf.data.Dataset.range(start // source.size, 2 ** 62).flat_map(epoch).skip(start % source.size)
    # Sequential sources: a seeded shuffle buffer, reshuffled each epoch in a fixed sequence; resuming
    # replays the record reads (not the decoding) up to ``start``.
    return (_one_epoch(source).shuffle(min(shuffle_buffer, source.size), seed=seed, reshuffle_each_iteration=True)
            .repeat().skip(start))


def _record_label(source: Source):
    image_key, label_key = source.tfrecord_keys
    features = {image_key: tf.io.FixedLenFeature([], tf.string), label_key: tf.io.FixedLenFeature([], tf.int64)}

    def parse(record):
        example = tf.io.parse_single_example(record, features)
        return example[image_key], example[label_key]
    return parse


def _decoder(source: Source):
    """raw → (h, w, 3) uint8 (files: read + decode; records: decode; arrays: as is)."""
    def decode_bytes(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return image

    if source.kind == "files":
        return lambda path: decode_bytes(tf.io.read_file(path))
    if source.kind == "tfrecord":
        return decode_bytes
    return _as_rgb


def _as_rgb(image):
    """Dataset / array images: (h, w, 3) or (h, w, 1), uint8 or float in [0, 255]."""
    if image.shape.rank == 3 and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return image


def steps_per_epoch(source: Source, global_batch: int) -> int:
    return max(1, source.size // global_batch)
