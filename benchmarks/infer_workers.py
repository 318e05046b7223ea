"""The measuring side of ``infer.py``: one function per group, each run in its own process by
``common.run_worker`` (a fresh interpreter: thread pools never compete, a dtype policy never leaks)."""
from __future__ import annotations

import os
import tempfile

import common

IMAGE_SIZE = 224


def images(batch, seed=0):
    return common.random_images(batch, IMAGE_SIZE, seed)


def smooth_images(count, size=IMAGE_SIZE, seed=1):
    """Low-frequency random images (a random-init ViT sees these much like photos: not pure noise)."""
    import numpy as np

    cells = size // 16
    coarse = np.random.default_rng(seed).uniform(0, 255, (count, cells, cells, 3)).astype("float32")
    return np.repeat(np.repeat(coarse, 16, axis=1), 16, axis=2)


def write_jpegs(count, folder, size=(375, 500), first=0):
    """``count`` JPEG files of photo-like size (H, W) in ``folder``, named from ``first``; returns their
    paths."""
    import numpy as np
    from PIL import Image

    pictures = smooth_images(count, size=max(size) + 16 - max(size) % 16, seed=first + 1)
    paths = []
    for index, picture in enumerate(pictures):
        path = os.path.join(folder, f"{first + index:06d}.jpg")
        Image.fromarray(picture[:size[0], :size[1]].astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def emit(spec, batch, path, result, **extra):
    common.emit(framework=spec["framework"], model=spec["model"], precision=spec["precision"], batch=batch,
                path=path, **result, **extra)


def keras_step(model, batch, path, folder):
    """The step function of one path of a Keras model at one batch size (``plain-X`` runs X)."""
    import numpy as np
    import tensorflow as tf

    pixels = images(batch)
    tensor = tf.constant(pixels)
    path = path[len("plain-"):] if path.startswith("plain-") else path
    if path == "predict":
        return lambda: model.predict(pixels, batch_size=batch, verbose=0)
    if path == "predict-dataset":
        dataset = tf.data.Dataset.from_tensor_slices(pixels).batch(batch)
        return lambda: model.predict(dataset, verbose=0)
    if path == "predict-files":
        from vit_zoo.use.prediction import predict

        files = write_jpegs(batch, folder)
        labels = [str(i) for i in range(model.output_shape[-1])]
        return lambda: predict(model, files, labels=labels, batch_size=batch)
    if path == "call":
        return lambda: np.asarray(model(tensor))
    function = tf.function(lambda x: model(x, training=False), jit_compile={"xla": True, "graph": False}[path])
    return lambda: np.asarray(function(tensor))


def run_keras_paths(spec, make_model):
    """Each path on a model of its own (so its first call is its own compilation), every batch size."""
    with tempfile.TemporaryDirectory() as folder:
        for path in spec["paths"]:
            model = make_model(path)
            for batch in spec["batches"]:
                result = common.measure(keras_step(model, batch, path, folder), batch, spec["min_time"],
                                        spec["repeats"])
                emit(spec, batch, path, result)


def worker_matmul_tf(spec):
    import tensorflow as tf

    n = spec["n"]
    for precision, dtype in (("fp32", tf.float32), ("bf16", tf.bfloat16)):
        a = tf.cast(tf.random.normal((n, n)), dtype)
        b = tf.cast(tf.random.normal((n, n)), dtype)
        functions = (("eager", tf.matmul), ("graph", tf.function(tf.matmul, jit_compile=False)),
                     ("xla", tf.function(tf.matmul, jit_compile=True)))
        for path, fn in functions:
            result = common.measure(lambda: fn(a, b).numpy(), 2 * n ** 3, spec["min_time"], spec["repeats"])
            common.emit(framework="tensorflow", path=path, precision=precision, n=n, gflops=result["rate"] / 1e9)


def worker_matmul_torch(spec):
    import torch

    for precision, dtype, n in (("fp32", torch.float32, spec["n"]), ("bf16", torch.bfloat16, spec["n_bf16"])):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)

        def step():
            with torch.inference_mode():
                return torch.mm(a, b)
        result = common.measure(step, 2 * n ** 3, spec["min_time"], spec["repeats"])
        common.emit(framework="torch", path="eager", precision=precision, n=n, gflops=result["rate"] / 1e9)


def worker_vit_zoo(spec):
    import keras
    import numpy as np

    import vit_zoo

    dtype = "mixed_bfloat16" if spec["precision"] == "bf16" else None

    def make_model(path):
        model = vit_zoo.load(spec["model"], image_size=IMAGE_SIZE, dtype=dtype)
        return keras.Model(model.input, model.output) if path.startswith("plain-") else model

    run_keras_paths(spec, make_model)
    if spec["precision"] == "bf16" and spec.get("agreement_images"):
        model = vit_zoo.load(spec["model"], image_size=IMAGE_SIZE, dtype=dtype)
        reference = vit_zoo.load(spec["model"], image_size=IMAGE_SIZE)
        reference.set_weights(model.get_weights())
        pictures = smooth_images(spec["agreement_images"])
        low, high = model.predict(pictures, batch_size=8, verbose=0), reference.predict(pictures, batch_size=8,
                                                                                          verbose=0)
        common.emit(framework="vit_zoo", model=spec["model"], agreement=float(np.mean(
            low.argmax(-1) == high.argmax(-1))), images=len(pictures),
            max_relative_logit_error=float(np.abs(low - high).max() / np.abs(high).max()),
            engine=_engine(model))


def _engine(model):
    from vit_zoo.model.fast_path import inference_engine

    return inference_engine(model)


def worker_keras_hub(spec):
    dtype = "mixed_bfloat16" if spec["precision"] == "bf16" else None
    run_keras_paths(spec, lambda path: common.keras_hub_backbone(spec["model"], IMAGE_SIZE, dtype))


def worker_transformers(spec):
    """``eager``: fp32 under ``torch.inference_mode``; bf16 ``autocast``: fp32 weights under
    ``torch.autocast(dtype=bfloat16)`` (the usual way); bf16 ``bf16-weights``: the model cast to bf16."""
    import torch

    model = common.transformers_classifier(spec["model"], IMAGE_SIZE)
    paths = ["eager"] if spec["precision"] == "fp32" else ["autocast", "bf16-weights"]
    for path in paths:
        if path == "bf16-weights":
            model = model.to(torch.bfloat16)
        for batch in spec["batches"]:
            pixels = torch.from_numpy(images(batch)).permute(0, 3, 1, 2).contiguous() / 127.5 - 1
            pixels = pixels.to(torch.bfloat16) if path == "bf16-weights" else pixels

            def step():
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=path == "autocast"):
                    return model(pixel_values=pixels).logits
            emit(spec, batch, path, common.measure(step, batch, spec["min_time"], spec["repeats"]),
                 attention=model.config._attn_implementation)


WORKERS = {"matmul-tf": worker_matmul_tf, "matmul-torch": worker_matmul_torch, "vit_zoo": worker_vit_zoo,
           "keras-hub": worker_keras_hub, "transformers": worker_transformers}
