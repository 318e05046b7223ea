#!/usr/bin/env python
"""Deployment formats on this CPU: images/s and top-1 agreement with the Keras fp32 model.

Exports one model with ``vit_zoo.export`` (uint8 image input) to
    saved_model      TensorFlow SavedModel, run through its ``serving_default`` signature
    tflite           LiteRT flatbuffer, fp32 (``ai_edge_litert`` interpreter, all cores)
    tflite-int8      LiteRT with dynamic-range int8 weights
    onnx             ONNX (tf2onnx), onnxruntime CPU
    onnx-int8        ONNX through onnxruntime's ``quantize_dynamic`` (int8 weights)
    openvino         OpenVINO IR run by its CPU plugin in fp32 (``vit_zoo``'s ExportedModel: latency hint)
    openvino-bf16    the same IR computed in bf16 (CPUs with native bf16: AVX512_BF16 / AMX)
    openvino-int8    OpenVINO's post-training int8 (NNCF, calibrated on the agreement images)
and times each in its own process against the Keras model itself (``keras``: ``model.predict``, the
default path, fp32) and the peer of the issue, transformers' ``ViTForImageClassification`` of the same
architecture on torch (``transformers``: eager fp32; ``transformers-bf16``: ``torch.autocast`` bf16). Agreement: the share of ``--images`` photo-like images whose arg-max equals the
Keras fp32 model's, and the largest |Δlogit| relative to the largest |logit|. With random-init weights
the logits are nearly tied, so agreement is a harsh lower bound: pass ``--weights`` or ``--pretrained``
for the real figure.

Usage:
  python benchmarks/deploy.py                                  # ViT-B/16 random init, batches 1 and 8
  python benchmarks/deploy.py --pretrained --batch 1 8 32      # the manifest's default weights (cached)
  python benchmarks/deploy.py --model vit-tiny-16 --min-time 0.2 --repeats 1   # a quick check
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

HERE = os.path.abspath(__file__)
FORMATS = {"saved_model": ("saved_model", None, ""), "tflite": ("tflite", None, ".tflite"),
           "tflite-int8": ("tflite", "dynamic-int8", ".int8.tflite"), "onnx": ("onnx", None, ".onnx"),
           "onnx-int8": ("onnx", "dynamic-int8", ".int8.onnx"), "openvino": ("openvino", None, ".xml"),
           "openvino-bf16": ("openvino", None, ".xml"), "openvino-int8": ("openvino", "int8", ".int8.xml")}
PEERS = ("transformers", "transformers-bf16")


def photo_like(count, size, seed=1):
    """(count, size, size, 3) uint8 low-frequency random images."""
    import numpy as np

    cells = -(-size // 16)
    coarse = np.random.default_rng(seed).integers(0, 256, (count, cells, cells, 3)).astype(np.uint8)
    return np.repeat(np.repeat(coarse, 16, axis=1), 16, axis=2)[:, :size, :size]


def load_model(spec):
    import vit_zoo

    if spec.get("weights"):
        return vit_zoo.load(spec["model"], weights=spec["weights"])
    return vit_zoo.load(spec["model"], pretrained=spec.get("pretrained") or False)


def worker_export(spec):
    """Export every format into spec["folder"], write the Keras reference outputs, time Keras."""
    import numpy as np

    import vit_zoo

    model = load_model(spec)
    size = model.input_shape[1]
    pictures = photo_like(spec["images"], size)
    np.save(os.path.join(spec["folder"], "images.npy"), pictures)
    np.save(os.path.join(spec["folder"], "reference.npy"), model.predict(pictures.astype("float32"), verbose=0))
    written = {}
    for name in spec["formats"]:
        format, quantize, suffix = FORMATS[name]
        if suffix not in written:  # openvino-bf16 runs the openvino IR
            written[suffix] = vit_zoo.export(model, format, os.path.join(spec["folder"], "model" + suffix),
                                             quantize=quantize, verify=False,
                                             calibration=pictures if quantize == "int8" else None)
        common.emit(kind="export", format=name, bytes=written[suffix]["bytes"], path=written[suffix]["path"])
    for batch in spec["batches"]:
        x = pictures[:batch].astype("float32") if batch <= len(pictures) else photo_like(batch, size).astype("float32")
        result = common.measure(lambda: model.predict(x, batch_size=batch, verbose=0), batch, spec["min_time"],
                                spec["repeats"])
        common.emit(kind="speed", format="keras", batch=batch, **result)


def worker_run(spec):
    """Time one exported format at each batch size and compare its outputs with the reference."""
    import numpy as np

    runner = make_runner(spec["path"], spec["format"])
    pictures = np.load(os.path.join(spec["folder"], "images.npy"))
    reference = np.load(os.path.join(spec["folder"], "reference.npy"))
    got = np.concatenate([runner(pictures[i:i + 8]) for i in range(0, len(pictures), 8)])
    common.emit(kind="agreement", format=spec["format"],
                agreement=float(np.mean(got.argmax(-1) == reference.argmax(-1))),
                max_relative_logit_error=float(np.abs(got - reference).max() / np.abs(reference).max()))
    for batch in spec["batches"]:
        x = np.resize(pictures, (batch, *pictures.shape[1:]))
        result = common.measure(lambda: runner(x), batch, spec["min_time"], spec["repeats"])
        common.emit(kind="speed", format=spec["format"], batch=batch, **result)


def worker_peer(spec):
    """transformers' ViTForImageClassification of the model's architecture (random init), eager fp32 and under
    bf16 autocast, on the agreement images scaled as the ViT's 0.5 mean/std does."""
    import numpy as np
    import torch
    import transformers

    import vit_zoo

    config = vit_zoo.ViTConfig.from_name(spec["model"])
    model = transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=config.image_size, patch_size=config.patch_size, hidden_size=config.hidden_size,
        intermediate_size=config.mlp_size, num_attention_heads=config.num_heads, num_hidden_layers=config.num_layers,
        num_labels=config.num_classes)).eval()
    pictures = np.load(os.path.join(spec["folder"], "images.npy"))
    for name in PEERS:
        for batch in spec["batches"]:
            pixels = torch.from_numpy(np.resize(pictures, (batch, *pictures.shape[1:]))).permute(0, 3, 1, 2) / 127.5 - 1

            def step():
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=name.endswith("bf16")):
                    return model(pixel_values=pixels).logits
            result = common.measure(step, batch, spec["min_time"], spec["repeats"])
            common.emit(kind="speed", format=name, batch=batch, **result)


