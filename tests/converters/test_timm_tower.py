"""timm's CLIP and SigLIP image towers (``vit_*_clip_*``, ``vit_*_siglip_*``) against timm itself: tiny random
towers built by timm's own definitions (exact GELU, QuickGELU, tanh GELU as each architecture sets it), their
norms, biases and embeddings perturbed, saved as timm's Hub repos are (model.safetensors + timm's config.json;
a CLIP tower's projection as timm stores it: ``head`` with an all-zero bias), loaded with vit_zoo and held to
timm's outputs at max|a − b| / max|b| ≤ 1e-4: the embedding (timm's ``forward``), the pooled features
(``forward_head(pre_logits=True)``) and the tokens (``forward_features``), at the stored size and at another
(timm created at that size, its position table resampled by its own ``checkpoint_filter_fn``). Then every
published tower read at full size from its shapes alone (on torch's meta device): the converter's config has
timm's exact parameter count, and timm's own GELU and LayerNorm epsilon."""
import json

import numpy as np
import pytest

import timm_reference as ref
from conftest import load_converted, to_numpy
from synth_checkpoints import relative_error
from vit_zoo import converters
from vit_zoo.converters import timm, timm_config
from vit_zoo.model import stats, variants
from vit_zoo.model.config import ViTConfig

torch = ref.torch
TINY = dict(embed_dim=64, num_heads=2, depth=2, img_size=32, patch_size=8)
# case: (timm architecture, create_model overrides, what the checkpoint must read as)
TOWERS = {
    "clip": ("vit_base_patch16_clip_224", dict(TINY, num_classes=24),
             dict(gelu="exact", layer_norm_epsilon=1e-5, pre_norm=True, patch_bias=False, pooling="token",
                  projection_size=24, num_classes=0, mean=variants.CLIP_MEAN)),
    "clip-quickgelu": ("vit_large_patch14_clip_quickgelu_224", dict(TINY, num_classes=16),
                       dict(gelu="quick", layer_norm_epsilon=1e-5, pre_norm=True, projection_size=16, num_classes=0)),
    "clip-classifier": ("vit_base_patch32_clip_224", dict(TINY, num_classes=5),  # a fine-tuned head: a bias
                        dict(gelu="exact", pre_norm=True, projection_size=None, num_classes=5)),
    "siglip": ("vit_base_patch16_siglip_224", dict(TINY, num_classes=0),
               dict(gelu="exact", layer_norm_epsilon=1e-6, pre_norm=False, patch_bias=True, class_token=False,
                    pooling="map", projection_size=None, num_classes=0, mean=(0.5, 0.5, 0.5))),
    "siglip-tanh": ("vit_so400m_patch16_siglip_256", dict(TINY, num_classes=0),
                    dict(gelu="tanh", pooling="map", mlp_size=239)),  # mlp_ratio 3.7362
}
_SAVED = {}


def saved(case, tmp_path_factory):
    """(model.safetensors path, the timm model) of a case, made once per module; a CLIP tower's head bias is
    zero, as timm stores CLIP's bias-free projection, except for the classifier."""
    if case not in _SAVED:
        name, overrides, _ = TOWERS[case]
        model = ref.build(name, seed=len(_SAVED), **overrides)
        if "clip" in case and case != "clip-classifier":
            with torch.no_grad():
                model.head.bias.zero_()
        _SAVED[case] = ref.save_safetensors(model, tmp_path_factory.mktemp(case)), model
    return _SAVED[case]


def timm_outputs(model, nchw) -> dict:
    """timm's embedding (``forward``), pooled features before the head and tokens after the final norm."""
    with torch.no_grad():
        tokens = model.forward_features(nchw)
        return {"embedding": model(nchw).numpy(), "pooled": model.forward_head(tokens, pre_logits=True).numpy(),
                "tokens": tokens.numpy()}


def our_outputs(path, nhwc, **options) -> dict:
    """Ours: the default output (the embedding or logits), include_top=False pooled and tokens."""
    top, config = load_converted(path, **options)
    pooled, _ = load_converted(path, include_top=False, pooling=config.pooling, **options)
    tokens, _ = load_converted(path, include_top=False, pooling=None, **options)
    return {"embedding": to_numpy(top(nhwc)), "pooled": to_numpy(pooled(nhwc)), "tokens": to_numpy(tokens(nhwc))}


