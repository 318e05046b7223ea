"""OpenVINO IR (``model.xml`` with its weights in ``model.bin`` beside it): writing one, and running it.

Writing: the export graph (``graph.export_graph``: float32, exact GELU written with ``erf``, input ``images``)
is saved as a SavedModel in a temporary folder and converted by ``openvino.convert_model``; ``openvino.save_model``
keeps the weights float32 (``compress_to_fp16=False``). ``quantize="int8"`` is OpenVINO's own post-training
quantisation (NNCF ``nncf.quantize``, its default "performance" preset with ``model_type=TRANSFORMER``: int8 weights
and matmul inputs, calibrated on ``calibration`` images; softmax, LayerNorm and GELU stay float). The identity record rides in the IR's runtime info (``<rt_info><vit_zoo><identity>``).
The two files are written under temporary names and renamed ``.bin`` first, then ``.xml`` (the file readers open):
a failed export leaves the old pair as it was.

Running: ``openvino.Core().compile_model(xml, "CPU", {INFERENCE_PRECISION_HINT, PERFORMANCE_HINT: LATENCY})``, on a
copy of the IR fixed to each batch shape it is given (``runtime``).
Precision ``"fp32"`` asks for f32 explicitly (the CPU plugin picks bf16 by itself on CPUs with native bf16), and
``"bf16"`` for bfloat16 compute (native on AVX512_BF16 / AMX CPUs; refused where the CPU lacks it).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

SUFFIX = ".xml"
PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
RT_INFO_KEY = ["vit_zoo", "identity"]
CALIBRATION_IMAGES = 300  # NNCF's own default subset size
STATIC_SHAPES_KEPT = 3  # compiled input shapes a runtime keeps (a batch size and the ragged last batch)


def require_openvino():
    try:
        import openvino
    except ImportError:
        raise ImportError("OpenVINO export and inference need openvino; pip install 'vit-zoo[export]'") from None
    return openvino


def write(graph, path: Path, quantize: Optional[str], record: Optional[dict], calibration=None,
          write_saved_model=None) -> None:
    """``graph`` (an export graph) as ``path`` (``.xml``) + ``.bin``; ``quantize`` None or ``"int8"`` with
    ``calibration`` (an array of the graph's inputs, (N, H, W, 3)); ``record``: the identity record or None."""
    from vit_zoo.exporting.metadata import record_json

    openvino = require_openvino()
    with tempfile.TemporaryDirectory() as folder:
        write_saved_model(graph, Path(folder), None)
        model = openvino.convert_model(folder)
    if quantize == "int8":
        model = _quantized(model, calibration)
    if record is not None:
        model.set_rt_info(record_json(record), RT_INFO_KEY)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{SUFFIX}")
    try:
        openvino.save_model(model, str(temporary), compress_to_fp16=False)
        os.replace(temporary.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(temporary, path)
    finally:
        for leftover in (temporary, temporary.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)


def _quantized(model, calibration):
    """NNCF post-training int8 quantisation of an OpenVINO model on ``calibration`` (N, H, W, 3) inputs."""
    try:
        import nncf
    except ImportError:
        raise ImportError("int8 OpenVINO export needs nncf (OpenVINO's post-training quantisation); pip install "
                          "'vit-zoo[export]'") from None
    samples = np.asarray(calibration)
    if samples.ndim != 4 or not len(samples):
        raise ValueError(f"calibration images must be a non-empty (N, H, W, 3) batch, got shape {samples.shape}")
    dataset = nncf.Dataset([samples[index:index + 1] for index in range(len(samples))])
    return nncf.quantize(model, dataset, subset_size=min(len(samples), CALIBRATION_IMAGES),
                         model_type=nncf.ModelType.TRANSFORMER)  # softmax, norms and GELU stay float


def read_record(path: Path) -> Optional[str]:
    """The identity record's JSON text in the IR's runtime info, or None."""
    model = require_openvino().Core().read_model(str(path))
    return model.get_rt_info(RT_INFO_KEY).astype(str) if model.has_rt_info(RT_INFO_KEY) else None


def check_precision(precision: str) -> None:
    """Raises ValueError for a precision not in ``PRECISIONS``, or bf16 on a CPU without native bf16."""
    if precision not in PRECISIONS:
        raise ValueError(f"OpenVINO precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and "BF16" not in require_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise ValueError("this CPU has no native bf16 (OpenVINO lists no BF16 capability: it needs AVX512_BF16 "
                         "or AMX); run the export in fp32")


def runtime(path: Path, precision: str = "fp32"):
    """(run(images) → outputs, input dtype name) of the IR compiled for this machine's CPU at ``precision``
    (``check_precision`` first).

    The IR's batch axis is dynamic; ``run`` compiles a copy fixed to the shape of the images it is given and
    keeps the last ``STATIC_SHAPES_KEPT`` of them. With static shapes the CPU plugin folds the shape
    arithmetic that it otherwise runs on every call with its reference kernels (broadcasts of scalars to
    whole activations: 34 of 462 ms at batch 8 for ViT-B/16 in bf16 on a 2-core EPYC, and a slower graph
    around them; static: 319 ms, 1.45x; ``benchmarks/openvino_profile.py``). A new batch size costs one
    compilation (about a second for ViT-B/16)."""
    check_precision(precision)
    core = require_openvino().Core()
    model = core.read_model(str(path))
    options = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY"}
    compiled = {}  # input shape → (compiled model, its infer request), oldest first

    def request_for(shape: tuple):
        if shape not in compiled:
            while len(compiled) >= STATIC_SHAPES_KEPT:
                compiled.pop(next(iter(compiled)))
            fixed = model.clone()
            fixed.reshape({fixed.inputs[0].get_any_name(): list(shape)})
            program = core.compile_model(fixed, "CPU", options)
            compiled[shape] = program, program.create_infer_request()
        return compiled[shape]

    def run(images):
        program, request = request_for(tuple(np.shape(images)))
        return np.array(request.infer({0: images})[program.outputs[0]], copy=True)  # the request reuses it
    return run, model.inputs[0].get_element_type().to_dtype().name


def calibration_inputs(model, calibration, input_dtype: str) -> np.ndarray:
    """The export graph's inputs for ``calibration``: an (N, H, W, 3) array as it is, or images (a folder,
    searched recursively, or a list of files) preprocessed with ``model``'s own evaluation transform."""
    if calibration is None:
        raise ValueError("quantize='int8' (OpenVINO's post-training quantisation) needs calibration images: a "
                         "folder of typical inputs (a few hundred; --calibration DIR)")
    if isinstance(calibration, np.ndarray):
        return calibration.astype(input_dtype)
    from vit_zoo.model.builder import has_preprocessing
    from vit_zoo.use.embedding import list_images
    from vit_zoo.use.preprocessing import preprocess

    root, names = list_images(calibration)
    files = [str(Path(root) / name) if root is not None else name for name in names][:CALIBRATION_IMAGES]
    pixels = preprocess(files, weights=model, normalize=not has_preprocessing(model))
    return np.clip(np.rint(pixels), 0, 255).astype("uint8") if input_dtype == "uint8" else pixels.astype(input_dtype)
