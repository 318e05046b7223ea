#!/usr/bin/env python
"""Where the time of vit_zoo's fastest bf16 path goes: the OpenVINO IR that ``vit_zoo.export(model,
"openvino")`` writes, run in bf16 by OpenVINO's CPU plugin (as ``vit-zoo predict --weights model.xml
--precision bf16`` does), profiled per op class with OpenVINO's own counters (``PERF_COUNT``), and its speed as
a fraction of the bf16 matmul limit measured by the same plugin in the same run. The IR is fixed to the batch's
shape as vit_zoo's runtime does (``--dynamic``: as exported, with a dynamic batch axis).

    python benchmarks/openvino_profile.py [--model vit-base-16] [--batch 8] [--precision bf16] [--dynamic]

Classes (OpenVINO's executed node types): matmul (FullyConnected, MatMul), attention (ScaledDotProductAttention
where the plugin fuses it, else Softmax), layernorm (MVN), gelu, casts (Convert, Reorder), the rest as "other".
The limit: a (n, n) @ (n, n) matmul with n = 2048 compiled with the same hint, GFLOP/s = 2 n³ / s; limit
img/s = that / the model's GFLOP per image (``vit_zoo.flops_per_image``, 2 FLOP per multiply-add).
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

CLASSES = {"FullyConnected": "matmul", "MatMul": "matmul", "ScaledDotProductAttention": "attention",
           "Softmax": "attention", "MVN": "layernorm", "Gelu": "gelu", "Convert": "casts", "Reorder": "casts"}
HINTS = {"bf16": "bf16", "fp32": "f32"}


def timed(request, inputs, min_time: float):
    """Median seconds per inference of ``request`` on ``inputs`` over at least ``min_time`` s (after 2 warm-ups)."""
    for _ in range(2):
        request.infer(inputs)
    times, started = [], time.perf_counter()
    while time.perf_counter() - started < min_time or len(times) < 3:
        begun = time.perf_counter()
        request.infer(inputs)
        times.append(time.perf_counter() - begun)
    return float(np.median(times))


def matmul_gflops(core, precision: str, n: int, min_time: float) -> float:
    """Sustained GFLOP/s of one (n, n) @ (n, n) matmul compiled by the CPU plugin at ``precision``."""
    import openvino as ov
    from openvino import opset13 as ops

    a = ops.parameter([n, n], np.float32, name="a")
    b = ops.constant(np.random.default_rng(0).standard_normal((n, n)).astype(np.float32) * 0.01)
    model = ov.Model([ops.matmul(a, b, False, False)], [a], "matmul")
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": HINTS[precision],
                                                  "PERFORMANCE_HINT": "LATENCY"})
    seconds = timed(compiled.create_infer_request(), {0: np.ones((n, n), np.float32)}, min_time)
    return 2 * n ** 3 / seconds / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-base-16", help="variant, random weights (default vit-base-16)")
    parser.add_argument("--batch", type=int, default=8, help="images per inference (default 8)")
    parser.add_argument("--precision", choices=sorted(HINTS), default="bf16", help="default bf16")
    parser.add_argument("--matmul-n", type=int, default=2048, help="the limit's matmul size (default 2048)")
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds per timed measurement (default 3)")
    parser.add_argument("--dynamic", action="store_true",
                        help="profile the IR with its dynamic batch axis, as exported (default: fixed to --batch)")
    parser.add_argument("--max-load", type=float, default=1.0,
                        help="wait (up to --wait s) until the 1-min load average is below this")
    parser.add_argument("--wait", type=float, default=300)
    args = parser.parse_args()
    common.print_machine(args.max_load, args.wait)
    import openvino as ov

    import vit_zoo

    config = vit_zoo.ViTConfig.from_name(args.model)
    model = vit_zoo.build(config)
    core = ov.Core()
    with tempfile.TemporaryDirectory() as folder:
        path = vit_zoo.export(model, "openvino", os.path.join(folder, "model.xml"), verify=False)["path"]
        ir = core.read_model(str(path))
        if not args.dynamic:  # as vit_zoo's runtime runs it (openvino_format.runtime): fixed to the batch's shape
            ir.reshape({ir.inputs[0].get_any_name(): [args.batch, *config.image_size, 3]})
        compiled = core.compile_model(ir, "CPU", {"INFERENCE_PRECISION_HINT": HINTS[args.precision],
                                                  "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True})
    request = compiled.create_infer_request()
    size = config.image_size
    images = np.random.default_rng(1).integers(0, 256, (args.batch, *size, 3)).astype(np.uint8)
    seconds = timed(request, {0: images}, args.min_time)
    shares, others = collections.Counter(), collections.Counter()
    for node in request.profiling_info:  # the last inference's counters, per executed node
        shares[CLASSES.get(node.node_type, "other")] += node.real_time.total_seconds()
        if node.node_type not in CLASSES:
            others[node.node_type] += node.real_time.total_seconds()
    profiled = sum(shares.values())
    gflops = matmul_gflops(core, args.precision, args.matmul_n, args.min_time)
    per_image = vit_zoo.flops_per_image(config) / 1e9
    limit = gflops / per_image
    rate = args.batch / seconds
    print(f"load average (1/5/15 min) at end: {common.load_average()}")
    shape = "dynamic" if args.dynamic else "static"
    print(f"\nOpenVINO {ov.__version__} CPU plugin, {args.precision}, {args.model} at {size[0]}x{size[1]}, batch "
          f"{args.batch} ({shape} batch axis): {seconds * 1e3:.1f} ms per batch = {rate:.2f} img/s")
    print(f"{args.precision} matmul limit ({args.matmul_n}² matmul, same plugin and hint): {gflops:.0f} GFLOP/s / "
          f"{per_image:.1f} GFLOP per image = {limit:.2f} img/s; this path runs at {rate / limit:.0%} of it")
    print("\n| op class | ms per batch | share |\n|---|---|---|")
    for name, spent in shares.most_common():
        print(f"| {name} | {spent * 1e3:.1f} | {spent / profiled:.0%} |")
    print("other, by node type: " + ", ".join(f"{kind} {spent * 1e3:.1f} ms" for kind, spent in others.most_common(6)))
    print(f"(counters sum to {profiled * 1e3:.1f} ms of the {seconds * 1e3:.1f} ms wall time)")


if __name__ == "__main__":
    main()
