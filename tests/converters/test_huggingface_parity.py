"""Hugging Face converter against transformers' torch ViT: random transformers models, saved the way the
Hub holds them, converted and held to the torch outputs at max|a − b| / max|b| ≤ 1e-4 (fp32). Every test
here runs transformers' torch model; what needs no torch (config.json, detection, refusals) is in
test_huggingface.py."""
import json

import numpy as np
import pytest

from reference_frameworks import require

torch = require("torch")  # the reference is transformers' torch ViT
require("transformers")

import keras  # noqa: E402

import vit_zoo  # noqa: E402
from vit_zoo.converters import huggingface as hf  # noqa: E402
from vit_zoo.converters.checkpoint import open_checkpoint  # noqa: E402

import layouts  # noqa: E402
import synth_hf  # noqa: E402
from conftest import load_converted  # noqa: E402

TOLERANCE = 1e-4


def relative_error(ours, reference) -> float:
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    assert ours.shape == reference.shape
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def convert(path, include_top=True, pooling=None):
    """Our model from a HF checkpoint, through the loader (with a head where the checkpoint has one).
    Returns (model, a view of it that outputs {"tokens": after the final norm, "output": the model
    output})."""
    with open_checkpoint(path) as checkpoint:
        has_head = hf.config_fields(checkpoint)["num_classes"] is not None
    model, _ = load_converted(path, include_top=include_top and has_head, pooling=pooling)
    both = keras.Model(model.input, {"tokens": model.get_layer("encoder_norm").output, "output": model.output})
    return model, both


def images_for(config, batch=2, seed=0):
    """Normalised images: (NHWC for us, NCHW tensor for torch), the same values."""
    height, width = (config.image_size, config.image_size) if isinstance(config.image_size, int) \
        else config.image_size
    nhwc = np.random.default_rng(seed).normal(0, 1, (batch, height, width, 3)).astype("float32")
    return nhwc, torch.from_numpy(nhwc.transpose(0, 3, 1, 2).copy())


def torch_outputs(model, pixels):
    """{"tokens": last_hidden_state, "output": logits or pooler_output} of a HF model."""
    with torch.no_grad():
        body = model.vit if hasattr(model, "classifier") else model
        out = body(pixel_values=pixels)
        result = {"tokens": out.last_hidden_state.numpy()}
        output = model(pixel_values=pixels).logits if hasattr(model, "classifier") else out.pooler_output
        if output is not None:
            result["output"] = output.numpy()
    return result


