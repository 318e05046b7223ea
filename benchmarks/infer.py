#!/usr/bin/env python
"""Inference throughput of vit_zoo against keras-hub and Hugging Face transformers, on this machine.

Measures, in one run (each group in its own process):
  * sustained matmul throughput (GFLOP/s; square fp32 / bf16 matmuls: TF eager, TF under XLA, torch),
    which sets the FLOP-bound limit of a model: limit img/s = peak GFLOP/s / GFLOP per image
    (``vit_zoo.flops_per_image(config)``, counted from the config);
  * images/second of ViT-B/16 at 224 (``--large``: also ViT-L/16) at each batch size, fp32 and bf16:
      vit_zoo       predict      ``model.predict(x)``         (default path: XLA-compiled)
                    call         ``model(x)`` eager           (default path: compiled forward per shape)
                    xla          ``tf.function(model, jit_compile=True)``
                    plain-*      the same graph as a plain ``keras.Model`` (what the builder returned
                                 before the fast defaults: Keras turns XLA off on CPU)
      keras-hub     ``ViTBackbone`` of the same architecture: predict, eager call, xla
      transformers  ``ViTForImageClassification`` on torch CPU, eager under ``torch.inference_mode``
    timm is not measured: it cannot be installed here (its torchvision dependency pulls a CUDA build
    of torch that would replace the installed CPU torch).
  * top-1 agreement of vit_zoo bf16 against fp32 on the same inputs and weights.

Usage:
  python benchmarks/infer.py                         # ViT-B/16, batches 1 8 32, fp32 and bf16
  python benchmarks/infer.py --batch 8 --precision fp32 --peers keras-hub
  python benchmarks/infer.py --large                 # adds ViT-L/16
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

HERE = os.path.abspath(__file__)
VIT_ZOO_PATHS = ("predict", "call", "xla", "plain-predict", "plain-call")
DEFAULT_PATHS = {"vit_zoo": ("predict", "call"), "keras-hub": ("predict", "call"), "transformers": ("eager",)}
IMAGE_SIZE = 224


# ------------------------------------------------------------------------------------------------
# workers (run in a child process)
def _images(batch, seed=0):
    import numpy as np

    return np.random.default_rng(seed).uniform(0, 255, (batch, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")


def _keras_paths(model, paths, batch, spec):
    import numpy as np
    import tensorflow as tf

    images = _images(batch)
    tensor = tf.constant(images)
    xla = tf.function(lambda x: model(x, training=False), jit_compile=True)
    steps = {
        "predict": lambda: model.predict(images, batch_size=batch, verbose=0),
        "call": lambda: np.asarray(model(tensor)),
        "xla": lambda: np.asarray(xla(tensor)),
    }
    for path in paths:
        result = common.measure(steps[path], batch, spec["min_time"], spec["repeats"])
        common.emit(framework=spec["framework"], model=spec["model"], precision=spec["precision"],
                    batch=batch, path=path, **result)


def worker_matmul_tf(spec):
    import tensorflow as tf

    n = spec["n"]
    for precision, dtype in (("fp32", tf.float32), ("bf16", tf.bfloat16)):
        a = tf.cast(tf.random.normal((n, n)), dtype)
        b = tf.cast(tf.random.normal((n, n)), dtype)
        xla = tf.function(tf.matmul, jit_compile=True)
        for path, fn in (("eager", tf.matmul), ("xla", xla)):
            result = common.measure(lambda: fn(a, b).numpy(), 2 * n ** 3, spec["min_time"], spec["repeats"])
            common.emit(framework="tensorflow", path=path, precision=precision, n=n,
                        gflops=result["rate"] / 1e9)


def worker_matmul_torch(spec):
    import torch

    for precision, dtype, n in (("fp32", torch.float32, spec["n"]), ("bf16", torch.bfloat16, spec["n_bf16"])):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        with torch.inference_mode():
            result = common.measure(lambda: torch.mm(a, b), 2 * n ** 3, spec["min_time"], spec["repeats"])
        common.emit(framework="torch", path="eager", precision=precision, n=n, gflops=result["rate"] / 1e9)


def worker_vit_zoo(spec):
    import keras
    import numpy as np

    import vit_zoo

    dtype = "mixed_bfloat16" if spec["precision"] == "bf16" else None
    model = vit_zoo.load(spec["model"], image_size=IMAGE_SIZE, dtype=dtype)
    plain = keras.Model(model.input, model.output)  # same layers, plain Keras defaults
    import tensorflow as tf

    plain_call = lambda x: np.asarray(plain(x))  # noqa: E731
    for batch in spec["batches"]:
        paths = [p for p in spec["paths"] if not p.startswith("plain-")]
        _keras_paths(model, paths, batch, spec)
        images = _images(batch)
        tensor = tf.constant(images)
        plain_steps = {"plain-predict": lambda: plain.predict(images, batch_size=batch, verbose=0),
                       "plain-call": lambda: plain_call(tensor)}
        for path in [p for p in spec["paths"] if p.startswith("plain-")]:
            result = common.measure(plain_steps[path], batch, spec["min_time"], spec["repeats"])
            common.emit(framework="vit_zoo", model=spec["model"], precision=spec["precision"], batch=batch,
                        path=path, **result)
    if spec["precision"] == "bf16":  # top-1 agreement with fp32 on the same weights and inputs
        reference = vit_zoo.load(spec["model"], image_size=IMAGE_SIZE)
        reference.set_weights(model.get_weights())
        images = _smooth_images(spec["agreement_images"])
        low = np.concatenate([model.predict(images[i:i + 8], verbose=0) for i in range(0, len(images), 8)])
        high = np.concatenate([reference.predict(images[i:i + 8], verbose=0)
                               for i in range(0, len(images), 8)])
        common.emit(framework="vit_zoo", model=spec["model"], agreement=float(np.mean(
            low.argmax(-1) == high.argmax(-1))), images=len(images),
            max_relative_logit_error=float(np.abs(low - high).max() / np.abs(high).max()))


def _smooth_images(count):
    """Low-frequency random images (a random-init ViT sees these much like photos: not pure noise)."""
    import numpy as np

    rng = np.random.default_rng(1)
    coarse = rng.uniform(0, 255, (count, 14, 14, 3)).astype("float32")
    return np.repeat(np.repeat(coarse, 16, axis=1), 16, axis=2)


def worker_keras_hub(spec):
    import keras_hub

    import vit_zoo

    config = vit_zoo.ViTConfig.from_name(spec["model"], image_size=IMAGE_SIZE)
    model = keras_hub.models.ViTBackbone(
        image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), patch_size=config.patch_size, num_layers=config.num_layers,
        num_heads=config.num_heads, hidden_dim=config.hidden_size, mlp_dim=config.mlp_size,
        layer_norm_epsilon=config.layer_norm_epsilon,
        dtype="mixed_bfloat16" if spec["precision"] == "bf16" else None)
    for batch in spec["batches"]:
        _keras_paths(model, spec["paths"], batch, spec)


def worker_transformers(spec):
    import torch
    import transformers

    import vit_zoo

    config = vit_zoo.ViTConfig.from_name(spec["model"], image_size=IMAGE_SIZE)
    hf_config = transformers.ViTConfig(
        image_size=IMAGE_SIZE, patch_size=config.patch_size, hidden_size=config.hidden_size,
        intermediate_size=config.mlp_size, num_attention_heads=config.num_heads,
        num_hidden_layers=config.num_layers, num_labels=config.num_classes)
    model = transformers.ViTForImageClassification(hf_config).eval()
    if spec["precision"] == "bf16":
        model = model.to(torch.bfloat16)
    dtype = torch.bfloat16 if spec["precision"] == "bf16" else torch.float32
    for batch in spec["batches"]:
        pixels = torch.from_numpy(_images(batch)).permute(0, 3, 1, 2).contiguous().to(dtype) / 127.5 - 1

        def step():
            with torch.inference_mode():
                return model(pixel_values=pixels).logits

        result = common.measure(step, batch, spec["min_time"], spec["repeats"])
        common.emit(framework="transformers", model=spec["model"], precision=spec["precision"], batch=batch,
                    path="eager", attention=model.config._attn_implementation, **result)


WORKERS = {"matmul-tf": worker_matmul_tf, "matmul-torch": worker_matmul_torch, "vit_zoo": worker_vit_zoo,
           "keras-hub": worker_keras_hub, "transformers": worker_transformers}


# ------------------------------------------------------------------------------------------------
# parent: schedule the workers, print the tables
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--large", action="store_true", help="also ViT-L/16 at 224")
    parser.add_argument("--peers", nargs="*", default=["keras-hub", "transformers"],
                        choices=["keras-hub", "transformers"])
    parser.add_argument("--paths", nargs="+", default=list(VIT_ZOO_PATHS), choices=VIT_ZOO_PATHS,
                        help="vit_zoo paths to time")
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell (median reported)")
    parser.add_argument("--matmul-n", type=int, default=2048)
    parser.add_argument("--max-load", type=float, default=1.0,
                        help="wait (up to --wait s) until the 1-min load average is below this")
    parser.add_argument("--wait", type=float, default=300)
    parser.add_argument("--json", help="also write all records to this file")
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        WORKERS[spec["kind"]](spec)
        return

    facts, load_before = common.print_machine(args.max_load, args.wait)
    print("timm: not measured -- cannot be installed here (torchvision pulls a CUDA torch build)")
    timing = dict(min_time=args.min_time, repeats=args.repeats)
    records = []

    def run(spec):
        spec = dict(spec, **timing)
        out = common.run_worker(HERE, spec)
        for record in out:
            if "error" in record:
                print(f"  ! {spec['kind']} {spec.get('model', '')} {spec.get('precision', '')}: "
                      f"{record['error']}", flush=True)
        records.extend(out)
        return out

    matmul = run(dict(kind="matmul-tf", n=args.matmul_n)) + run(dict(
        kind="matmul-torch", n=args.matmul_n, n_bf16=256 if not facts["native_bf16"] else args.matmul_n))
    peak = {p: max([r["gflops"] for r in matmul if r.get("precision") == p] or [float("nan")])
            for p in ("fp32", "bf16")}
    print("\n## Sustained matmul (GFLOP/s)\n")
    print(common.table([dict(framework=r["framework"], path=r["path"], precision=r["precision"], n=r["n"],
                             gflops=f"{r['gflops']:.1f}") for r in matmul if "gflops" in r],
                       ["framework", "path", "precision", "n", "gflops"]))
    torch_bf16 = [r["gflops"] for r in matmul if r.get("framework") == "torch" and r.get("precision") == "bf16"]
    torch_fp32 = [r["gflops"] for r in matmul if r.get("framework") == "torch" and r.get("precision") == "fp32"]

    import vit_zoo

    models = ["vit-base-16"] + (["vit-large-16"] if args.large else [])
    for name in models:
        for precision in args.precision:
            base = dict(model=name, precision=precision, batches=args.batch)
            run(dict(base, kind="vit_zoo", framework="vit_zoo", paths=args.paths, agreement_images=64))
            if "keras-hub" in args.peers:
                run(dict(base, kind="keras-hub", framework="keras-hub", paths=["predict", "call", "xla"]))
            if "transformers" in args.peers:
                slow_bf16 = torch_bf16 and torch_fp32 and torch_bf16[0] < 0.2 * torch_fp32[0]
                if precision == "bf16" and slow_bf16:
                    print(f"  transformers bf16 skipped: torch bf16 matmul runs at {torch_bf16[0]:.1f} GFLOP/s "
                          f"here (no native bf16), i.e. > {vit_zoo.flops_per_image(vit_zoo.ViTConfig.from_name(name)) / torch_bf16[0] / 1e9:.0f} s per image")
                    records.append(dict(framework="transformers", model=name, precision="bf16", path="eager",
                                        skipped=f"torch bf16 matmul {torch_bf16[0]:.1f} GFLOP/s"))
                else:
                    run(dict(base, kind="transformers", framework="transformers"))
        report(name, records, peak, args)
    print(f"\nload average (1/5/15 min) at end: {common.load_average()}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(machine=facts, load_start=load_before, load_end=common.load_average(),
                           peak_gflops=peak, records=records), handle, indent=1)


def report(name, records, peak, args):
    import vit_zoo

    flops = vit_zoo.flops_per_image(vit_zoo.ViTConfig.from_name(name, image_size=IMAGE_SIZE))
    print(f"\n## {name} at {IMAGE_SIZE} px: {flops / 1e9:.2f} GFLOP/image; FLOP-bound limit = peak matmul / "
          f"FLOP per image: fp32 {peak['fp32'] * 1e9 / flops:.2f} img/s ({peak['fp32']:.0f} GFLOP/s), "
          f"bf16 {peak['bf16'] * 1e9 / flops:.2f} img/s ({peak['bf16']:.0f} GFLOP/s)\n")
    rows = []
    mine = [r for r in records if r.get("model") == name and "rate" in r]
    for r in mine:
        limit = peak[r["precision"]] * 1e9 / flops
        rows.append(dict(framework=r["framework"], path=r["path"], precision=r["precision"], batch=r["batch"],
                         img_s=f"{r['rate']:.2f}", spread=f"{r['min']:.2f}-{r['max']:.2f}",
                         ms_per_batch=f"{1000 * r['batch'] / r['rate']:.0f}", first_call_s=f"{r['first_s']:.1f}",
                         of_limit=f"{100 * r['rate'] / limit:.0f}%"))
    print(common.table(rows, ["framework", "path", "precision", "batch", "img_s", "spread", "ms_per_batch",
                              "first_call_s", "of_limit"]))
    print("\nRatios (vit_zoo / peers, same run):")
    for precision in args.precision:
        for batch in args.batch:
            cell = [r for r in mine if r["precision"] == precision and r["batch"] == batch]
            ours = {r["path"]: r["rate"] for r in cell if r["framework"] == "vit_zoo"}
            peer_default = [(r["rate"], f"{r['framework']} {r['path']}") for r in cell
                            if r["framework"] != "vit_zoo" and r["path"] in DEFAULT_PATHS[r["framework"]]]
            peer_best = [(r["rate"], f"{r['framework']} {r['path']}") for r in cell if r["framework"] != "vit_zoo"]
            if not ours or not peer_default:
                continue
            fastest_default, best = max(peer_default), max(peer_best)
            best_ours = max(v for k, v in ours.items() if not k.startswith("plain-"))
            parts = [f"{path} {ours[path] / fastest_default[0]:.2f}x" for path in ("predict", "call") if path in ours]
            print(f"  {precision} batch {batch}: default path vs fastest peer default ({fastest_default[1]}, "
                  f"{fastest_default[0]:.2f} img/s): {', '.join(parts)}; best vit_zoo {best_ours:.2f} img/s = "
                  f"{best_ours / best[0]:.2f}x best peer ({best[1]}, {best[0]:.2f} img/s)")
    fp32 = {(r["batch"], r["path"]): r["rate"] for r in mine if r["framework"] == "vit_zoo" and r["precision"] == "fp32"}
    bf16 = {(r["batch"], r["path"]): r["rate"] for r in mine if r["framework"] == "vit_zoo" and r["precision"] == "bf16"}
    common_keys = sorted(set(fp32) & set(bf16))
    if common_keys:
        print("  vit_zoo bf16 / fp32: " + ", ".join(f"b{b} {p} {bf16[(b, p)] / fp32[(b, p)]:.2f}"
                                                  for b, p in common_keys if not p.startswith("plain-")))
    for r in records:
        if r.get("model") == name and "agreement" in r:
            print(f"  vit_zoo bf16 vs fp32 top-1 agreement: {100 * r['agreement']:.1f}% of {r['images']} images "
                  f"(random-init weights; max |Δlogit| / max |logit| = {r['max_relative_logit_error']:.3f})")


if __name__ == "__main__":
    main()
