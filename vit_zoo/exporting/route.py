"""Export from any Keras backend: SavedModel, TFLite and ONNX are written by TensorFlow, in a subprocess when
the model runs on JAX or PyTorch, and checked against the model where it runs.

    export_through_tensorflow(model, "onnx", "m.onnx")   # on KERAS_BACKEND=jax or torch: same dict as export()
    start_exports(model, {"onnx": "m.onnx", "tflite": "m.tflite"}).result()   # several formats, one subprocess

The model goes to a temporary ``.keras`` file; a fresh Python process with ``KERAS_BACKEND=tensorflow``
loads it and runs ``vit_zoo.exporting.export`` (the very code that exports on TensorFlow, so the artefact is
the one TensorFlow writes for the same weights), then runs the artefact in its own runtime on 2 random
images. This process runs its model on the same images and reports ``max_abs_diff`` and
``top1_agreement``: the artefact is verified against the model on the backend it was loaded on.

Why not Keras' own ``model.export`` on those backends (tried with keras 3.15 on a tiny vit_zoo model): on
JAX, ``"tf_saved_model"`` works but holds the whole model as one ``XlaCallModule`` op (jax2tf's StableHLO),
and the TFLite converter fails on that graph (an unregistered ``vhlo`` op; the ONNX route from it fails too);
``"onnx"`` needs jax2onnx (another converter, another graph) and ``"litert"`` refuses JAX. On PyTorch, ``"tf_saved_model"`` fails in
torch.export (and needs torch_xla), ``"onnx"`` traces through torch.onnx with a fixed batch size and
``"litert"`` needs litert-torch. None of them gives the artefact the TensorFlow backend gives, and
TensorFlow is a dependency of vit_zoo anyway.

The subprocess sees no GPU (exporting needs none, and the parent's backend may hold the device's memory).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from vit_zoo.exporting.formats import check_images, comparison

# errors the exporter raises for bad arguments or inputs, raised again here with the same type and message
_RELAYED_ERRORS = {error.__name__: error for error in (ValueError, TypeError, ImportError, FileNotFoundError)}


def export_through_tensorflow(model, format: str, output=None, *, quantize: Optional[str] = None,
                              input_dtype: Optional[str] = None, verify: bool = True, calibration=None) -> dict:
    """``vit_zoo.export(model, format, output, ...)`` done by TensorFlow in a subprocess (any backend here).

    Args and returns: as ``vit_zoo.exporting.export``; with ``verify``, ``max_abs_diff`` (float32 logits)
    and ``top1_agreement`` compare the artefact with ``model`` run in this process, on its backend.
    Raises the exporter's own ``ValueError`` / ``ImportError`` / ... for bad arguments, ``RuntimeError``
    (with the end of the subprocess's log) for anything else.
    """
    return start_export(model, format, output, quantize=quantize, input_dtype=input_dtype, verify=verify,
                        calibration=calibration).result()


def start_export(model, format: str, output=None, *, quantize: Optional[str] = None,
                 input_dtype: Optional[str] = None, verify: bool = True, calibration=None) -> "PendingExport":
    """Start the TensorFlow subprocess of ``export_through_tensorflow`` and return at once; ``.result()``
    waits for it and returns the export's dict. Several exports started one after another run side by side."""
    return _launch(model, {format: output}, True, quantize=quantize, input_dtype=input_dtype, verify=verify,
                   calibration=calibration)


def start_exports(model, outputs: dict, *, quantize: Optional[str] = None, input_dtype: Optional[str] = None,
                  verify: bool = True, calibration=None) -> "PendingExport":
    """Several formats exported one after another by one TensorFlow subprocess (TensorFlow starts and loads
    the model once): ``outputs`` is {format: output path or None}, the options apply to every format, and
    ``.result()`` returns {format: export's dict}. Fails as a whole at the first format that fails."""
    if not outputs:
        raise ValueError("start_exports needs at least one format, got an empty outputs mapping")
    return _launch(model, dict(outputs), False, quantize=quantize, input_dtype=input_dtype, verify=verify,
                   calibration=calibration)


def _launch(model, outputs: dict, single: bool, *, quantize, input_dtype, verify, calibration) -> "PendingExport":
    """The subprocess of ``start_export`` / ``start_exports``: ``single`` makes ``result()`` return the one
    format's dict rather than {format: dict}."""
    if importlib.util.find_spec("tensorflow") is None:
        raise ImportError(f"exporting to {', '.join(map(repr, outputs))} runs TensorFlow's exporters (in a "
                          f"subprocess when the model runs on another backend), and TensorFlow is not installed: "
                          f"pip install tensorflow")
    folder = Path(tempfile.mkdtemp(prefix="vit_zoo_export_"))
    try:
        if isinstance(model, (str, os.PathLike)):
            source = Path(model).resolve()
            if verify:
                import keras

                model = keras.models.load_model(source)
        else:
            source = folder / "model.keras"
            model.save(source)
        command = [sys.executable, "-m", "vit_zoo.exporting.route", str(source), *outputs, "--folder", str(folder)]
        command += ["--output", *(str(path) if path is not None else "" for path in outputs.values())]
        if calibration is not None:  # a folder or files read there; an array handed over as a .npy file
            if isinstance(calibration, np.ndarray):
                np.save(folder / "calibration.npy", calibration)
                calibration = folder / "calibration.npy"
            command += ["--calibration", *map(str, [calibration] if isinstance(calibration, (str, os.PathLike))
                                              else calibration)]
        for flag, value in (("--quantize", quantize), ("--input-dtype", input_dtype)):
            if value is not None:
                command += [flag, str(value)]
        command += ["--check"] if verify else []
        with open(folder / "log.txt", "w") as log:
            process = subprocess.Popen(command, env=_tensorflow_environment(), stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return PendingExport(process, folder, model if verify else None, single=single)


class PendingExport:
    """Exports running in a TensorFlow subprocess; ``result()`` waits for it, verifies each artefact against
    the model here (when asked) and removes the temporary files."""

    def __init__(self, process: subprocess.Popen, folder: Path, model=None, single: bool = False):
        self.process, self.folder, self.model, self.single = process, folder, model, single

    def result(self) -> dict:
        try:
            code = self.process.wait()
            report_file = self.folder / "report.json"
            report = json.loads(report_file.read_text()) if report_file.exists() else {}
            if code != 0 or "results" not in report:
                raise self._failure(report.get("error"))
            results = report["results"]
            for format, result in results.items() if self.model is not None else ():
                images = np.load(self.folder / f"images-{format}.npy")
                got = np.load(self.folder / f"outputs-{format}.npy")
                result.update(comparison(got, _outputs_here(self.model, images)))
            return next(iter(results.values())) if self.single else results
        except BaseException:
            if self.process.poll() is None:  # interrupted while waiting: leave no exporter running
                self.process.kill()
                self.process.wait()
            raise
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _failure(self, error: Optional[dict]) -> Exception:
        if error and error["type"] in _RELAYED_ERRORS:
            return _RELAYED_ERRORS[error["type"]](error["message"])
        log = (self.folder / "log.txt").read_text(errors="replace").strip().splitlines()
        tail = "\n".join(log[-20:]) or "(no output)"
        return RuntimeError(f"the TensorFlow export subprocess failed (exit code {self.process.returncode}); "
                            f"the end of its log:\n{tail}")


def _outputs_here(model, images: np.ndarray) -> np.ndarray:
    """``model`` (any backend) on ``images`` (B, H, W, 3) uint8 or float32 → (B, C) float32 NumPy."""
    import keras

    return np.asarray(keras.ops.convert_to_numpy(model(images.astype("float32"), training=False)), np.float32)


def _tensorflow_environment() -> dict:
    """This process's environment with the TensorFlow backend, no GPU, quiet start-up, and this vit_zoo
    first on the path (the child imports the same package as this process)."""
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding vit_zoo/ (not an import of it)
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "-1", "PYTHONPATH": path,
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}


# ---- the subprocess -------------------------------------------------------------------------------------
def main(argv=None) -> int:
    """``python -m vit_zoo.exporting.route SOURCE.keras FORMAT [FORMAT ...] --folder F [--output PATH ...]
    [--check]`` on the TensorFlow backend (one ``--output`` per format, "" for the default): writes
    ``F/report.json`` ({"results": {format: export's dict}} or {"error": {type, message}}) and, with
    ``--check``, per format ``F/images-FORMAT.npy`` (2 random images of the export's input dtype) and
    ``F/outputs-FORMAT.npy`` (the artefact's outputs on them, run by its own runtime)."""
    parser = argparse.ArgumentParser(prog="python -m vit_zoo.exporting.route")
    parser.add_argument("source")
    parser.add_argument("formats", nargs="+")
    parser.add_argument("--folder", required=True)
    parser.add_argument("--output", nargs="+")
    parser.add_argument("--quantize")
    parser.add_argument("--input-dtype")
    parser.add_argument("--calibration", nargs="+")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    import keras

    from vit_zoo.exporting import export, run_exported
    from vit_zoo.files import write_json

    folder = Path(args.folder)
    if keras.backend.backend() != "tensorflow":
        raise SystemExit(f"vit_zoo.exporting.route runs on KERAS_BACKEND=tensorflow, not {keras.backend.backend()}")
    try:
        model = keras.models.load_model(args.source)
        calibration = args.calibration
        if calibration and len(calibration) == 1 and calibration[0].endswith(".npy"):
            calibration = np.load(calibration[0])
        elif calibration and len(calibration) == 1:
            calibration = calibration[0]
        results = {}
        for format, output in zip(args.formats, args.output or [""] * len(args.formats), strict=True):
            results[format] = export(model, format, output or None, quantize=args.quantize,
                                     input_dtype=args.input_dtype, verify=False, calibration=calibration)
    except tuple(_RELAYED_ERRORS.values()) as error:
        write_json(folder / "report.json", {"error": {"type": type(error).__name__, "message": str(error)}})
        return 1
    for format, result in results.items() if args.check else ():
        height, width = model.input_shape[1:3]
        images = check_images(height, width, result["input_dtype"])
        np.save(folder / f"images-{format}.npy", images)
        np.save(folder / f"outputs-{format}.npy", np.asarray(run_exported(result["path"], images), np.float32))
    write_json(folder / "report.json", {"results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
