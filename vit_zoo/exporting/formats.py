"""``export``: a Keras ViT (or a ``.keras`` file) to the formats people deploy, each checked by running it.

    "keras"        ``model.save`` — a ``.keras`` file (loads with ``keras.models.load_model`` after
                   ``import vit_zoo``)
    "saved_model"  a TensorFlow SavedModel whose ``serving_default`` signature takes ``images``
                   (B, H, W, 3) uint8 RGB and returns ``{"predictions": (B, C) float32}``
    "tflite"       a LiteRT (TFLite) flatbuffer of builtin ops only, input ``images`` (B, H, W, 3) uint8;
                   ``quantize="dynamic-int8"``: int8 weights, float activations (dynamic-range quantization)
    "onnx"         an ONNX model (through ``tf2onnx``, Keras' own ONNX path), input ``images`` uint8;
                   ``quantize="dynamic-int8"``: onnxruntime's ``quantize_dynamic`` (int8 weights, activations
                   quantized per call)
    "openvino"     an OpenVINO IR (``model.xml`` + ``model.bin``), float32 weights, input ``images`` uint8, run
                   in fp32 or bf16 by the CPU plugin; ``quantize="int8"``: OpenVINO's post-training int8
                   quantisation (NNCF), calibrated on ``calibration`` images (``vit_zoo.exporting.openvino_format``)

Every format is written from one graph, ``vit_zoo.exporting.graph.export_graph``: float32 whatever the
model's mixed-precision policy, with exact GELU written with ``erf`` (tanh-GELU models export unchanged).

Every export carries the model's identity (config, preprocessing, class names, provenance) and how to feed
it, in the place its format has for it (``vit_zoo.exporting.metadata``); ``read_identity(path)`` reads it back
from any of them, and ``vit_zoo.exporting.exported.ExportedModel`` runs an export with it. Files and folders are
written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import keras
import numpy as np

from vit_zoo.exporting import metadata as export_metadata
from vit_zoo.exporting import openvino_format
from vit_zoo.exporting.graph import export_graph
from vit_zoo.exporting.exported import run_exported
from vit_zoo.files import replace_atomically
from vit_zoo.model.builder import has_preprocessing

FORMATS = ("keras", "saved_model", "tflite", "onnx", "openvino")
# quantization → the formats that offer it
QUANTIZATIONS = {None: FORMATS, "dynamic-int8": ("tflite", "onnx"), "int8": ("openvino",)}
_SUFFIX = {"keras": ".keras", "saved_model": "_savedmodel", "tflite": ".tflite", "onnx": ".onnx",
           "openvino": openvino_format.SUFFIX}
_CHECKPOINT_SUFFIXES = (".weights.h5", ".keras", ".h5", ".npz", ".safetensors", ".bin", ".pth")


def export(model, format: str = "saved_model", output=None, *, quantize: Optional[str] = None,
           input_dtype: Optional[str] = None, verify: bool = True, calibration=None) -> dict:
    """Export ``model`` (a ``keras.Model`` or a ``.keras`` path) as ``format`` to ``output``.

    Args:
        output: file (``.tflite``, ``.onnx``, ``.keras``) or folder (SavedModel); default
            ``default_output(model, format)``: named after the ``.keras`` path, or the model's name, in the
            current folder (``model.keras`` → ``model_savedmodel/``, ``model.tflite``, ``model.onnx``).
        quantize: ``None``, ``"dynamic-int8"`` (``"tflite"`` and ``"onnx"``) or ``"int8"`` (``"openvino"``:
            static int8 weights and activations, calibrated on ``calibration``).
        input_dtype: ``"uint8"`` (default for models with built-in preprocessing: RGB in 0..255) or
            ``"float32"`` (default for models built with ``include_preprocessing=False``).
        verify: run the exported model on 2 random images and report ``max_abs_diff`` and
            ``top1_agreement`` against the Keras model.
        calibration: for ``quantize="int8"``: a folder of typical images (up to 300 are used) or a list of
            files, preprocessed as the model evaluates, or an (N, H, W, 3) array of the export's inputs.

    Returns:
        {"format", "path", "input_dtype", "quantize", "bytes"} and, with verify, "max_abs_diff" and
        "top1_agreement" (fraction of images whose arg-max agrees).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {format!r}")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {list(QUANTIZATIONS)}, got {quantize!r}")
    if format not in QUANTIZATIONS[quantize]:
        raise ValueError(f"quantize={quantize!r} applies to format{'s' if len(QUANTIZATIONS[quantize]) > 1 else ''} "
                         f"{' and '.join(map(repr, QUANTIZATIONS[quantize]))} only, not {format!r}")
    if output is None:
        output = default_output(model if isinstance(model, (str, os.PathLike)) else model.name, format)
    if format != "keras" and keras.backend.backend() != "tensorflow":  # TensorFlow exports, in a subprocess
        from vit_zoo.exporting.route import export_through_tensorflow

        return export_through_tensorflow(model, format, output, quantize=quantize, input_dtype=input_dtype,
                                         verify=verify, calibration=calibration)
    if isinstance(model, (str, os.PathLike)):
        model = load_keras_file(model)
    height, width = model.input_shape[1:3]
    if height is None or width is None:
        raise ValueError("export needs a model with a fixed input size; this one has dynamic_size=True — "
                         "load it again with image_size=(H, W)")
    input_dtype = input_dtype or ("uint8" if has_preprocessing(model) else "float32")
    if input_dtype not in ("uint8", "float32"):
        raise ValueError(f"input_dtype must be 'uint8' or 'float32', got {input_dtype!r}")
    path = Path(output)
    if format == "keras":
        if path.suffix != ".keras":
            raise ValueError(f"a Keras model file must end in .keras, got '{path}'")
        model.save(path)
    elif format == "openvino":
        samples = openvino_format.calibration_inputs(model, calibration, input_dtype) if quantize else None
        path.parent.mkdir(parents=True, exist_ok=True)
        openvino_format.write(export_graph(model, input_dtype, flat_matmuls=False), path, quantize,
                              export_metadata.export_record(model, format, input_dtype), samples, _saved_model)
    else:
        graph = export_graph(model, input_dtype)
        record = export_metadata.export_record(model, format, input_dtype)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = {"saved_model": _saved_model, "tflite": _tflite, "onnx": _onnx}[format]
        _written_atomically(path, lambda temporary: writer(graph, temporary, quantize, record),
                            folder=format == "saved_model")
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
    if format == "openvino":
        size += path.with_suffix(".bin").stat().st_size
    result = {"format": format, "path": str(path), "input_dtype": input_dtype, "quantize": quantize,
              "bytes": size}
    if verify:
        images = check_images(height, width, input_dtype)
        result.update(comparison(run_exported(path, images), keras_outputs(model, images)))
    return result


