import re

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
    names = list_models("vit")
    assert len(names) == 6 * 4 == len(set(names))
    for name in ("vit-tiny-16", "vit-small-32", "vit-base-8", "vit-large-16", "vit-huge-14", "vit-giant-14"):
        assert name in names


def test_list_models_holds_every_family():
    names = list_models()
    assert len(names) == len(set(names)) == 24 + 3 + 3 + 10 + 4 + 4 + 5 * 3 + 4 * 2 * 2
    assert list_models("dinov2-reg4") == ["dinov2-reg4-small-14", "dinov2-reg4-base-14", "dinov2-reg4-large-14",
                                          "dinov2-reg4-giant-14"]
    assert list_models("deit-distilled") == ["deit-distilled-tiny-16", "deit-distilled-small-16",
                                             "deit-distilled-base-16"]
    with pytest.raises(ValueError, match="unknown family 'dino'; families: vit, deit, deit-distilled, deit3, "
                                         "dinov2, dinov2-reg4, clip, siglip, siglip2"):
        list_models("dino")


@pytest.mark.parametrize("alias, expected", [
    # timm
    ("deit_tiny_patch16_224", ("deit-tiny-16", 224)),
    ("deit_base_patch16_384.fb_in1k", ("deit-base-16", 384)),
    ("deit_small_distilled_patch16_224.fb_in1k", ("deit-distilled-small-16", 224)),
    ("deit3_large_patch16_384.fb_in22k_ft_in1k", ("deit3-large-16", 384)),
    ("deit3_huge_patch14_224", ("deit3-huge-14", 224)),
    ("vit_small_patch14_dinov2.lvd142m", ("dinov2-small-14", None)),
    ("vit_giant_patch14_reg4_dinov2", ("dinov2-reg4-giant-14", None)),
    # Hugging Face
    ("facebook/deit-base-distilled-patch16-384", ("deit-distilled-base-16", 384)),
    ("facebook/deit-tiny-patch16-224", ("deit-tiny-16", 224)),
    ("facebook/dinov2-large", ("dinov2-large-14", None)),
    ("facebook/dinov2-small-imagenet1k-1-layer", ("dinov2-small-14", None)),
    ("facebook/dinov2-with-registers-base", ("dinov2-reg4-base-14", None)),
    # the original releases
    ("dinov2_vitg14", ("dinov2-giant-14", None)),
    ("dinov2_vits14_reg", ("dinov2-reg4-small-14", None)),
    ("dinov2_vitb14_reg4_pretrain", ("dinov2-reg4-base-14", None)),
    ("dinov2_vitl14_lc", ("dinov2-large-14", None)),
    ("deit_base_patch16_LS", ("deit3-base-16", None)),
    ("vit_base_patch16_clip_224.openai", ("clip-base-16", 224)),
    ("vit_large_patch14_clip_336", ("clip-large-14", 336)),
    ("vit_gigantic_patch14_clip_224.laion2b", ("clip-gigantic-14", 224)),
    ("openai/clip-vit-base-patch32", ("clip-base-32", None)),
    ("openai/clip-vit-large-patch14-336", ("clip-large-14", 336)),
    ("laion/CLIP-ViT-H-14-laion2B-s32B-b79K", ("clip-huge-14", None)),
    ("ViT-bigG-14", ("clip-gigantic-14", None)),
    ("ViT-L-14-336", ("clip-large-14", 336)),
    ("vit_so400m_patch14_siglip_384.webli", ("siglip-so400m-14", 384)),
    ("vit_giantopt_patch16_siglip_256", ("siglip-giantopt-16", 256)),
    ("google/siglip-base-patch16-512", ("siglip-base-16", 512)),
    ("google/siglip2-so400m-patch14-384", ("siglip2-so400m-14", 384)),
    ("timm/ViT-SO400M-14-SigLIP-384", ("siglip-so400m-14", 384)),
    ("ViT-B-16-SigLIP2", ("siglip2-base-16", None)),
])
def test_family_aliases_resolve_to_our_names(alias, expected):
    assert resolve_name(alias) == expected


@pytest.mark.parametrize("alias, family", [
    ("vit_so400m_patch14_siglip_gap_224", "SigLIP towers without the MAP head"),
    ("google/siglip2-base-patch16-naflex", "SigLIP towers without the MAP head"),
    ("eva02_base_patch14_224", "EVA / EVA-02"),
    ("beit_base_patch16_224", "BEiT (relative position bias)"),
    ("vit_base_r50_s16_384", "ResNet-hybrid ViTs"),
])
def test_names_of_unmodelled_families_are_refused_by_family(alias, family):
    """A name vit_zoo does not know exactly is refused -- never resolved to a classic ViT of the same size."""
    with pytest.raises(ValueError, match=f"unknown model name {alias!r}: it names a model of the "
                                         f"{re.escape(family)}"):
        resolve_name(alias)


@pytest.mark.parametrize("alias", ["vit_small_patch14_dinov3", "vit_base_patch16_224_mystery",
                                   "google/vit-base-patch16-224-foo"])
def test_near_miss_names_are_refused_with_the_nearest_names(alias):
    with pytest.raises(ValueError, match=f"unknown model name {alias!r}; (closest|known families)"):
        resolve_name(alias)


def test_family_configs_carry_their_architecture_and_numerics():
    giant = ViTConfig.from_name("dinov2_vitg14_reg")
    assert (giant.hidden_size, giant.mlp_size, giant.num_heads, giant.num_layers, giant.mlp) == \
        (1536, 4096, 24, 40, "swiglu")
    assert (giant.register_tokens, giant.layer_scale, giant.position_grid, giant.image_size) == \
        (4, 1e-5, (37, 37), (224, 224))
    assert giant.position_embedding_resampling == "bicubic-antialias"
    assert ViTConfig.from_name("dinov2-small-14").position_embedding_resampling == "bicubic-offset"
    deit3 = ViTConfig.from_name("deit3_medium_patch16_224")
    assert (deit3.hidden_size, deit3.num_heads, deit3.prefix_position_embeddings, deit3.layer_scale) == \
        (512, 8, False, 1e-6)
    distilled = ViTConfig.from_name("deit_base_distilled_patch16_384")
    assert (distilled.num_prefix_tokens, distilled.head, distilled.num_position_embeddings) == (2, "distilled", 578)
    assert distilled.mean == (0.485, 0.456, 0.406)


def test_variant_is_read_from_the_architecture_not_the_numerics():
    assert ViTConfig.from_name("dinov2-base-14").replace(image_size=448, layer_scale=1.0).variant == "dinov2-base-14"
    # a DeiT is a classic ViT: the mean/std tell which name it carries
    assert ViTConfig.from_name("deit-small-16").variant == "deit-small-16"
    assert ViTConfig.from_name("vit-small-16").variant == "vit-small-16"
    # without LayerScale, a DINOv2 is architecturally a classic ViT-S/14
    assert ViTConfig.from_name("dinov2-small-14").replace(layer_scale=None).variant == "vit-small-14"
    assert ViTConfig.from_name("dinov2-small-14").replace(num_heads=12).variant is None


def test_from_name_uses_image_size_in_the_alias():
    assert ViTConfig.from_name("vit_base_patch16_384").image_size == (384, 384)
    assert ViTConfig.from_name("vit_base_patch16_384", image_size=224).image_size == (224, 224)
    config = ViTConfig.from_name("L/16")
    assert (config.hidden_size, config.mlp_size, config.num_heads, config.num_layers) == (1024, 4096, 16, 24)
    assert config.variant == "vit-large-16"
