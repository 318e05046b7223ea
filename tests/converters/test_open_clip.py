"""OpenCLIP image towers against open_clip's own forward (encode_image), on tiny perturbed models."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import synth_open_clip as synth
from reference_frameworks import require

torch = require("torch")
require("open_clip")

import vit_zoo  # noqa: E402
from vit_zoo.converters.errors import UnsupportedLayoutError  # noqa: E402


def images(size=32, seed=1):
    return np.random.default_rng(seed).normal(size=(2, size, size, 3)).astype("float32")


def reference(model, x, **kwargs):
    with torch.no_grad():
        return model.encode_image(torch.from_numpy(x.transpose(0, 3, 1, 2)), **kwargs).numpy()


def relative(ours, expected):
    return float(np.max(np.abs(np.asarray(ours) - expected)) / np.max(np.abs(expected)))


def load(path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = vit_zoo.load(weights=path, include_preprocessing=False, **kwargs)
    return model, [w for w in caught if "tensors of the text tower" in str(w.message)]


@pytest.mark.parametrize("quick_gelu, ls", [(False, None), (True, None), (False, 0.1)])
def test_image_embedding_matches_open_clip(tmp_path, quick_gelu, ls):
    cfg = synth.model_cfg(quick_gelu=quick_gelu, ls_init_value=ls)
    source = synth.build(cfg)
    model, text_warnings = load(synth.save(source, cfg, tmp_path))
    x = images()
    assert relative(model(x), reference(source, x)) <= 1e-4
    assert len(text_warnings) == 1 and "vit_zoo models the image tower" in str(text_warnings[0].message)
    assert model.identity.config.gelu == ("quick" if quick_gelu else "exact")
    assert (model.identity.config.layer_scale is not None) == (ls is not None)


def test_pooled_before_projection(tmp_path):
    cfg = synth.model_cfg()
    source = synth.build(cfg, seed=3)
    model, _ = load(synth.save(source, cfg, tmp_path), include_top=False, pooling="token")
    x = images()
    visual = source.visual
    with torch.no_grad():
        proj, visual.proj = visual.proj, None
        expected = reference(source, x)
        visual.proj = proj
    assert relative(model(x), expected) <= 1e-4


def test_pytorch_bin_loads(tmp_path):
    cfg = synth.model_cfg()
    source = synth.build(cfg, seed=4)
    model, _ = load(synth.save(source, cfg, tmp_path, "open_clip_pytorch_model.bin"))
    x = images()
    assert relative(model(x), reference(source, x)) <= 1e-4


@pytest.mark.parametrize("change, named", [(dict(attentional_pool=True), "attentional"),
                                           (dict(pool_type="avg"), "pool_type='avg'")])
def test_unmodelled_towers_refused_by_name(tmp_path, change, named):
    cfg = synth.model_cfg(**change)
    source = synth.build(cfg)
    with pytest.raises(UnsupportedLayoutError, match=named):
        vit_zoo.load(weights=synth.save(source, cfg, tmp_path), include_preprocessing=False)


def test_openai_torchscript_release(tmp_path):
    source = synth.openai_clip(seed=5)
    path = synth.save_torchscript(source, tmp_path)
    model, text_warnings = load(path)
    x = images()
    assert relative(model(x), reference(source, x)) <= 1e-4
    assert model.identity.config.gelu == "quick" and len(text_warnings) == 1
    assert model.identity.provenance.format == "openai-clip"


def test_torchscript_without_torch_names_the_safetensors_copies(tmp_path, monkeypatch):
    from vit_zoo.converters.errors import CheckpointError

    path = synth.save_torchscript(synth.openai_clip(), tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    with pytest.raises(CheckpointError, match=r"TorchScript archive.*needs torch.*vit_base_patch16_clip_224\.openai"
                                              r".*openai/clip-vit-base-patch16"):
        vit_zoo.load(weights=path, include_preprocessing=False)


def test_resnet_clip_refused(tmp_path):
    from safetensors.numpy import save_file

    save_file({"visual.layer1.0.conv1.weight": np.zeros((4, 4, 1, 1), "float32")},
              str(tmp_path / "open_clip_model.safetensors"))
    with pytest.raises(UnsupportedLayoutError, match="ResNet CLIP"):
        vit_zoo.load(weights=tmp_path / "open_clip_model.safetensors", include_preprocessing=False)


def test_other_image_size_resamples_as_open_clip(tmp_path):
    """open_clip loads a checkpoint at another image_size through resize_pos_embed (bicubic, antialias)."""
    open_clip = require("open_clip")
    cfg = synth.model_cfg()
    source = synth.build(cfg, seed=6)
    path = synth.save(source, cfg, tmp_path)
    larger = synth.model_cfg()
    larger["vision_cfg"]["image_size"] = 48
    target = open_clip.model.CLIP(**larger).eval()
    state = dict(source.state_dict())
    open_clip.model.resize_pos_embed(state, target)
    target.load_state_dict(state)
    model, _ = load(path, image_size=48)
    x = images(48)
    assert relative(model(x), reference(target, x)) <= 1e-4


def test_directory_and_timm_trunk_refusal(tmp_path):
    """A directory of an OpenCLIP repo loads its open_clip_model.safetensors; a timm-trunk tower without the
    open_clip_config.json that names its timm architecture is refused, saying so (test_open_clip_trunk.py)."""
    cfg = synth.model_cfg()
    source = synth.build(cfg, seed=7)
    synth.save(source, cfg, tmp_path / "repo")
    model, _ = load(tmp_path / "repo")
    x = images()
    assert relative(model(x), reference(source, x)) <= 1e-4
    from safetensors.numpy import save_file

    save_file({"visual.trunk.patch_embed.proj.weight": np.zeros((4, 3, 2, 2), "float32")},
              str(tmp_path / "open_clip_model.safetensors"))
    with pytest.raises(UnsupportedLayoutError, match="timm trunk .*no open_clip_config.json"):
        vit_zoo.load(weights=tmp_path / "open_clip_model.safetensors", include_preprocessing=False)


@pytest.mark.parametrize("mode, interpolation, recipe", [("shortest", "bicubic", "timm"), ("squash", "bicubic", "hf"),
                                                          ("squash", "bilinear", "hf")])
def test_preprocess_cfg_resize_mode_is_the_recipe(tmp_path, mode, interpolation, recipe):
    """OpenCLIP's SigLIP configs squash (resize_mode "squash"), its CLIP configs resize the short side and crop."""
    import json

    cfg = synth.model_cfg()
    path = synth.save(synth.build(cfg), cfg, tmp_path)
    config_file = tmp_path / "open_clip_config.json"
    config = json.loads(config_file.read_text())
    config["preprocess_cfg"].update(resize_mode=mode, interpolation=interpolation)
    config_file.write_text(json.dumps(config))
    preprocessing = load(path)[0].identity.preprocessing
    assert (preprocessing.recipe, preprocessing.crop_pct, preprocessing.interpolation) == (recipe, 1.0, interpolation)
    config["preprocess_cfg"]["resize_mode"] = "longest"
    config_file.write_text(json.dumps(config))
    with pytest.raises(UnsupportedLayoutError, match="resize_mode 'longest'"):
        load(path)
