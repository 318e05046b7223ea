"""Small data for the fine-tuning, distribution and export tests: learnable in a few steps."""
import numpy as np


def toy_arrays(count=96, size=32, classes=4, seed=0):
    """(images (N, size, size, 3) uint8, labels (N,) int64): class k is a band of brightness 60k..60k+60
    with noise, so a tiny ViT separates them in a few steps."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    rng.shuffle(labels)
    noise = rng.uniform(0, 60, (count, size, size, 3))
    return (noise + labels[:, None, None, None] * (190 / max(classes - 1, 1))).astype(np.uint8), labels


def write_folder(root, counts=(6, 6), size=(40, 36), seed=0):
    """An image-folder tree ``root/class_i/img_j.png`` with ``counts[i]`` images per class; returns root."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index, count in enumerate(counts):
        folder = root / f"class_{index}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(count):
            pixels = rng.integers(0, 60, (size[1], size[0], 3)) + index * 120
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"img_{j}.png")
    return root


def max_weight_difference(model_a, model_b) -> float:
    return max(float(np.max(np.abs(a - b))) for a, b in zip(model_a.get_weights(), model_b.get_weights()))


def write_tfrecord(path, images, labels, names=None, image_key="image/encoded", label_key="image/class/label"):
    """A TFRecord file of tf.train.Example records (PNG-encoded images, int64 labels, and the class name
    in ``image/class/text`` when ``names`` is given), written by TensorFlow's own writer."""
    import io

    import tensorflow as tf
    from PIL import Image

    with tf.io.TFRecordWriter(str(path)) as writer:
        for image, label in zip(images, labels):
            encoded = io.BytesIO()
            Image.fromarray(image).save(encoded, format="PNG")
            feature = {image_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded.getvalue()])),
                       label_key: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))}
            if names is not None:
                feature["image/class/text"] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[names[int(label)].encode()]))
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return path
