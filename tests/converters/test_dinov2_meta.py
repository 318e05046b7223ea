"""Meta DINOv2 torch.hub state dicts (converters/dinov2_meta.py) against Meta's own code.

Plain models: the installed ``dinov2`` package (Meta's early snapshot: no registers, position embeddings
interpolated with ``scale_factor=(g + 0.1) / M``), random ``DinoVisionTransformer``s saved with
``torch.save(model.state_dict())`` as the hub's ``…_pretrain.pth``, compared through ``forward_features``
(``x_norm_clstoken``, ``x_norm_patchtokens``) and the linear head as ``hub/classifiers.py``'s
``_LinearClassifierWrapper`` (layers=1) computes it: ``linear_head(torch.cat([cls_token,
patch_tokens.mean(dim=1)], dim=1))``.

Register models, which that snapshot lacks: transformers' ``Dinov2WithRegistersModel`` is the reference for the
math (it inserts the registers after the class token once the position embeddings are added and interpolates
with ``size=, antialias=True``, as Meta's register models do); its random weights are written in Meta's layout by
renaming (``META_NAMES``: q/k/v joined into ``attn.qkv``, gate_proj ‖ up_proj into the fused ``mlp.w12``).
``test_interpolation_rules_are_metas`` holds both rules to Meta's newer ``interpolate_pos_encoding`` itself.

Relative error max|a − b| / max|b| <= 1e-4 (fp32).
"""
import re
import sys
from functools import partial

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="Meta's DINOv2 files are torch pickles and the reference is torch")

import keras  # noqa: E402

import vit_zoo  # noqa: E402
from vit_zoo import converters  # noqa: E402
from vit_zoo.converters import dinov2_meta  # noqa: E402
from vit_zoo.converters.checkpoint import HEAD_PREFIX, Checkpoint, open_checkpoint  # noqa: E402
from vit_zoo.converters.errors import CheckpointError, UnsupportedLayoutError  # noqa: E402
from vit_zoo.model.resample import resample_position_embeddings  # noqa: E402
from vit_zoo.model.spec import variables as spec_variables  # noqa: E402

import synth_checkpoints  # noqa: E402
from reference_frameworks import require  # noqa: E402

TOLERANCE = 1e-4
BACKBONE, HEAD = "dinov2_vits14_pretrain.pth", "dinov2_vits14_linear_head.pth"
REG_BACKBONE, REG_HEAD = "dinov2_vits14_reg4_pretrain.pth", "dinov2_vits14_reg4_linear_head.pth"


def relative_error(ours, reference) -> float:
    assert tuple(np.shape(ours)) == tuple(np.shape(reference)), (np.shape(ours), np.shape(reference))
    return synth_checkpoints.relative_error(ours, reference)


def perturbed(model, seed):
    """Move LayerScale, norms, biases and tokens away from their init, so a missing or misplaced one shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if re.search(r"gamma|lambda1|norm|bias|token", name):
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model.eval()


def meta_model(ffn="mlp", depth=2, width=64, heads=2, image=84, chunks=0, seed=0):
    """A random Meta ``DinoVisionTransformer`` as the hub builds it (MemEffAttention blocks, LayerScale)."""
    dinov2 = require("dinov2")  # noqa: F841 (skips or fails under CI=true without Meta's package)
    from dinov2.layers import MemEffAttention, NestedTensorBlock
    from dinov2.models.vision_transformer import DinoVisionTransformer

    torch.manual_seed(seed)
    model = DinoVisionTransformer(img_size=image, patch_size=14, embed_dim=width, depth=depth, num_heads=heads,
                                  mlp_ratio=4, init_values=1e-5, ffn_layer=ffn, block_chunks=chunks,
                                  block_fn=partial(NestedTensorBlock, attn_class=MemEffAttention))
    return perturbed(model, seed)


def linear_head(width, classes=10, seed=0):
    torch.manual_seed(100 + seed)
    return torch.nn.Linear(2 * width, classes).eval()


def save(directory, state, name=BACKBONE, head=None, head_name=None):
    torch.save(state, directory / name)
    if head is not None:
        torch.save(head.state_dict(), directory / (head_name or name.replace("_pretrain", "_linear_head")))
    return directory / name


def tiny_config(family="dinov2", ffn="mlp", depth=2, width=64, heads=2):
    """The config= a tiny model needs: its width is none of Meta's, so the head count must be given."""
    mlp = 4 * width if ffn == "mlp" else (int(4 * width * 2 / 3) + 7) // 8 * 8  # SwiGLUFFNFused's hidden
    return vit_zoo.ViTConfig.from_name(f"{family}-small-14", hidden_size=width, mlp_size=mlp, num_heads=heads,
                                       num_layers=depth, mlp="gelu" if ffn == "mlp" else "swiglu")