def assert_parity(path, reference, case, batch=2):
    nhwc, nchw = images_for(reference.config, batch)
    _, ours = convert(path, pooling=None if hasattr(reference, "classifier") else "token")
    got = ours.predict(nhwc, verbose=0)
    expected = torch_outputs(reference, nchw)
    errors = {name: relative_error(got[name], expected[name]) for name in expected}
    print(f"\nhf parity {case}: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert all(error <= TOLERANCE for error in errors.values()), (case, errors)
    return errors


# ---- parity ------------------------------------------------------------------------------------------
SMALL_VARIANTS = {"gelu-exact": {}, "gelu-tanh": dict(hidden_act="gelu_new"), "no-qkv-bias": dict(qkv_bias=False),
                  "rectangular-32x48": dict(image_size=[32, 48]), "eps-1e-6": dict(layer_norm_eps=1e-6)}


@pytest.mark.parametrize("case", SMALL_VARIANTS)
def test_classifier_safetensors(tmp_path, case):
    reference = synth_hf.random_model(synth_hf.hf_config(**SMALL_VARIANTS[case]))
    assert_parity(synth_hf.save(reference, tmp_path), reference, f"safetensors classifier {case}")


def test_bare_vit_model_with_pooler(tmp_path):
    reference = synth_hf.random_model(synth_hf.hf_config(), kind="base", seed=1)
    assert_parity(synth_hf.save(reference, tmp_path), reference, "safetensors ViTModel+pooler")


def test_token_sequence_through_pooling_none(tmp_path):
    reference = synth_hf.random_model(synth_hf.hf_config(), seed=2)
    model, _ = convert(synth_hf.save(reference, tmp_path), include_top=False, pooling=None)
    nhwc, nchw = images_for(reference.config)
    error = relative_error(model.predict(nhwc, verbose=0), torch_outputs(reference, nchw)["tokens"])
    print(f"\nhf parity include_top=False pooling=None tokens: {error:.2e}")
    assert error <= TOLERANCE


def test_vit_base_16_full_size(tmp_path):
    reference = synth_hf.random_model(synth_hf.hf_config(num_labels=1000, **synth_hf.BASE), seed=3)
    path = synth_hf.save(reference, tmp_path)
    with open_checkpoint(path) as checkpoint:
        fields = hf.config_fields(checkpoint)
    fields.pop("assumed")
    assert vit_zoo.ViTConfig(**{**fields, "num_classes": 1000}).variant == "vit-base-16"
    assert_parity(path, reference, "safetensors ViT-B/16 (batch 1)", batch=1)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_safetensors_load_into_float32(tmp_path, dtype):
    model = synth_hf.random_model(synth_hf.hf_config(), seed=4)
    path = synth_hf.save(model, tmp_path, dtype=getattr(torch, dtype))
    with open_checkpoint(path) as checkpoint:
        assert checkpoint.dtype("vit.layernorm.weight") == dtype
        assert checkpoint.load("vit.layernorm.weight").dtype == np.float32
    ours, _ = convert(path)
    assert all(variable.dtype == "float32" for variable in ours.weights)
    assert_parity(path, synth_hf.rounded(model, getattr(torch, dtype)), f"safetensors {dtype}")


def test_pytorch_bin(tmp_path):
    reference = synth_hf.random_model(synth_hf.hf_config(), seed=5)
    path = synth_hf.save_bin(reference, tmp_path)
    assert open_checkpoint(path).path.name == "pytorch_model.bin"
    assert_parity(path, reference, "pytorch_model.bin classifier")


def tf_checkpoint(directory, kind="classifier", seed=0, model_name=None):
    """(the torch reference, its tf_model.h5): the same random weights written in the published torch
    layout (loaded by transformers) and in transformers 4.x's TF layout (``layouts.hf_tf``, whose names
    tests/converters/test_tf_model_h5.py pins to a file transformers' TF code wrote)."""
    config = synth_hf.hf_config()
    spec = synth_hf.spec_of(config, representation_size=config.hidden_size if kind == "base" else None)
    values = layouts.weights(spec, seed)
    reference = synth_hf.from_weights(values, spec, config, directory / "torch", bare=kind == "base")
    return reference, synth_hf.write_tf_h5(values, spec, config, directory / "tf" / "tf_model.h5", kind, model_name)


@pytest.mark.parametrize("kind", ["classifier", "base"])
def test_tf_model_h5(tmp_path, kind):
    reference, path = tf_checkpoint(tmp_path, kind, seed=6)
    assert_parity(path, reference, f"tf_model.h5 {kind}")


def test_tf_model_h5_with_numbered_model_scope(tmp_path):
    # Keras 2 numbers a second instance's scope ("..._4"); transformers ignores that scope, so do we.
    reference, path = tf_checkpoint(tmp_path, seed=7, model_name="tf_vi_t_for_image_classification_4")
    assert_parity(path, reference, "tf_model.h5 numbered scope")


def test_old_config_json_without_newer_fields(tmp_path):
    # google/vit-* config.json files were written by transformers 4.6: no qkv_bias, pooler_* fields.
    reference = synth_hf.random_model(synth_hf.hf_config())
    path = synth_hf.save(reference, tmp_path)
    config = json.loads((path / "config.json").read_text())
    for field in ("qkv_bias", "pooler_act", "pooler_output_size", "encoder_stride", "dtype"):
        config.pop(field)
    (path / "config.json").write_text(json.dumps(config))
    assert_parity(path, reference, "safetensors, transformers-4.6 config.json")



# ---- through the public API --------------------------------------------------------------------------
def test_load_with_weights_path(tmp_path):
    reference = synth_hf.random_model(synth_hf.hf_config(), seed=8)
    path = synth_hf.save(reference, tmp_path)
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    normalised = torch.from_numpy(((pixels / 255 - 0.5) / 0.5).transpose(0, 3, 1, 2).copy())
    expected = torch_outputs(reference, normalised)
    logits = vit_zoo.load(weights=str(path)).predict(pixels, verbose=0)
    tokens = vit_zoo.load(weights=str(path / "model.safetensors"), include_top=False).predict(pixels, verbose=0)
    errors = relative_error(logits, expected["output"]), relative_error(tokens, expected["tokens"])
    print(f"\nhf parity vit_zoo.load (preprocessing inside): logits {errors[0]:.2e}, tokens {errors[1]:.2e}")
    assert max(errors) <= TOLERANCE


def test_load_bare_model_pooled_and_tf_h5(tmp_path):
    reference, path = tf_checkpoint(tmp_path, "base", seed=9)
    pixels = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    normalised = torch.from_numpy(((pixels / 255 - 0.5) / 0.5).transpose(0, 3, 1, 2).copy())
    pooled = vit_zoo.load(weights=str(path.parent), include_top=False, pooling="token").predict(pixels, verbose=0)
    error = relative_error(pooled, torch_outputs(reference, normalised)["output"])
    print(f"\nhf parity vit_zoo.load tf_model.h5 ViTModel pooler: {error:.2e}")
    assert error <= TOLERANCE


# ---- the parity is sharp enough to see the numerics --------------------------------------------------
@pytest.mark.parametrize("wrong", [dict(gelu="exact"), dict(layer_norm_epsilon=1e-3)])
def test_wrong_numerics_fail_the_tolerance(tmp_path, wrong):
    # A tanh-GELU model converted with exact GELU, or with Keras' default LayerNorm eps, misses 1e-4.
    reference = synth_hf.random_model(synth_hf.hf_config(hidden_act="gelu_new"))
    model, _ = load_converted(synth_hf.save(reference, tmp_path), known={"config": wrong})
    nhwc, nchw = images_for(reference.config)
    error = relative_error(model.predict(nhwc, verbose=0), torch_outputs(reference, nchw)["output"])
    print(f"\nhf negative control {wrong}: {error:.2e}")
    assert error > TOLERANCE


def test_mask_token_is_ignored_with_its_reason(tmp_path):
    from transformers import ViTModel

    reference = ViTModel(synth_hf.hf_config(), add_pooling_layer=False, use_mask_token=True).eval()
    path = synth_hf.save(reference, tmp_path)
    with open_checkpoint(path) as checkpoint:
        assert "embeddings.mask_token" in checkpoint
        assert any("masked-image-modelling" in reason for reason in hf.IGNORED.values())
    model, _ = convert(path, include_top=False, pooling=None)
    nhwc, nchw = images_for(reference.config)
    assert relative_error(model.predict(nhwc, verbose=0), torch_outputs(reference, nchw)["tokens"]) <= TOLERANCE


