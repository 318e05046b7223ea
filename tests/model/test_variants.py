import pytest

from vit_zoo import list_models, resolve_name
from vit_zoo.model.config import ViTConfig


@pytest.mark.parametrize("alias, expected", [
    ("vit-base-16", ("vit-base-16", None)),
    ("ViT-B_16", ("vit-base-16", None)),
    ("ViT-L_32", ("vit-large-32", None)),
    ("ViT-H_14", ("vit-huge-14", None)),
    ("B/16", ("vit-base-16", None)),
    ("Ti/16", ("vit-tiny-16", None)),
    ("S/32", ("vit-small-32", None)),
    ("ViT-Ti/16", ("vit-tiny-16", None)),
    ("g/14", ("vit-giant-14", None)),
    ("vit_base_patch16_224", ("vit-base-16", 224)),
    ("vit_large_patch16_384", ("vit-large-16", 384)),
    ("vit_base_patch16_224.augreg2_in21k_ft_in1k", ("vit-base-16", 224)),
    ("vit_small_patch32_224.augreg_in21k", ("vit-small-32", 224)),
    ("google/vit-base-patch16-224", ("vit-base-16", 224)),
    ("google/vit-huge-patch14-224-in21k", ("vit-huge-14", 224)),
    ("google/vit-large-patch32-384", ("vit-large-32", 384)),
])
def test_aliases_resolve_to_our_names(alias, expected):
    assert resolve_name(alias) == expected


def test_unknown_name_lists_closest_names():
    with pytest.raises(ValueError) as error:
        resolve_name("vit-bas-16")
    message = str(error.value)
    assert "unknown model name 'vit-bas-16'" in message
    assert "closest: vit-base-16" in message


def test_unknown_patch_size_is_an_error():
    with pytest.raises(ValueError, match="unknown model name 'ViT-B_17'"):
        resolve_name("ViT-B_17")


def test_list_models_holds_every_size_and_patch():
    names = list_models()
    assert len(names) == 6 * 4 == len(set(names))
    for name in ("vit-tiny-16", "vit-small-32", "vit-base-8", "vit-large-16", "vit-huge-14", "vit-giant-14"):
        assert name in names


def test_from_name_uses_image_size_in_the_alias():
    assert ViTConfig.from_name("vit_base_patch16_384").image_size == (384, 384)
    assert ViTConfig.from_name("vit_base_patch16_384", image_size=224).image_size == (224, 224)
    config = ViTConfig.from_name("L/16")
    assert (config.hidden_size, config.mlp_size, config.num_heads, config.num_layers) == (1024, 4096, 16, 24)
    assert config.variant == "vit-large-16"