def images(size, batch=2, seed=0):
    nhwc = np.random.default_rng(seed).normal(0, 1, (batch, size, size, 3)).astype("float32")
    return nhwc, torch.from_numpy(nhwc.transpose(0, 3, 1, 2).copy())


def ours(path, size, config=None, dynamic=False, include_top=True):
    """{"tokens": after the final norm, "output": logits} of our model loaded from ``path``."""
    model = vit_zoo.load(config=config, weights=str(path), image_size=size, include_preprocessing=False,
                         dynamic_size=dynamic, include_top=include_top)
    return model, keras.Model(model.input, {"tokens": model.get_layer("encoder_norm").output,
                                            "output": model.output})


def meta_outputs(model, head, pixels):
    """Meta's forward_features and the hub classifier's linear head (layers=1) on them."""
    with torch.no_grad():
        features = model.forward_features(pixels)
        cls_token, patch_tokens = features["x_norm_clstoken"], features["x_norm_patchtokens"]
        logits = head(torch.cat([cls_token, patch_tokens.mean(dim=1)], dim=1))
    return {"cls": cls_token.numpy(), "patches": patch_tokens.numpy(), "output": logits.numpy()}


def errors_against_meta(model, head, path, size, config=None, dynamic=False, registers=0):
    _, both = ours(path, size, config, dynamic)
    nhwc, nchw = images(size)
    got, expected = both.predict(nhwc, verbose=0), meta_outputs(model, head, nchw)
    return {"cls": relative_error(got["tokens"][:, 0], expected["cls"]),
            "patches": relative_error(got["tokens"][:, 1 + registers:], expected["patches"]),
            "logits": relative_error(got["output"], expected["output"])}


