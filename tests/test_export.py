"""Every export format round-trips numerically: the exported model, run by its own runtime (LiteRT's
interpreter for TFLite, onnxruntime for ONNX, TensorFlow for the SavedModel, Keras for .keras), gives
the Keras model's outputs, for both GELU flavours. Tolerances on max |Δ logits| (logits spanning ~10;
measured in brackets): .keras 1e-6 (0), SavedModel 1e-5 (1e-6), TFLite float32 2e-5 (2.5e-6), ONNX 2e-5
(2.7e-6); TFLite dynamic-range int8: 5% of the logit range (1.5%) and the same top-1 on at least 3 of 4
images (4 of 4). The two GELU flavours differ by 6e-4 here, 20x the float tolerances."""
import numpy as np
import pytest

from conftest import tiny_config

TOLERANCE = {"keras": 1e-6, "saved_model": 1e-5, "tflite": 2e-5, "onnx": 2e-5}
SUFFIX = {"keras": ".keras", "saved_model": "", "tflite": ".tflite", "onnx": ".onnx"}


@pytest.fixture(scope="module", params=["exact", "tanh"])
def model(request):
    import keras

    import vit_zoo

    keras.utils.set_random_seed(1)
    net = vit_zoo.load(config=tiny_config(gelu=request.param, num_layers=2))
    for layer in ("block_00_mlp_fc1", "block_01_mlp_fc1"):  # larger GELU inputs: the flavours differ more
        kernel, bias = net.get_layer(layer).get_weights()
        net.get_layer(layer).set_weights([kernel * 4, bias])
    kernel, bias = net.get_layer("head").get_weights()
    net.get_layer("head").set_weights([kernel * 20, bias])  # logits of size ~1 rather than ~0.05
    return net


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("uint8")


@pytest.fixture(scope="module")
def expected(model, batch):
    from vit_zoo.exporting import keras_outputs

    return keras_outputs(model, batch)


IN_TENSORFLOW = pytest.mark.tensorflow_only("SavedModel / TFLite / ONNX export in this process (the other backends: "
                                            "tests/test_export_route.py)")


@IN_TENSORFLOW
@pytest.mark.parametrize("format", ["keras", "saved_model", "tflite", "onnx"])
def test_export_round_trips(model, batch, expected, format, tmp_path):
    from vit_zoo.exporting import export, run_exported

    if format == "onnx":
        pytest.importorskip("tf2onnx")
        pytest.importorskip("onnxruntime")
    result = export(model, format, tmp_path / f"m{SUFFIX[format]}")
    assert result["max_abs_diff"] <= TOLERANCE[format] and result["top1_agreement"] == 1.0, result
    got = run_exported(result["path"], batch)
    assert got.shape == (4, 10)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE[format], rtol=0)
    if format == "saved_model":
        import tensorflow as tf

        spec = tf.saved_model.load(result["path"]).signatures["serving_default"].structured_input_signature[1]
        assert spec["images"].dtype == tf.uint8 and spec["images"].shape.as_list() == [None, 32, 32, 3]
    if format == "tflite":  # builtin GELU, no Erf and no Flex (select TF) op: runs on plain LiteRT
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            from tensorflow.lite import Interpreter
        operators = {op["op_name"] for op in Interpreter(model_path=result["path"])._get_ops_details()}
        assert "GELU" in operators and not any("FLEX" in op or "ERF" in op for op in operators), operators
    if format == "onnx":
        import onnx

        kinds = {node.op_type for node in onnx.load(result["path"]).graph.node}
        assert "Erfc" not in kinds and (model.get_layer("block_00_mlp_gelu").approximate or "Erf" in kinds)


@IN_TENSORFLOW
def test_export_keeps_the_gelu_flavour(model, batch, expected):
    """The export error is far below the gap between the two GELU flavours, so matching the Keras model
    within tolerance means the export computes the model's own flavour."""
    import keras

    from vit_zoo.exporting import keras_outputs

    other = keras.models.clone_model(model)
    other.set_weights(model.get_weights())
    for layer in other.layers:
        if type(layer).__name__ == "Gelu":
            layer.approximate = not layer.approximate
    assert np.max(np.abs(keras_outputs(other, batch) - expected)) >= 20 * TOLERANCE["tflite"]


@IN_TENSORFLOW
def test_tflite_dynamic_int8(model, batch, expected, tmp_path):
    from vit_zoo.exporting import export, run_exported

    result = export(model, "tflite", tmp_path / "q.tflite", quantize="dynamic-int8")
    assert result["bytes"] < 0.6 * 4 * model.count_params() + 40_000  # int8 weights, plus graph overhead
    got = run_exported(result["path"], batch)
    assert np.max(np.abs(got - expected)) <= 0.05 * float(expected.max() - expected.min())
    assert np.mean(np.argmax(got, -1) == np.argmax(expected, -1)) >= 0.75


def test_export_errors(tmp_path):
    import vit_zoo
    from vit_zoo.exporting import export

    net = vit_zoo.load(config=tiny_config(num_layers=1))
    with pytest.raises(ValueError, match="format must be one of"):
        export(net, "pb", tmp_path / "x")
    with pytest.raises(ValueError, match="applies to format 'tflite' only"):
        export(net, "onnx", tmp_path / "x.onnx", quantize="dynamic-int8")
    with pytest.raises(ValueError, match="must end in .keras"):
        export(net, "keras", tmp_path / "x.h5")
    dynamic = vit_zoo.load(config=tiny_config(num_layers=1), dynamic_size=True)
    with pytest.raises(ValueError, match="fixed input size"):
        export(dynamic, "tflite", tmp_path / "x.tflite")
