"""``tf_model.h5`` key names, pinned to a file transformers' own TF code wrote.

``tests/fixtures/tf_model_h5_keys.json`` lists every dataset (group, name, shape) of the ``tf_model.h5``
that transformers 4.57.6 (TensorFlow 2.21, tf-keras 2.21) saved for a tiny ``TFViTModel`` and
``TFViTForImageClassification`` with ``save_pretrained``; ``tests/fixtures/record_tf_model_h5.py`` made it
(the command is in the JSON's "how"). The tests' writer (``tests/layouts.py:hf_tf``) must write exactly
those names, and vit_zoo's reader must convert a file that holds exactly them -- so neither can drift
into a shared private belief. Needs neither torch nor TensorFlow's transformers code.
"""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import vit_zoo
from vit_zoo import converters
from vit_zoo.converters import huggingface as hf

import layouts
from conftest import load_converted

RECORD = json.loads((Path(__file__).parents[1] / "fixtures" / "tf_model_h5_keys.json").read_text())
KINDS = {"TFViTModel": "base", "TFViTForImageClassification": "classifier"}
TF_SCOPES = {"TFViTModel": "tf_vi_t_model", "TFViTForImageClassification": "tf_vi_t_for_image_classification"}


def recorded_datasets(model_class):
    """[(HDF5 dataset path, shape)] in the order transformers wrote them."""
    saved = RECORD["models"][model_class]
    return [(f"{group}/{name}", tuple(shape)) for group in saved["layer_names"]
            for name, shape in saved["weights"][group]]


def spec():
    c = RECORD["vit_config"]
    return vit_zoo.ViTConfig(image_size=c["image_size"], patch_size=c["patch_size"], hidden_size=c["hidden_size"],
                             mlp_size=c["intermediate_size"], num_heads=c["num_attention_heads"],
                             num_layers=c["num_hidden_layers"], num_classes=c["num_labels"],
                             representation_size=c["hidden_size"])


@pytest.mark.parametrize("model_class", list(KINDS))
def test_test_writer_layout_is_the_recorded_one(model_class):
    config = spec()
    written = layouts.tensors(layouts.hf_tf(config, KINDS[model_class]), layouts.weights(config))
    assert [(key, value.shape) for key, value in written.items()] == recorded_datasets(model_class)


@pytest.mark.parametrize("model_class", list(KINDS))
def test_reader_converts_a_file_with_the_recorded_names(tmp_path, model_class):
    import h5py

    saved = RECORD["models"][model_class]
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "tf_model.h5", "w") as f:  # the recorded structure, random values
        f.attrs["layer_names"] = [name.encode() for name in saved["layer_names"]]
        for group_name in saved["layer_names"]:
            group = f.create_group(group_name)
            group.attrs["weight_names"] = [name.encode() for name, _ in saved["weights"][group_name]]
            for name, shape in saved["weights"][group_name]:
                group.create_dataset(name, data=rng.standard_normal(shape).astype(np.float32))
    c = RECORD["vit_config"]
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit", **c, "hidden_act": "gelu",
                                                      "layer_norm_eps": 1e-12}))
    with converters.open_checkpoint(tmp_path) as checkpoint:
        assert checkpoint.path.name == "tf_model.h5" and converters.detect_format(checkpoint) is hf
        assert hf.layout(checkpoint).scope == TF_SCOPES[model_class]
    classifier = model_class == "TFViTForImageClassification"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no preprocessor_config.json: mean/std assumed
        model, config = load_converted(tmp_path, include_top=classifier, pooling=None if classifier else "token")
    # the loader's strict applier used every dataset exactly once; here is one of each end
    first, last = recorded_datasets(model_class)[0][0], recorded_datasets(model_class)[-1][0]
    with converters.open_checkpoint(tmp_path) as checkpoint:
        assert np.array_equal(model.get_layer("class_token").token.numpy(), checkpoint.load(first))
        last_layer = "head" if classifier else "pre_logits"
        assert np.array_equal(model.get_layer(last_layer).bias.numpy(), checkpoint.load(last))
    assert config.representation_size == (None if classifier else c["hidden_size"])