def assert_close(errors, case):
    print(f"\nmeta-dinov2 {case}: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert all(value <= TOLERANCE for value in errors.values()), (case, errors)


def dynamic_errors(model, head, path, config, sizes, reference=None, registers=0):
    """One dynamic_size model called at each size, against the reference (default Meta's) at that size."""
    _, both = ours(path, None, config, dynamic=True)
    found = {}
    for size in sizes:
        nhwc, nchw = images(size, seed=size)
        got, expected = both.predict(nhwc, verbose=0), (reference or meta_outputs)(model, head, nchw)
        found[f"patches {size}"] = relative_error(got["tokens"][:, 1 + registers:], expected["patches"])
        found[f"logits {size}"] = relative_error(got["output"], expected["output"])
    return found


# ---- plain models against Meta's package ---------------------------------------------------------------
@pytest.mark.parametrize("ffn", ["mlp", "swiglufused"])
def test_backbone_and_linear_head_match_meta(tmp_path, ffn):
    # stored grid 6x6 (84 px): 84 px keeps it; 56 px shrinks and 112 px grows it in the graph
    model, head = meta_model(ffn), linear_head(64)
    path = save(tmp_path, model.state_dict(), head=head)
    config = tiny_config(ffn=ffn)
    for size in (84, 56, 112):
        assert_close(errors_against_meta(model, head, path, size, config), f"{ffn} {size} px")
    assert_close(dynamic_errors(model, head, path, config, (56, 98)), f"{ffn} dynamic_size")


def test_block_chunked_state_dict(tmp_path):
    # block_chunks=2 (DinoVisionTransformer's default is 1): blocks saved as blocks.{chunk}.{i}.*
    model, head = meta_model(depth=4, chunks=2, seed=1), linear_head(64, seed=1)
    state = model.state_dict()
    assert "blocks.1.3.norm1.weight" in state and "blocks.3.norm1.weight" not in state
    path = save(tmp_path, state, head=head)
    with open_checkpoint(path) as checkpoint:  # the head beside the backbone joins under linear_head.*
        assert checkpoint.metadata["companions"] == {HEAD_PREFIX: str(tmp_path / HEAD)}
        assert {HEAD_PREFIX + "weight", HEAD_PREFIX + "bias"} <= set(checkpoint.keys())
    assert_close(errors_against_meta(model, head, path, 84, tiny_config(depth=4)), "block_chunks=2, 84 px")


@pytest.mark.xla
def test_small_width_on_the_default_engine(tmp_path):
    # Meta's ViT-S width: the head count (6) comes from the width, no config needed; XLA, the default engine
    model, head = meta_model(depth=1, width=384, heads=6, seed=2), linear_head(384, classes=1000, seed=2)
    path = save(tmp_path, model.state_dict(), head=head)
    for size in (84, 56):
        assert_close(errors_against_meta(model, head, path, size), f"width 384 (XLA) {size} px")
    loaded, _ = ours(path, 84)
    config = loaded.identity.config
    assert (config.num_heads, config.num_layers, config.position_grid, config.pooling) == (6, 1, (6, 6), "token-mean")
    assert loaded.identity.labels == "imagenet1k"  # Meta's linear heads are ImageNet-1k's


# ---- register models: transformers' Dinov2WithRegistersModel written in Meta's layout --------------------
META_NAMES = ((r"embeddings\.position_embeddings", "pos_embed"), (r"embeddings\.patch_embeddings\.projection",
               "patch_embed.proj"), (r"embeddings\.", ""), (r"encoder\.layer\.", "blocks."),
              (r"attention\.o_proj", "attn.proj"), (r"layer_scale(\d)\.lambda1", r"ls\1.gamma"),
              (r"mlp\.down_proj", "mlp.w3"), (r"^layernorm\.", "norm."))


def meta_layout(hf_state: dict) -> dict:
    """A Dinov2WithRegistersModel state dict renamed to Meta's: q/k/v joined into attn.qkv (rows q, k, v) and
    the SwiGLU's gate_proj ‖ up_proj into mlp.w12 (the gated half first, as SwiGLUFFNFused chunks it)."""
    state = {}
    for key, tensor in hf_state.items():
        for pattern, name in META_NAMES:
            key = re.sub(pattern, name, key)
        state[key] = tensor
    for key in [k for k in state if ".attention.q_proj." in k]:
        parts = [state.pop(key.replace("q_proj", part)) for part in ("q_proj", "k_proj", "v_proj")]
        state[key.replace("attention.q_proj", "attn.qkv")] = torch.cat(parts)
    for key in [k for k in state if ".mlp.gate_proj." in k]:
        state[key.replace("gate_proj", "w12")] = torch.cat([state.pop(key), state.pop(key.replace("gate", "up"))])
    return state


def hf_register_model(swiglu, seed=3):
    transformers = require("transformers")
    config = transformers.Dinov2WithRegistersConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                                    image_size=84, patch_size=14, num_register_tokens=4,
                                                    use_swiglu_ffn=swiglu, layerscale_value=1e-5)
    torch.manual_seed(seed)
    return perturbed(transformers.Dinov2WithRegistersModel(config), seed)


