"""The timm converter on the ViT family -- DeiT, DeiT distilled, DeiT-III, DINOv2 (registers, giant's packed
SwiGLU) -- against timm itself: tiny random timm models built by timm's own classes with the family's real
model_args, saved as users hold them (model.safetensors + timm's config.json; the original DeiT / DeiT-III
.pth releases), loaded with vit_zoo and held to timm's outputs at max|a − b| / max|b| ≤ 1e-4 (fp32): logits
(or pooled features) and the tokens, at the stored size, at another size (timm created with that img_size,
its position embeddings resampled by its own loader) and with dynamic input sizes."""
import warnings

import pytest

import timm_reference as ref
from conftest import load_converted
from timm_reference import assert_parity, ours
from vit_zoo import converters
from vit_zoo.converters import timm, timm_config
from vit_zoo.model import variants

TINY = dict(embed_dim=64, num_heads=2, depth=2)

# family: (timm architecture, create_model overrides, stored size, a larger size, a smaller size)
FAMILIES = {
    "dinov2": ("vit_small_patch14_dinov2", TINY, 70, 98, 42),
    "dinov2-reg4": ("vit_small_patch14_reg4_dinov2", TINY, 70, 98, 42),
    # SwiGLUPacked: fc1 (2M, D), SiLU on the first half; width 48 gives an even hidden width (256)
    "dinov2-giant-swiglu": ("vit_giant_patch14_dinov2", dict(TINY, embed_dim=48), 70, 98, 42),
    "deit": ("deit_tiny_patch16_224", dict(TINY, num_classes=5), 64, 96, 48),
    "deit-distilled": ("deit_tiny_distilled_patch16_224", dict(TINY, num_classes=5), 64, 96, 48),
    "deit3": ("deit3_small_patch16_224", dict(TINY, num_classes=5), 64, 96, 48),
}
# What each family's checkpoint must read as (beyond sizes).
EXPECTED = {
    "dinov2": dict(register_tokens=0, prefix_position_embeddings=True, layer_scale=1e-5, mlp="gelu", head="linear"),
    "dinov2-reg4": dict(register_tokens=4, prefix_position_embeddings=False, layer_scale=1e-5, mlp="gelu"),
    "dinov2-giant-swiglu": dict(register_tokens=0, layer_scale=1e-5, mlp="swiglu", mlp_size=128),
    "deit": dict(distillation_token=False, layer_scale=None, prefix_position_embeddings=True, position_grid=None),
    "deit-distilled": dict(distillation_token=True, head="distilled", prefix_position_embeddings=True),
    "deit3": dict(layer_scale=1e-6, prefix_position_embeddings=False, position_grid=None),
}
_SAVED = {}


def saved(family, tmp_path_factory):
    """(model.safetensors path, the timm model) of a family, made once per module."""
    if family not in _SAVED:
        name, overrides, size, _, _ = FAMILIES[family]
        model = ref.build(name, seed=len(_SAVED), img_size=size, **overrides)
        _SAVED[family] = ref.save_safetensors(model, tmp_path_factory.mktemp(family)), model
    return _SAVED[family]