def default_output(source, format: str) -> Path:
    """Where an export of ``source`` (a checkpoint path, or a model's name or ``NAME:TAG``) goes by default:
    its name without the checkpoint suffix, plus ``_savedmodel`` (a folder), ``.tflite``, ``.onnx``, ``.xml``
    (OpenVINO) or ``.keras``, in the current folder. The ``_savedmodel`` ending keeps a SavedModel folder from taking a
    model name (``vit-tiny-16``) that another command would read as a path."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {format!r}")
    name = Path(os.fspath(source).rstrip("/\\")).name.replace(":", ".")
    for suffix in _CHECKPOINT_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[:-len(suffix)]
            break
    return Path(name + _SUFFIX[format])


def load_keras_file(path) -> keras.Model:
    """``keras.models.load_model(path)``, with a cut-short or foreign file reported as such."""
    import zipfile

    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"no such .keras file: '{path}'")
    if not zipfile.is_zipfile(path):  # a .keras file is a zip archive; a cut-short one has no directory
        raise ValueError(f"incomplete or corrupt .keras file '{path}'; save or copy it again")
    try:
        return keras.models.load_model(path)
    except (zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"incomplete or corrupt .keras file '{path}' ({type(error).__name__}); save or copy it "
                         f"again") from None


def check_images(height: int, width: int, dtype: str) -> np.ndarray:
    """The 2 random (2, H, W, 3) images an export is checked on (seeded: every check sees the same)."""
    return np.random.default_rng(0).integers(0, 256, (2, height, width, 3)).astype(dtype)


def comparison(got: np.ndarray, expected: np.ndarray) -> dict:
    """``max_abs_diff`` and ``top1_agreement`` (fraction of rows whose arg-max agrees) of an export's
    outputs ``got`` against the model's ``expected`` (B, C)."""
    return {"max_abs_diff": float(np.max(np.abs(got - expected))),
            "top1_agreement": float(np.mean(np.argmax(got, -1) == np.argmax(expected, -1)))}