def hf_outputs(model, head, pixels):
    with torch.no_grad():
        tokens = model(pixel_values=pixels).last_hidden_state
        cls_token, patch_tokens = tokens[:, 0], tokens[:, 5:]
        logits = head(torch.cat([cls_token, patch_tokens.mean(dim=1)], dim=1))
    return {"tokens": tokens.numpy(), "patches": patch_tokens.numpy(), "output": logits.numpy()}


@pytest.mark.parametrize("swiglu", [False, True], ids=["mlp", "swiglufused"])
def test_register_model_matches_the_register_reference(tmp_path, swiglu):
    model, head = hf_register_model(swiglu), linear_head(64, seed=3)
    state = meta_layout(model.state_dict())
    assert {"register_tokens", "mask_token", "blocks.0.attn.qkv.weight"} <= set(state)
    assert ("blocks.0.mlp.w12.weight" in state) == swiglu
    path = save(tmp_path, state, REG_BACKBONE, head=head)
    config = tiny_config("dinov2-reg4", "swiglufused" if swiglu else "mlp")
    for size in (84, 56, 112):
        _, both = ours(path, size, config)
        nhwc, nchw = images(size)
        got, expected = both.predict(nhwc, verbose=0), hf_outputs(model, head, nchw)
        assert_close({"tokens": relative_error(got["tokens"], expected["tokens"]),
                      "logits": relative_error(got["output"], expected["output"])},
                     f"reg4 {'swiglu' if swiglu else 'mlp'} {size} px")
    assert_close(dynamic_errors(model, head, path, config, (56, 98), hf_outputs, registers=4), "reg4 dynamic_size")


def meta_interpolate_pos_encoding(pos_embed, grid, offset, antialias):
    """Meta's newer ``DinoVisionTransformer.interpolate_pos_encoding`` (facebookresearch/dinov2
    dinov2/models/vision_transformer.py): with ``interpolate_offset`` set, ``scale_factor = (g + offset) / M``;
    without, ``size = (g_h, g_w)``; then ``nn.functional.interpolate(..., mode="bicubic",
    antialias=self.interpolate_antialias, **kwargs)``. The plain hub models use offset 0.1 without antialias,
    the register models (``dinov2_vits14_reg`` …) ``interpolate_antialias=True, interpolate_offset=0.0``."""
    tokens, width = pos_embed.shape[1] - 1, pos_embed.shape[2]
    side = int(np.sqrt(tokens))
    kwargs = ({"scale_factor": (float(grid[0] + offset) / side, float(grid[1] + offset) / side)} if offset
              else {"size": grid})
    patches = torch.nn.functional.interpolate(
        torch.from_numpy(pos_embed[:, 1:]).reshape(1, side, side, width).permute(0, 3, 1, 2), mode="bicubic",
        antialias=antialias, **kwargs)
    assert tuple(patches.shape[-2:]) == tuple(grid)
    patches = patches.permute(0, 2, 3, 1).reshape(1, -1, width)
    return torch.cat([torch.from_numpy(pos_embed[:, :1]), patches], dim=1).numpy()


@pytest.mark.parametrize("grid", [(16, 16), (24, 24), (40, 40), (16, 24)])
@pytest.mark.parametrize("mode, offset, antialias", [("bicubic-offset", 0.1, False),
                                                     ("bicubic-antialias", 0.0, True)])
def test_interpolation_rules_are_metas(grid, mode, offset, antialias):
    # the released 37x37 table (518 px) to 224, 336, 560 px and a rectangle
    pos_embed = np.random.default_rng(4).normal(0, 1, (1, 1 + 37 * 37, 8)).astype("float32")
    got = resample_position_embeddings(pos_embed, (37, 37), grid, 1, mode)
    error = relative_error(got, meta_interpolate_pos_encoding(pos_embed, grid, offset, antialias))
    print(f"\nmeta-dinov2 {mode} 37x37 -> {grid}: {error:.2e}")
    assert error <= TOLERANCE


