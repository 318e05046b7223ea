import dataclasses

import pytest

from vit_zoo import ViTConfig


def test_defaults_are_vit_base_16():
    config = ViTConfig()
    assert config.variant == "vit-base-16"
    assert config.image_size == (224, 224)
    assert (config.grid_size, config.num_tokens, config.head_dim) == ((14, 14), 197, 64)


def test_image_size_pair_and_non_square_grid():
    config = ViTConfig(image_size=(224, 320))
    assert config.grid_size == (14, 20)
    assert config.num_tokens == 14 * 20 + 1


def test_dict_round_trip():
    config = ViTConfig(image_size=(64, 96), gelu="tanh", mean=(0.1, 0.2, 0.3), representation_size=768)
    assert ViTConfig.from_dict(config.to_dict()) == config


def test_an_image_size_the_patch_does_not_divide_drops_the_remainder_as_the_sources_do():
    """SigLIP So400m/14 at 384 px: PyTorch's and Keras' strided patch convolution see 27 x 14 = 378 px."""
    config = ViTConfig(image_size=384, patch_size=14, hidden_size=32, mlp_size=64, num_heads=2, num_layers=1)
    assert (config.grid_size, config.num_position_embeddings) == ((27, 27), 1 + 27 * 27)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ViTConfig().hidden_size = 12


@pytest.mark.parametrize("changes, message", [
    (dict(image_size=(224, 12)), "image_size (224, 12) is smaller than one patch (16 px)"),
    (dict(num_heads=10), "num_heads 10 does not divide hidden_size 768"),
    (dict(pooling="max"), "pooling must be one of ['token', 'gap', 'avg-fcnorm', 'token-mean', 'map'], got 'max'"),
    (dict(class_token=False), "pooling 'token' needs class_token=True"),
    (dict(gelu="relu"), "gelu must be one of ['exact', 'tanh', 'quick'], got 'relu'"),
    (dict(layer_norm_epsilon=0), "layer_norm_epsilon must be a float in (0, 1), got 0"),
    (dict(dropout_rate=1.0), "dropout_rate must be a float in [0, 1), got 1.0"),
    (dict(drop_path_rate=-0.1), "drop_path_rate must be a float in [0, 1), got -0.1"),
    (dict(num_classes=-1), "num_classes must be a non-negative integer (0: no classifier, the model outputs its "
                           "image embedding), got -1"),
    (dict(projection_size=0), "projection_size must be None or a positive integer, got 0"),
    (dict(pre_norm=1), "pre_norm must be True or False, got 1"),
    (dict(patch_size=0), "patch_size must be a positive integer, got 0"),
    (dict(image_size=(224,)), "image_size must be an int or a (height, width) pair"),
    (dict(std=(0.5, 0.0, 0.5)), "std must be positive for every channel"),
    (dict(mean=(0.5, 0.5)), "mean must be three finite floats (R, G, B)"),
    (dict(representation_size=0), "representation_size must be None or a positive integer"),
    (dict(position_embedding_resampling="nearest"), "position_embedding_resampling must be one of"),
])
def test_invalid_configs_name_the_field_and_what_is_allowed(changes, message):
    with pytest.raises(ValueError) as error:
        ViTConfig(**changes)
    assert message in str(error.value)


def test_unknown_fields_in_dict_are_listed():
    with pytest.raises(ValueError, match=r"unknown ViTConfig fields \['width'\]"):
        ViTConfig.from_dict({"width": 3})
