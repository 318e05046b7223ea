import keras
import numpy as np
import pytest

import vit_zoo
from vit_zoo import ViTConfig, build, count_parameters
from conftest import random_images, tiny_config, to_numpy

# reference.md, Table 1 counts (timm's vit_*_224 models give the same 1000-class numbers).
REFERENCE_PARAMETERS = {
    "vit-tiny-16": (5_717_416, 9_777_171),
    "vit-small-16": (22_050_664, 30_223_059),
    "vit-small-32": (22_878_952, 31_051_347),
    "vit-base-8": (86_576_872, 103_195_731),
    "vit-base-16": (86_567_656, 103_186_515),
    "vit-base-32": (88_224_232, 104_843_091),
    "vit-large-16": (304_326_632, 326_740_307),
    "vit-large-32": (306_535_400, 328_949_075),
    "vit-huge-14": (632_045_800, 660_385_363),
    "vit-giant-14": (1_012_611_432, None),
}


def _built_count(config, **options):
    return build(config, **options).count_params()


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMETERS))
def test_parameter_counts_equal_the_reference_table(name):
    """The formula (held to real builds below) against the paper's table: no large model is built."""
    imagenet1k, imagenet21k = REFERENCE_PARAMETERS[name]
    config = ViTConfig.from_name(name)
    assert count_parameters(config) == imagenet1k
    if imagenet21k is not None:
        assert count_parameters(config.replace(num_classes=21843, representation_size=config.hidden_size)) \
            == imagenet21k


def test_parameter_count_at_384():
    assert count_parameters(ViTConfig.from_name("vit-base-16", image_size=384)) == 86_859_496


def test_a_named_variant_builds_with_the_reference_count():
    assert _built_count(ViTConfig.from_name("vit-tiny-16")) == REFERENCE_PARAMETERS["vit-tiny-16"][0]


# every term of the formula varied on small builds: patch, grid (square and not), width, MLP, depth,
# class token, pooling (final norm or fc_norm), pre-logits, qkv biases, classes, with and without the head
COUNTED_CONFIGS = {
    "tiny": {},
    "patch-4-rectangular": dict(patch_size=4, image_size=(32, 48)),
    "wide-deep": dict(hidden_size=48, mlp_size=80, num_heads=6, num_layers=5, num_classes=7),
    "pre-logits": dict(representation_size=24, num_classes=21),
    "gap-no-class-token": dict(class_token=False, pooling="gap"),
    "avg-fcnorm": dict(pooling="avg-fcnorm"),
    "no-qkv-bias": dict(qkv_bias=False, num_classes=3),
}


@pytest.mark.parametrize("case", list(COUNTED_CONFIGS))
def test_parameter_formula_equals_built_models(case):
    config = tiny_config(**COUNTED_CONFIGS[case])
    assert _built_count(config) == count_parameters(config)
    pooling = "gap" if config.pooling != "token" else "token"
    assert _built_count(config, include_top=False, pooling=pooling) == count_parameters(config, include_top=False)


# Published compute per image, in GMACs (multiply-adds; vit_zoo counts 2 FLOPs per multiply-add): DeiT
# (Touvron et al. 2021, Table 1, "FLOPs" counted as multiply-adds by fvcore) for Ti/S/B at 224 and B at 384,
# timm's results table (``gmacs`` of vit_large_patch16_224, also from fvcore) for L/16. Both round to 0.1.
PUBLISHED_GMACS = {("vit-tiny-16", 224): 1.3, ("vit-small-16", 224): 4.6, ("vit-base-16", 224): 17.6,
                   ("vit-base-16", 384): 55.5, ("vit-large-16", 224): 61.6}


@pytest.mark.parametrize("name, image_size", sorted(PUBLISHED_GMACS))
def test_flops_equal_the_published_figures(name, image_size):
    flops = vit_zoo.flops_per_image(ViTConfig.from_name(name), image_size=image_size)
    assert round(flops / 2e9, 1) == PUBLISHED_GMACS[name, image_size]


def test_a_large_variant_builds_with_the_reference_count():
    """ViT-L/16 built (with its head, no forward pass): timm's vit_large_patch16_224 has 304,326,632 too."""
    assert _built_count(ViTConfig.from_name("vit-large-16")) == 304_326_632


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("image_size", [32, (32, 48)])
def test_output_shapes(rng, batch, image_size):
    config = tiny_config(image_size=image_size)
    height, width = config.image_size
    images = random_images(rng, batch, height, width)
    tokens = config.num_tokens
    assert build(config)(images).shape == (batch, 10)
    assert build(config, include_top=False, pooling="token")(images).shape == (batch, 32)
    assert build(config, include_top=False, pooling="gap")(images).shape == (batch, 32)
    assert build(config, include_top=False, pooling=None)(images).shape == (batch, tokens, 32)
    with_pre_logits = config.replace(representation_size=24)
    assert build(with_pre_logits, include_top=False, pooling="token")(images).shape == (batch, 24)
    assert build(with_pre_logits)(images).shape == (batch, 10)


def test_gap_and_fcnorm_models_without_class_token(rng):
    images = random_images(rng, 2, 32)
    gap = tiny_config(class_token=False, pooling="gap")
    assert build(gap, include_top=False)(images).shape == (2, 16, 32)
    fcnorm = build(tiny_config(pooling="avg-fcnorm"))
    names = {layer.name for layer in fcnorm.layers}
    assert "fc_norm" in names and "encoder_norm" not in names
    assert fcnorm(images).shape == (2, 10)