# ---- files, detection and refusals ----------------------------------------------------------------------
def test_backbone_without_its_head(tmp_path):
    model = meta_model(seed=5)
    path = save(tmp_path, model.state_dict())
    with open_checkpoint(path) as checkpoint:
        assert converters.detect_format(checkpoint) is dinov2_meta
        fields = dinov2_meta.config_fields(checkpoint, tiny_config())
    assert (fields["num_classes"], fields["image_size"], fields["position_grid"]) == (None, 224, (6, 6))
    assert fields["position_embedding_resampling"] == "bicubic-offset"
    with pytest.raises(CheckpointError, match="has no classification head; pass num_classes=N"):
        vit_zoo.load(config=tiny_config(), weights=str(path))
    features = vit_zoo.load(config=tiny_config(), weights=str(path), include_top=False, pooling="token-mean")
    identity = features.identity
    assert features.input_shape == (None, 224, 224, 3)  # Meta's evaluation size; the 6x6 table resampled in-graph
    assert features.get_layer("pos_embed").embeddings.shape == (1, 1 + 36, 64)
    assert (identity.preprocessing.recipe, identity.preprocessing.crop_pct,
            identity.preprocessing.interpolation) == ("timm", 0.875, "bicubic")
    assert (identity.provenance.format, identity.provenance.assumed, identity.labels) == ("meta-dinov2", (), None)


def test_the_head_file_alone_says_where_the_backbone_goes(tmp_path):
    torch.save(linear_head(64).state_dict(), tmp_path / HEAD)
    with pytest.raises(CheckpointError, match=r"holds only a linear head \(10 classes on 128 features\): a Meta "
                                              r"DINOv2 head without its backbone. Put it beside the backbone "
                                              r"'dinov2_vits14_pretrain.pth'"):
        vit_zoo.load(weights=str(tmp_path / HEAD))


def test_the_four_layer_head_is_refused_by_name(tmp_path):
    torch.save(torch.nn.Linear(5 * 64, 1000).state_dict(), tmp_path / "dinov2_vits14_linear4_head.pth")
    with pytest.raises(UnsupportedLayoutError, match="Meta's 4-layer DINOv2 linear head") as raised:
        vit_zoo.load(weights=str(tmp_path / "dinov2_vits14_linear4_head.pth"))
    assert raised.value.layout == "Meta DINOv2 linear4 head"
    # a renamed 4-layer head beside the backbone is refused too, never read as another head
    save(tmp_path, meta_model(seed=6).state_dict(), head=torch.nn.Linear(5 * 64, 1000))
    with pytest.raises(UnsupportedLayoutError, match=r"^'dinov2_vits14_linear_head.pth' beside Meta DINOv2 "
                                                     r"checkpoint 'dinov2_vits14_pretrain.pth' is Meta's 4-layer"):
        vit_zoo.load(config=tiny_config(), weights=str(tmp_path / BACKBONE))


def test_a_head_of_another_backbone_is_refused(tmp_path):
    save(tmp_path, meta_model(seed=7).state_dict(), head=linear_head(96))
    with pytest.raises(CheckpointError, match=r"the linear head beside it \('dinov2_vits14_linear_head.pth'\) takes "
                                              r"192 features, but the backbone's class token ‖ mean patch token is "
                                              r"128 wide"):
        vit_zoo.load(config=tiny_config(), weights=str(tmp_path / BACKBONE))


def test_a_width_of_no_meta_size_needs_the_head_count(tmp_path):
    path = save(tmp_path, meta_model(seed=8).state_dict(), head=linear_head(64))
    with pytest.raises(CheckpointError, match=r"width 64 is none of Meta's DINOv2 sizes \(\[384, 768, 1024, 1536\]\)"
                                              r" and its state dicts do not store the head count; pass config= with "
                                              r"num_heads"):
        vit_zoo.load(weights=str(path))


