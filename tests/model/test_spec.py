"""The architecture spec (``vit_zoo.model.spec``) is the one description of a model: the builder creates
exactly its variables in its order, the parameter counts are its sizes summed, and those counts equal the
reference framework's own models (timm's, built on PyTorch's meta device: shapes without memory)."""
import pytest

import vit_zoo
from vit_zoo.model import spec, stats
from vit_zoo.model.config import ViTConfig

from reference_frameworks import require

BASE = dict(image_size=28, patch_size=14, hidden_size=32, mlp_size=48, num_heads=2, num_layers=2, num_classes=5)
CONFIGS = {
    "classic": {},
    "deit-distilled": dict(distillation_token=True, head="distilled"),
    "deit3": dict(layer_scale=1e-6, prefix_position_embeddings=False),
    "dinov2": dict(layer_scale=1e-5, position_grid=(3, 3), pooling="token-mean"),
    "dinov2-reg-swiglu": dict(layer_scale=1e-5, register_tokens=4, position_grid=(3, 3), pooling="token-mean",
                              mlp="swiglu"),
    "registers-without-prefix-positions": dict(register_tokens=2, prefix_position_embeddings=False,
                                               distillation_token=True),
    "gap": dict(class_token=False, pooling="gap"),
    "fc-norm-pre-logits": dict(pooling="avg-fcnorm", representation_size=8),
    "clip-tower": dict(pre_norm=True, patch_bias=False, gelu="quick", projection_size=12, num_classes=0),
    "clip-tower-classifier": dict(pre_norm=True, patch_bias=False, projection_size=12, layer_scale=1e-5),
    "siglip-tower": dict(class_token=False, pooling="map", gelu="tanh", num_classes=0),
    "siglip-tower-classifier": dict(class_token=False, pooling="map"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("include_top", [True, False])
def test_the_builder_creates_the_spec_variables_in_order(name, include_top):
    config = ViTConfig(**{**BASE, **CONFIGS[name]})
    pooling = None if include_top else ("gap" if config.pooling in ("gap", "avg-fcnorm") else config.pooling)
    pooling = "token" if pooling is None and not include_top and config.projection_size else pooling
    model = vit_zoo.build(config, include_top=include_top, pooling=pooling)
    assert [(w.path, tuple(w.shape)) for w in model.weights] == \
        [(v.path, v.shape) for v in spec.variables(config, include_top)]
    assert stats.count_parameters(config, include_top) == model.count_params()


def test_every_slot_has_a_kind_and_every_optional_slot_says_what_needs_it():
    kinds = spec.slot_kinds()
    for name in CONFIGS:
        assert {v.slot for v in spec.variables(ViTConfig(**{**BASE, **CONFIGS[name]}))} <= set(kinds)
    assert set(kinds.values()) == {"conv_kernel", "bias", "tensor", "heads_in_kernel", "heads_bias",
                                   "heads_out_kernel", "norm_scale", "norm_bias", "dense_kernel"}
    for slot in ("distillation_token", "register_tokens", "ls1", "ls2", "head_dist", "norm_pre", "map",
                 "projection", "patch_embed.bias"):
        assert slot in spec.NEEDED_FOR


# (our name, timm architecture, whether timm's model has its classifier by default, ViTConfig changes for
# how timm stores it): timm's register models keep no class-token row in pos_embed (no_embed_class=True)
TIMM_MODELS = [
    ("deit-tiny-16", "deit_tiny_patch16_224", True, {}),
    ("deit-small-16", "deit_small_patch16_224", True, {}),
    ("deit-base-16", "deit_base_patch16_384", True, dict(image_size=384)),
    ("deit-distilled-tiny-16", "deit_tiny_distilled_patch16_224", True, {}),
    ("deit-distilled-small-16", "deit_small_distilled_patch16_224", True, {}),
    ("deit-distilled-base-16", "deit_base_distilled_patch16_384", True, dict(image_size=384)),
    ("deit3-small-16", "deit3_small_patch16_224", True, {}),
    ("deit3-medium-16", "deit3_medium_patch16_224", True, {}),
    ("deit3-base-16", "deit3_base_patch16_384", True, dict(image_size=384)),
    ("deit3-large-16", "deit3_large_patch16_224", True, {}),
    ("deit3-huge-14", "deit3_huge_patch14_224", True, {}),
    ("dinov2-small-14", "vit_small_patch14_dinov2", False, {}),
    ("dinov2-base-14", "vit_base_patch14_dinov2", False, {}),
    ("dinov2-large-14", "vit_large_patch14_dinov2", False, {}),
    ("dinov2-giant-14", "vit_giant_patch14_dinov2", False, {}),
    ("dinov2-reg4-small-14", "vit_small_patch14_reg4_dinov2", False, dict(prefix_position_embeddings=False)),
    ("dinov2-reg4-base-14", "vit_base_patch14_reg4_dinov2", False, dict(prefix_position_embeddings=False)),
    ("dinov2-reg4-large-14", "vit_large_patch14_reg4_dinov2", False, dict(prefix_position_embeddings=False)),
    ("dinov2-reg4-giant-14", "vit_giant_patch14_reg4_dinov2", False, dict(prefix_position_embeddings=False)),
    ("vit-large-16", "vit_large_patch16_224", True, {}),
    # image towers: timm stores CLIP's bias-free projection as its head (with a zero bias; counted apart)
    ("clip-base-32", "vit_base_patch32_clip_224.openai", True, {}),
    ("clip-base-16", "vit_base_patch16_clip_224.openai", True, {}),
    ("clip-large-14", "vit_large_patch14_clip_224.openai", True, {}),
    ("clip-large-14", "vit_large_patch14_clip_336.openai", True, dict(image_size=336)),
    ("clip-huge-14", "vit_huge_patch14_clip_224.laion2b", True, {}),
    ("clip-giant-14", "vit_giant_patch14_clip_224.laion2b", True, {}),
    ("clip-gigantic-14", "vit_gigantic_patch14_clip_224.laion2b", True, {}),
    ("siglip-base-16", "vit_base_patch16_siglip_224.webli", True, {}),
    ("siglip-base-16", "vit_base_patch16_siglip_512.webli", True, dict(image_size=512)),
    ("siglip-large-16", "vit_large_patch16_siglip_384.webli", True, dict(image_size=384)),
    ("siglip-so400m-14", "vit_so400m_patch14_siglip_224.webli", True, {}),
    ("siglip-so400m-14", "vit_so400m_patch14_siglip_384.webli", True, dict(image_size=384)),
    ("siglip2-base-16", "vit_base_patch16_siglip_256.v2_webli", True, dict(image_size=256)),
    ("siglip2-so400m-16", "vit_so400m_patch16_siglip_256.v2_webli", True, dict(image_size=256)),
    ("siglip2-giantopt-16", "vit_giantopt_patch16_siglip_256.v2_webli", True, dict(image_size=256)),
]


@pytest.mark.parametrize("name, architecture, with_head, changes", TIMM_MODELS,
                         ids=[row[1] for row in TIMM_MODELS])
def test_parameter_counts_equal_timm_for_every_published_size(name, architecture, with_head, changes):
    timm, torch = require("timm"), require("torch")
    with torch.device("meta"):
        reference = timm.create_model(architecture, pretrained=False)
    expected = sum(p.numel() for p in reference.parameters())
    if name.startswith("clip-"):
        expected -= reference.head.bias.numel()
    config = ViTConfig.from_name(name, **changes)
    assert stats.count_parameters(config, include_top=with_head) == expected

