"""timm state dicts (model.safetensors): detection, config inference, refusals, and parity with timm's own
VisionTransformer (tests/timm_reference.py: random timm models saved with timm's config.json), at the stored
size, another size and dynamic sizes. The timm < 0.6 pre_logits form, which timm no longer builds, and the
half-precision files are held to a timm-style NumPy reference, itself checked against Hugging Face's torch
ViT on shared weights. Parity bound: max|a−b|/max|b| ≤ 1e-4 in float32. The DeiT, DeiT-III and DINOv2
families: test_timm_family.py."""
import json
import warnings

import keras
import numpy as np
import pytest

import vit_zoo
from vit_zoo import converters
from vit_zoo.converters import timm
from vit_zoo.model.variants import variant_fields

import layouts
import synth_hf
from conftest import load_converted
from reference_frameworks import require
from reference_numpy import timm_forward
from synth_checkpoints import (from_bfloat16_bits, images, relative_error, timm_tensors, to_bfloat16_bits,
                               write_timm)

TOLERANCE = 1e-4
SMALL = dict(image_size=32, patch_size=8, hidden_size=32, mlp_size=64, num_heads=4, num_layers=2,
             num_classes=7)


def convert(path, include_top=True, pooling=None, requested=None):
    """Through the loader; returns (model, config). The format must be detected as timm."""
    with converters.open_checkpoint(path) as checkpoint:
        assert converters.detect_format(checkpoint) is timm
    return load_converted(path, include_top=include_top, pooling=pooling, requested=requested)


def _pool(config):
    return "token" if config.pooling == "token" else "avg"


@pytest.fixture(scope="module")
def ref():
    """tests/timm_reference.py: real timm models (skips where timm or torch is missing, fails under CI)."""
    import timm_reference

    return timm_reference


# name: (timm architecture, create_model overrides, with timm's config.json)
CASES = {
    "vit_tiny_patch16_224": ("vit_tiny_patch16_224", dict(depth=2, img_size=64, num_classes=10), True),
    # avg pooling + fc_norm (no final norm), with a class token that the average leaves out
    "vit_small_patch32_224-fcnorm": ("vit_small_patch32_224", dict(depth=2, img_size=64, global_pool="avg",
                                                                   num_classes=10), True),
    # no config.json: heads from the width (variants.SIZES), timm's default normalisation
    "vit_base_patch16_224-no-config": ("vit_base_patch16_224", dict(depth=1, img_size=32), False),
    # timm's gap models: no class token, final norm, then the mean; 16 heads at width 768 (config.json)
    "vit_base_patch16_gap_224": ("vit_base_patch16_gap_224", dict(depth=1, img_size=32), True),
    "vit_base_patch16_384": ("vit_base_patch16_384", dict(depth=1), True),  # the 24 x 24 grid
    "vit_base_patch16_224_miil": ("vit_base_patch16_224_miil", dict(depth=1, img_size=32), True),  # no qkv bias
}


@pytest.mark.parametrize("case", list(CASES))
def test_parity_with_timm(case, tmp_path, ref):
    name, overrides, config_json = CASES[case]
    reference = ref.build(name, seed=list(CASES).index(case), **overrides)
    path = ref.save_safetensors(reference, tmp_path, config_json=config_json)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        view, config = ref.ours(path)
    # Without timm's config.json, what the file cannot tell is assumed: one warning lists every value,
    # and the identity records their names; with it, nothing is assumed (but the class names).
    announced = [str(w.message) for w in caught if "assumed:" in str(w.message)]
    expected = ({"labels", "mean", "num_heads", "pooling", "preprocessing", "std"} if not config_json
                else {"labels"} if reference.num_classes == 1000 else set())
    assert len(announced) == (1 if expected else 0) and all(f"{key} = " in announced[0] for key in expected)
    read = {key: getattr(config, key) for key in ("patch_size", "hidden_size", "num_heads", "num_layers",
                                                  "class_token", "qkv_bias", "gelu", "layer_norm_epsilon")}
    assert read == dict(patch_size=reference.patch_embed.patch_size[0], hidden_size=reference.embed_dim,
                        num_heads=reference.blocks[0].attn.num_heads, num_layers=len(reference.blocks),
                        class_token=reference.cls_token is not None,
                        qkv_bias=reference.blocks[0].attn.qkv.bias is not None, gelu="exact",
                        layer_norm_epsilon=1e-6)
    assert config.image_size == tuple(reference.patch_embed.img_size)
    assert config.pooling == {"token": "token", "avg": "avg-fcnorm" if reference.fc_norm.__class__.__name__
                              != "Identity" else "gap"}[reference.global_pool]
    ref.assert_parity(view, reference, config.image_size, case, batch=1 if config.hidden_size == 768 else 2)


