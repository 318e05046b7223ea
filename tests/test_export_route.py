"""Export from the backend under test (CI runs this file on TensorFlow, JAX and PyTorch): SavedModel, TFLite,
ONNX and OpenVINO written by TensorFlow in a subprocess from the model of this process, verified against it here
(OpenVINO's int8 too, its calibration array handed over as a file).

Each artefact is checked twice: by the route's own report (the artefact run in the subprocess, compared
here) and independently by this test, running the TFLite file with LiteRT, the ONNX file with onnxruntime
and the SavedModel with TensorFlow in this process, against this backend's ``model(x)``. The artefacts
are TensorFlow's own: builtin TFLite GELU, ONNX ``Erf`` for exact GELU, a SavedModel signature on uint8
images of any batch size. Tolerances on max |Δ logits| (logits spanning ~2): as tests/test_export.py.
The model and its four exports are made once per run, shared by the pytest-xdist workers (``shared``).
"""
import json
import os

import keras
import numpy as np
import pytest
from filelock import FileLock

from conftest import tiny_config, to_numpy

TOLERANCE = {"saved_model": 1e-5, "tflite": 2e-5, "onnx": 2e-5, "openvino": 2e-5}
SUFFIX = {"saved_model": "", "tflite": ".tflite", "onnx": ".onnx", "openvino": ".xml"}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A folder that every pytest-xdist worker of this run sees (the parent of the workers' own temporary
    roots): the model and its four exports are made once per run, by the first worker that needs them, and
    read by the other (a file lock orders the two)."""
    root = tmp_path_factory.getbasetemp()
    folder = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "export_route"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def model(shared):
    import vit_zoo

    with FileLock(str(shared / "model.lock")):
        if (shared / "model.keras").exists():  # the other worker's model: the exports below are of it
            return keras.models.load_model(shared / "model.keras")
        keras.utils.set_random_seed(1)
        net = vit_zoo.load(config=tiny_config(num_layers=2))  # exact GELU, uint8 RGB in
        kernel, bias = net.get_layer("head").get_weights()
        net.get_layer("head").set_weights([kernel * 20, bias])  # logits of size ~1 rather than ~0.05
        net.save(shared / "model.keras")
        return net


@pytest.fixture(scope="module")
def exports(model, shared):
    """The four formats, exported by one TensorFlow subprocess: {format: export's result} (its report compares
    the artefact with the model of the worker that exported it; every test also runs the artefact here)."""
    pytest.importorskip("tf2onnx")
    from vit_zoo.exporting.route import start_exports

    with FileLock(str(shared / "exports.lock")):
        if (shared / "exports.json").exists():
            return json.loads((shared / "exports.json").read_text())
        results = start_exports(model, {format: shared / f"m{SUFFIX[format]}" for format in TOLERANCE}).result()
        (shared / "exports.json").write_text(json.dumps(results, default=float))
        return results


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype("uint8")


@pytest.mark.parametrize("format", list(TOLERANCE))
def test_the_artefact_computes_this_backends_model(model, exports, batch, format):
    from vit_zoo.exporting import run_exported

    result = exports[format]
    assert result["format"] == format and result["input_dtype"] == "uint8" and result["bytes"] > 0
    assert result["max_abs_diff"] <= TOLERANCE[format] and result["top1_agreement"] == 1.0, result
    expected = to_numpy(model(batch.astype("float32"), training=False))
    got = run_exported(result["path"], batch)  # 3 images: a batch size the subprocess did not run
    np.testing.assert_allclose(got, expected, atol=TOLERANCE[format], rtol=0)
    assert np.ptp(expected) > 0.5  # logits of a size where the tolerance means something


def test_openvino_int8_takes_its_calibration_array_across(model, tmp_path):
    from vit_zoo.exporting.route import start_export

    calibration = np.random.default_rng(4).integers(0, 256, (8, 32, 32, 3)).astype("uint8")
    result = start_export(model, "openvino", tmp_path / "q.xml", quantize="int8", calibration=calibration).result()
    assert result["quantize"] == "int8" and result["top1_agreement"] >= 0.5, result
    import openvino

    assert "FakeQuantize" in {op.get_type_name() for op in openvino.Core().read_model(result["path"]).get_ops()}


def test_the_artefacts_are_tensorflows(exports):
    from ai_edge_litert.interpreter import Interpreter
    import onnx

    operators = {op["op_name"] for op in Interpreter(model_path=exports["tflite"]["path"])._get_ops_details()}
    assert "GELU" in operators and not any("FLEX" in op or "ERF" in op for op in operators), operators
    kinds = {node.op_type for node in onnx.load(exports["onnx"]["path"]).graph.node}
    assert "Erf" in kinds and "Erfc" not in kinds, kinds
    import tensorflow as tf

    loaded = tf.saved_model.load(exports["saved_model"]["path"])
    spec = loaded.signatures["serving_default"].structured_input_signature[1]["images"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 32, 32, 3]


def test_the_exporters_errors_arrive_with_their_type_and_message(model, tmp_path):
    from vit_zoo.exporting.route import export_through_tensorflow

    with pytest.raises(ValueError, match=r"quantize must be one of \[None, 'dynamic-int8', 'int8'\], got 'int4'"):
        export_through_tensorflow(model, "tflite", tmp_path / "q.tflite", quantize="int4")
    assert list(tmp_path.iterdir()) == []


def test_start_exports_needs_a_format(model):
    from vit_zoo.exporting.route import start_exports

    with pytest.raises(ValueError, match="start_exports needs at least one format, got an empty outputs mapping"):
        start_exports(model, {})


def test_without_tensorflow_the_error_says_what_to_install(model, monkeypatch, tmp_path):
    import importlib.util

    from vit_zoo.exporting.route import export_through_tensorflow

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "tensorflow"
                        else real(name, *rest))
    with pytest.raises(ImportError, match=r"exporting to 'onnx' runs TensorFlow's exporters .* pip install tensorflow"):
        export_through_tensorflow(model, "onnx", tmp_path / "m.onnx")


def test_vit_zoo_export_takes_this_route_on_other_backends(model, monkeypatch, tmp_path):
    if keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow exports in this process (tests/test_export.py)")
    import vit_zoo

    calls = []
    monkeypatch.setattr("vit_zoo.exporting.route.export_through_tensorflow",
                        lambda *args, **options: calls.append((args, options)) or {"format": args[1]})
    assert vit_zoo.export(model, "onnx", tmp_path / "m.onnx", verify=False) == {"format": "onnx"}
    assert calls and calls[0][0][:2] == (model, "onnx") and calls[0][1]["verify"] is False
