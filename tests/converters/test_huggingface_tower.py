"""The Hugging Face image towers (CLIP, SigLIP) against transformers 5's torch classes: random tiny models
(``synth_hf_tower``), saved with ``save_pretrained``, loaded through ``vit_zoo.load`` and held to transformers'
outputs at max|a − b| / max|b| ≤ 1e-4: the image embedding (``image_embeds`` / ``pooler_output``), the pooled
token before the projection, at the stored size and at another size (transformers' ``interpolate_pos_encoding``)."""
import warnings

import numpy as np
import pytest

from reference_frameworks import require

torch = require("torch")
transformers = require("transformers")

import vit_zoo  # noqa: E402
from vit_zoo import converters  # noqa: E402

import synth_hf_family as family  # noqa: E402
import synth_hf_tower as tower  # noqa: E402
from test_huggingface_family_parity import images, relative_error  # noqa: E402

TOLERANCE = 1e-4
pytestmark = pytest.mark.filterwarnings("ignore:hf checkpoint .* does not state every value:UserWarning",
                                        "ignore:hf checkpoint .* set aside:UserWarning")


def _load(path, **options):
    return vit_zoo.load(weights=str(path), include_preprocessing=False, **options)


def _embedding(reference, pixels, interpolate=False):
    """What transformers calls the image embedding of each class."""
    kwargs = {"interpolate_pos_encoding": True} if interpolate else {}
    with torch.no_grad():
        if isinstance(reference, (transformers.CLIPModel, transformers.SiglipModel)):
            features = reference.get_image_features(pixel_values=pixels, **kwargs)
            # transformers 5: a BaseModelOutputWithPooling whose pooler_output is the (projected) embedding
            return getattr(features, "pooler_output", features)
        output = reference(pixel_values=pixels, **kwargs)
        return output.image_embeds if hasattr(output, "image_embeds") else output.pooler_output


CASES = {
    "CLIPVisionModelWithProjection": (tower.clip_vision_config, "clip", 24),
    "CLIPVisionModel": (tower.clip_vision_config, "clip", 64),
    "CLIPModel": (tower.clip_config, "clip", 24),
    "SiglipVisionModel": (tower.siglip_vision_config, "siglip", 64),
    "SiglipModel": (tower.siglip_config, "siglip", 64),
}


@pytest.mark.parametrize("cls_name", list(CASES))
def test_the_embedding_matches_transformers_at_the_stored_and_another_size(cls_name, tmp_path):
    make_config, kind, width = CASES[cls_name]
    reference = tower.model(cls_name, make_config())
    path = family.save(reference, tmp_path)
    model = _load(path)
    assert model.identity.config.embedding_width == width and model.output_shape == (None, width)
    nhwc, nchw = images(32)
    assert relative_error(model.predict(nhwc, verbose=0), _embedding(reference, nchw)) <= TOLERANCE
    larger_nhwc, larger_nchw = images(48, seed=1)  # a 6x6 grid from the stored 4x4
    larger = _load(path, image_size=48)
    assert relative_error(larger.predict(larger_nhwc, verbose=0),
                          _embedding(reference, larger_nchw, interpolate=True)) <= TOLERANCE


def test_clip_pooled_token_is_pooler_output_and_tokens_are_the_normed_hidden_states(tmp_path):
    reference = tower.model("CLIPVisionModelWithProjection", tower.clip_vision_config())
    path = family.save(reference, tmp_path)
    nhwc, nchw = images(32)
    with torch.no_grad():
        output = reference.vision_model(pixel_values=nchw)  # BaseModelOutputWithPooling of the tower
    pooled = _load(path, include_top=False, pooling="token").predict(nhwc, verbose=0)
    assert relative_error(pooled, output.pooler_output) <= TOLERANCE
    tokens = _load(path, include_top=False).predict(nhwc, verbose=0)
    # ours: encoder_norm (post_layernorm) on every token; transformers normalises the pooled token only
    expected = reference.vision_model.post_layernorm(output.last_hidden_state).detach()
    assert relative_error(tokens, expected) <= TOLERANCE


def test_siglip_tokens_are_last_hidden_state(tmp_path):
    reference = tower.model("SiglipVisionModel", tower.siglip_vision_config())
    path = family.save(reference, tmp_path)
    nhwc, nchw = images(32)
    with torch.no_grad():
        expected = reference(pixel_values=nchw).last_hidden_state
    assert relative_error(_load(path, include_top=False).predict(nhwc, verbose=0), expected) <= TOLERANCE


