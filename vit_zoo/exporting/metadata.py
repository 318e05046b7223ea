"""The identity record inside exported models: written into each format, read back from any of them.

Where each format keeps it (the record is the JSON of ``Identity.to_dict()`` plus an ``"export"`` entry):
    SavedModel   ``assets.extra/vit_zoo_identity.json`` (the SavedModel folder for files that travel with
                 the model and that no graph loads; readable without TensorFlow), and a ``metadata``
                 signature that takes no input and returns ``{"vit_zoo_identity": <the JSON, tf.string>}``:
                 ``tf.saved_model.load(path).signatures["metadata"]()["vit_zoo_identity"]``
    TFLite       a ``vit_zoo_identity`` entry of the flatbuffer's ``Model.metadata`` (name → buffer, the
                 table where the converter keeps ``min_runtime_version`` and tflite_support its
                 ``TFLITE_METADATA``): read with the LiteRT (or TensorFlow) flatbuffer schema
    ONNX         ``metadata_props``: ``vit_zoo_identity`` (the JSON) and human-readable ``class_names``
                 (a JSON list), ``image_size``, ``mean``, ``std``, ``preprocessing`` and ``input``;
                 ``onnxruntime.InferenceSession(path).get_modelmeta().custom_metadata_map`` reads them
    .keras       the Keras config (``config.json`` in the zip), key ``vit_zoo_identity``
    .weights.h5  the HDF5 attribute ``vit_zoo_identity``
The ``"export"`` entry says how to feed the exported graph and read its output: ``input_dtype``
("uint8" or "float32"), ``inputs`` ("pixels": RGB in [0, 255]; "normalized": ``(x / 255 - mean) / std``),
``outputs`` ("logits", "probabilities" or "features") and the format.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from vit_zoo.model.identity import Identity, identity_of
from vit_zoo.model.saved_identity import IDENTITY_KEY

METADATA_KEY = IDENTITY_KEY  # the name a .keras and a .weights.h5 file keep the record under, in every export
SAVED_MODEL_RECORD = Path("assets.extra") / f"{METADATA_KEY}.json"
METADATA_SIGNATURE = "metadata"


def export_record(model, format: str, input_dtype: str) -> Optional[dict]:
    """The record an export of ``model`` carries; None for a model without an identity."""
    identity = identity_of(model)
    if identity is None:
        return None
    from vit_zoo.model.build_record import build_record_of, has_preprocessing

    record = build_record_of(model)
    outputs = record.outputs if record is not None else "features"
    export = {"format": format, "input_dtype": input_dtype, "outputs": outputs,
              "inputs": "pixels" if has_preprocessing(model) else "normalized"}
    return {**identity.to_dict(), "export": export}


def record_json(record: dict) -> str:
    return json.dumps(record, sort_keys=True)


# ------------------------------------------------------------------------------------------- writing
def write_saved_model_record(folder: Path, record: dict) -> None:
    """The record as ``assets.extra/vit_zoo_identity.json`` of a SavedModel folder (the ``metadata``
    signature is added while the SavedModel is written, by ``vit_zoo.exporting.formats``)."""
    target = Path(folder) / SAVED_MODEL_RECORD
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")


def with_tflite_metadata(flatbuffer: bytes, record: dict) -> bytes:
    """``flatbuffer`` (a .tflite model) with a ``vit_zoo_identity`` metadata entry holding the record (an
    entry of that name already there is replaced); rebuilt through the schema's object API, as
    tflite_support's metadata writer does."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(record_json(record).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_KEY, len(model.buffers) - 1
    kept = [m for m in (model.metadata or []) if _text(m.name) != METADATA_KEY]
    model.metadata = kept + [entry]
    return flatbuffer_utils.convert_object_to_bytearray(model)


def add_onnx_metadata(path: Path, record: dict) -> None:
    """Write the record and its human-readable keys into the ``metadata_props`` of the ONNX file at
    ``path`` (in place; other keys kept)."""
    import onnx

    model = onnx.load(str(path))
    props = {prop.key: prop.value for prop in model.metadata_props}
    props.update(onnx_props(record))
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))


def onnx_props(record: dict) -> dict:
    """``metadata_props`` entries (all strings) for a record: the record itself and readable copies."""
    from vit_zoo.use.labels import label_names

    preprocessing, export = record["preprocessing"], record["export"]
    labels = record["labels"]
    props = {METADATA_KEY: record_json(record),
             "image_size": json.dumps(preprocessing["image_size"]),
             "mean": json.dumps(preprocessing["mean"]), "std": json.dumps(preprocessing["std"]),
             "preprocessing": json.dumps({key: preprocessing[key] for key in ("recipe", "crop_pct",
                                                                              "interpolation")}),
             "input": f"images (B, {preprocessing['image_size'][0]}, {preprocessing['image_size'][1]}, 3) "
                      f"{export['input_dtype']} RGB, "
                      + ("in [0, 255]" if export["inputs"] == "pixels" else "normalised (x / 255 - mean) / std")}
    if labels is not None:
        props["class_names"] = json.dumps(label_names(labels))
        if isinstance(labels, str):
            props["label_set"] = labels
    return props


# ------------------------------------------------------------------------------------------- reading
def read_metadata(path) -> Optional[dict]:
    """The vit_zoo record an exported model or saved file carries: a SavedModel folder, ``.tflite``,
    ``.onnx``, ``.keras`` or ``.weights.h5``; None when it carries none (exported by something else)."""
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"no such exported model: '{path}'")
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise ValueError(f"'{path}' is a folder without saved_model.pb, not a SavedModel")
        record_file = path / SAVED_MODEL_RECORD
        return json.loads(record_file.read_text(encoding="utf-8")) if record_file.exists() else None
    from vit_zoo.exporting import openvino_format

    reader = {".tflite": _tflite_record, ".onnx": _onnx_record, ".keras": _keras_record,
              ".h5": _weights_h5_record, openvino_format.SUFFIX: openvino_format.read_record}.get(path.suffix)
    if reader is None:
        raise ValueError(f"cannot read a vit_zoo record from '{path}': expected a SavedModel folder or a "
                         f".tflite, .onnx, OpenVINO .xml, .keras or .weights.h5 file")
    text = reader(path)
    return json.loads(text) if text else None


def read_identity(path) -> Optional[Identity]:
    """The ``Identity`` (config, preprocessing, class names, provenance) an exported model or saved file
    carries (see ``read_metadata``); None when it carries no vit_zoo record."""
    record = read_metadata(path)
    return Identity.from_dict(record) if record is not None and "config" in record else None


def _tflite_record(path: Path) -> Optional[str]:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from tensorflow.lite.python import schema_py_generated as schema
    data = path.read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if _text(entry.Name()) == METADATA_KEY:
            buffer = model.Buffers(entry.Buffer())
            if buffer.Offset() > 1:  # data stored after the flatbuffer (models over 2 GB)
                return data[buffer.Offset():buffer.Offset() + buffer.Size()].decode("utf-8")
            return buffer.DataAsNumpy().tobytes().decode("utf-8")
    return None


def _onnx_record(path: Path) -> Optional[str]:
    try:
        import onnx

        props = {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
    except ImportError:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        props = session.get_modelmeta().custom_metadata_map
    return props.get(METADATA_KEY)


def _keras_record(path: Path) -> Optional[str]:
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    record = config.get("config", {}).get(METADATA_KEY)
    return json.dumps(record) if record is not None else None


def _weights_h5_record(path: Path) -> Optional[str]:
    import h5py

    with h5py.File(path, "r") as handle:
        value = handle.attrs.get(METADATA_KEY)
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else (value or "")
