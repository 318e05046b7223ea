#!/usr/bin/env python
"""The GPU table: vit_zoo against keras-hub and Hugging Face transformers on one GPU, fp32 and bf16, batches
1 / 32 / 256, each rate also as a fraction of the GPU's measured matmul peak.

Keras runs on the JAX and the PyTorch backends here (``--backends``; ``tensorflow`` where TensorFlow sees the
GPU). Each (framework, backend, precision) group is a fresh process (``common.run_worker``: ``KERAS_BACKEND``
is set before Keras loads, one framework's allocator never holds the other's memory). Paths, ViT-B/16 at 224 px,
random weights and images:
    vit_zoo / keras-hub  predict    ``model.predict(numpy array, batch_size=B)``: Keras' default loop (jit-compiled
                                    on JAX and TensorFlow, eager on PyTorch); host images in, logits out
                         jit        JAX: ``jax.jit`` of ``model.stateless_call`` on device-resident images
                         no-grad    PyTorch: ``model(x)`` under ``torch.inference_mode`` on device-resident images
                         call       TensorFlow: ``model(x)`` (vit_zoo's compiled forward) on device-resident images
    transformers         eager      ``ViTForImageClassification`` (SDPA attention) under ``torch.inference_mode``,
                                    fp32; bf16 ``autocast`` (fp32 weights) and ``bf16-weights`` (model cast)
keras-hub is ``ViTBackbone`` with a class-token ``Dense(1000)`` head (its classifier's shape), so that every
model hands back 1000 logits per image. ``mixed_bfloat16`` is the Keras bf16 policy; the device paths wait for
the result on the device (no copy to the host) before the clock stops.

The matmul peak is measured in the same run (8192³ products; torch in plain fp32, in TF32 and in bf16; JAX at
its default precision and at ``highest``): a model's fraction = img/s x FLOP per image / peak. JAX's default
precision for float32 products on a GPU is TF32-class: the row ``vit_zoo fp32 jax`` says how far its logits
move from ``highest``.

Usage (on a machine with a CUDA GPU; nothing is measured where none is visible):
  python benchmarks/gpu.py                                   # the full table
  python benchmarks/gpu.py --backends torch --precision bf16 --batch 32
  python benchmarks/gpu.py --quick --allow-cpu               # checks the script on a CPU (ViT-Ti/16, 64 px)
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

HERE = os.path.abspath(__file__)
BACKENDS = ("jax", "torch", "tensorflow")
DEVICE_PATH = {"jax": "jit", "torch": "no-grad", "tensorflow": "call"}
QUICK = dict(model="vit-tiny-16", image_size=64, batch=[1, 4], min_time=0.1, repeats=1, matmul_n=256)


# ------------------------------------------------------------------------------------------------
# workers: each runs in its own process
def _keras_model(spec):
    import keras

    dtype = "mixed_bfloat16" if spec["precision"] == "bf16" else None
    if spec["framework"] == "vit_zoo":
        import vit_zoo

        return vit_zoo.load(spec["model"], image_size=spec["image_size"], dtype=dtype)
    import vit_zoo

    backbone = common.keras_hub_backbone(spec["model"], spec["image_size"], dtype)
    classes = vit_zoo.ViTConfig.from_name(spec["model"]).num_classes
    logits = keras.layers.Dense(classes, dtype=dtype)(backbone.output[:, 0])
    return keras.Model(backbone.input, logits)


def _device_step(model, images, backend):
    """The step of the device path: device-resident images in, wait on the device for the logits."""
    import keras

    pixels = keras.ops.convert_to_tensor(images)
    if backend == "jax":
        forward = _jax_forward(model)
        return lambda: forward(pixels).block_until_ready()
    if backend == "torch":
        import torch

        def step():
            with torch.inference_mode():
                logits = model(pixels, training=False)
            torch.cuda.synchronize() if logits.is_cuda else None
            return logits
        return step
    return lambda: keras.ops.convert_to_numpy(model(pixels, training=False))


def _jax_forward(model):
    """``x -> logits``: ``jax.jit`` of the model's stateless call, its variables passed as arguments (read at
    each call: Keras' JAX ``predict`` donates the arrays it was given and stores new ones)."""
    import jax

    compiled = jax.jit(lambda t, f, x: model.stateless_call(t, f, x, training=False)[0])
    return lambda x: compiled([v.value for v in model.trainable_variables],
                              [v.value for v in model.non_trainable_variables], x)


