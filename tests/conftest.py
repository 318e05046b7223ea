"""Shared test settings and fixtures: the Keras backend to test, quiet TensorFlow, a tiny ViT config.

Backends: ``pytest --backend tensorflow|jax|torch`` (default: ``KERAS_BACKEND``, else tensorflow) sets
``KERAS_BACKEND`` before any test module imports Keras (Keras reads it once, at its first import). Tests
of what only TensorFlow offers carry ``@pytest.mark.tensorflow_only("why")`` and are skipped on the other
backends with that reason; everything else runs on all three.

``--cross-backend`` runs the chosen part of the suite that CI runs again on JAX and PyTorch
(``tests/run_all_backends.sh``): the tests whose behaviour depends on the backend's numerics or tensor
types, listed in ``CROSS_BACKEND`` with why. Left out there: what touches no backend tensor (manifest,
download, cache, HTTP, labels tables, config, variants) and repeats of the same forward pass on other
configurations, which TensorFlow's full run covers.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")

# What CI runs on JAX and PyTorch besides TensorFlow's full run: node-id prefixes → why they are there.
CROSS_BACKEND = {
    "tests/model/test_model.py": "the builder, every pooling and head, dtype policies, dynamic sizes",
    "tests/model/test_identity.py": "the identity in .keras and .weights.h5 files, saved and reloaded",
    "tests/model/test_keras_classes.py": "Keras classes registered on any import order",
    "tests/model/test_resample.py": "position-embedding resampling in keras.ops",
    "tests/converters/test_google_npz.py": "parity: vit_jax .npz",
    "tests/converters/test_big_vision.py": "parity: big_vision .npz",
    "tests/converters/test_huggingface.py": "parity: Hugging Face safetensors / pytorch_model.bin / tf_model.h5",
    "tests/converters/test_tf_model_h5.py": "parity: transformers' tf_model.h5 names",
    "tests/converters/test_timm.py": "parity: timm safetensors",
    "tests/converters/test_apply.py": "the strict applier assigns all or nothing",
    "tests/weights/test_load.py": "load() of every source, .keras and .weights.h5",
    "tests/weights/test_pretrained.py": "pretrained= and hf-hub: through a loopback server",
    "tests/use/test_preprocess.py": "preprocessing recipes against PIL / reference resizes",
    "tests/use/test_predict.py": "predict and decode_predictions",
    "tests/use/test_features.py": "feature_extractor at every block",
    "tests/use/test_attention.py": "attention maps and rollout against a NumPy forward",
    "tests/use/test_embed.py": "embed's streaming and its files",
    "tests/use/test_evaluation.py": "evaluate: top-1/top-5/loss",
    "tests/test_export_route.py": "export from this backend through TensorFlow, verified here",
    "tests/test_backend_imports.py": "predict, evaluate, features with tensorflow unimportable",
    "tests/train/test_finetune.py::test_finetune_on_arrays": "a short fine-tune through compile/fit",
    "tests/test_cli.py::test_predict": "the CLI honours KERAS_BACKEND",
}


def pytest_addoption(parser):
    parser.addoption("--backend", choices=BACKENDS, default=None,
                     help="Keras backend to test (sets KERAS_BACKEND; default: $KERAS_BACKEND, else tensorflow)")
    parser.addoption("--cross-backend", action="store_true",
                     help="run only the part of the suite CI repeats on every backend (CROSS_BACKEND in conftest)")


def pytest_configure(config):
    backend = config.getoption("--backend") or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if backend not in BACKENDS:
        raise pytest.UsageError(f"KERAS_BACKEND={backend!r} is not one of {list(BACKENDS)}")
    loaded = sys.modules.get("keras")
    if loaded is not None and loaded.backend.backend() != backend:
        raise pytest.UsageError(f"Keras was imported with backend {loaded.backend.backend()!r} before the "
                                f"tests could set {backend!r}; start pytest in a fresh process")
    os.environ["KERAS_BACKEND"] = backend  # subprocesses started by tests inherit it too
    config.addinivalue_line("markers", "tensorflow_only(reason): needs TensorFlow in this process; skipped on "
                                       "the other backends with the reason")


def pytest_report_header(config):
    return f"keras backend: {os.environ['KERAS_BACKEND']}"


def pytest_collection_modifyitems(config, items):
    backend = os.environ["KERAS_BACKEND"]
    if config.getoption("--cross-backend"):
        chosen = [item for item in items if _in_cross_backend_suite(item.nodeid)]
        config.hook.pytest_deselected(items=[item for item in items if item not in chosen])
        items[:] = chosen
    if backend == "tensorflow":
        return
    for item in items:
        marker = item.get_closest_marker("tensorflow_only")
        if marker is not None:
            reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "TensorFlow only")
            item.add_marker(pytest.mark.skip(reason=f"needs KERAS_BACKEND=tensorflow: {reason}"))


def _in_cross_backend_suite(nodeid: str) -> bool:
    nodeid = nodeid if nodeid.startswith("tests/") else "tests/" + nodeid
    return any(nodeid == key or nodeid.startswith(key + "::") or nodeid.startswith(key + "[")
               for key in CROSS_BACKEND)


def tiny_config(**changes):
    """A 3-block ViT on 32x32 images: builds and runs in well under a second."""
    from vit_zoo import ViTConfig

    fields = dict(image_size=32, patch_size=8, hidden_size=32, mlp_size=64, num_heads=4, num_layers=3,
                  num_classes=10)
    fields.update(changes)
    return ViTConfig(**fields)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def to_numpy(outputs):
    """A model's outputs (a tensor of any backend, or a structure of them) as NumPy arrays. On PyTorch
    ``model(x)`` returns a tensor that tracks gradients, which ``np.asarray`` refuses; Keras' own
    conversion detaches it."""
    import keras

    return keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)


def random_images(rng, batch, height, width=None):
    """(B, H, W, 3) float32 RGB in [0, 255]."""
    return rng.uniform(0, 255, (batch, height, width or height, 3)).astype("float32")


def load_converted(path, **options):
    """A checkpoint through the loader (detect, config, build, strict apply), with inputs already
    normalised (no preprocessing layer): returns (model, the checkpoint's config)."""
    from vit_zoo.weights.convert import load_checkpoint

    model, source, _ = load_checkpoint(path, include_preprocessing=False, **options)
    return model, source
