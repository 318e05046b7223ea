"""Hugging Face checkpoints without torch: what the converter reads from config.json and
preprocessor_config.json, the layouts it detects, and what it refuses. The checkpoints are written from the
layout tables (``synth_hf.write_random``), config.json by transformers' own ViTConfig (no torch needed);
parity with transformers' torch model is in test_huggingface_parity.py."""
import json
import re
import warnings

import numpy as np
import pytest

import vit_zoo
from vit_zoo import converters
from vit_zoo.converters import huggingface as hf
from vit_zoo.converters.apply import ConversionError, apply_rows
from vit_zoo.converters.checkpoint import CheckpointError, open_checkpoint

import layouts
import synth_hf
from reference_frameworks import require

require("transformers")  # transformers' ViTConfig writes the config.json files


# ---- layouts -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bare", [False, True])
def test_safetensors_of_a_classifier_and_of_a_bare_model(tmp_path, bare):
    path = synth_hf.write_random(synth_hf.hf_config(), tmp_path, bare=bare)
    with open_checkpoint(path) as checkpoint:
        assert converters.detect_format(checkpoint) is hf
        prefix = "" if bare else "vit."  # a bare ViTModel saves without it, with its pooler
        assert f"{prefix}embeddings.cls_token" in checkpoint and ("pooler.dense.weight" in checkpoint) == bare
        fields = hf.config_fields(checkpoint)
    assert (fields["num_classes"], fields["representation_size"]) == ((None, 32) if bare else (5, None))


@pytest.mark.parametrize("kind", ["classifier", "base"])
def test_tf_model_h5_layout(tmp_path, kind):
    config = synth_hf.hf_config()
    spec = synth_hf.spec_of(config, representation_size=config.hidden_size if kind == "base" else None)
    path = synth_hf.write_tf_h5(layouts.weights(spec), spec, config, tmp_path / "tf_model.h5", kind)
    with open_checkpoint(path.parent) as checkpoint:  # the directory resolves to tf_model.h5
        assert checkpoint.path.name == "tf_model.h5"
        assert hf.layout(checkpoint) == hf.Layout("tf", layouts.TF_MODEL_NAMES[kind])
        assert converters.detect_format(checkpoint) is hf
        assert hf.config_fields(checkpoint)["num_classes"] == (5 if kind == "classifier" else None)


