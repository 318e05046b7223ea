"""Use vit_zoo with TensorFlow unimportable, on the backend KERAS_BACKEND names (for
tests/test_without_tensorflow.py).

    python without_tensorflow_worker.py CHECKPOINT.npz OUTPUT_DIR

``sys.modules["tensorflow"] = None`` is Python's own mark of a module that is not there: ``import
tensorflow`` raises ModuleNotFoundError and ``importlib.util.find_spec("tensorflow")`` answers None, as on
a machine without TensorFlow. Prints one JSON line: ``steps``, what each public function returned (see
``use_everything``), and ``errors``, {step: "Type: message"} for the steps that failed.
"""
import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/

from finetune_helpers import toy_arrays  # noqa: E402

NAMES = [f"class_{i}" for i in range(10)]


def use_everything(checkpoint, output_dir):
    """{step: a function returning something JSON can hold}: the public API from load to fine-tuning."""
    import keras
    import numpy as np

    import vit_zoo

    images, labels = toy_arrays(6, size=32, classes=10)
    model = vit_zoo.load(weights=checkpoint)  # vit_jax .npz through the converters; RGB in [0, 255]
    probabilities = lambda top: [[p for _, _, p in row] for row in top]  # noqa: E731
    steps = {
        "backend": lambda: keras.backend.backend(),
        "predict": lambda: probabilities(vit_zoo.predict(model, images, top=3, labels=NAMES)),
        "evaluate": lambda: {key: value for key, value in vit_zoo.evaluate(
            model, (list(images), labels), labels=NAMES, progress=False).items() if key in ("top1", "top5", "loss")},
        "features": lambda: keras.ops.convert_to_numpy(vit_zoo.feature_extractor(
            model, -1, output="cls", norm=True)(images.astype("float32"))).tolist(),
        "attention": lambda: vit_zoo.attention_rollout(vit_zoo.attention_maps(model, images)).tolist(),
        "embed": lambda: vit_zoo.embed(vit_zoo.load(weights=checkpoint, include_top=False, pooling="token"),
                                       [_png(image, output_dir, i) for i, image in enumerate(images)],
                                       os.path.join(output_dir, "embeddings.h5"), progress=False).total,
        "finetune": lambda: vit_zoo.finetune((images, labels), checkpoint, steps=2, batch_size=4, progress=False,
                                             output_dir=os.path.join(output_dir, "run"))["history"][-1]["loss"],
    }
    report, errors = {}, {}
    for name, step in steps.items():
        try:
            value = step()
            report[name] = float(value) if isinstance(value, np.floating) else value
        except Exception as error:  # noqa: BLE001 -- reported per step, the test says which must pass
            errors[name] = f"{type(error).__name__}: {error}"
            traceback.print_exc()
    return report, errors


def _png(image, folder, index):
    from PIL import Image

    path = os.path.join(folder, f"image_{index}.png")
    Image.fromarray(image).save(path)
    return path


if __name__ == "__main__":
    sys.modules["tensorflow"] = None  # before anything imports Keras
    outputs, failures = use_everything(sys.argv[1], sys.argv[2])
    print(json.dumps({"steps": outputs, "errors": failures}))
