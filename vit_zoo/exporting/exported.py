"""Exported models run again: a SavedModel folder, ``.tflite``, ``.onnx`` or OpenVINO ``.xml`` file with the
runtime that deploys it, and classification with the class names and preprocessing its metadata carries
(``vit-zoo predict IMAGE --weights model.tflite``).

Runtimes: LiteRT (``ai_edge_litert``, else ``tf.lite``) for ``.tflite``, onnxruntime for ``.onnx``, OpenVINO's
CPU plugin for ``.xml`` (fp32 or bf16: ``precision``), TensorFlow's ``serving_default`` signature for a SavedModel
folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from vit_zoo.exporting import openvino_format
from vit_zoo.exporting.metadata import read_metadata
from vit_zoo.model.identity import Identity
from vit_zoo.native_output import native_stderr_silenced

EXPORTED_SUFFIXES = (".tflite", ".onnx", openvino_format.SUFFIX)
_ONNX_TYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32"}


def is_exported(path) -> bool:
    """True for a path that names an exported model: a ``.tflite``, ``.onnx`` or OpenVINO ``.xml`` file, or a
    SavedModel folder."""
    path = Path(os.fspath(path))
    return path.suffix in EXPORTED_SUFFIXES or (path.is_dir() and (path / "saved_model.pb").exists())


class ExportedModel:
    """An exported model, loaded once into its runtime.

    Attributes:
        path: the file or folder.
        metadata: the vit_zoo record it carries (``vit_zoo.exporting.metadata``), or None.
        identity: the ``Identity`` of that record, or None.
        input_dtype: ``"uint8"`` or ``"float32"``, what the graph takes.
    Calling it runs (B, H, W, 3) images of any dtype (cast to ``input_dtype``; uint8 rounds) and returns its
    (B, C) float32 outputs. ``precision``: ``"fp32"`` (every format) or ``"bf16"`` (an OpenVINO IR on a CPU with
    native bf16).
    """

    def __init__(self, path, precision: str = "fp32"):
        self.path = Path(os.fspath(path))
        if not self.path.exists():
            raise FileNotFoundError(f"no such exported model: '{self.path}'")
        if not is_exported(self.path):
            raise ValueError(f"'{self.path}' is not an exported model: expected a SavedModel folder, a .tflite, "
                             f".onnx or OpenVINO .xml file")
        if precision != "fp32" and self.path.suffix != openvino_format.SUFFIX:
            raise ValueError(f"precision={precision!r} is for OpenVINO exports (.xml); '{self.path}' runs in fp32")
        if self.path.suffix == openvino_format.SUFFIX and not self.path.with_suffix(".bin").exists():
            raise FileNotFoundError(f"OpenVINO export '{self.path}' has no weights file "
                                    f"'{self.path.with_suffix('.bin')}' beside it; copy both files")
        if self.path.suffix == openvino_format.SUFFIX:
            openvino_format.check_precision(precision)
        self.precision = precision
        try:
            self.metadata = read_metadata(self.path)
            self._run, self.input_dtype = _runtime(self.path, precision)
        except ImportError:
            raise
        except Exception as error:  # noqa: BLE001 — each runtime reports a cut-short file in its own words
            kind = f"{self.path.suffix} file" if self.path.suffix else "SavedModel folder"
            raise ValueError(f"incomplete or corrupt {kind} '{self.path}' ({type(error).__name__}); export it "
                             f"again, or copy it again from where it was exported") from None
        self.identity = Identity.from_dict(self.metadata) if self.metadata and "config" in self.metadata else None
        self.name = self.path.stem if self.path.suffix else self.path.name

    @property
    def output_shape(self) -> Tuple[Optional[int], Optional[int]]:
        return (None, self.identity.class_count if self.identity else None)

    def __call__(self, images) -> np.ndarray:
        images = np.asarray(images)
        if self.input_dtype == "uint8" and images.dtype != np.uint8:
            images = np.clip(np.rint(images), 0, 255)
        return np.asarray(self._run(np.ascontiguousarray(images.astype(self.input_dtype))), np.float32)


def run_exported(path, images) -> np.ndarray:
    """Run an exported model on ``images`` (B, H, W, 3) of its input dtype; returns (B, C) float32.
    Uses LiteRT for ``.tflite``, onnxruntime for ``.onnx``, the ``serving_default`` signature for a
    SavedModel folder and Keras for ``.keras``."""
    path = Path(path)
    if path.suffix == ".keras":
        import keras

        from vit_zoo.exporting.formats import keras_outputs

        return keras_outputs(keras.models.load_model(path), images)
    if not is_exported(path):
        raise ValueError(f"cannot run '{path}': expected a SavedModel folder, .tflite, .onnx, .xml or .keras file")
    return ExportedModel(path)(images)


def predict_exported(model: Union[ExportedModel, str, os.PathLike], images, *, top: int = 5,
                     labels: Union[str, Sequence[str], None] = None,
                     batch_size: int = 32, strict: bool = True) -> List[Optional[List[Tuple[int, str, float]]]]:
    """``vit_zoo.predict`` for an exported classifier: its metadata's preprocessing and class names (or
    ``labels``), its own runtime. Returns per image ``top`` tuples ``(class index, class name, probability)``;
    ``strict=False``: an unreadable image is skipped (None) with a warning, as ``vit_zoo.predict`` does."""
    from vit_zoo.use.images import ImageReadError
    from vit_zoo.use.labels import decode_predictions
    from vit_zoo.use.prediction import image_items, model_labels, warn_skipped
    from vit_zoo.use.preprocessing import preprocess

    model = model if isinstance(model, ExportedModel) else ExportedModel(model)
    if model.identity is None:
        raise ValueError(f"'{model.path}' carries no vit_zoo metadata (exported by another tool, or before "
                         f"exports carried it), so its preprocessing and classes are unknown; export it again "
                         f"with vit_zoo.export / vit-zoo export")
    export = model.metadata.get("export", {})
    if export.get("outputs") == "features":
        raise ValueError(f"'{model.path}' outputs features (exported without its classification head); "
                         f"it cannot classify")
    names = model_labels(model, labels)
    items, failures, rows = image_items(images), {}, []
    for position, item in enumerate(items):
        try:
            rows.append(preprocess([item], weights=model.identity, normalize=export.get("inputs") == "normalized"))
        except (ImageReadError, OSError) as error:
            if strict:
                raise
            failures[position] = str(error)
    warn_skipped(failures, items)
    pixels = np.concatenate(rows)
    outputs = np.concatenate([model(pixels[start:start + batch_size])
                              for start in range(0, len(pixels), batch_size)])
    decoded = iter(decode_predictions(outputs, labels=names, top=top,
                                      from_logits=export.get("outputs") != "probabilities"))
    return [None if position in failures else next(decoded) for position in range(len(items))]


def _runtime(path: Path, precision: str = "fp32"):
    """(run(images) → outputs, input dtype name) for the runtime of ``path``'s format."""
    if path.suffix == ".tflite":
        return _tflite_runtime(path)
    if path.suffix == openvino_format.SUFFIX:
        return openvino_format.runtime(path, precision)
    if path.suffix == ".onnx":
        try:
            import onnxruntime
        except ImportError:
            raise ImportError("running an ONNX export needs onnxruntime; pip install 'vit-zoo[export]'") from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name, kind = session.get_inputs()[0].name, session.get_inputs()[0].type
        return (lambda images: session.run(None, {name: images})[0]), _ONNX_TYPES.get(kind, "float32")
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    dtype = signature.structured_input_signature[1]["images"].dtype.name
    return (lambda images: signature(images=tf.constant(images))["predictions"].numpy()), dtype


def _tflite_runtime(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tensorflow.lite import Interpreter
    interpreter = Interpreter(model_path=str(path))
    detail = interpreter.get_input_details()[0]
    with native_stderr_silenced():  # LiteRT announces its XNNPACK delegate at the first allocation
        interpreter.allocate_tensors()

    def run(images):
        interpreter.resize_tensor_input(detail["index"], images.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], images)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return run, np.dtype(detail["dtype"]).name
