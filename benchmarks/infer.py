#!/usr/bin/env python
"""Inference throughput of vit_zoo against keras-hub and Hugging Face transformers, on this machine.

Measures, in one run (each group in its own process, ``infer_workers.py``):
  * sustained matmul throughput (GFLOP/s; square fp32 / bf16 matmuls: TF eager, TF graph (oneDNN), TF
    under XLA, torch), which sets the FLOP-bound limit of a model: limit img/s = peak GFLOP/s / GFLOP per
    image (``vit_zoo.flops_per_image(config)``, counted from the config);
  * images/second of ViT-B/16 at 224 (``--large``: also ViT-L/16) at each batch size, fp32 and bf16
    (Keras' ``mixed_bfloat16``), each path on a fresh model so that ``first_call_s`` is its compilation:
      vit_zoo       predict          ``model.predict(array)``                       (default path)
                    predict-dataset  ``model.predict(tf.data.Dataset)``              (default path)
                    predict-files    ``vit_zoo.predict`` over JPEG files (decode + resize + forward + top-5)
                    call             ``model(x)`` eager                              (default path)
                    xla / graph      ``tf.function(model, jit_compile=True / False)``
                    plain-*          the same graph as a plain ``keras.Model`` (Keras' own defaults)
      keras-hub     ``ViTBackbone`` of the same architecture: predict, call (defaults), xla, graph
      transformers  ``ViTForImageClassification`` on torch, under ``torch.inference_mode``: fp32 ``eager``
                    (default); bf16 ``autocast`` (fp32 weights, ``torch.autocast``: the default way) and
                    ``bf16-weights`` (the model cast to bf16)
    timm is not measured: it cannot be installed here (its torchvision dependency pulls a CUDA build
    of torch that would replace the installed CPU torch).
  * top-1 agreement of vit_zoo bf16 against fp32 on the same inputs and weights.
  On a GPU: ``benchmarks/gpu.py`` (the JAX and PyTorch backends, batches 1 32 256).

Usage:
  python benchmarks/infer.py                         # ViT-B/16, batches 1 8 32, fp32 and bf16
  python benchmarks/infer.py --batch 8 --precision fp32 --peers keras-hub
  python benchmarks/infer.py --large                 # adds ViT-L/16
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import infer_workers  # noqa: E402

HERE = os.path.abspath(__file__)
VIT_ZOO_PATHS = ("predict", "predict-dataset", "predict-files", "call", "xla", "graph", "plain-predict",
                 "plain-call")
DEFAULT_PATHS = {"vit_zoo": ("predict", "predict-dataset", "predict-files", "call"),
                 "keras-hub": ("predict", "call"), "transformers": ("eager", "autocast")}
KERAS_HUB_PATHS = ("predict", "call", "xla", "graph")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--model", default="vit-base-16", help="variant (vit-tiny-16 for a quick check)")
    parser.add_argument("--large", action="store_true", help="also ViT-L/16 at 224")
    parser.add_argument("--peers", nargs="*", default=["keras-hub", "transformers"],
                        choices=["keras-hub", "transformers"])
    parser.add_argument("--paths", nargs="+", default=list(VIT_ZOO_PATHS), choices=VIT_ZOO_PATHS,
                        help="vit_zoo paths to time")
    parser.add_argument("--matmul-n", type=int, default=2048)
    common.add_run_arguments(parser, min_time=2.0)
    args = common.parse_or_work(parser, argv, lambda spec: infer_workers.WORKERS[spec["kind"]](spec))
    if args is None:
        return

    facts, load_before = common.print_machine(args.max_load, args.wait)
    print("timm: not measured -- cannot be installed here (torchvision pulls a CUDA torch build)")
    timing = dict(min_time=args.min_time, repeats=args.repeats)
    records = []

    def run(spec):
        out = common.run_worker(HERE, dict(spec, **timing))
        for record in out:
            if "error" in record:
                print(f"  ! {spec['kind']} {spec.get('model', '')} {spec.get('precision', '')}: "
                      f"{record['error']}", flush=True)
        records.extend(out)
        return out

    native = facts["native_bf16"]
    matmul = run(dict(kind="matmul-tf", n=args.matmul_n)) + run(dict(
        kind="matmul-torch", n=args.matmul_n, n_bf16=args.matmul_n if native else 256))
    peak = {p: max([r["gflops"] for r in matmul if r.get("precision") == p] or [float("nan")])
            for p in ("fp32", "bf16")}
    print("\n## Sustained matmul (GFLOP/s)\n")
    print(common.table([dict(framework=r["framework"], path=r["path"], precision=r["precision"], n=r["n"],
                             gflops=f"{r['gflops']:.1f}") for r in matmul if "gflops" in r],
                       ["framework", "path", "precision", "n", "gflops"]))
    torch_speed = {r["precision"]: r["gflops"] for r in matmul if r.get("framework") == "torch" and "gflops" in r}

    models = [args.model] + (["vit-large-16"] if args.large else [])
    for name in models:
        for precision in args.precision:
            base = dict(model=name, precision=precision, batches=args.batch)
            run(dict(base, kind="vit_zoo", framework="vit_zoo", paths=args.paths, agreement_images=64))
            if "keras-hub" in args.peers:
                run(dict(base, kind="keras-hub", framework="keras-hub", paths=list(KERAS_HUB_PATHS)))
            if "transformers" in args.peers:
                slow = precision == "bf16" and torch_speed.get("bf16", 0) < 0.2 * torch_speed.get("fp32", 1)
                if slow:
                    print(f"  transformers bf16 skipped: torch bf16 matmul runs at {torch_speed['bf16']:.1f} "
                          f"GFLOP/s here (no native bf16)")
                    records.append(dict(framework="transformers", model=name, precision="bf16", path="autocast",
                                        skipped=f"torch bf16 matmul {torch_speed['bf16']:.1f} GFLOP/s"))
                else:
                    run(dict(base, kind="transformers", framework="transformers"))
        report(name, records, peak, args)
    common.finish(args, facts, load_before, records, peak_gflops=peak)


def report(name, records, peak, args):
    import vit_zoo

    flops = vit_zoo.flops_per_image(vit_zoo.ViTConfig.from_name(name, image_size=infer_workers.IMAGE_SIZE))
    print(f"\n## {name} at {infer_workers.IMAGE_SIZE} px: {flops / 1e9:.2f} GFLOP/image; FLOP-bound limit = "
          f"peak matmul / FLOP per image: fp32 {peak['fp32'] * 1e9 / flops:.2f} img/s ({peak['fp32']:.0f} "
          f"GFLOP/s), bf16 {peak['bf16'] * 1e9 / flops:.2f} img/s ({peak['bf16']:.0f} GFLOP/s)\n")
    mine = [r for r in records if r.get("model") == name and "rate" in r]
    rows = [dict(framework=r["framework"], path=r["path"], precision=r["precision"], batch=r["batch"],
                 img_s=f"{r['rate']:.2f}", spread=f"{r['min']:.2f}-{r['max']:.2f}",
                 ms_per_batch=f"{1000 * r['batch'] / r['rate']:.0f}", first_call_s=f"{r['first_s']:.1f}",
                 of_limit=f"{100 * r['rate'] * flops / (peak[r['precision']] * 1e9):.0f}%") for r in mine]
    print(common.table(rows, ["framework", "path", "precision", "batch", "img_s", "spread", "ms_per_batch",
                              "first_call_s", "of_limit"]))
    print("\nRatios (vit_zoo / peers, same run):")
    rate = {(r["framework"], r["precision"], r["batch"], r["path"]): r["rate"] for r in mine}
    for precision in args.precision:
        for batch in args.batch:
            ours = {p: v for (f, pr, b, p), v in rate.items() if (f, pr, b) == ("vit_zoo", precision, batch)}
            peers = {(f, p): v for (f, pr, b, p), v in rate.items() if f != "vit_zoo" and (pr, b) == (precision, batch)}
            defaults = {k: v for k, v in peers.items() if k[1] in DEFAULT_PATHS[k[0]]}
            if not ours or not defaults:
                continue
            (fast_name, fast), (best_name, best) = max(defaults.items(), key=lambda i: i[1]), max(
                peers.items(), key=lambda i: i[1])
            best_ours = max((v, p) for p, v in ours.items() if not p.startswith("plain-"))
            parts = ", ".join(f"{p} {ours[p] / fast:.2f}x" for p in DEFAULT_PATHS["vit_zoo"] if p in ours)
            print(f"  {precision} batch {batch}: default paths vs fastest peer default ({' '.join(fast_name)}, "
                  f"{fast:.2f} img/s): {parts}; best vit_zoo ({best_ours[1]}) {best_ours[0]:.2f} img/s = "
                  f"{best_ours[0] / best:.2f}x best peer ({' '.join(best_name)}, {best:.2f} img/s)")
    pairs = [(b, p) for (f, pr, b, p) in rate if f == "vit_zoo" and pr == "bf16" and not p.startswith("plain-")
             and ("vit_zoo", "fp32", b, p) in rate]
    if pairs:
        print("  vit_zoo bf16 / its own fp32: " + ", ".join(
            f"b{b} {p} {rate[('vit_zoo', 'bf16', b, p)] / rate[('vit_zoo', 'fp32', b, p)]:.2f}"
            for b, p in sorted(pairs)))
    for batch in args.batch:
        autocast = rate.get(("transformers", "bf16", batch, "autocast"))
        if autocast:
            print(f"  bf16 batch {batch} vs torch autocast ({autocast:.2f} img/s): " + ", ".join(
                f"{p} {rate[('vit_zoo', 'bf16', batch, p)] / autocast:.2f}x" for p in DEFAULT_PATHS["vit_zoo"]
                if ("vit_zoo", "bf16", batch, p) in rate))
    for r in records:
        if r.get("model") == name and "agreement" in r:
            print(f"  vit_zoo bf16 ({r['engine']} engine) vs fp32 top-1 agreement: {100 * r['agreement']:.1f}% "
                  f"of {r['images']} images (random-init weights; max |Δlogit| / max |logit| = "
                  f"{r['max_relative_logit_error']:.3f})")


if __name__ == "__main__":
    main()
