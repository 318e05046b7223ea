"""vit_zoo: every Vision Transformer variant from one Keras 3 builder, and the published checkpoints.

The public functions below are bound on first use, so ``import vit_zoo`` (and ``import
vit_zoo.weights.download``) does not import Keras or TensorFlow. vit_zoo's Keras classes (layers, the
model class) are registered as soon as Keras is imported, so ``keras.models.load_model("m.keras")``
needs nothing beyond ``import vit_zoo`` (see ``vit_zoo.model.keras_classes``).

Beyond the names of the design's contract (models, configs, ``load``, weights, preprocessing, predict,
features, attention, embed, evaluate, finetune, export), the public API holds what the command line
uses and a user would too: a model's identity and head (``identity_of``, ``has_head``), class names
from a file (``read_label_file``), pooled features, image search and attention overlays, exported
models run in Python (``ExportedModel``, ``is_exported``, ``predict_exported``), a format's mapping
(``describe_mapping``, ``mapping_rows``), the cache (``cache_root``, ``list_cache``, ``clear_cache``),
the conversion errors, and training helpers (``split_cpu``, ``run_demo``). The command line
(``vit_zoo.cli``) imports the library through these names only (``tests/test_import_direction.py``).
"""
import importlib

from vit_zoo.model.keras_classes import register_when_keras_loads

__version__ = "0.1.0"

register_when_keras_loads()

_PUBLIC = {  # name -> the module that defines it
    "ViTConfig": "vit_zoo.model.config",
    "list_models": "vit_zoo.model.variants",
    "list_families": "vit_zoo.model.variants",
    "family_of": "vit_zoo.model.variants",
    "resolve_name": "vit_zoo.model.variants",
    "identity_of": "vit_zoo.model.identity",
    "has_head": "vit_zoo.model.build_record",
    "count_parameters": "vit_zoo.model.stats",
    "flops_per_image": "vit_zoo.model.stats",
    "build": "vit_zoo.model.builder",
    "load": "vit_zoo.weights.loading",
    "list_weights": "vit_zoo.weights.manifest",
    "download_weights": "vit_zoo.weights.pretrained",
    "cache_root": "vit_zoo.weights.cache",
    "list_cache": "vit_zoo.weights.cache",
    "clear_cache": "vit_zoo.weights.cache",
    "CheckpointError": "vit_zoo.converters.errors",
    "ConversionError": "vit_zoo.converters.errors",
    "describe_mapping": "vit_zoo.converters.describe",
    "mapping_rows": "vit_zoo.converters.describe",
    "resample_position_embeddings": "vit_zoo.model.resample",
    "layers": "vit_zoo.model.layers",
    "preprocess": "vit_zoo.use.preprocessing",
    "decode_predictions": "vit_zoo.use.labels",
    "imagenet1k_labels": "vit_zoo.use.labels",
    "imagenet21k_labels": "vit_zoo.use.labels",
    "read_label_file": "vit_zoo.use.labels",
    "feature_extractor": "vit_zoo.use.features",
    "pooled_features": "vit_zoo.use.features",
    "attention_maps": "vit_zoo.use.attention",
    "attention_rollout": "vit_zoo.use.attention",
    "probe_attention": "vit_zoo.use.attention",
    "plot_attention": "vit_zoo.use.attention_plot",
    "attention_overlay": "vit_zoo.use.attention_overlay",
    "embed": "vit_zoo.use.embedding",
    "list_images": "vit_zoo.use.embedding",
    "similar": "vit_zoo.use.search",
    "predict": "vit_zoo.use.prediction",
    "evaluate": "vit_zoo.use.evaluation",
    "format_report": "vit_zoo.use.evaluation",
    "finetune": "vit_zoo.train.finetuning",
    "run_demo": "vit_zoo.train.demo",
    "split_cpu": "vit_zoo.train.distribute",
    "export": "vit_zoo.exporting",
    "ExportedModel": "vit_zoo.exporting.exported",
    "is_exported": "vit_zoo.exporting.exported",
    "predict_exported": "vit_zoo.exporting.exported",
}
_MODULES = ("layers",)  # public names that are modules, not attributes of their module
__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        module = importlib.import_module(_PUBLIC[name])
        value = module if name in _MODULES else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vit_zoo' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