def worker_keras(spec):
    os.environ["KERAS_BACKEND"] = spec["backend"]
    import keras

    if keras.backend.backend() != spec["backend"]:
        raise SystemExit(f"Keras loaded {keras.backend.backend()!r}, not {spec['backend']!r}")
    model = _keras_model(spec)
    for batch in spec["batches"]:
        images = common.random_images(batch, spec["image_size"])
        steps = {"predict": lambda: model.predict(images, batch_size=batch, verbose=0),
                 DEVICE_PATH[spec["backend"]]: _device_step(model, images, spec["backend"])}
        for path, step in steps.items():
            _emit(spec, path, batch, common.measure(step, batch, spec["min_time"], spec["repeats"]))
    if spec["backend"] == "jax" and spec["precision"] == "fp32" and spec["framework"] == "vit_zoo":
        import jax
        import numpy as np

        images = common.random_images(spec["batches"][-1], spec["image_size"], seed=3)
        forward = _jax_forward(model)
        default = np.asarray(forward(images))
        with jax.default_matmul_precision("highest"):
            highest = np.asarray(forward(images))
        common.emit(framework="vit_zoo", backend="jax", default_precision_error=float(
            np.abs(default - highest).max() / np.abs(highest).max()))


def worker_transformers(spec):
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = common.transformers_classifier(spec["model"], spec["image_size"]).to(device)
    for path in ["eager"] if spec["precision"] == "fp32" else ["autocast", "bf16-weights"]:
        if path == "bf16-weights":
            model = model.to(torch.bfloat16)
        for batch in spec["batches"]:
            pixels = common.random_images(batch, spec["image_size"])
            pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(device) / 127.5 - 1
            pixels = pixels.to(torch.bfloat16) if path == "bf16-weights" else pixels.contiguous()

            def step():
                with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=path == "autocast"):
                    logits = model(pixel_values=pixels).logits
                torch.cuda.synchronize() if device == "cuda" else None
                return logits
            _emit(spec, path, batch, common.measure(step, batch, spec["min_time"], spec["repeats"]),
                  attention=model.config._attn_implementation)


def worker_matmul(spec):
    n, measure = spec["n"], lambda step: common.measure(step, 2 * spec["n"] ** 3, spec["min_time"], spec["repeats"])
    if spec["framework"] == "torch":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                                  ("bf16", torch.bfloat16, False)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
            step = ((lambda: (torch.mm(a, b), torch.cuda.synchronize())) if device == "cuda"
                    else (lambda: torch.mm(a, b)))
            common.emit(framework="torch", matmul=name, n=n, gflops=measure(step)["rate"] / 1e9)
        return
    import jax
    import jax.numpy as jnp

    for name, dtype, precision in (("fp32-default", jnp.float32, None), ("fp32-highest", jnp.float32, "highest"),
                                   ("bf16", jnp.bfloat16, None)):
        a, b = (jax.random.normal(jax.random.key(i), (n, n), dtype) for i in range(2))
        product = jax.jit(lambda x, y, p=precision: jnp.matmul(x, y, precision=p))
        common.emit(framework="jax", matmul=name, n=n,
                    gflops=measure(lambda: product(a, b).block_until_ready())["rate"] / 1e9)


def _emit(spec, path, batch, result, **extra):
    common.emit(framework=spec["framework"], backend=spec.get("backend", "torch"), precision=spec["precision"],
                path=path, batch=batch, **result, **extra)


WORKERS = {"keras": worker_keras, "transformers": worker_transformers, "matmul": worker_matmul}