def test_parity_at_other_sizes(tmp_path, ref):
    """A classic ViT at another image_size (timm's loader resamples the table: bicubic, antialias) and with
    dynamic input sizes (timm dynamic_img_size=True), smaller and larger than the stored 64 px."""
    name, overrides, _ = CASES["vit_tiny_patch16_224"]
    reference = ref.build(name, seed=9, **overrides)
    path = ref.save_safetensors(reference, tmp_path)
    resized = ref.load_resized(name, reference.state_dict(), **dict(overrides, img_size=96))
    ref.assert_parity(ref.ours(path, image_size=96)[0], resized, 96, "vit_tiny (image_size)")
    dynamic = ref.load_resized(name, reference.state_dict(), **overrides, dynamic_img_size=True)
    view, _ = ref.ours(path, dynamic_size=True)
    for size in (48, 112):
        ref.assert_parity(view, dynamic, size, "vit_tiny (dynamic)")


def test_pre_logits_in21k_against_the_numpy_reference(tmp_path):
    """timm < 0.6 in21k form: pre_logits.fc (Linear + Tanh) and 21,843 classes. timm >= 0.6 drops
    pre_logits on load, so the reference here is the NumPy one (itself held to transformers below)."""
    spec = vit_zoo.ViTConfig(**dict(variant_fields("vit-tiny-16"), num_layers=2, representation_size=192,
                                    num_classes=21843))
    tensors = timm_tensors(spec, seed=3)
    path = write_timm(tmp_path, spec, "vit_tiny_patch16_224_in21k", tensors=tensors)
    x = images(spec, batch=2)
    reference = timm_forward(tensors, x, spec.num_heads, _pool(spec))
    model, config = convert(path)
    assert config.representation_size == 192
    assert relative_error(model(x), reference["logits"]) <= TOLERANCE
    pooled, _ = convert(path, include_top=False, pooling="token")
    assert relative_error(pooled(x), reference["pooled"]) <= TOLERANCE


@pytest.mark.parametrize("dtype", ["F16", "BF16"])
def test_half_precision_checkpoint_loads_into_float32(tmp_path, dtype):
    spec = vit_zoo.ViTConfig(**SMALL)
    tensors = timm_tensors(spec)
    path = write_timm(tmp_path, spec, dtype=dtype, tensors=tensors)
    rounded = {k: (from_bfloat16_bits(to_bfloat16_bits(v)) if dtype == "BF16" else v.astype(np.float16))
               for k, v in tensors.items()}
    model, _ = convert(path, requested=vit_zoo.ViTConfig(**SMALL))
    assert all(v.dtype == "float32" for v in model.weights)
    assert np.array_equal(model.get_layer("pos_embed").embeddings.numpy(),
                          rounded["pos_embed"].astype(np.float32))
    x = images(spec)
    assert relative_error(model(x), timm_forward(rounded, x, 4)["logits"]) <= TOLERANCE


