"""Real timm models for parity tests: built with timm's own classes (``timm.create_model``, random init),
their LayerScale, norms and biases moved away from their init (so a missing LayerScale, a swapped norm or a
misplaced bias shows), saved in the layouts users hold: ``model.safetensors`` with the config.json timm
itself writes (``timm.models._hub.save_config_for_hf``), or the original DeiT / DeiT-III ``.pth`` release
(``torch.save({"model": state_dict})``; DeiT-III's LayerScale named ``gamma_1`` / ``gamma_2`` as
facebookresearch/deit ``models_v2.py`` names it)."""
from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np

from conftest import load_converted, to_numpy
from reference_frameworks import require
from synth_checkpoints import relative_error
from vit_zoo import converters
from vit_zoo.converters import timm as timm_format

torch = require("torch")
timm = require("timm")

TOLERANCE = 1e-4  # max|a − b| / max|b|, float32


def build(name: str, seed: int = 0, **kwargs):
    """``timm.create_model(name, pretrained=False, **kwargs)`` in eval mode, with every 1-D parameter
    (norms, biases, LayerScale gammas) and the class / distillation / register tokens perturbed."""
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for key, parameter in model.named_parameters():
            if parameter.ndim == 1 or key.endswith(("_token", "pos_embed")):
                noise = torch.randn(parameter.shape, generator=generator)
                scale = 0.5 if key.endswith(("gamma", "norm1.weight", "norm2.weight", "norm.weight")) else 0.2
                parameter.add_(scale * noise)
    return model


def load_resized(name: str, state_dict: dict, seed: int = 0, **kwargs):
    """A timm model of ``name`` with ``kwargs`` (another ``img_size``), loaded from ``state_dict`` through
    timm's own pretrained filter (``checkpoint_filter_fn``: position embeddings resampled as timm does)."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    model.load_state_dict(checkpoint_filter_fn(dict(state_dict), model))
    return model


def save_safetensors(model, directory, config_json: bool = True) -> Path:
    """``directory/model.safetensors`` (+ timm's config.json); returns the weights file."""
    from safetensors.torch import save_file
    from timm.models._hub import save_config_for_hf

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    if config_json:
        save_config_for_hf(model, str(directory / "config.json"))
    return path


def save_release(model, path, deit3: bool = False, legacy: bool = False) -> Path:
    """The original DeiT / DeiT-III release: ``torch.save({"model": state_dict})``; ``deit3`` names
    LayerScale ``blocks.{i}.gamma_1`` / ``gamma_2``; ``legacy``: the pre-1.6 (non-zip) serialisation."""
    state = model.state_dict()
    if deit3:
        state = {re.sub(r"\.ls([12])\.gamma$", r".gamma_\1", key): value for key, value in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, path, _use_new_zipfile_serialization=not legacy)
    return path


def images(size, batch: int = 2, seed: int = 0):
    """The same normalised images as NHWC float32 (ours) and an NCHW tensor (timm)."""
    height, width = (size, size) if isinstance(size, int) else size
    nhwc = np.random.default_rng(seed).normal(0, 1, (batch, height, width, 3)).astype(np.float32)
    return nhwc, torch.from_numpy(nhwc.transpose(0, 3, 1, 2).copy())


def outputs(model, nchw) -> dict:
    """{"tokens": forward_features (after the final norm), "output": forward (logits, or the pooled
    features of a num_classes=0 model)}."""
    with torch.no_grad():
        tokens = model.forward_features(nchw)
        return {"tokens": tokens.numpy(), "output": model.forward_head(tokens).numpy()}


def ours(path, **options):
    """Our model through the loader, as a view {"tokens": after the final norm, "output": logits or the
    pooled class token}, and its source config."""
    with converters.open_checkpoint(path) as checkpoint:
        assert converters.detect_format(checkpoint) is timm_format
        has_head = timm_format.config_fields(checkpoint, options.get("requested"))["num_classes"] is not None
    model, config = load_converted(path, include_top=has_head, pooling=None if has_head else "token", **options)
    last = "encoder_norm" if config.pooling != "avg-fcnorm" else f"block_{config.num_layers - 1:02d}_add2"
    return keras.Model(model.input, {"tokens": model.get_layer(last).output, "output": model.output}), config


def assert_parity(view, reference, size, case, batch=2, predict=False):
    """Our ``view`` (from ``ours``) against the timm model ``reference`` on the same ``size`` px images:
    both outputs within TOLERANCE; prints the errors."""
    nhwc, nchw = images(size, batch)
    got = view.predict(nhwc, verbose=0) if predict else {k: to_numpy(v) for k, v in view(nhwc).items()}
    expected = outputs(reference, nchw)
    assert {name: np.shape(got[name]) for name in expected} == {name: v.shape for name, v in expected.items()}
    errors = {name: relative_error(got[name], expected[name]) for name in expected}
    print(f"\ntimm parity {case} at {size} px: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert all(error <= TOLERANCE for error in errors.values()), (case, errors)
