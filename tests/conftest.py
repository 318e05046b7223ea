"""Shared test settings and fixtures: quiet TensorFlow, a tiny ViT config for fast tests."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest_plugins = ("xla_switch",)  # XLA off except in tests marked @pytest.mark.xla


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


def random_images(rng, batch, height, width=None):
    """(B, H, W, 3) float32 RGB in [0, 255]."""
    return rng.uniform(0, 255, (batch, height, width or height, 3)).astype("float32")


def load_converted(path, **options):
    """A checkpoint through the loader (detect, config, build, strict apply), with inputs already
    normalised (no preprocessing layer): returns (model, the checkpoint's config)."""
    from vit_zoo.weights.convert import load_checkpoint

    model, source, _ = load_checkpoint(path, include_preprocessing=False, **options)
    return model, source