@pytest.mark.parametrize("act, flavour", [("quick_gelu", "quick"), ("gelu", "exact")])
def test_the_gelu_flavour_is_read_from_config_json(act, flavour, tmp_path):
    """OpenAI's CLIP uses quick-GELU, LAION's (in transformers' CLIP classes) exact GELU: config.json says."""
    reference = tower.model("CLIPVisionModelWithProjection", tower.clip_vision_config(hidden_act=act))
    path = family.save(reference, tmp_path)
    model = _load(path)
    assert model.identity.config.gelu == flavour
    nhwc, nchw = images(32)
    assert relative_error(model.predict(nhwc, verbose=0), _embedding(reference, nchw)) <= TOLERANCE


@pytest.mark.parametrize("cls_name", ["CLIPModel", "SiglipModel"])
def test_a_full_model_sets_its_text_tower_aside_with_one_warning(cls_name, tmp_path):
    make_config, _, _ = CASES[cls_name]
    reference = tower.model(cls_name, make_config())
    path = family.save(reference, tmp_path)
    text_keys = [k for k in reference.state_dict() if k.startswith("text_model.") or k in
                 ("text_projection.weight", "logit_scale", "logit_bias")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _load(path)
    set_aside = [str(w.message) for w in caught if "set aside" in str(w.message)]
    assert len(set_aside) == 1
    assert f"set aside {len(text_keys)} tensors of the text tower" in set_aside[0]


def test_vision_only_checkpoints_say_nothing_is_set_aside(tmp_path):
    path = family.save(tower.model("SiglipVisionModel", tower.siglip_vision_config()), tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _load(path)
    assert not [w for w in caught if "set aside" in str(w.message)]


def test_the_tower_parameter_counts_equal_transformers(tmp_path):
    for cls_name, (make_config, _, _) in CASES.items():
        reference = tower.model(cls_name, make_config())
        vision = sum(p.numel() for name, p in reference.named_parameters()
                     if not name.startswith(("text_model.", "text_projection.", "logit_")))
        model = _load(family.save(reference, tmp_path / cls_name))
        assert model.count_params() == vision, cls_name


def test_identity_family_defaults_and_published_preprocessing(tmp_path):
    path = family.save(tower.model("CLIPVisionModelWithProjection", tower.clip_vision_config()), tmp_path / "c")
    clip = _load(path)
    assert clip.identity.config.pre_norm and not clip.identity.config.patch_bias
    assert clip.identity.config.mean == vit_zoo.model.variants.CLIP_MEAN  # CLIPImageProcessor's, assumed
    assert (clip.identity.preprocessing.recipe, clip.identity.preprocessing.interpolation) == ("timm", "bicubic")
    siglip = _load(family.save(tower.model("SiglipVisionModel", tower.siglip_vision_config()), tmp_path / "s"))
    assert (siglip.identity.config.pooling, siglip.identity.config.class_token) == ("map", False)
    assert siglip.identity.config.mean == (0.5, 0.5, 0.5) and siglip.identity.preprocessing.recipe == "hf"
    assert siglip.identity.provenance.format == "hf" and siglip.identity.labels is None


def test_naflex_siglip2_and_headless_siglip_are_refused_by_name(tmp_path):
    path = family.save(tower.model("SiglipVisionModel", tower.siglip_vision_config()), tmp_path)
    config = (path / "config.json").read_text()
    (path / "config.json").write_text(config.replace('"siglip_vision_model"', '"siglip2"'))
    with pytest.raises(converters.UnsupportedLayoutError, match="SigLIP 2 NaFlex") as error:
        _load(path)
    assert error.value.layout == "Hugging Face model_type 'siglip2'"
    (path / "config.json").write_text(config.replace('"vision_use_head": true', '"vision_use_head": false'))
    with pytest.raises(converters.UnsupportedLayoutError, match="without its attention-pooling head"):
        _load(path)


def test_a_config_json_from_another_model_is_refused(tmp_path):
    path = family.save(tower.model("CLIPVisionModel", tower.clip_vision_config()), tmp_path)
    config = (path / "config.json").read_text()
    (path / "config.json").write_text(config.replace('"num_hidden_layers": 2', '"num_hidden_layers": 3'))
    with pytest.raises(converters.CheckpointError, match="num_hidden_layers 3, but 'model.safetensors' has "
                                                         "encoder layers: 2; config.json and the weights"):
        _load(path)
