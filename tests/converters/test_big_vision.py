"""big_vision ViT .npz: detection, the one-row position fix, refusals by name, and parity with a NumPy
forward written from ``big_vision/models/vit.py`` (itself held to the vit_jax reference, which is held to
transformers). Parity bound: max|a−b|/max|b| ≤ 1e-4 in float32."""
import warnings

import numpy as np
import pytest

import vit_zoo
from vit_zoo import converters
from vit_zoo.converters import big_vision

import layouts
from conftest import load_converted
from reference_numpy import big_vision_forward, vit_jax_forward
from synth_checkpoints import (big_vision_tensors, images, relative_error, to_bfloat16_bits, from_bfloat16_bits,
                               write_npz)

TOLERANCE = 1e-4
SMALL = dict(image_size=32, patch_size=8, hidden_size=32, mlp_size=64, num_heads=4, num_layers=2,
             num_classes=7)


def convert(path, **options):
    """Through the loader; (model, config, the warning of assumed values). Detected as big_vision."""
    with converters.open_checkpoint(path) as checkpoint:
        assert converters.detect_format(checkpoint) is big_vision
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, config = load_converted(path, **options)
    assumed = [str(w.message) for w in caught if "assumed:" in str(w.message)]
    return model, config, assumed


# name: (ViTConfig fields, layout options of the file)
CASES = {
    # pool_type "tok", a training checkpoint (params/ + optimizer state), pre_logits: h*w position rows
    "tok-params-prelogits": (dict(SMALL, representation_size=24), dict(prefix="params/")),
    # pool_type "gap" (big_vision's default): no class token; a released (flat) file
    "gap-flat": (dict(SMALL, class_token=False, pooling="gap"), dict(prefix="")),
    # releases before 2022 kept the position embedding in the encoder
    "tok-2021-position": (dict(SMALL, num_layers=1), dict(prefix="", position="Transformer/pos_embedding")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_parity_with_big_vision_reference(case, tmp_path):
    fields, layout = CASES[case]
    spec = vit_zoo.ViTConfig(**fields)
    tensors = big_vision_tensors(spec, seed=list(CASES).index(case), **layout)
    if layout["prefix"] == "params/":
        tensors["opt/mu/embedding/kernel"] = np.zeros((8, 8, 3, 32), np.float32)  # optimizer state: ignored
    path = write_npz(tmp_path / "bv.npz", tensors)
    x = images(spec)
    reference = big_vision_forward({k.replace("Transformer/pos_embedding", "pos_embedding"): v
                                    for k, v in tensors.items()}, x)

    model, config, assumed = convert(path)
    assert (config.class_token, config.pooling, config.representation_size) == (
        spec.class_token, spec.pooling, spec.representation_size)
    assert (config.gelu, config.layer_norm_epsilon, config.position_embedding_resampling) == (
        "tanh", 1e-6, "bilinear-corners")
    assert len(assumed) == 1 and "mean = (0.5, 0.5, 0.5)" in assumed[0] and "std = " in assumed[0]
    assert {"mean", "std"} <= set(model.identity.provenance.assumed)
    assert model.identity.provenance.format == "big-vision-npz"
    tokens_model, _, _ = convert(path, include_top=False, pooling=None)
    pooled_model, _, _ = convert(path, include_top=False, pooling=spec.pooling)
    errors = {"logits": relative_error(model(x), reference["logits"]),
              "tokens": relative_error(tokens_model(x), reference["encoded"]),
              "pooled": relative_error(pooled_model(x), reference["pooled"])}
    print(f"\nparity big_vision {case}: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert max(errors.values()) <= TOLERANCE, errors


def test_class_position_is_a_zero_row(tmp_path):
    spec = vit_zoo.ViTConfig(**SMALL)
    tensors = big_vision_tensors(spec)
    model, _, _ = convert(write_npz(tmp_path / "bv.npz", tensors))
    embeddings = model.get_layer("pos_embed").embeddings.numpy()
    assert embeddings.shape == (1, 17, 32) and not embeddings[:, 0].any()
    assert np.array_equal(embeddings[:, 1:], tensors["params/pos_embedding"])


def test_old_checkpoint_with_class_position_row_loads_as_is(tmp_path):
    # big_vision's old vit.py concatenated the class token first, then added a (1 + h*w)-row embedding;
    # big_vision's fix_old_checkpoints folds that row into cls. vit_zoo adds it after the class token.
    spec = vit_zoo.ViTConfig(**SMALL)
    values = layouts.weights(spec, seed=4)
    tensors = layouts.tensors(layouts.big_vision(spec, prefix=""), values)
    tensors["pos_embedding"] = values["pos"]  # 1 + h*w rows
    fixed = dict(tensors, cls=tensors["cls"] + values["pos"][:, :1], pos_embedding=values["pos"][:, 1:])
    x = images(spec)
    model, _, _ = convert(write_npz(tmp_path / "old.npz", tensors))
    error = relative_error(model(x), big_vision_forward(fixed, x)["logits"])
    print(f"\nparity big_vision old cls+posemb: logits {error:.2e}")
    assert error <= TOLERANCE


def test_bfloat16_npz_as_numpy_saves_it(tmp_path):
    # NumPy stores JAX's bfloat16 as 2-byte void ("|V2"); big_vision's recover_dtype reads it back so.
    spec = vit_zoo.ViTConfig(**SMALL, class_token=False, pooling="gap")
    tensors = big_vision_tensors(spec, seed=5)
    path = write_npz(tmp_path / "bf16.npz", {k: to_bfloat16_bits(v).view("V2") for k, v in tensors.items()})
    with converters.open_checkpoint(path) as checkpoint:
        assert checkpoint.dtype("params/head/bias") == "bfloat16"
    rounded = {k: from_bfloat16_bits(to_bfloat16_bits(v)) for k, v in tensors.items()}
    model, _, _ = convert(path)
    x = images(spec)
    assert relative_error(model(x), big_vision_forward(rounded, x)["logits"]) <= TOLERANCE


@pytest.mark.parametrize("key, layout", [
    # (the MAP head, the scanned encoder and SigLIP's img/ towers convert: test_big_vision_siglip.py)
    ("params/probe", "inlined by the ViT-G development code"),
    ("params/pos_embedding", "sin-cos position embeddings"),  # removed: posemb="sincos2d" stores none
])
def test_layouts_not_converted_are_refused_by_name(tmp_path, key, layout):
    tensors = big_vision_tensors(vit_zoo.ViTConfig(**SMALL))
    if key in tensors:
        del tensors[key]
    else:
        tensors[key] = np.zeros((1, 1, 32), np.float32)
    with converters.open_checkpoint(write_npz(tmp_path / "x.npz", tensors)) as checkpoint:
        assert converters.detect_format(checkpoint) is big_vision
        with pytest.raises(converters.UnsupportedLayoutError, match=layout) as error:
            big_vision.config_fields(checkpoint)
    assert layout in error.value.layout and key in str(error.value)


def test_reference_agrees_with_vit_jax_when_the_class_row_is_zero():
    # big_vision adds the position embedding before the class token; vit_jax after it. With a zero
    # class-token row the two forwards are the same function of the same weights.
    spec = vit_zoo.ViTConfig(**SMALL, representation_size=24)
    values = layouts.weights(spec, seed=6)
    values["pos"][:, 0] = 0
    x = images(spec)
    ours = big_vision_forward(layouts.tensors(layouts.big_vision(spec), values), x)
    theirs = vit_jax_forward(layouts.tensors(layouts.vit_jax(spec), values), x)
    for name in ("encoded", "pooled", "logits"):
        assert relative_error(ours[name], theirs[name]) < 1e-12


def test_load_through_public_api(tmp_path):
    spec = vit_zoo.ViTConfig(**SMALL)
    tensors = big_vision_tensors(spec, seed=8)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    with pytest.warns(UserWarning, match="assumed: .*mean = "):
        model = vit_zoo.load(weights=write_npz(tmp_path / "bv.npz", tensors))  # RGB in [0, 255]
    expected = big_vision_forward(tensors, pixels / 127.5 - 1)["logits"]  # value_range(-1, 1)
    assert relative_error(model(pixels), expected) <= TOLERANCE