def make_runner(path, name):
    """images (B, H, W, 3) uint8 → logits (B, C), for the runtime of ``name``."""
    import numpy as np

    if name.startswith("openvino"):
        from vit_zoo.exporting.exported import ExportedModel

        return ExportedModel(path, precision="bf16" if name == "openvino-bf16" else "fp32")

    if name == "saved_model":
        import tensorflow as tf

        signature = tf.saved_model.load(path).signatures["serving_default"]
        return lambda x: signature(images=tf.constant(x))["predictions"].numpy()
    if name.startswith("tflite"):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            from tensorflow.lite import Interpreter
        interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
        detail, shape = interpreter.get_input_details()[0], [None]

        def run(x):
            if shape[0] != x.shape:
                interpreter.resize_tensor_input(detail["index"], x.shape)
                interpreter.allocate_tensors()
                shape[0] = x.shape
            interpreter.set_tensor(detail["index"], np.ascontiguousarray(x, detail["dtype"]))
            interpreter.invoke()
            return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        return run
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda x: session.run(None, {input_name: x})[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit-base-16")
    parser.add_argument("--weights", help="a local checkpoint to load (else random init)")
    parser.add_argument("--pretrained", nargs="?", const=True, default=None,
                        help="the manifest's default weights (or a TAG); needs them cached or the network")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS),
                        help="transformers on torch, fp32 eager and bf16 autocast (none: --peers)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--images", type=int, default=64, help="images for the top-1 agreement")
    common.add_run_arguments(parser, min_time=2.0)
    workers = {"export": worker_export, "run": worker_run, "peer": worker_peer}
    args = common.parse_or_work(parser, argv, lambda spec: workers[spec["kind"]](spec))
    if args is None:
        return

    facts, load_before = common.print_machine(args.max_load, args.wait)
    base = dict(model=args.model, weights=args.weights, pretrained=args.pretrained, batches=args.batch,
                images=args.images, min_time=args.min_time, repeats=args.repeats)
    records = []
    with tempfile.TemporaryDirectory() as folder:
        exported = common.run_worker(HERE, dict(base, kind="export", folder=folder, formats=args.formats))
        records += exported
        for record in exported:
            if record.get("kind") == "export":
                records += common.run_worker(HERE, dict(base, kind="run", folder=folder, format=record["format"],
                                                        path=record["path"]))
        if args.peers:
            records += common.run_worker(HERE, dict(base, kind="peer", folder=folder))
    for record in records:
        if "error" in record:
            print(f"  ! {record.get('kind')} {record.get('format', '')}: {record['error']}")
    report(records, args)
    common.finish(args, facts, load_before, records)


def report(records, args):
    sizes = {r["format"]: r["bytes"] for r in records if r.get("kind") == "export"}
    agreement = {r["format"]: r for r in records if r.get("kind") == "agreement"}
    speed = {(r["format"], r["batch"]): r for r in records if r.get("kind") == "speed"}
    weights = args.weights or (f"pretrained {args.pretrained}" if args.pretrained else "random init")
    print(f"\n## {args.model} ({weights}): exported formats on this CPU\n")
    rows = []
    for name in ["keras"] + list(args.formats) + list(args.peers):
        for batch in args.batch:
            r = speed.get((name, batch))
            if r is None:
                continue
            match = agreement.get(name, {})
            rows.append(dict(format=name, batch=batch, img_s=f"{r['rate']:.2f}", spread=f"{r['min']:.2f}-{r['max']:.2f}",
                             first_call_s=f"{r['first_s']:.1f}",
                             vs_keras=f"{r['rate'] / speed[('keras', batch)]['rate']:.2f}x" if ("keras", batch) in speed else "",
                             vs_torch_bf16=(f"{r['rate'] / speed[('transformers-bf16', batch)]['rate']:.2f}x"
                                            if ("transformers-bf16", batch) in speed else ""),
                             top1_agreement=(f"{100 * match['agreement']:.1f}%" if match else
                                             "reference" if name == "keras" else ""),
                             max_rel_logit_err=f"{match['max_relative_logit_error']:.4f}" if match else "",
                             MB=f"{sizes[name] / 1e6:.0f}" if name in sizes else ""))
    print(common.table(rows, ["format", "batch", "img_s", "spread", "first_call_s", "vs_keras", "vs_torch_bf16",
                              "top1_agreement", "max_rel_logit_err", "MB"]))
    for batch in args.batch:
        cell = {name: speed[(name, batch)]["rate"] for name in ["keras"] + list(args.formats) + list(args.peers)
                if (name, batch) in speed}
        if len(cell) > 1:
            ranked = sorted(cell.items(), key=lambda item: -item[1])
            print(f"  batch {batch}: fastest {ranked[0][0]} {ranked[0][1]:.2f} img/s = "
                  f"{ranked[0][1] / ranked[1][1]:.2f}x the next ({ranked[1][0]}), "
                  f"{ranked[0][1] / cell['keras']:.2f}x Keras fp32" if "keras" in cell else "")


if __name__ == "__main__":
    main()