def keras_outputs(model, images) -> np.ndarray:
    """``model`` on ``images`` (B, H, W, 3) as float32 (B, C), in one traced call without XLA (a quick
    reference for checking exports)."""
    import tensorflow as tf

    return np.asarray(tf.function(lambda x: model(x, training=False))(np.asarray(images, np.float32)), np.float32)


def _saved_model(graph, path: Path, quantize, record=None):
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(graph)
    spec = tf.TensorSpec((None, *graph.input_shape[1:]), graph.inputs[0].dtype, name="images")
    archive.add_endpoint("serving_default", lambda images: graph(images, training=False), input_signature=[spec])
    if record is not None:
        text = export_metadata.record_json(record)
        archive.add_endpoint(export_metadata.METADATA_SIGNATURE,
                             lambda: {export_metadata.METADATA_KEY: tf.constant(text)}, input_signature=[])
    archive.write_out(str(path), verbose=False)
    if record is not None:
        export_metadata.write_saved_model_record(path, record)


def _tflite(graph, path: Path, quantize, record=None):
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as folder:
        _saved_model(graph, Path(folder), None)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # runs on plain LiteRT
        if quantize == "dynamic-int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        flatbuffer = converter.convert()
    if record is not None:
        flatbuffer = export_metadata.with_tflite_metadata(flatbuffer, record)
    path.write_bytes(flatbuffer)


def _onnx(graph, path: Path, quantize, record=None):
    import logging

    import tensorflow as tf

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    spec = tf.TensorSpec((None, *graph.input_shape[1:]), graph.inputs[0].dtype, name="images")
    with tempfile.TemporaryDirectory() as folder:
        float_path = Path(folder) / "float32.onnx" if quantize else path
        try:
            with warnings.catch_warnings():  # Keras' ONNX path warns of its own future (a FutureWarning)
                warnings.simplefilter("ignore", FutureWarning)
                graph.export(str(float_path), format="onnx", verbose=False, input_signature=[spec])
        except ImportError as error:
            raise ImportError(f"ONNX export needs tf2onnx and onnx ({error}); pip install 'vit-zoo[export]'") \
                from None
        if quantize == "dynamic-int8":
            try:
                from onnxruntime.quantization import QuantType, quantize_dynamic
            except ImportError:
                raise ImportError("int8 ONNX export needs onnxruntime; pip install 'vit-zoo[export]'") from None
            quantize_dynamic(str(float_path), str(path), weight_type=QuantType.QInt8)
    if record is not None:
        export_metadata.add_onnx_metadata(path, record)


def _written_atomically(path: Path, write_to, folder: bool) -> None:
    """``write_to(temporary)`` at a temporary name beside ``path`` (same suffix), renamed over ``path`` when
    complete: a file through ``vit_zoo.files.replace_atomically``; a SavedModel folder, which cannot be
    renamed over an existing one, by moving the old folder aside just before (a kill between the two
    renames leaves it as ``.NAME.PID.old``). On failure ``path`` is left as it was and the temporary is
    removed."""
    if folder:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        old = path.with_name(f".{path.name}.{os.getpid()}.old")
        moved_aside = False
        try:
            _remove(temporary)
            write_to(temporary)
            if path.exists():
                os.replace(path, old)
                moved_aside = True
            os.replace(temporary, path)
            moved_aside = False
        finally:
            if moved_aside:  # the new folder did not take its place: put the old one back
                os.replace(old, path)
            _remove(temporary)
            _remove(old)
    else:
        replace_atomically(path, write_to)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
