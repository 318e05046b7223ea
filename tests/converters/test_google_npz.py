"""Google vit_jax .npz: format detection, config inference, and parity with a Flax-style NumPy reference.

Parity: logits and the final token sequence of the converted model against ``reference_numpy.
vit_jax_forward`` on the same checkpoint, relative error max|a−b|/max|b| ≤ 1e-4 in float32. The reference
itself is checked against Hugging Face transformers' torch ViT (tanh GELU, eps 1e-6) on shared weights.
"""
import keras
import numpy as np
import pytest

import vit_zoo
from vit_zoo import converters
from vit_zoo.converters import google_npz
from vit_zoo.model.variants import variant_fields

import layouts
import synth_hf
from conftest import load_converted
from reference_frameworks import require
from reference_numpy import vit_jax_forward
from synth_checkpoints import images, npz_tensors, relative_error, write_npz

TOLERANCE = 1e-4
SMALL = dict(image_size=32, patch_size=8, hidden_size=32, mlp_size=64, num_heads=4, num_layers=2,
             num_classes=7)


def convert(path, include_top=True, pooling=None):
    """Through the loader; returns (model, config). The format must be detected as vit_jax."""
    with converters.open_checkpoint(path) as checkpoint:
        assert converters.detect_format(checkpoint) is google_npz
    return load_converted(path, include_top=include_top, pooling=pooling)