def test_config_json_supplies_normalisation_and_pooling(tmp_path):
    spec = vit_zoo.ViTConfig(**dict(variant_fields("vit-tiny-16"), num_layers=1, num_classes=10))
    path = write_timm(tmp_path, spec, "vit_tiny_patch16_224", global_pool="avg",
                      mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    with converters.open_checkpoint(path) as checkpoint:
        fields = timm.config_fields(checkpoint)
    assert fields["mean"] == (0.485, 0.456, 0.406) and fields["std"] == (0.229, 0.224, 0.225)
    assert fields["pooling"] == "gap" and fields["class_token"]  # class token kept, mean of the patches
    assert fields["num_heads"] == 3 and fields["position_embedding_resampling"] == "bicubic-antialias"


def test_without_head(tmp_path):
    spec = vit_zoo.ViTConfig(**SMALL)
    tensors = {k: v for k, v in timm_tensors(spec).items() if not k.startswith("head.")}
    with converters.open_checkpoint(write_timm(tmp_path, spec, tensors=tensors)) as checkpoint:
        assert timm.config_fields(checkpoint, vit_zoo.ViTConfig(**SMALL))["num_classes"] is None


# ------------------------------------------------------------------------------------------------
# Refusals: tensors of timm features vit_zoo does not model are named, never dropped.
def _with(tensors, **extra):
    return {**tensors, **{k.replace("__", "."): v for k, v in extra.items()}}


@pytest.mark.parametrize("extra, feature", [
    ({"blocks.0.attn.q_bias": np.zeros(32, np.float32), "blocks.0.attn.v_bias": np.zeros(32, np.float32)},
     "EVA / BEiT"),
    ({"blocks.0.mlp.fc1_g.weight": np.zeros((64, 32), np.float32)}, "split gated MLP"),
    ({"blocks.1.attn.q_norm.weight": np.ones(8, np.float32),
      "blocks.1.attn.k_norm.weight": np.ones(8, np.float32)}, "qk-norm"),
    # (norm_pre and attn_pool are CLIP / SigLIP towers' tensors: tests/converters/test_timm_tower.py)
    ({"blocks.0.attn.norm.weight": np.ones(32, np.float32)}, "attention output norm"),
    ({"patch_embed.norm.weight": np.ones(32, np.float32)}, "patch-embedding norm"),
    ({"head_drop.weight": np.zeros(32, np.float32)}, "head_drop"),
])
def test_unsupported_tensors_are_named(tmp_path, extra, feature):
    spec = vit_zoo.ViTConfig(**SMALL)
    path = write_timm(tmp_path, spec, tensors={**timm_tensors(spec), **extra})
    with converters.open_checkpoint(path) as checkpoint:
        assert converters.detect_format(checkpoint) is timm
        with pytest.raises(converters.UnsupportedLayoutError, match=feature) as error:
            timm.config_fields(checkpoint, vit_zoo.ViTConfig(**SMALL))
    assert feature in error.value.layout
    for key in extra:
        assert key in str(error.value)
    assert "model.safetensors" in str(error.value)


def test_position_embedding_without_class_entry(tmp_path):
    """no_embed_class=True: the table holds the patches only, and the class token joins after the add."""
    spec = vit_zoo.ViTConfig(**SMALL)
    tensors = timm_tensors(spec)
    tensors["pos_embed"] = tensors["pos_embed"][:, 1:]
    with converters.open_checkpoint(write_timm(tmp_path, spec, tensors=tensors)) as checkpoint:
        fields = timm.config_fields(checkpoint, vit_zoo.ViTConfig(**SMALL))
    assert (fields["prefix_position_embeddings"], fields["image_size"]) == (False, 32)


@pytest.mark.parametrize("tokens, says", [((1, 4, 32), "register tokens without a class token"),
                                          ((1, 2, 32), "rows for the 2 register tokens")])
def test_register_layouts_not_modelled_are_refused(tmp_path, tokens, says):
    spec = vit_zoo.ViTConfig(**SMALL)
    tensors = {**timm_tensors(spec), "reg_token": np.zeros(tokens, np.float32)}
    if "class" in says:
        tensors = {k: v for k, v in tensors.items() if k != "cls_token"}
        tensors["pos_embed"] = tensors["pos_embed"][:, 1:]
    else:  # rows for the class token and both registers (timm reg_tokens with no_embed_class=False)
        tensors["pos_embed"] = np.concatenate([tensors["pos_embed"][:, :1]] * 3 + [tensors["pos_embed"][:, 1:]], 1)
    with converters.open_checkpoint(write_timm(tmp_path, spec, tensors=tensors)) as checkpoint:
        with pytest.raises(converters.UnsupportedLayoutError, match=says):
            timm.config_fields(checkpoint, vit_zoo.ViTConfig(**SMALL))


@pytest.mark.parametrize("architecture", ["vit_base_patch16_rpn_224", "vit_base_patch16_plus_clip_240",
                                          "vit_base_patch32_siglip_gap_256"])
def test_architectures_with_other_numerics_are_refused(tmp_path, architecture):
    spec = vit_zoo.ViTConfig(**dict(variant_fields("vit-base-16"), num_layers=1))
    with converters.open_checkpoint(write_timm(tmp_path, spec, architecture)) as checkpoint:
        with pytest.raises(converters.UnsupportedLayoutError, match=f"{architecture}.*numerics") as error:
            timm.config_fields(checkpoint)
    assert error.value.layout == f"timm {architecture}"


def test_heads_of_an_unnamed_width(tmp_path):
    spec = vit_zoo.ViTConfig(**SMALL)  # width 32 is no named size
    path = write_timm(tmp_path, spec)
    with converters.open_checkpoint(path) as checkpoint:
        with pytest.raises(converters.CheckpointError, match="head count.*config.json.*num_heads"):
            timm.config_fields(checkpoint)
        assert timm.config_fields(checkpoint, vit_zoo.ViTConfig(**SMALL))["num_heads"] == 4
    # a config.json with model_args gives them too
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "vit_base_patch16_224",
                                                      "model_args": {"num_heads": 4}}))
    with converters.open_checkpoint(path) as checkpoint:
        with pytest.raises(converters.CheckpointError, match="width 768.*width 32"):
            timm.config_fields(checkpoint)


@pytest.mark.parametrize("drop, says", [(("norm.weight", "norm.bias"), "neither 'norm.weight' nor"),
                                        (("pos_embed",), "pos_embed='none'"),
                                        (("patch_embed.proj.bias",), "without bias")])
