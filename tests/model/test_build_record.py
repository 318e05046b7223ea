"""The build record: vit_zoo.build's options as the model carries them, kept by save / load_model, read from
the graph for .keras files written before records existed; has_head / has_preprocessing / outputs read it."""
import json
import zipfile

import keras
import pytest

import vit_zoo
from conftest import tiny_config
from vit_zoo.model.build_record import BuildRecord, build_record_of, has_head, has_preprocessing


@pytest.mark.parametrize("options, record", [
    ({}, BuildRecord(True, "token", True, None, False)),
    ({"classifier_activation": "softmax"}, BuildRecord(True, "token", True, "softmax", False)),
    ({"include_top": False, "pooling": "gap", "include_preprocessing": False},
     BuildRecord(False, "gap", False, None, False)),
    ({"include_top": False, "dynamic_size": True}, BuildRecord(False, None, True, None, True)),
])
def test_build_records_the_options(options, record):
    model = vit_zoo.build(tiny_config(num_layers=1), **options)
    assert model.build_record == record
    assert has_head(model) == record.include_top and has_preprocessing(model) == record.include_preprocessing
    assert record.outputs == ("features" if not record.include_top else
                              "probabilities" if record.classifier_activation else "logits")


def test_gap_of_an_fc_norm_config_is_recorded_resolved():
    model = vit_zoo.build(tiny_config(num_layers=1, pooling="avg-fcnorm", class_token=False), include_top=False,
                          pooling="gap")
    assert model.build_record.pooling == "avg-fcnorm"


def test_plain_keras_models_have_no_record():
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="head")])
    assert build_record_of(plain) is None and not has_head(plain) and not has_preprocessing(plain)


@pytest.mark.parametrize("options", [{"classifier_activation": "softmax"},
                                     {"include_top": False, "pooling": "token", "include_preprocessing": False},
                                     {"include_top": False, "dynamic_size": True}])
def test_keras_files_keep_the_record_and_files_without_one_read_it_from_the_graph(options, tmp_path):
    model = vit_zoo.build(tiny_config(num_layers=1, distillation_token=True, head="distilled"), **options)
    model.save(tmp_path / "new.keras")
    assert keras.models.load_model(tmp_path / "new.keras").build_record == model.build_record
    # the same file as vit_zoo wrote it before build records: no "vit_zoo_build" in its config.json
    with zipfile.ZipFile(tmp_path / "new.keras") as source, zipfile.ZipFile(tmp_path / "old.keras", "w") as old:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                assert config["config"].pop("vit_zoo_build") == model.build_record.to_dict()
                data = json.dumps(config).encode()
            old.writestr(item, data)
    assert keras.models.load_model(tmp_path / "old.keras").build_record == model.build_record


def test_record_errors():
    with pytest.raises(ValueError, match=r"not a vit_zoo build record \(a dict with keys"):
        BuildRecord.from_dict({"include_top": True, "heads": 2})
    with pytest.raises(TypeError, match="build_record must be a BuildRecord, got dict"):
        model = vit_zoo.build(tiny_config(num_layers=1))
        vit_zoo.model.vision_transformer.VisionTransformer(model.input, model.output, build_record={})
