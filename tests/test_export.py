"""Every export format round-trips numerically: the exported model, run by its own runtime (LiteRT's
interpreter for TFLite, onnxruntime for ONNX, TensorFlow for the SavedModel, Keras for .keras), gives
the Keras model's outputs, for both GELU flavours. Tolerances on max |Δ logits| (logits spanning ~10;
measured in brackets): .keras 1e-6 (0), SavedModel 1e-5 (1e-6), TFLite float32 2e-5 (2.5e-6), ONNX 2e-5
(2.7e-6), OpenVINO IR run in fp32 2e-5; TFLite dynamic-range int8: 5% of the logit range (1.5%) and the same top-1 on at least 3 of 4
images (4 of 4). The two GELU flavours differ by 6e-4 here, 20x the float tolerances. Every format
carries the model's identity (read back equal), and an exported model classifies photos as the Keras model
does with the class names and preprocessing of its metadata alone."""
import numpy as np
import pytest

from conftest import tiny_config

TOLERANCE = {"keras": 1e-6, "saved_model": 1e-5, "tflite": 2e-5, "onnx": 2e-5, "openvino": 2e-5}
SUFFIX = {"keras": ".keras", "saved_model": "", "tflite": ".tflite", "onnx": ".onnx", "openvino": ".xml"}


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
@pytest.mark.parametrize("format", ["keras", "saved_model", "tflite", "onnx", "openvino"])
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
@pytest.mark.parametrize("model", ["exact"], indirect=True)  # quantizing is the same for either GELU flavour
@pytest.mark.parametrize("format, overhead", [("tflite", 40_000), ("onnx", 60_000)])
def test_dynamic_int8(model, batch, expected, tmp_path, format, overhead):
    from vit_zoo.exporting import export, run_exported

    result = export(model, format, tmp_path / f"q.{format}", quantize="dynamic-int8")
    assert result["bytes"] < 0.6 * 4 * model.count_params() + overhead  # int8 weights, plus graph overhead
    got = run_exported(result["path"], batch)
    assert np.max(np.abs(got - expected)) <= 0.05 * float(expected.max() - expected.min())
    assert np.mean(np.argmax(got, -1) == np.argmax(expected, -1)) >= 0.75


def test_export_errors(tmp_path):
    import vit_zoo
    from vit_zoo.exporting import export

    net = vit_zoo.load(config=tiny_config(num_layers=1))
    with pytest.raises(ValueError, match="format must be one of"):
        export(net, "pb", tmp_path / "x")
    with pytest.raises(ValueError, match="applies to formats 'tflite' and 'onnx' only"):
        export(net, "saved_model", tmp_path / "x", quantize="dynamic-int8")
    with pytest.raises(ValueError, match="must end in .keras"):
        export(net, "keras", tmp_path / "x.h5")
    dynamic = vit_zoo.load(config=tiny_config(num_layers=1), dynamic_size=True)
    with pytest.raises(ValueError, match="fixed input size"):
        export(dynamic, "tflite", tmp_path / "x.tflite")


@pytest.fixture(scope="module")
def named_model():
    """A 3-class model whose identity says everything a consumer needs: class names, a timm crop with
    bilinear resizing, its own mean/std and where it came from."""
    import keras

    import vit_zoo
    from vit_zoo.model.identity import Identity, Preprocessing, Provenance

    keras.utils.set_random_seed(2)
    config = tiny_config(num_layers=1, num_classes=3, mean=(0.4, 0.45, 0.5), std=(0.2, 0.25, 0.3))
    identity = Identity(config, Preprocessing("timm", 0.8, "bilinear"), ("circle", "square", "ring"),
                        Provenance("keras", source="run/model.keras", finetuned_from={"format": "built"}))
    net = vit_zoo.build(config, identity=identity)
    kernel, bias = net.get_layer("head").get_weights()
    net.get_layer("head").set_weights([kernel * 20, bias])
    return net


@pytest.fixture(scope="module")
def named_export(named_model, tmp_path_factory):
    """``named_export(format)``: the path of ``named_model`` exported to ``format`` (no verification), made
    once per format for the identity and prediction tests, each in a folder of its own."""
    from vit_zoo.exporting import export

    paths = {}

    def exported(format):
        if format == "onnx":
            pytest.importorskip("tf2onnx")
        if format not in paths:
            folder = tmp_path_factory.mktemp(f"named-{format}")
            paths[format] = export(named_model, format, folder / f"m{SUFFIX[format]}", verify=False)["path"]
        return paths[format]
    return exported