def assert_tower_parity(path, reference, size, case, **options):
    nhwc, nchw = ref.images(size)
    expected, got = timm_outputs(reference, nchw), our_outputs(path, nhwc, **options)
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in expected.items()}
    errors = {name: relative_error(got[name], expected[name]) for name in expected}
    print(f"\ntimm tower parity {case} at {size} px: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert all(error <= ref.TOLERANCE for error in errors.values()), (case, errors)


@pytest.mark.parametrize("case", TOWERS)
def test_parity_at_the_stored_size(case, tmp_path_factory):
    path, reference = saved(case, tmp_path_factory)
    with converters.open_checkpoint(path) as checkpoint:
        fields = timm.config_fields(checkpoint)
    expected = TOWERS[case][2]
    assert {key: fields[key] for key in expected} == expected
    assert not fields.get("assumed")  # timm's config.json states every numeric
    assert_tower_parity(path, reference, 32, case)


@pytest.mark.parametrize("case", ["clip", "siglip-tanh"])
def test_parity_at_another_size(case, tmp_path_factory):
    """timm created at 48 px loads the 32 px checkpoint through its own filter (resample_abs_pos_embed: bicubic,
    antialias; the class token's row kept apart); ours loads it with image_size=48."""
    path, reference = saved(case, tmp_path_factory)
    name, overrides, _ = TOWERS[case]
    resized = ref.load_resized(name, reference.state_dict(), **dict(overrides, img_size=48))
    assert_tower_parity(path, resized, 48, f"{case} (image_size)", image_size=48)


def test_the_zero_projection_bias_is_set_aside_and_a_tower_has_no_labels(tmp_path_factory):
    path, _ = saved("clip", tmp_path_factory)
    model, config = load_converted(path)
    assert model.get_layer("projection").get_weights()[0].shape == (64, 24)
    assert config.num_classes == 0 and model.output.shape == (None, 24)


def test_a_clip_tower_without_config_json_is_refused_naming_it(tmp_path_factory, tmp_path):
    _, reference = saved("clip", tmp_path_factory)
    path = ref.save_safetensors(reference, tmp_path, config_json=False)
    with converters.open_checkpoint(path) as checkpoint:
        with pytest.raises(converters.UnsupportedLayoutError, match=r"CLIP .*GELU flavour.*config\.json"):
            timm.config_fields(checkpoint)


def test_unknown_act_layer_is_refused(tmp_path_factory, tmp_path):
    path, _ = saved("siglip", tmp_path_factory)
    meta = json.loads((path.parent / "config.json").read_text())
    meta["model_args"]["act_layer"] = "silu"
    with pytest.raises(converters.UnsupportedLayoutError, match=r"act_layer='silu'.*\['gelu', 'gelu_tanh'"):
        timm_config.numerics(meta, "x")


# ---- every published tower at full size, from its shapes (no memory), against timm's own definition ------
PUBLISHED = sorted(name for name in ref.timm.list_models("vit_*_clip_*") + ref.timm.list_models("vit_*_siglip_*")
                   if "_gap_" not in name and not name.startswith(("vit_xsmall", "vit_medium", "vit_betwixt",
                                                                   "vit_base_patch16_plus")))
GELU_OF = {"GELU": "exact", "GELUTanh": "tanh", "QuickGELU": "quick"}


class _Shapes(converters.Checkpoint):
    """A checkpoint of a meta-device timm model: its shapes, and zeros for the one tensor read (head.bias)."""

    def __init__(self, model, path, metadata):
        entries = {key: (tuple(value.shape), "float32", lambda shape=tuple(value.shape): np.zeros(shape, "float32"))
                   for key, value in model.state_dict().items()}
        super().__init__(path, entries, metadata)


@pytest.mark.parametrize("name", PUBLISHED)
def test_every_published_tower_reads_with_timms_count_and_numerics(name, tmp_path):
    from timm.models._hub import save_config_for_hf

    projection = 512 if "_clip_" in name else 0  # a CLIP tower's projection as timm's head, with a zero bias
    with torch.device("meta"):
        reference = ref.timm.create_model(name, pretrained=False, num_classes=projection)
    save_config_for_hf(reference, str(tmp_path / "config.json"))
    meta = json.loads((tmp_path / "config.json").read_text())
    fields = timm.config_fields(_Shapes(reference, tmp_path / "model.safetensors", meta))
    fields.pop("assumed", None)
    fields.pop("num_classes")
    config = ViTConfig(**fields, num_classes=0)
    expected = sum(p.numel() for p in reference.parameters()) - projection  # less the zero bias
    assert stats.count_parameters(config) == expected
    block = reference.blocks[0]
    assert (config.gelu, config.layer_norm_epsilon) == (GELU_OF[type(block.mlp.act).__name__], block.norm1.eps)
    assert config.pre_norm == ("_clip_" in name) and (config.pooling == "map") == ("_siglip_" in name)


def test_a_config_json_of_a_tower_beside_a_classic_state_dict_is_refused(tmp_path_factory, tmp_path):
    """config.json names a CLIP tower, but the tensors have no norm_pre: the files are from two models."""
    _, reference = saved("clip", tmp_path_factory)
    classic = ref.build("vit_base_patch16_224", **dict(TINY, num_classes=24))
    path = ref.save_safetensors(classic, tmp_path, config_json=False)
    (tmp_path / "config.json").write_text(json.dumps(json.loads(
        (saved("clip", tmp_path_factory)[0].parent / "config.json").read_text())))
    with converters.open_checkpoint(path) as checkpoint:
        with pytest.raises(converters.CheckpointError, match=r"clip tower with pre_norm=True.*pre_norm=False"):
            timm.config_fields(checkpoint)
