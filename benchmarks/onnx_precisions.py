#!/usr/bin/env python
"""Does ONNX Runtime's CPU provider have a half-precision path on this machine? For float16 and bfloat16,
each op class of a ViT-B/16 block at batch 8 (B·T = 8 × 197 tokens, width 768) is built as a one-op ONNX
graph and run by onnxruntime's ``CPUExecutionProvider``; it prints, per op, whether a kernel exists and its
time against the float32 kernel of the same op in the same run.

    python benchmarks/onnx_precisions.py [--tokens 1576] [--width 768] [--repeats 50]

Why a micro-benchmark rather than a converted model: an op without a kernel fails the whole session, so
per op is where the answer is (which ops a half-precision model would need casts around).
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np

OPS = ("MatMul", "Softmax", "LayerNormalization", "Erf", "Add")


def one_op_model(op: str, element_type, tokens: int, width: int):
    """A graph of one ``op`` on x (tokens, width) of ``element_type`` (an ``onnx.TensorProto`` enum)."""
    from onnx import TensorProto, helper, numpy_helper

    def constant(name, shape, fill):
        values = np.full(shape, fill, np.float32)
        if element_type == TensorProto.BFLOAT16:  # bf16 is the top half of a float32's bits
            tensor = helper.make_tensor(name, element_type, shape, (values.view(np.uint32) >> 16).astype(np.uint16)
                                        .tobytes(), raw=True)
        else:
            tensor = numpy_helper.from_array(values.astype(np.float16 if element_type == TensorProto.FLOAT16
                                                           else np.float32), name)
        return tensor

    inputs, initializers = ["x"], []
    if op == "MatMul":
        inputs.append("w")
        initializers.append(constant("w", [width, width], 0.01))
    elif op == "LayerNormalization":
        inputs.append("scale")
        initializers.append(constant("scale", [width], 1.0))
    elif op == "Add":
        inputs.append("b")
        initializers.append(constant("b", [width], 0.5))
    node = helper.make_node(op, inputs, ["y"], **({"axis": -1} if op in ("Softmax", "LayerNormalization") else {}))
    graph = helper.make_graph([node], op, [helper.make_tensor_value_info("x", element_type, [tokens, width])],
                              [helper.make_tensor_value_info("y", element_type, None)], initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def time_op(model, x, repeats: int):
    """Median seconds per run of ``model`` on ``x``, or the error text if onnxruntime has no kernel."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        session.run(None, {"x": x})
    except Exception as error:  # onnxruntime raises its own classes; the message names the missing kernel
        return str(error).splitlines()[0]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8 * 197, help="rows of x (default: 8 × 197)")
    parser.add_argument("--width", type=int, default=768, help="columns of x (default: 768)")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per op (default: 50)")
    args = parser.parse_args()
    import onnxruntime as ort
    from onnx import TensorProto

    flags = open("/proc/cpuinfo").read().split("flags", 1)[1].split("\n", 1)[0] if platform.system() == "Linux" else ""
    wanted = [f for f in ("avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16") if f in flags.split()]
    print(f"onnxruntime {ort.__version__}, CPU half-precision flags: {' '.join(wanted) or 'none'}")
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((args.tokens, args.width)).astype(np.float32)
    inputs = {TensorProto.FLOAT: x32, TensorProto.FLOAT16: x32.astype(np.float16),
              TensorProto.BFLOAT16: None}  # numpy has no bfloat16: a missing kernel fails at session creation
    for op in OPS:
        base = time_op(one_op_model(op, TensorProto.FLOAT, args.tokens, args.width), x32, args.repeats)
        line = [f"{op:>18}: float32 {base * 1e3:7.3f} ms"]
        for name, kind in (("float16", TensorProto.FLOAT16), ("bfloat16", TensorProto.BFLOAT16)):
            model = one_op_model(op, kind, args.tokens, args.width)
            if inputs[kind] is None:
                try:
                    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
                    line.append(f"{name}: a kernel exists (not timed: numpy has no bfloat16)")
                except Exception as error:
                    line.append(f"{name}: no kernel ({str(error).splitlines()[0].split(' : ')[-1]})")
                continue
            result = time_op(model, inputs[kind], args.repeats)
            line.append(f"{name}: no kernel ({result.split(' : ')[-1]})" if isinstance(result, str) else
                        f"{name} {result * 1e3:7.3f} ms = {base / result:4.2f}x float32")
        print(" | ".join(line))


if __name__ == "__main__":
    main()
