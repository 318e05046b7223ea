"""vit_zoo: every Vision Transformer variant from one Keras 3 builder, and the published checkpoints.

Importing the package registers its Keras classes (layers, the model class, the learning-rate schedule),
so ``keras.models.load_model("m.keras")`` needs nothing beyond ``import vit_zoo``. The public functions
below are bound on first use.
"""
import importlib
import os
import sys

__version__ = "0.1.0"

# Modules that define Keras-serialisable classes: imported with the package.
_KERAS_CLASSES = ("vit_zoo.layers", "vit_zoo.model", "vit_zoo.features", "vit_zoo.schedules")


def _started_as_command() -> bool:
    """True while ``vit-zoo ...`` or ``python -m vit_zoo.cli`` imports the package."""
    first = sys.argv[0] if sys.argv else ""
    return os.path.basename(first) == "vit-zoo" or first == "-m"


def _register_keras_classes():
    # TensorFlow's CUDA stubs print start-up notes straight to file descriptor 2 on machines without a
    # GPU; the command line keeps them out of its output (``vit-zoo --debug`` shows them).
    quiet = _started_as_command() and "--debug" not in sys.argv and "tensorflow" not in sys.modules
    if not quiet:
        for module in _KERAS_CLASSES:
            importlib.import_module(module)
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        for module in _KERAS_CLASSES:
            importlib.import_module(module)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_register_keras_classes()

_PUBLIC = {
    "ViTConfig": "vit_zoo.config",
    "list_models": "vit_zoo.variants",
    "resolve_name": "vit_zoo.variants",
    "count_parameters": "vit_zoo.stats",
    "flops_per_image": "vit_zoo.stats",
    "build": "vit_zoo.model",
    "load": "vit_zoo.loading",
    "list_weights": "vit_zoo.manifest",
    "resample_position_embeddings": "vit_zoo.resample",
    "layers": "vit_zoo.layers",
    "preprocess": "vit_zoo.preprocessing",
    "decode_predictions": "vit_zoo.labels",
    "imagenet1k_labels": "vit_zoo.labels",
    "imagenet21k_labels": "vit_zoo.labels",
    "feature_extractor": "vit_zoo.features",
    "attention_maps": "vit_zoo.attention",
    "attention_rollout": "vit_zoo.attention",
    "plot_attention": "vit_zoo.attention_plot",
    "embed": "vit_zoo.embedding",
    "predict": "vit_zoo.prediction",
    "finetune": "vit_zoo.finetuning",
    "export": "vit_zoo.exporting",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        module = importlib.import_module(_PUBLIC[name])
        value = module if module.__name__.endswith("." + name) else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vit_zoo' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