def test_missing_structural_tensors_are_explained(tmp_path, drop, says):
    spec = vit_zoo.ViTConfig(**SMALL)
    tensors = {k: v for k, v in timm_tensors(spec).items() if k not in drop}
    with converters.open_checkpoint(write_timm(tmp_path, spec, tensors=tensors)) as checkpoint:
        with pytest.raises(converters.CheckpointError, match=says):
            timm.config_fields(checkpoint, vit_zoo.ViTConfig(**SMALL))


def test_fc_norm_with_token_pooling_is_refused(tmp_path):
    spec = vit_zoo.ViTConfig(**dict(variant_fields("vit-tiny-16"), num_layers=1, pooling="avg-fcnorm"))
    path = write_timm(tmp_path, spec, "vit_tiny_patch16_224", global_pool="token")
    with converters.open_checkpoint(path) as checkpoint:
        with pytest.raises(converters.CheckpointError, match="fc_norm with global_pool='token'"):
            timm.config_fields(checkpoint)


# ------------------------------------------------------------------------------------------------
# The reference itself, against Hugging Face transformers' torch ViT on the same weights.
def test_reference_matches_transformers(tmp_path):
    torch, transformers = require("torch"), require("transformers")
    spec = vit_zoo.ViTConfig(**{**SMALL, "num_layers": 3})
    values = layouts.weights(spec, seed=5)
    tensors = layouts.tensors(layouts.timm(spec), values)
    hf_config = transformers.ViTConfig(
        hidden_size=spec.hidden_size, num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
        intermediate_size=spec.mlp_size, image_size=32, patch_size=8, num_labels=spec.num_classes,
        hidden_act="gelu", layer_norm_eps=1e-6)
    hf = synth_hf.from_weights(values, spec, hf_config, tmp_path).double()
    x = images(spec, batch=2)
    reference = timm_forward(tensors, x, spec.num_heads)
    with torch.no_grad():
        out = hf(torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float64)), output_hidden_states=True)
        features = hf.vit.layernorm(out.hidden_states[-1]).numpy()
    assert relative_error(reference["logits"], out.logits.numpy()) < 1e-10
    assert relative_error(reference["features"], features) < 1e-10
    # timm's fc_norm head on the same blocks: the mean of the patch tokens, then a LayerNorm
    fc = {**{k: v for k, v in tensors.items() if not k.startswith("norm.")},
          "fc_norm.weight": tensors["norm.weight"], "fc_norm.bias": tensors["norm.bias"]}
    pooled = timm_forward(fc, x, spec.num_heads, "avg")["pooled"]
    blocks = out.hidden_states[-1].numpy()[:, 1:].mean(axis=1)
    expected = torch.nn.functional.layer_norm(torch.from_numpy(blocks), (spec.hidden_size,),
                                              torch.from_numpy(tensors["norm.weight"]).double(),
                                              torch.from_numpy(tensors["norm.bias"]).double(), eps=1e-6)
    assert relative_error(pooled, expected.numpy()) < 1e-10


def test_load_through_public_api(tmp_path, ref):
    """vit_zoo.load(weights=DIRECTORY) on raw pixels, its preprocessing from timm's config.json."""
    reference = ref.build("vit_tiny_patch16_224", seed=7, depth=2, num_classes=10, global_pool="avg")
    ref.save_safetensors(reference, tmp_path)
    mean, std = np.float32(reference.pretrained_cfg["mean"]), np.float32(reference.pretrained_cfg["std"])
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    nchw = ref.torch.from_numpy(((pixels / 255 - mean) / std).transpose(0, 3, 1, 2).copy())
    expected = ref.outputs(reference, nchw)
    model = vit_zoo.load(weights=tmp_path)  # the directory: model.safetensors + timm's config.json
    assert relative_error(model(pixels), expected["output"]) <= TOLERANCE
    features = vit_zoo.load(weights=tmp_path, include_top=False)  # the last block's tokens
    assert relative_error(features(pixels), expected["tokens"]) <= TOLERANCE


def test_identity_from_timm_config_json(tmp_path):
    spec = vit_zoo.ViTConfig.from_name("vit-tiny-16", image_size=32, num_classes=3)
    path = write_timm(tmp_path, spec, "vit_tiny_patch16_224", pretrained_cfg={"crop_pct": 0.95,
                                                                              "interpolation": "bilinear"},
                      label_names=["n01440764", "n01443537", "x"],
                      label_descriptions={"n01440764": "tench, Tinca tinca", "n01443537": "goldfish"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # config.json states everything: nothing is assumed
        model = vit_zoo.load(config=spec, weights=str(path))
    identity = model.identity
    assert identity.labels == ("tench, Tinca tinca", "goldfish", "x")
    assert (identity.preprocessing.recipe, identity.preprocessing.crop_pct,
            identity.preprocessing.interpolation) == ("timm", 0.95, "bilinear")
    assert (identity.provenance.format, identity.provenance.source) == ("timm", str(path))