# name: (ViTConfig fields of the synthesized checkpoint, batch)
CASES = {
    "vit-tiny-16": (dict(variant_fields("vit-tiny-16"), num_classes=1000), 2),
    # original ImageNet-21k form: pre-logits Dense + tanh, 21,843 classes
    "vit-small-32-in21k-prelogits": (dict(variant_fields("vit-small-32"),
                                          representation_size=384, num_classes=21843), 2),
    "vit-base-16": (dict(variant_fields("vit-base-16"), num_classes=1000), 1),
    # vit_jax "ViT-S_16-gap-norep": no class token, mean of the tokens after the final norm
    "vit-small-16-gap": (dict(variant_fields("vit-small-16"), class_token=False,
                              pooling="gap", num_classes=1000), 1),
    # fine-tuned at 384 px (577 position embeddings); 2 blocks: the point is the mapping at 384
    "vit-base-16-384": (dict(variant_fields("vit-base-16"), image_size=384, num_layers=2,
                             num_classes=1000), 1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_parity_with_flax_reference(case, tmp_path):
    fields, batch = CASES[case]
    spec = vit_zoo.ViTConfig(**fields)
    tensors = npz_tensors(spec, seed=list(CASES).index(case))
    path = write_npz(tmp_path / "ViT.npz", tensors)
    x = images(spec, batch=batch)
    reference = vit_jax_forward(tensors, x)
    del tensors

    model, config = convert(path)
    for name in ("image_size", "patch_size", "hidden_size", "mlp_size", "num_heads", "num_layers",
                 "class_token", "pooling", "representation_size", "num_classes"):
        assert getattr(config, name) == getattr(spec, name), name
    assert (config.gelu, config.layer_norm_epsilon, config.mean, config.std) == ("tanh", 1e-6, (0.5,) * 3,
                                                                                 (0.5,) * 3)
    logits_error = relative_error(model(x), reference["logits"])
    if spec.hidden_size < 768 and not spec.representation_size:  # built with include_top=False, pooling=None
        features, _ = convert(path, include_top=False, pooling=None)
    else:  # bigger models: the same graph's encoder_norm output, to build once
        features = keras.Model(model.input, model.get_layer("encoder_norm").output)
    tokens_error = relative_error(features(x), reference["encoded"])
    print(f"\nparity google-npz {case}: logits {logits_error:.2e}, tokens {tokens_error:.2e}")
    assert logits_error <= TOLERANCE
    assert tokens_error <= TOLERANCE
    if spec.representation_size:  # pooled features go through pre_logits (Dense + tanh)
        pooled = keras.Model(model.input, model.get_layer("pre_logits").output)
        assert relative_error(pooled(x), reference["pooled"]) <= TOLERANCE


def test_config_fields_read_the_checkpoint(tmp_path):
    spec = vit_zoo.ViTConfig(**SMALL, qkv_bias=False, representation_size=24)
    path = write_npz(tmp_path / "x.npz", npz_tensors(spec))
    with converters.open_checkpoint(path) as checkpoint:
        fields = google_npz.config_fields(checkpoint)
    assert fields["qkv_bias"] is False and fields["representation_size"] == 24
    assert fields["position_embedding_resampling"] == "bilinear-corners"
    assert vit_zoo.ViTConfig(**fields).variant is None  # a custom size is fine


def test_checkpoint_without_head_has_no_classes(tmp_path):
    spec = vit_zoo.ViTConfig(**SMALL)
    tensors = {k: v for k, v in npz_tensors(spec).items() if not k.startswith("head/")}
    with converters.open_checkpoint(write_npz(tmp_path / "x.npz", tensors)) as checkpoint:
        assert google_npz.config_fields(checkpoint)["num_classes"] is None


def test_without_qkv_bias_parity(tmp_path):
    spec = vit_zoo.ViTConfig(**SMALL, qkv_bias=False)
    tensors = npz_tensors(spec)
    model, _ = convert(write_npz(tmp_path / "x.npz", tensors))
    x = images(spec)
    assert relative_error(model(x), vit_jax_forward(tensors, x)["logits"]) <= TOLERANCE


@pytest.mark.parametrize("key, layout", [
    ("conv_root/kernel", "ResNet-hybrid"),
    ("opt/target/embedding/kernel", "training checkpoint"),
])
def test_related_layouts_are_refused_by_name(tmp_path, key, layout):
    tensors = npz_tensors(vit_zoo.ViTConfig(**SMALL))
    tensors[key] = np.zeros((1, 1, 3, 8), np.float32)
    with converters.open_checkpoint(write_npz(tmp_path / "x.npz", tensors)) as checkpoint:
        assert converters.detect_format(checkpoint) is google_npz
        with pytest.raises(converters.UnsupportedLayoutError, match=layout) as error:
            google_npz.config_fields(checkpoint)
    assert key in str(error.value) and layout in error.value.layout


def test_non_square_grid_is_refused(tmp_path):
    spec = vit_zoo.ViTConfig(**{**SMALL, "image_size": (32, 48)})
    with converters.open_checkpoint(write_npz(tmp_path / "x.npz", npz_tensors(spec))) as checkpoint:
        with pytest.raises(converters.CheckpointError, match="not 1 \\+ a square grid"):
            google_npz.config_fields(checkpoint)


def test_block_numbering_gap_is_named(tmp_path):
    tensors = npz_tensors(vit_zoo.ViTConfig(**{**SMALL, "num_layers": 3}))
    tensors = {k: v for k, v in tensors.items() if "encoderblock_1/" not in k}
    with converters.open_checkpoint(write_npz(tmp_path / "x.npz", tensors)) as checkpoint:
        with pytest.raises(converters.CheckpointError, match="encoderblock_1"):
            google_npz.config_fields(checkpoint)


# ------------------------------------------------------------------------------------------------
# The reference itself, against Hugging Face transformers' torch ViT on the same weights.
@pytest.mark.parametrize("pre_logits", [False, True])
def test_reference_matches_transformers(tmp_path, pre_logits):
    torch, transformers = require("torch"), require("transformers")
    spec = vit_zoo.ViTConfig(**{**SMALL, "num_layers": 3}, representation_size=24 if pre_logits else None)
    values = layouts.weights(spec, seed=3)
    tensors = layouts.tensors(layouts.vit_jax(spec), values)
    hf_config = transformers.ViTConfig(
        hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
        intermediate_size=spec.mlp_size, image_size=32, patch_size=8, num_labels=spec.num_classes,
        hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, pooler_output_size=spec.representation_size)
    hf = synth_hf.from_weights(values, spec, hf_config, tmp_path, bare=pre_logits).double()
    x = images(spec, batch=2)
    reference = vit_jax_forward(tensors, x)
    with torch.no_grad():
        out = hf(torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float64)), output_hidden_states=True)
    if pre_logits:
        assert relative_error(reference["pooled"], out.pooler_output.numpy()) < 1e-10
        assert relative_error(reference["encoded"], out.last_hidden_state.numpy()) < 1e-10
    else:
        assert relative_error(reference["logits"], out.logits.numpy()) < 1e-10
        with torch.no_grad():  # the final token sequence
            encoded = hf.vit.layernorm(out.hidden_states[-1]).numpy()
        assert relative_error(reference["encoded"], encoded) < 1e-10


def test_load_through_public_api(tmp_path):
    spec = vit_zoo.ViTConfig(**dict(variant_fields("vit-tiny-16"), num_layers=2, num_classes=10))
    tensors = npz_tensors(spec, seed=7)
    path = write_npz(tmp_path / "Ti_16.npz", tensors)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    reference = vit_jax_forward(tensors, (pixels / 255 - 0.5) / 0.5)
    model = vit_zoo.load(weights=path)  # RGB in [0, 255], normalised inside as the weights expect
    assert relative_error(model(pixels), reference["logits"]) <= TOLERANCE
    features = vit_zoo.load(weights=path, include_top=False)
    assert relative_error(features(pixels), reference["encoded"]) <= TOLERANCE