# ---- model.safetensors + timm's config.json --------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_parity_at_the_stored_size(family, tmp_path_factory):
    path, reference = saved(family, tmp_path_factory)
    name, overrides, size, _, _ = FAMILIES[family]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # timm's config.json states every numeric: nothing is assumed
        view, config = ours(path)
    expected = dict(EXPECTED[family], patch_size=reference.patch_embed.patch_size[0], num_layers=2,
                    hidden_size=overrides["embed_dim"], num_heads=2, gelu="exact", layer_norm_epsilon=1e-6,
                    position_embedding_resampling="bicubic-antialias", mean=variants.IMAGENET_MEAN,
                    std=variants.IMAGENET_STD)
    grid = (size // expected["patch_size"],) * 2
    expected.setdefault("position_grid", grid if family.startswith("dinov2") else None)
    assert {key: getattr(config, key) for key in expected} == expected
    assert config.image_size == (size, size)
    assert_parity(view, reference, size, family)


@pytest.mark.parametrize("family", FAMILIES)
def test_parity_at_another_size(family, tmp_path_factory):
    """timm created with img_size=other loads the checkpoint through its own filter (which resamples the
    position embeddings, bicubic with antialias); ours is loaded with image_size=other."""
    path, reference = saved(family, tmp_path_factory)
    name, overrides, _, larger, _ = FAMILIES[family]
    resized = ref.load_resized(name, reference.state_dict(), img_size=larger, **overrides)
    view, _ = ours(path, image_size=larger)
    assert_parity(view, resized, larger, f"{family} (image_size)")


@pytest.mark.parametrize("family", FAMILIES)
def test_parity_with_dynamic_sizes(family, tmp_path_factory):
    """timm with dynamic_img_size=True resamples the stored table to each input in forward; so does a
    dynamic_size=True model, here at a smaller input (antialiased downsampling) and a larger one."""
    path, reference = saved(family, tmp_path_factory)
    name, overrides, size, larger, smaller = FAMILIES[family]
    dynamic = ref.load_resized(name, reference.state_dict(), img_size=size, dynamic_img_size=True, **overrides)
    view, _ = ours(path, dynamic_size=True)
    for other in (smaller, larger):
        assert_parity(view, dynamic, other, f"{family} (dynamic)")


@pytest.mark.xla
def test_parity_on_the_default_engine(tmp_path_factory):
    """The register model on vit_zoo's default engine (XLA-compiled predict)."""
    path, reference = saved("dinov2-reg4", tmp_path_factory)
    view, _ = ours(path)
    assert_parity(view, reference, FAMILIES["dinov2-reg4"][2], "dinov2-reg4 (default engine)", predict=True)


# ---- without timm's config.json: the architecture from the tensors, numerics assumed ---------------------
@pytest.mark.parametrize("name, heads, family", [("deit3_medium_patch16_224", 8, "deit3"),
                                                 ("vit_small_patch14_reg4_dinov2", 6, "dinov2-reg4")])
def test_without_config_json(name, heads, family, tmp_path):
    """Real widths (DeiT-III medium: 512 wide, 8 heads), one block: the heads come from the family's table,
    ImageNet's mean/std are assumed, with one warning."""
    patch = 16 if name.startswith("deit3") else 14
    reference = ref.build(name, seed=3, depth=1, img_size=2 * patch)
    path = ref.save_safetensors(reference, tmp_path, config_json=False)
    with pytest.warns(UserWarning, match="assumed: .*mean = .*num_heads = ") as caught:
        view, config = ours(path)
    assert len([w for w in caught if "assumed:" in str(w.message)]) == 1
    assert (config.num_heads, config.mean, config.std) == (heads, variants.IMAGENET_MEAN, variants.IMAGENET_STD)
    assert config.position_grid == ((2, 2) if family.startswith("dinov2") else None)
    assert_parity(view, reference, 2 * patch, f"{name} without config.json")


def test_heads_from_the_family_tables():
    """Widths whose heads differ from the classic table: DINOv2 giant 1536 → 24, DeiT-III medium 512 → 8."""
    assert timm_config.num_heads({}, 1536, None, "dinov2", "x") == 24
    assert timm_config.num_heads({}, 512, None, "deit3", "x") == 8
    assert timm_config.num_heads({}, 768, None, "deit", "x") == 12
    assert timm_config.num_heads({"architecture": "vit_giant_patch14_reg4_dinov2"}, 1536, None, "vit", "x") == 24


# ---- the original DeiT / DeiT-III releases (.pth of {"model": state dict}) -------------------------------
@pytest.mark.parametrize("family, legacy", [("deit-distilled", False), ("deit3", False), ("deit", True)])
def test_original_release_pth(family, legacy, tmp_path):
    """DeiT's keys are timm's; DeiT-III names LayerScale gamma_1 / gamma_2 (models_v2.py). Without a
    config.json the numerics are assumed (ImageNet mean/std for DeiT), and the provenance says which release
    format the weights came from."""
    name, overrides, size, _, _ = FAMILIES[family]
    reference = ref.build(name, seed=5, img_size=size, **dict(overrides, embed_dim=192, num_heads=3))
    path = ref.save_release(reference, tmp_path / "release.pth", deit3=family == "deit3", legacy=legacy)
    with converters.open_checkpoint(path) as checkpoint:
        keys = checkpoint.keys()
        assert checkpoint.metadata["state_dict_key"] == "model"
    assert ("blocks.0.gamma_1" in keys) == (family == "deit3") and "blocks.0.ls1.gamma" not in keys
    with pytest.warns(UserWarning, match="assumed:"):
        view, config = ours(path)
    assert (config.num_heads, config.mean) == (3, variants.IMAGENET_MEAN)
    assert (config.layer_scale is not None) == (family == "deit3")
    model, _ = load_converted(path)
    assert (model.identity.provenance.format, model.identity.provenance.source) == ("deit-pth", str(path))
    assert_parity(view, reference, size, f"{family} release .pth")


def test_a_plain_timm_pth_is_timm_format(tmp_path):
    reference = ref.build("deit_tiny_patch16_224", img_size=32, **dict(TINY, embed_dim=192, num_heads=3))
    path = tmp_path / "pytorch_model.bin"
    ref.torch.save(reference.state_dict(), path)
    with pytest.warns(UserWarning, match="assumed:"):
        model, _ = load_converted(path)
    assert model.identity.provenance.format == "timm"


def test_pth_without_torch_names_the_safetensors_alternative(tmp_path, monkeypatch):
    path = tmp_path / "release.pth"
    path.write_bytes(b"PK\x03\x04 not read")
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(converters.CheckpointError, match=r"needs torch .*model\.safetensors instead"):
        converters.open_checkpoint(path)


# ---- refusals: what vit_zoo does not model is named with its family, never half-loaded -------------------
@pytest.mark.parametrize("name, says", [
    ("eva02_tiny_patch14_224", "EVA / BEiT attention"),
    ("beit_base_patch16_224", "BEiT relative position bias"),
    # CLIP and SigLIP towers load with timm's config.json (tests/converters/test_timm_tower.py); without it
    # their GELU flavour and epsilon are unknown
    ("vit_base_patch16_siglip_224", "SigLIP .*without timm's config.json"),
    ("vit_base_patch16_clip_224", "CLIP .*without timm's config.json"),
    ("vit_base_patch16_reg4_gap_256", "register tokens without a class token"),
    ("vit_small_patch16_18x2_224", "parallel blocks"),
])
def test_unmodelled_timm_models_are_refused_by_name(name, says, tmp_path):
    reference = ref.build(name, depth=1)
    path = ref.save_safetensors(reference, tmp_path, config_json=False)
    with converters.open_checkpoint(path) as checkpoint:
        assert converters.detect_format(checkpoint) is timm
        with pytest.raises(converters.UnsupportedLayoutError, match=says):
            timm.config_fields(checkpoint)


@pytest.mark.parametrize("architecture, family", [("eva02_base_patch14_224", "EVA"),
                                                  ("vit_base_patch16_siglip_gap_224", "SigLIP towers without the MAP head"),
                                                  ("vit_base_patch16_rope_reg1_gap_256", "rotary")])
def test_unmodelled_architecture_names_are_refused_with_their_family(architecture, family):
    with pytest.raises(converters.UnsupportedLayoutError, match=f"{architecture}.*{family}.*numerics") as error:
        timm_config.architecture({"architecture": architecture}, "x")
    assert error.value.layout == f"timm {architecture}"


def test_model_args_that_may_change_numerics_are_refused():
    meta = {"architecture": "vit_small_patch14_dinov2", "model_args": {"qk_norm": True, "depth": 2}}
    with pytest.raises(converters.UnsupportedLayoutError, match=r"model_args set \['qk_norm'\]"):
        timm_config.architecture(meta, "x")


def test_meta_dinov2_hub_files_are_left_to_their_format(tmp_path):
    """Meta's hub files carry mask_token (and register_tokens); timm's detect steps aside for them."""
    reference = ref.build("vit_small_patch14_dinov2", img_size=28, **TINY)
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    from safetensors.torch import save_file

    save_file({**state, "mask_token": ref.torch.zeros(1, 64)}, str(tmp_path / "model.safetensors"))
    with converters.open_checkpoint(tmp_path / "model.safetensors") as checkpoint:
        assert not timm.detect(checkpoint)
