"""The real reference frameworks (timm, transformers, open_clip, Meta's dinov2), imported for parity tests.

timm imports torchvision at module level (``FrozenBatchNorm2d``, its data transforms), and PyPI's
torchvision does not import beside the pinned CPU torch. None of what timm's ViT models compute comes from
torchvision, so ``import_timm`` installs a stand-in package first: every name imported from it is an inert
placeholder class, and anything that would really use torchvision fails loudly (calling a placeholder
raises). ``require(name)`` imports a framework or skips the test -- except under ``CI=true``, where a
missing reference package fails the run instead of hiding the strongest tests.
"""
from __future__ import annotations

import importlib
import os
import sys
import types

import pytest


class _PlaceholderMeta(type):
    def __getattr__(cls, name):  # InterpolationMode.BICUBIC and the like
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{cls.__name__}.{name}")


def _placeholder(name: str):
    def refuse(*args, **kwargs):
        raise RuntimeError(f"torchvision stand-in: {name} was called; a parity test must not depend on "
                           f"torchvision (tests/reference_frameworks.py)")
    return _PlaceholderMeta(name.rpartition(".")[2], (), {"__init__": refuse, "__call__": refuse})


class _StandInModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{self.__name__}.{name}")


_SUBMODULES = ("ops", "ops.misc", "transforms", "transforms.functional", "transforms.v2", "datasets",
               "models", "models.feature_extraction", "io", "utils")


def stub_torchvision() -> None:
    """Install the torchvision stand-in, unless a real torchvision imports."""
    if "torchvision" in sys.modules:
        return
    try:
        importlib.import_module("torchvision")
        return
    except Exception:  # absent, or the CUDA-only build that fails to import beside the CPU torch
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        _import_transformers_first()
    root = _StandInModule("torchvision")
    root.__path__ = []
    root.__version__ = "0.0+stand-in"
    sys.modules["torchvision"] = root
    for dotted in _SUBMODULES:
        module = _StandInModule(f"torchvision.{dotted}")
        module.__path__ = []
        sys.modules[module.__name__] = module
        parent, _, leaf = module.__name__.rpartition(".")
        setattr(sys.modules[parent], leaf, module)


def _import_transformers_first() -> None:
    """transformers asks ``importlib.util.find_spec("torchvision")`` when imported (then caches the answer),
    which raises for a stand-in without a module spec: imported before the stand-in, it sees the truth."""
    try:
        importlib.import_module("transformers")
    except ImportError:
        pass


def require(name: str):
    """Import a reference framework (``"timm"``, ``"transformers"``, ``"open_clip"``, ``"dinov2"``,
    ``"torch"``); skip the test where it is not installed -- or fail under ``CI=true``, where CI installs
    every reference and a missing one is a broken environment, not a reason to skip."""
    if name in ("timm", "open_clip"):
        stub_torchvision()
    try:
        return importlib.import_module(name)
    except ImportError as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"reference framework {name!r} is missing under CI=true ({error}); .ci/run installs it")
        pytest.skip(f"reference framework {name!r} is not installed ({error})", allow_module_level=True)