# ------------------------------------------------------------------------------------------------
# parent
def gpu_facts() -> str:
    """The GPU's name and memory (nvidia-smi), or '' where none answers."""
    import subprocess

    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["jax", "torch"], choices=BACKENDS)
    parser.add_argument("--peers", nargs="*", default=["keras-hub", "transformers"],
                        choices=["keras-hub", "transformers"])
    parser.add_argument("--model", default="vit-base-16")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--matmul-n", type=int, default=8192)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per worker before it is stopped")
    parser.add_argument("--records", help="append each record to this JSON-lines file as it arrives")
    parser.add_argument("--quick", action="store_true", help="check the script: " + ", ".join(
        f"{k}={v}" for k, v in QUICK.items()))
    parser.add_argument("--allow-cpu", action="store_true", help="run where no GPU is visible (script check)")
    common.add_run_arguments(parser, min_time=1.0)
    args = common.parse_or_work(parser, argv, lambda spec: WORKERS[spec["kind"]](spec))
    if args is None:
        return
    if args.quick:
        vars(args).update(QUICK)
    gpu = gpu_facts()
    if not gpu and not args.allow_cpu:
        print("no GPU answers nvidia-smi here; nothing measured (--allow-cpu runs the script on the CPU)")
        sys.exit(1)
    facts, load_before = common.print_machine(args.max_load, args.wait)
    print(f"GPU: {gpu or 'none (CPU run)'}\n{args.model} at {args.image_size} px, batches {args.batch}; "
          f"{args.repeats} runs of >= {args.min_time} s per cell (median)", flush=True)
    timing = dict(min_time=args.min_time, repeats=args.repeats)
    records = []

    def run(spec):
        for record in common.run_worker(HERE, dict(spec, **timing), timeout_s=args.timeout):
            if "error" in record:
                print(f"  ! {spec.get('framework')} {spec.get('backend', '')} {spec.get('precision', '')}: "
                      f"{record['error']}", flush=True)
            records.append(record)
            if args.records:
                with open(args.records, "a") as handle:
                    handle.write(json.dumps(record) + "\n")

    for framework in ("torch", "jax"):
        run(dict(kind="matmul", framework=framework, n=args.matmul_n))
    model = dict(model=args.model, image_size=args.image_size, batches=args.batch)
    for precision in args.precision:
        for backend in args.backends:
            for framework in ["vit_zoo"] + [p for p in args.peers if p == "keras-hub"]:
                run(dict(model, kind="keras", framework=framework, backend=backend, precision=precision))
        if "transformers" in args.peers:
            run(dict(model, kind="transformers", framework="transformers", precision=precision))
    report(records, args)
    common.finish(args, dict(facts, gpu=gpu), load_before, records)


def report(records, args):
    import vit_zoo

    flops = vit_zoo.flops_per_image(vit_zoo.ViTConfig.from_name(args.model, image_size=args.image_size))
    matmul = [r for r in records if "gflops" in r]
    print("\n## Matmul peak (GFLOP/s, square products)\n")
    print(common.table([dict(r, gflops=f"{r['gflops']:.0f}") for r in matmul], ["framework", "matmul", "n", "gflops"]))
    peak = {"fp32": max([r["gflops"] for r in matmul if r["matmul"] in ("fp32", "fp32-highest")] or [float("nan")]),
            "bf16": max([r["gflops"] for r in matmul if r["matmul"] == "bf16"] or [float("nan")])}
    print(f"\n## {args.model} at {args.image_size} px: {flops / 1e9:.2f} GFLOP/image; fraction = img/s x GFLOP/image "
          f"/ peak (fp32 {peak['fp32']:.0f}, bf16 {peak['bf16']:.0f} GFLOP/s)\n")
    rows = [r for r in records if "rate" in r]
    print(common.table([dict(r, img_s=f"{r['rate']:.1f}", spread=f"{r['min']:.1f}-{r['max']:.1f}",
                             ms_per_batch=f"{1000 * r['batch'] / r['rate']:.2f}", first_s=f"{r['first_s']:.1f}",
                             of_peak=f"{100 * r['rate'] * flops / (peak[r['precision']] * 1e9):.1f}%") for r in rows],
                       ["framework", "backend", "path", "precision", "batch", "img_s", "spread", "ms_per_batch",
                        "first_s", "of_peak"]))
    print("\nRatios (best vit_zoo path / best of each peer, same run):")
    for precision in args.precision:
        for batch in args.batch:
            best = {}
            for r in rows:
                if (r["precision"], r["batch"]) == (precision, batch):
                    key = r["framework"]
                    best[key] = max(best.get(key, (0, "")), (r["rate"], f"{r['backend']} {r['path']}"))
            if "vit_zoo" in best:
                ours = best.pop("vit_zoo")
                print(f"  {precision} batch {batch}: vit_zoo ({ours[1]}) {ours[0]:.1f} img/s; " + ", ".join(
                    f"{ours[0] / rate:.2f}x {name} ({path}, {rate:.1f})" for name, (rate, path) in best.items()))
    for r in records:
        if "default_precision_error" in r:
            print(f"  vit_zoo fp32 on JAX: predict at JAX's default matmul precision vs 'highest': max |Δlogit| / "
                  f"max |logit| = {r['default_precision_error']:.2e}")


if __name__ == "__main__":
    main()