def test_pooling_choices_are_checked():
    with pytest.raises(ValueError, match="pooling 'gap' differs from the pooling 'token'"):
        build(tiny_config(), include_top=True, pooling="gap")
    with pytest.raises(ValueError, match="pooling 'token' needs a class token"):
        build(tiny_config(class_token=False, pooling="gap"), include_top=False, pooling="token")
    with pytest.raises(ValueError, match="pooling must be None, 'token', 'gap', 'token-mean' or 'map', got 'max'"):
        build(tiny_config(), include_top=False, pooling="max")


def test_gap_features_are_the_mean_of_patch_tokens(rng):
    config = tiny_config()
    images = random_images(rng, 2, 32)
    sequence = build(config, include_top=False)
    gap = build(config, include_top=False, pooling="gap")
    gap.set_weights(sequence.get_weights())
    np.testing.assert_allclose(to_numpy(gap(images)), np.mean(to_numpy(sequence(images))[:, 1:], axis=1), rtol=1e-6,
                               atol=1e-6)


def test_preprocessing_equals_normalised_input(rng):
    config = tiny_config(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    with_pre = build(config, include_preprocessing=True)
    without = build(config, include_preprocessing=False)
    without.set_weights(with_pre.get_weights())
    images = random_images(rng, 2, 32)
    normalised = (images / 255.0 - np.array(config.mean)) / np.array(config.std)
    np.testing.assert_allclose(to_numpy(with_pre(images)), to_numpy(without(normalised.astype("float32"))), rtol=1e-5,
                               atol=1e-5)


def test_inference_is_deterministic_and_drop_path_only_acts_in_training(rng):
    model = build(tiny_config(drop_path_rate=0.5, dropout_rate=0.1))
    images = random_images(rng, 4, 32)
    first, second = to_numpy(model(images)), to_numpy(model(images))
    assert np.array_equal(first, second)
    assert np.array_equal(first, to_numpy(model(images, training=False)))
    train_a, train_b = to_numpy(model(images, training=True)), to_numpy(model(images, training=True))
    assert not np.allclose(train_a, train_b)
    assert not np.allclose(train_a, first)


def test_drop_path_rate_grows_linearly_over_blocks():
    model = build(tiny_config(drop_path_rate=0.3))
    rates = [model.get_layer(f"block_{i:02d}_drop_path1").rate for i in range(3)]
    np.testing.assert_allclose(rates, [0.0, 0.15, 0.3])


def test_keras_round_trip(tmp_path, rng):
    model = build(tiny_config(gelu="tanh", drop_path_rate=0.1, representation_size=16))
    images = random_images(rng, 2, 32)
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert np.array_equal(to_numpy(model(images)), to_numpy(restored(images)))
    assert [w.path for w in restored.weights] == [w.path for w in model.weights]


@pytest.mark.parametrize("policy, tolerance", [("mixed_bfloat16", 0.05), ("mixed_float16", 0.005)])
def test_mixed_precision_returns_float32_close_to_float32(rng, policy, tolerance):
    keras.utils.set_random_seed(0)  # the measured error below depends on the weights
    config = tiny_config()
    reference = build(config)
    mixed = build(config, dtype=policy)
    mixed.set_weights(reference.get_weights())
    images = random_images(rng, 2, 32)
    out = mixed(images)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    out, expected = to_numpy(out), to_numpy(reference(images))
    # measured max |Δ| / max |logit| with seed 0: bf16 0.029, fp16 0.0016 (bf16 keeps 8 mantissa bits)
    assert np.max(np.abs(out - expected)) / np.max(np.abs(expected)) < tolerance


def test_layer_names_are_stable_and_slash_free():
    model = build(tiny_config(representation_size=16))
    names = [layer.name for layer in model.layers]
    assert not any("/" in name for name in names)
    for name in ("preprocessing", "patch_embed", "class_token", "pos_embed", "block_00_attn", "block_02_mlp_fc2",
                 "encoder_norm", "pool", "pre_logits", "head", "predictions"):
        assert name in names
    attention = model.get_layer("block_00_attn")
    assert [tuple(w.shape) for w in attention.weights[:2]] == [(32, 4, 8), (4, 8)]
    assert tuple(attention.output_kernel.shape) == (4, 8, 32)


def test_build_rejects_foreign_config():
    with pytest.raises(TypeError, match="config must be a vit_zoo.ViTConfig"):
        build({"hidden_size": 3})


def test_load_model_in_a_fresh_process_needs_only_import_vit_zoo(tmp_path, rng):
    import subprocess
    import sys

    model = build(tiny_config())
    path = tmp_path / "m.keras"
    model.save(path)
    images = random_images(rng, 1, 32)
    np.save(tmp_path / "x.npy", images)
    script = ("import sys, numpy as np, keras, vit_zoo\n"
              "m = keras.models.load_model(sys.argv[1])\n"
              "np.save(sys.argv[2], keras.ops.convert_to_numpy(m(np.load(sys.argv[3]))))\n")
    done = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "y.npy"),
                           str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), to_numpy(model(images)), rtol=1e-5, atol=1e-6)
