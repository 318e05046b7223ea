"""Registering vit_zoo's Keras classes without importing Keras before it is needed.

``keras.models.load_model("m.keras")`` finds vit_zoo's layers and model class only once they are
registered, which happens when their modules are imported. ``import vit_zoo`` must not import Keras (and
with it TensorFlow: seconds of start-up for code that only downloads or lists weights), so it calls
``register_when_keras_loads()``: if Keras is imported already, the classes are registered at once;
otherwise a one-shot import hook registers them right after Keras finishes importing, whoever imports it.
This module imports nothing from Keras itself.

The hook runs while the module that first imported Keras is still half-initialised, so the modules below
import other vit_zoo modules that use Keras as modules (``from vit_zoo.model import resample``), never
names from them; names come from Keras-free modules (``vit_zoo.model.names``) or are imported inside
functions.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

# Modules that define Keras-serialisable classes (``@keras.saving.register_keras_serializable``).
KERAS_CLASS_MODULES = ("vit_zoo.model.layers", "vit_zoo.model.tokens", "vit_zoo.model.vision_transformer",
                       "vit_zoo.use.features", "vit_zoo.train.optimizers", "vit_zoo.train.losses")


def register() -> None:
    """Import the modules of vit_zoo's Keras classes (imports Keras)."""
    for name in KERAS_CLASS_MODULES:
        importlib.import_module(name)


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for ``keras`` it asks the other finders, and has the found loader register
    vit_zoo's classes after Keras' own module has run. Removes itself at the first import of Keras."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        _remove_hook()
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            run_keras = spec.loader.exec_module

            def exec_module(module):
                run_keras(module)
                register()

            spec.loader.exec_module = exec_module
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _RegisterAfterKeras)]


def register_when_keras_loads() -> None:
    """Register now when Keras is imported already, else right after it is."""
    if "keras" in sys.modules:
        register()
    elif not any(isinstance(finder, _RegisterAfterKeras) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterKeras())
