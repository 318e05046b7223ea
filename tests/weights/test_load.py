import keras
import numpy as np
import pytest

import vit_zoo
from conftest import random_images, tiny_config, to_numpy


@pytest.fixture
def saved(tmp_path):
    """A tiny model with tanh GELU and its .weights.h5 file."""
    config = tiny_config(gelu="tanh", representation_size=16)
    model = vit_zoo.build(config)
    path = tmp_path / "tiny.weights.h5"
    model.save_weights(path)
    return config, model, path


def test_random_model_from_name():
    model = vit_zoo.load("vit-tiny-16", num_classes=7, image_size=64, drop_path_rate=0.1)
    assert model.output_shape == (None, 7)
    assert model.input_shape == (None, 64, 64, 3)
    assert model.get_layer("block_11_drop_path2").rate == pytest.approx(0.1)


def test_weights_h5_round_trip(saved, rng):
    config, model, path = saved
    images = random_images(rng, 2, 32)
    loaded = vit_zoo.load(config=config, weights=path)
    assert np.array_equal(to_numpy(loaded(images)), to_numpy(model(images)))


def test_weights_h5_features_and_new_head(saved, rng):
    config, model, path = saved
    images = random_images(rng, 2, 32)
    features = vit_zoo.load(config=config, weights=path, include_top=False, pooling="token")
    expected = keras.Model(model.input, model.get_layer("pre_logits").output)(images)
    features.jit_compile = False  # the sub-model runs the plain graph: compare like with like, exactly
    np.testing.assert_array_equal(to_numpy(features(images)), to_numpy(expected))
    fresh = vit_zoo.load(config=config, weights=path, num_classes=3)
    assert fresh.output_shape == (None, 3)
    assert not np.any(fresh.get_layer("head").kernel.numpy())
    np.testing.assert_array_equal(fresh.get_layer("block_01_attn").query_kernel.numpy(),
                                  model.get_layer("block_01_attn").query_kernel.numpy())


def test_resampled_load_keeps_the_class_token_embedding(saved):
    config, model, path = saved
    bigger = vit_zoo.load(config=config, weights=path, image_size=48)
    source = model.get_layer("pos_embed").embeddings.numpy()
    resampled = bigger.get_layer("pos_embed").embeddings.numpy()
    assert resampled.shape == (1, 1 + 36, 32)
    np.testing.assert_array_equal(resampled[:, 0], source[:, 0])
    expected = vit_zoo.resample_position_embeddings(source, (4, 4), (6, 6), 1, "bicubic")
    np.testing.assert_allclose(resampled, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [(48, 48), (40, 56), (32, 32)])
def test_dynamic_size_model_equals_a_model_built_at_that_size(saved, rng, size):
    config, _, path = saved
    dynamic = vit_zoo.load(config=config, weights=path, dynamic_size=True)
    assert dynamic.input_shape == (None, None, None, 3)
    fixed = vit_zoo.load(config=config, weights=path, image_size=size)
    images = random_images(rng, 2, *size)
    np.testing.assert_allclose(to_numpy(dynamic(images)), to_numpy(fixed(images)), rtol=1e-5, atol=1e-5)


def test_checkpoint_of_another_variant_is_named(saved):
    _, _, path = saved
    with pytest.raises(ValueError) as error:
        vit_zoo.load("vit-base-16", weights=path)
    message = str(error.value)
    assert "is a custom ViT (patch 8, width 32, MLP 64, 4 heads, 3 blocks), not vit-base-16" in message
    assert "drop name=" in message


def test_argument_conflicts_and_pretrained_message(saved):
    config, _, path = saved
    with pytest.raises(ValueError, match="pass name= or config=, not both"):
        vit_zoo.load("vit-base-16", config=config)
    with pytest.raises(ValueError, match="pass pretrained= or weights=, not both"):
        vit_zoo.load("vit-base-16", weights=path, pretrained=True)
    with pytest.raises(ValueError, match="load needs a model name"):
        vit_zoo.load()


def test_failed_load_names_the_problem(tmp_path, saved):
    config, _, _ = saved
    other = vit_zoo.build(config.replace(num_layers=2))
    path = tmp_path / "short.weights.h5"
    other.save_weights(path)
    with pytest.raises(ValueError, match="2 blocks"):
        vit_zoo.load(config=config, weights=path)
    missing = tmp_path / "nope.npz"
    with pytest.raises(ValueError, match="does not exist"):
        vit_zoo.load(config=config, weights=missing)
