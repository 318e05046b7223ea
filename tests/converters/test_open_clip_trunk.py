"""OpenCLIP towers with a timm trunk (``visual.trunk.*``: open_clip's SigLIP configs) against open_clip's own
``encode_image``: tiny towers built by open_clip's ``TimmModel`` around timm's own definitions (timm's sizes
cut to 1 block at 32 px, since open_clip's config cannot state timm sizes other than the architecture's; GELU flavour, epsilon and pooling as each architecture sets them),
perturbed, saved as OpenCLIP publishes them (``open_clip_model.safetensors`` + ``open_clip_config.json``)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import synth_open_clip as synth
from reference_frameworks import require

torch = require("torch")
timm = require("timm")
open_clip = require("open_clip")

import vit_zoo  # noqa: E402
from vit_zoo.converters.errors import UnsupportedLayoutError  # noqa: E402

SHORT = dict(depth=1, img_size=32)
# case: (timm_model_name, timm_pool, timm_proj, preprocess_cfg, what the tower must read as)
TRUNKS = {
    "siglip": ("vit_base_patch16_siglip_224", "map", "none", synth.SIGLIP_PREPROCESS,
               dict(gelu="exact", pooling="map", class_token=False, projection_size=None, num_classes=0,
                    mean=(0.5, 0.5, 0.5))),
    "siglip-tanh": ("vit_so400m_patch16_siglip_256", "map", "none", synth.SIGLIP_PREPROCESS,
                    dict(gelu="tanh", pooling="map", mlp_size=4304, layer_norm_epsilon=1e-6)),
    "clip-linear": ("vit_base_patch16_clip_224", "token", "linear", synth.CLIP_PREPROCESS,
                    dict(gelu="exact", layer_norm_epsilon=1e-5, pre_norm=True, pooling="token", projection_size=24,
                         num_classes=0)),
}


def trunk_tower(case, directory, monkeypatch, seed=0):
    """(weights file, the open_clip CLIP) of ``case``: timm.create_model cut to SHORT while open_clip builds."""
    name, pool, proj, preprocess, _ = TRUNKS[case]
    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda model_name, **kwargs: create(model_name, **{**SHORT, **kwargs}))
    cfg = dict(embed_dim=24, text_cfg=synth.TEXT_CFG,
               vision_cfg=dict(timm_model_name=name, timm_model_pretrained=False, timm_pool=pool, timm_proj=proj,
                               image_size=32))
    model = synth.perturbed(open_clip.model.CLIP(**cfg), seed)
    monkeypatch.setattr(timm, "create_model", create)
    return synth.save(model, cfg, directory, preprocess=preprocess), model


def encode_image(model, x):
    with torch.no_grad():
        return model.encode_image(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()


def load(path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = vit_zoo.load(weights=path, include_preprocessing=False, **kwargs)
    return model, [str(w.message) for w in caught if "tensors of the text tower" in str(w.message)]


@pytest.mark.parametrize("case", TRUNKS)
def test_image_embedding_matches_open_clip(case, tmp_path, monkeypatch):
    path, source = trunk_tower(case, tmp_path, monkeypatch)
    model, text_warnings = load(path)
    config = model.identity.config
    expected_fields = TRUNKS[case][4]
    assert {key: getattr(config, key) for key in expected_fields} == expected_fields
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    expected = encode_image(source, x)
    got = np.asarray(model(x))
    error = float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))
    print(f"\nopen_clip timm-trunk parity {case}: {error:.2e}")
    assert got.shape == expected.shape and error <= 1e-4
    assert len(text_warnings) == 1
    assert model.identity.provenance.format == "open-clip"
    preprocess = TRUNKS[case][3]
    recipe = {"squash": "hf", "shortest": "timm"}[preprocess["resize_mode"]]
    assert model.identity.preprocessing.recipe == recipe and config.std == tuple(preprocess["std"])
    assert not model.identity.provenance.assumed


def _edit_config(path, **vision):
    config_file = path.parent / "open_clip_config.json"
    config = json.loads(config_file.read_text())
    config["model_cfg"]["vision_cfg"].update(vision)
    config["model_cfg"]["vision_cfg"] = {k: v for k, v in config["model_cfg"]["vision_cfg"].items() if v is not None}
    config_file.write_text(json.dumps(config))


@pytest.mark.parametrize("vision, says", [
    (dict(timm_proj="mlp"), r"timm_proj='mlp' \(vit_zoo models 'none' and 'linear'\)"),
    (dict(timm_proj_bias=True), r"timm_proj_bias=true"),
    (dict(timm_pool="abs_attn"), r"timm_pool='abs_attn' \(vit_zoo models \['map', 'avg', 'token'\]\)"),
    (dict(timm_proj="linear"), r"timm_proj='linear' but the checkpoint has no 'visual.head.proj.weight'"),
    (dict(timm_model_name=None), r"no open_clip_config.json model_cfg.vision_cfg.timm_model_name"),
    (dict(timm_model_name="vit_base_patch16_rope_224"), r"vit_base_patch16_rope_224"),
])
def test_trunk_options_not_modelled_are_refused_by_name(vision, says, tmp_path, monkeypatch):
    path, _ = trunk_tower("siglip", tmp_path, monkeypatch)
    _edit_config(path, **vision)
    with pytest.raises(UnsupportedLayoutError, match=says):
        vit_zoo.load(weights=path, include_preprocessing=False)
