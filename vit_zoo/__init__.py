"""vit_zoo: every Vision Transformer variant from one Keras 3 builder, and the published checkpoints.

The public functions below are bound on first use, so ``import vit_zoo`` (and ``import
vit_zoo.weights.download``) does not import Keras or TensorFlow. vit_zoo's Keras classes (layers, the
model class) are registered as soon as Keras is imported, so ``keras.models.load_model("m.keras")``
needs nothing beyond ``import vit_zoo`` (see ``vit_zoo.model.keras_classes``).
"""
import importlib

from vit_zoo.model.keras_classes import register_when_keras_loads

__version__ = "0.1.0"

register_when_keras_loads()

_PUBLIC = {
    "ViTConfig": "vit_zoo.model.config",
    "list_models": "vit_zoo.model.variants",
    "resolve_name": "vit_zoo.model.variants",
    "count_parameters": "vit_zoo.model.stats",
    "flops_per_image": "vit_zoo.model.stats",
    "build": "vit_zoo.model.builder",
    "load": "vit_zoo.weights.loading",
    "list_weights": "vit_zoo.weights.manifest",
    "download_weights": "vit_zoo.weights.pretrained",
    "resample_position_embeddings": "vit_zoo.model.resample",
    "layers": "vit_zoo.model.layers",
    "preprocess": "vit_zoo.use.preprocessing",
    "decode_predictions": "vit_zoo.use.labels",
    "imagenet1k_labels": "vit_zoo.use.labels",
    "imagenet21k_labels": "vit_zoo.use.labels",
    "feature_extractor": "vit_zoo.use.features",
    "attention_maps": "vit_zoo.use.attention",
    "attention_rollout": "vit_zoo.use.attention",
    "probe_attention": "vit_zoo.use.attention",
    "plot_attention": "vit_zoo.use.attention_plot",
    "embed": "vit_zoo.use.embedding",
    "predict": "vit_zoo.use.prediction",
    "evaluate": "vit_zoo.use.evaluation",
    "finetune": "vit_zoo.train.finetuning",
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