@pytest.mark.parametrize("format", ["keras", "saved_model", "tflite", "onnx", "openvino"])
def test_exports_carry_the_identity(named_model, named_export, format):
    from pathlib import Path

    from vit_zoo.exporting import read_identity, read_metadata

    path = named_export(format)
    folder = Path(path).parent
    assert read_identity(path) == named_model.identity
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporary left behind
    if format == "keras":
        return
    assert read_metadata(path)["export"] == {"format": format, "input_dtype": "uint8", "inputs": "pixels",
                                             "outputs": "logits"}
    record = read_metadata(path)
    if format == "saved_model":  # readable without vit_zoo: a JSON file, and a signature
        import json

        import tensorflow as tf

        assert json.loads((folder / "m" / "assets.extra" / "vit_zoo_identity.json").read_text()) == record
        served = tf.saved_model.load(path).signatures["metadata"]()["vit_zoo_identity"].numpy()
        assert json.loads(served) == record
    if format == "tflite":  # the converter's own metadata stays beside ours
        from ai_edge_litert import schema_py_generated as schema

        flatbuffer = schema.Model.GetRootAs(open(path, "rb").read(), 0)
        names = {flatbuffer.Metadata(i).Name().decode() for i in range(flatbuffer.MetadataLength())}
        assert {"vit_zoo_identity", "min_runtime_version"} <= names
    if format == "onnx":  # human-readable keys, as onnxruntime shows them
        import json

        import onnxruntime

        props = onnxruntime.InferenceSession(path).get_modelmeta().custom_metadata_map
        assert json.loads(props["class_names"]) == ["circle", "square", "ring"]
        assert (json.loads(props["image_size"]), json.loads(props["mean"])) == ([32, 32], [0.4, 0.45, 0.5])
        assert json.loads(props["preprocessing"]) == {"recipe": "timm", "crop_pct": 0.8, "interpolation": "bilinear"}
        assert props["input"] == "images (B, 32, 32, 3) uint8 RGB, in [0, 255]"


@pytest.mark.parametrize("format", ["saved_model", "tflite", "onnx", "openvino"])
def test_predict_with_the_exported_model_same_classes(named_model, named_export, format):
    """The exported model classifies a photo as the Keras model does, with the names and preprocessing
    from its metadata alone (timm crop, bilinear: uint8 pixels, so the inputs are the same)."""
    from pathlib import Path

    from vit_zoo.exporting.exported import predict_exported
    from vit_zoo.use.prediction import predict

    photos = [Path(__file__).parent.parent / "samples" / name for name in ("chelsea.png", "grace_hopper.jpg")]
    path = named_export(format)
    expected = predict(named_model, photos, top=3)
    got = predict_exported(path, photos, top=3, batch_size=1)
    for mine, theirs in zip(got, expected):
        assert [(i, n) for i, n, _ in mine] == [(i, n) for i, n, _ in theirs]
        np.testing.assert_allclose([p for *_, p in mine], [p for *_, p in theirs], atol=1e-5)
    assert {name for top in got for _, name, _ in top} <= {"circle", "square", "ring"}
    relabelled = predict_exported(path, photos[:1], top=1, labels=["a", "b", "c"])
    assert relabelled[0][0][1] == "abc"[got[0][0][0]]


def test_a_failed_export_leaves_the_previous_file(named_model, tmp_path, monkeypatch):
    from vit_zoo.exporting import formats as exporting

    path = tmp_path / "m.tflite"
    path.write_bytes(b"the previous export")

    def interrupted(graph, temporary, quantize, record):
        temporary.write_bytes(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(exporting, "_tflite", interrupted)
    with pytest.raises(KeyboardInterrupt):
        exporting.export(named_model, "tflite", path, verify=False)
    assert path.read_bytes() == b"the previous export" and sorted(tmp_path.iterdir()) == [path]


def test_exports_without_metadata_are_refused_for_prediction(tmp_path):
    import vit_zoo
    from vit_zoo.exporting.exported import predict_exported
    from vit_zoo.exporting import export

    bare = vit_zoo.build(tiny_config(num_layers=1))
    path = export(bare, "tflite", tmp_path / "bare.tflite", verify=False)["path"]
    with pytest.raises(ValueError, match=r"has 10 classes and no class names in its identity"):
        predict_exported(path, np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="no such exported model: 'missing.onnx'"):
        predict_exported("missing.onnx", np.zeros((32, 32, 3), np.uint8))


def test_a_saved_model_export_replaces_the_previous_folder(named_model, tmp_path):
    from vit_zoo.exporting import export, read_identity

    path = tmp_path / "m"
    path.mkdir()
    (path / "stale.txt").write_text("from an earlier export")
    export(named_model, "saved_model", path, verify=False)
    assert not (path / "stale.txt").exists() and read_identity(path) == named_model.identity
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