# ---- config ------------------------------------------------------------------------------------------
def test_config_fields_follow_config_json(tmp_path):
    config = synth_hf.hf_config(num_labels=7, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, image_size=48)
    with open_checkpoint(synth_hf.write_random(config, tmp_path)) as checkpoint:
        fields = hf.config_fields(checkpoint)
        assert hf.class_names(checkpoint) is None  # transformers' LABEL_0… placeholders name nothing
    assert fields == dict(image_size=(48, 48), patch_size=8, hidden_size=32, mlp_size=64, num_heads=4,
                          num_layers=2, class_token=True, pooling="token", representation_size=None,
                          gelu="tanh", layer_norm_epsilon=1e-6, qkv_bias=True, mean=(0.5, 0.5, 0.5),
                          std=(0.5, 0.5, 0.5), num_classes=7, position_embedding_resampling="bicubic",
                          distillation_token=False, head="linear",
                          assumed={"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)})


def test_hugging_face_defaults_eps_and_gelu(tmp_path):
    with open_checkpoint(synth_hf.write_random(synth_hf.hf_config(), tmp_path)) as checkpoint:
        fields = hf.config_fields(checkpoint)
    assert fields["layer_norm_epsilon"] == 1e-12 and fields["gelu"] == "exact"


@pytest.mark.parametrize("processor, mean, std", [
    ({"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]},
     (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ({"do_normalize": False}, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    ({"image_mean": 0.5, "image_std": 0.5}, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
])
def test_normalisation_from_preprocessor_config(tmp_path, processor, mean, std):
    with open_checkpoint(synth_hf.write_random(synth_hf.hf_config(), tmp_path, preprocessor=processor)) as checkpoint:
        fields = hf.config_fields(checkpoint)
    assert fields["mean"] == pytest.approx(mean) and fields["std"] == pytest.approx(std)


# ---- errors ------------------------------------------------------------------------------------------
def test_missing_config_json_says_what_cannot_be_inferred(tmp_path):
    path = synth_hf.write_random(synth_hf.hf_config(), tmp_path)
    (path / "config.json").unlink()
    with open_checkpoint(path / "model.safetensors") as checkpoint:
        assert hf.detect(checkpoint)
        with pytest.raises(CheckpointError, match=r"without its config\.json.*heads.*epsilon.*GELU.*"
                                                  r"Put the repo's config\.json in"):
            hf.config_fields(checkpoint)


@pytest.mark.parametrize("act", ["relu", "quick_gelu"])
def test_unknown_hidden_act(tmp_path, act):
    path = synth_hf.write_random(synth_hf.hf_config(), tmp_path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "hidden_act": act}))
    with open_checkpoint(path) as checkpoint:
        with pytest.raises(CheckpointError, match=rf"hidden_act '{act}' is not supported.*gelu"):
            hf.config_fields(checkpoint)


def test_config_json_of_another_model(tmp_path):
    path = synth_hf.write_random(synth_hf.hf_config(), tmp_path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with open_checkpoint(path) as checkpoint:
        with pytest.raises(CheckpointError, match=r"num_hidden_layers 3, but 'model\.safetensors' has "
                                                  r"encoder layers: 2; config\.json and the weights"):
            hf.config_fields(checkpoint)


def test_missing_tensor_is_listed_and_nothing_assigned(tmp_path):
    from safetensors.numpy import load_file, save_file

    path = synth_hf.write_random(synth_hf.hf_config(), tmp_path)
    state = load_file(path / "model.safetensors")
    del state["vit.encoder.layer.1.attention.attention.key.weight"]
    save_file(state, path / "model.safetensors")
    with open_checkpoint(path) as checkpoint:
        fields = hf.config_fields(checkpoint)
        fields.pop("assumed")
        config = vit_zoo.ViTConfig(**fields)
        model = vit_zoo.build(config, include_preprocessing=False)
        before = [np.array(v) for v in model.weights]
        with pytest.raises(ConversionError, match=r"missing in checkpoint \(1\): block_01_attn/key_kernel "
                                                  r"← vit\.encoder\.layer\.1\.attention\.attention\.key"):
            apply_rows(model, hf.mapping(config, checkpoint), checkpoint, ignored=hf.IGNORED)
    assert all(np.array_equal(a, np.array(v)) for a, v in zip(before, model.weights))


@pytest.mark.parametrize("model_type, named", [("vit_mae", "ViTMAE"), ("beit", "BEiT"),
                                               ("dinov3_vit", "DINOv3 (RoPE)"),
                                               ("swinv2", None)])
def test_model_types_not_modelled_are_refused_by_name(tmp_path, model_type, named):
    path = synth_hf.write_random(synth_hf.hf_config(), tmp_path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": model_type}))
    with open_checkpoint(path) as checkpoint:
        assert converters.detect_format(checkpoint) is hf
        with pytest.raises(converters.UnsupportedLayoutError, match=rf"model_type '{model_type}'"
                           rf"{re.escape(' (' + named) if named else '; this converter reads'}") as error:
            hf.config_fields(checkpoint)
    assert error.value.layout == f"Hugging Face model_type '{model_type}'"


def test_refused_model_type_is_detected_by_its_config_json_alone(tmp_path):
    # SigLIP 2's NaFlex tower keeps a Linear patch embedding no layout reads; its config.json names it, so
    # the error names the family instead of "unknown checkpoint format".
    from synth_checkpoints import write_safetensors

    write_safetensors(tmp_path / "model.safetensors",
                      {"vision_model.embeddings.patch_embedding.weight": np.zeros((8, 48), "float32")})
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "siglip2"}))
    with pytest.raises(converters.UnsupportedLayoutError, match=r"model_type 'siglip2': SigLIP 2 NaFlex"):
        vit_zoo.load(weights=str(tmp_path), include_top=False)


def test_model_type_and_weights_of_different_models(tmp_path):
    path = synth_hf.write_random(synth_hf.hf_config(), tmp_path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "deit"}))
    with open_checkpoint(path) as checkpoint:
        with pytest.raises(CheckpointError, match=r"model_type 'deit', whose weights are under 'deit\.', but "
                                                  r"'model\.safetensors' keeps them under 'vit\.' \(a model_type "
                                                  r"'vit' checkpoint\)"):
            hf.config_fields(checkpoint)


def test_identity_from_config_json_and_preprocessor_config(tmp_path):
    config = synth_hf.hf_config(num_labels=3, id2label={0: "cat", 1: "dog", 2: "fox"},
                                label2id={"cat": 0, "dog": 1, "fox": 2})
    path = synth_hf.write_random(config, tmp_path, preprocessor={"resample": 3, "image_mean": [0.4, 0.5, 0.6],
                                                                 "image_std": [0.2, 0.3, 0.4]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # config.json and preprocessor_config.json state everything
        model = vit_zoo.load(weights=str(path))
    identity = model.identity
    assert identity.labels == ("cat", "dog", "fox")
    assert (identity.preprocessing.recipe, identity.preprocessing.interpolation) == ("hf", "bicubic")
    assert (identity.config.mean, identity.config.std) == ((0.4, 0.5, 0.6), (0.2, 0.3, 0.4))
    assert identity.provenance.format == "hf" and identity.provenance.assumed == ()


# ---- the published DINOv2 sizes, on shape-only stand-ins of their files ------------------------------
def _stand_in(config: dict, processor=None, registers=0, head=None):
    """A Checkpoint of the tensors' shapes only (no data) of a bare Dinov2(WithRegisters)Model of
    ``config`` (a transformers config's to_dict(), as config.json holds it), with ``processor`` as its
    preprocessor_config.json."""
    from vit_zoo.converters.checkpoint import Checkpoint

    d, grid = config["hidden_size"], config["image_size"] // config["patch_size"]
    hidden = int(d * config["mlp_ratio"])
    hidden = (int(hidden * 2 / 3) + 7) // 8 * 8 if config["use_swiglu_ffn"] else hidden
    shapes = {"embeddings.patch_embeddings.projection.weight": (d, 3, 14, 14), "embeddings.cls_token": (1, 1, d),
              "embeddings.position_embeddings": (1, 1 + grid * grid, d),
              "encoder.layer.0." + ("mlp.weights_out.weight" if config["use_swiglu_ffn"] else "mlp.fc2.weight"):
                  (d, hidden)}
    shapes.update({f"encoder.layer.{i}.norm1.weight": (d,) for i in range(config["num_hidden_layers"])})
    if registers:
        shapes["embeddings.register_tokens"] = (1, registers, d)
    entries = {key: (shape, "float32", None) for key, shape in shapes.items()}
    metadata = {**config, **({"preprocessor_config": processor} if processor else {})}
    return Checkpoint("/hub/model.safetensors", entries, metadata)


BIT_224 = {"image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 256}, "resample": 3,
           "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
           "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}


@pytest.mark.parametrize("size, width, heads, layers, swiglu, registers", [
    ("small", 384, 6, 12, False, 0), ("base", 768, 12, 12, False, 4), ("large", 1024, 16, 24, False, 0),
    ("giant", 1536, 24, 40, True, 4)])
def test_published_dinov2_configs_are_the_named_variants(size, width, heads, layers, swiglu, registers):
    from transformers import Dinov2Config, Dinov2WithRegistersConfig

    kind = Dinov2WithRegistersConfig if registers else Dinov2Config
    config = kind(hidden_size=width, num_attention_heads=heads, num_hidden_layers=layers, image_size=518,
                  patch_size=14, use_swiglu_ffn=swiglu).to_dict()
    fields = hf.config_fields(_stand_in(config, BIT_224, registers))
    assert fields.pop("assumed") == {}
    config = vit_zoo.ViTConfig(**{**fields, "num_classes": 1000})
    assert config.variant == f"dinov2{'-reg4' if registers else ''}-{size}-14"
    assert (config.image_size, config.position_grid) == ((224, 224), (37, 37))  # the 518 px table, in-graph


def test_dinov2_without_a_processor_takes_config_json_image_size_and_says_so():
    from transformers import Dinov2Config

    config = Dinov2Config(hidden_size=384, num_attention_heads=6, image_size=518, patch_size=14).to_dict()
    fields = hf.config_fields(_stand_in(config))
    assert fields["image_size"] == (518, 518) and fields["position_grid"] == (37, 37)
    assert fields["assumed"] == {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                                 "image_size": "(518, 518) (config.json image_size; no preprocessor_config.json "
                                               "crop_size to take the evaluation size from)"}


def test_dinov2_mlp_that_disagrees_with_config_json():
    from transformers import Dinov2Config

    config = Dinov2Config(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28).to_dict()
    checkpoint = _stand_in(config)
    checkpoint.metadata["use_swiglu_ffn"] = True  # the tensors are a GELU MLP's (fc2), config.json says SwiGLU
    with pytest.raises(CheckpointError, match=r"says use_swiglu_ffn True, but 'model\.safetensors' has "
                                              r"'encoder\.layer\.0\.mlp\.fc2' \(a GELU MLP's\)"):
        hf.config_fields(checkpoint)
    checkpoint.metadata.update(use_swiglu_ffn=False, mlp_ratio=3)
    with pytest.raises(CheckpointError, match=r"says an MLP width of int\(hidden_size \* mlp_ratio\), i\.e\. 192, "
                                              r"but 'model\.safetensors' has an MLP width \(fc2 inputs\) of: 256"):
        hf.config_fields(checkpoint)
