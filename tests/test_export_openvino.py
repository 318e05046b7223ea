"""OpenVINO IR exports beyond the float32 round trip of tests/test_export.py: bf16 compute where the CPU has
native bf16 (refused by name where it has not), OpenVINO's post-training int8 calibrated on a folder of images,
`vit-zoo predict --weights model.xml`, and a failed export leaving the previous pair of files."""
import json

import numpy as np
import pytest

import vit_zoo
from conftest import tiny_config, write_photos

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def classifier():
    import keras

    keras.utils.set_random_seed(3)
    net = vit_zoo.load(config=tiny_config(num_layers=2))
    kernel, bias = net.get_layer("head").get_weights()
    net.get_layer("head").set_weights([kernel * 20, bias])  # logits of size ~1
    return net


@pytest.fixture(scope="module")
def exported(classifier, tmp_path_factory):
    from vit_zoo.exporting import export

    return export(classifier, "openvino", tmp_path_factory.mktemp("ov") / "model.xml")


def _has_native_bf16() -> bool:
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_the_ir_pair_is_float32_and_runs_in_fp32_by_default(exported, classifier):
    from pathlib import Path

    from vit_zoo.exporting.exported import ExportedModel

    import openvino

    xml = Path(exported["path"])
    constants = [op for op in openvino.Core().read_model(xml).get_ops() if op.get_type_name() == "Constant"]
    assert {op.get_element_type().get_type_name() for op in constants} <= {"f32", "i64", "i32"}  # no f16 weights
    assert exported["bytes"] == xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    assert ExportedModel(xml).precision == "fp32" and exported["max_abs_diff"] <= 2e-5


def test_the_runtime_fixes_each_batch_shape_and_keeps_a_few(exported, classifier, monkeypatch):
    """Every batch size runs on a copy of the IR compiled for that static shape (the IR itself stays dynamic),
    each equal to Keras; only the last STATIC_SHAPES_KEPT shapes stay compiled."""
    import openvino

    from vit_zoo.exporting import keras_outputs, openvino_format

    compiled_shapes = []
    compile_model = openvino.Core.compile_model

    def recording(core, model, *args, **kwargs):
        compiled_shapes.append(tuple(model.inputs[0].get_partial_shape().to_shape()))
        return compile_model(core, model, *args, **kwargs)
    monkeypatch.setattr(openvino.Core, "compile_model", recording)
    run, dtype = openvino_format.runtime(exported["path"])
    assert dtype == "uint8"
    images = np.random.default_rng(2).integers(0, 256, (5, 32, 32, 3)).astype("uint8")
    expected = keras_outputs(classifier, images)
    for rows in (1, 3, 1, 5, 2, 1):
        np.testing.assert_allclose(run(images[:rows]), expected[:rows], atol=2e-5)
    kept = openvino_format.STATIC_SHAPES_KEPT
    assert kept == 3 and compiled_shapes == [(n, 32, 32, 3) for n in (1, 3, 5, 2, 1)]  # 1 was dropped after 5
    assert openvino.Core().read_model(exported["path"]).inputs[0].get_partial_shape().is_dynamic


def test_bf16_compute_where_the_cpu_has_it(exported, classifier):
    """bf16 keeps ~3 significant digits: logits within 2% of their range and the same top-1 on 4 of 4 images;
    a CPU without native bf16 refuses it, naming what it needs."""
    from vit_zoo.exporting import keras_outputs
    from vit_zoo.exporting.exported import ExportedModel

    images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    if not _has_native_bf16():
        with pytest.raises(ValueError, match="no native bf16 .*AVX512_BF16 or AMX"):
            ExportedModel(exported["path"], precision="bf16")
        return
    expected = keras_outputs(classifier, images)
    got = ExportedModel(exported["path"], precision="bf16")(images)
    error = float(np.max(np.abs(got - expected)))
    assert 0 < error <= 0.02 * float(expected.max() - expected.min())  # computed in bf16, not silently fp32
    assert np.array_equal(np.argmax(got, -1), np.argmax(expected, -1))


def test_int8_post_training_quantisation_on_a_calibration_folder(classifier, tmp_path):
    from vit_zoo.exporting import export, keras_outputs, run_exported

    photos = write_photos(tmp_path / "calibration", 12)
    result = export(classifier, "openvino", tmp_path / "int8.xml", quantize="int8", calibration=photos)
    images = np.random.default_rng(2).integers(0, 256, (8, 32, 32, 3)).astype("uint8")
    expected, got = keras_outputs(classifier, images), run_exported(result["path"], images)
    error, agreement = np.max(np.abs(got - expected)), np.mean(np.argmax(got, -1) == np.argmax(expected, -1))
    print(f"\nOpenVINO int8: max |diff| {error:.3f} of a logit range {np.ptp(expected):.2f}, top-1 agreement "
          f"{agreement:.2f}")
    assert error <= 0.15 * float(np.ptp(expected)) and agreement >= 0.75  # measured: 10 %, 0.88
    import openvino

    kinds = {op.get_type_name() for op in openvino.Core().read_model(result["path"]).get_ops()}
    assert "FakeQuantize" in kinds  # int8 quantisation points, not a float graph
    with pytest.raises(ValueError, match="needs calibration images"):
        export(classifier, "openvino", tmp_path / "x.xml", quantize="int8")
    with pytest.raises(ValueError, match="quantize='int8' applies to format 'openvino' only, not 'onnx'"):
        export(classifier, "onnx", tmp_path / "x.onnx", quantize="int8")


def test_a_failed_export_leaves_the_previous_pair(classifier, tmp_path, monkeypatch):
    import openvino

    from vit_zoo.exporting import export

    (tmp_path / "m.xml").write_text("previous xml")
    (tmp_path / "m.bin").write_text("previous bin")

    def interrupted(model, path, **options):
        open(path, "w").write("half")
        raise KeyboardInterrupt
    monkeypatch.setattr(openvino, "save_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export(classifier, "openvino", tmp_path / "m.xml", verify=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]
    assert (tmp_path / "m.xml").read_text() == "previous xml" and (tmp_path / "m.bin").read_text() == "previous bin"


def test_cli_predicts_with_an_openvino_export(tmp_path, capsys):
    """`vit-zoo export --format openvino` then `vit-zoo predict --weights model.xml` (and --precision)."""
    from pathlib import Path

    from vit_zoo.cli import main

    config = tiny_config(num_classes=3, num_layers=1)
    from vit_zoo.model.identity import Identity, Preprocessing

    net = vit_zoo.build(config, identity=Identity(config=config, labels=("circle", "square", "ring"),
                                                  preprocessing=Preprocessing("hf", 1.0, "bilinear")))
    source = tmp_path / "m.keras"
    net.save(source)
    assert main(["export", str(source), "--format", "openvino", "-o", str(tmp_path / "m.xml")]) in (0, None)
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "openvino" and report["top1_agreement"] == 1.0
    photo = str(Path(__file__).parent.parent / "samples" / "chelsea.png")
    assert main(["predict", photo, "--weights", str(tmp_path / "m.xml"), "--top", "2", "--json"]) in (0, None)
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert len(top) == 2 and {row["label"] for row in top} <= {"circle", "square", "ring"}
    assert main(["predict", photo, "--weights", str(source), "--precision", "bf16"]) not in (0, None)
    assert "sets the compute precision of an OpenVINO export" in capsys.readouterr().err