def test_detection_leaves_timm_files_to_timm(tmp_path):
    # timm's DINOv2 state dicts have Meta's module names but no mask_token (nor register_tokens, mlp.w12)
    state = {k: v for k, v in meta_model(seed=9).state_dict().items() if k != "mask_token"}
    path = save(tmp_path, state, "model.pth")
    with open_checkpoint(path) as checkpoint:
        assert not dinov2_meta.detect(checkpoint)
        assert converters.detect_format(checkpoint).NAME == "timm"
    with open_checkpoint(save(tmp_path, meta_model(seed=9).state_dict())) as checkpoint:
        assert converters.detect_format(checkpoint) is dinov2_meta
        assert set(checkpoint.keys()) - {r.sources[0] for r in dinov2_meta.mapping(tiny_config(), checkpoint)} \
            == {"mask_token"}  # consumed by IGNORED, with its reason
        assert "mask_token" in dinov2_meta.IGNORED


def test_a_non_square_position_table_is_refused(tmp_path):
    state = meta_model(seed=10).state_dict()
    state["pos_embed"] = state["pos_embed"][:, :-1]
    with pytest.raises(CheckpointError, match=r"'pos_embed' holds 36 tokens, not 1 \+ a square grid"):
        vit_zoo.load(config=tiny_config(), weights=str(save(tmp_path, state)))


def test_without_torch_the_error_names_the_safetensors_releases(tmp_path, monkeypatch):
    from vit_zoo.converters.readers import pytorch

    path = save(tmp_path, meta_model(seed=11).state_dict())
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(CheckpointError, match=r"reading it safely needs torch .* timm's 'timm/vit_\{small,base,large,"
                                              r"giant\}_patch14\[_reg4\]_dinov2.lvd142m' or Hugging Face's "
                                              r"'facebook/dinov2-\{small,base,large,giant\}'"):
        pytorch.read(path)


@pytest.mark.parametrize("registers", [0, 4], ids=["plain", "reg4"])
@pytest.mark.parametrize("arch, size", [("vit_small", "small"), ("vit_base", "base"), ("vit_large", "large"),
                                        ("vit_giant2", "giant")])
def test_every_release_is_its_named_variant(arch, size, registers):
    # the hub's architectures at full size (hub/backbones.py: 518 px, patch 14, giant with swiglufused), built
    # on PyTorch's meta device (shapes only): read as our variant, and every tensor but mask_token used once
    require("dinov2")
    from dinov2.models import vision_transformer as vits

    with torch.device("meta"):
        model = vits.__dict__[arch](img_size=518, patch_size=14, init_values=1.0, block_chunks=0,
                                    ffn_layer="swiglufused" if size == "giant" else "mlp",
                                    drop_path_uniform=True)  # torch.linspace's .item() has no meta tensor
    shapes = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    if registers:  # the package predates registers; Meta's newer model adds this one parameter
        shapes["register_tokens"] = (1, registers, model.embed_dim)
    shapes[HEAD_PREFIX + "weight"], shapes[HEAD_PREFIX + "bias"] = (1000, 2 * model.embed_dim), (1000,)
    checkpoint = Checkpoint(BACKBONE, {key: (shape, "float32", None) for key, shape in shapes.items()})
    assert dinov2_meta.detect(checkpoint)
    config = vit_zoo.ViTConfig(**dinov2_meta.config_fields(checkpoint))
    assert config.variant == f"dinov2{'-reg4' if registers else ''}-{size}-14"
    assert config.position_grid == (37, 37) and config.image_size == (224, 224)
    rows = dinov2_meta.mapping(config, checkpoint)
    used = [source for r in rows for source in r.sources]
    assert sorted(set(used)) == sorted(set(shapes) - {"mask_token"})
    assert len(used) == len(set(used)) + 4 * config.num_layers  # the fused qkv weight and bias feed three rows each
    ours_count = sum(int(np.prod(v.shape)) for v in spec_variables(config))
    assert ours_count == sum(int(np.prod(shape)) for key, shape in shapes.items() if key != "mask_token")
