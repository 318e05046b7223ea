"""vit_zoo's Keras classes are registered whichever vit_zoo module imports Keras first."""
import os
import subprocess
import sys

CHECK = """
import importlib, sys
import vit_zoo
assert "keras" not in sys.modules, "import vit_zoo imported Keras"
importlib.import_module(sys.argv[1])   # the first importer of Keras
import keras
from vit_zoo.model.keras_classes import KERAS_CLASS_MODULES
missing = [m for m in KERAS_CLASS_MODULES if m not in sys.modules]
names = ["vit_zoo>VisionTransformer", "vit_zoo>PositionEmbedding", "vit_zoo>PatchTokensToGrid"]
unregistered = [n for n in names if keras.saving.get_registered_object(n) is None]
assert not missing and not unregistered, (missing, unregistered)
print("ok")
"""
FIRST_IMPORTERS = ("vit_zoo.model.builder", "vit_zoo.model.resample",  # vit_zoo.build; resample_position_embeddings
                   "vit_zoo.model.fast_path")  # imported by VisionTransformer's own module: a cycle through the hook


def test_every_first_importer_of_keras_registers_all_classes():
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    runs = {module: subprocess.Popen([sys.executable, "-c", CHECK, module], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=environment)
            for module in FIRST_IMPORTERS}  # fresh processes, in parallel
    results = {module: run.communicate(timeout=300) for module, run in runs.items()}
    failed = {module: err[-1500:] for module, (out, err) in results.items() if out.strip() != "ok"}
    assert not failed, failed
