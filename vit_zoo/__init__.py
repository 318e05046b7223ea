"""vit_zoo: every Vision Transformer variant from one Keras 3 builder, and the published checkpoints.

Attributes are imported on first use, so ``vit-zoo list`` and ``vit_zoo.ViTConfig`` do not start
TensorFlow; ``vit_zoo.build`` / ``vit_zoo.load`` do, and register the custom layers with Keras.
"""
import importlib

__version__ = "0.1.0"

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
