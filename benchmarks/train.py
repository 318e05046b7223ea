#!/usr/bin/env python
"""Fine-tuning step throughput: vit_zoo against keras-hub, same architecture, same optimiser.

One training step = forward + backward + SGD update on a batch (default 8) of random images and
labels, through ``model.train_on_batch`` after ``model.compile(optimizer=SGD, loss=sparse CE)``:
    default      ``compile()`` with each library's defaults (vit_zoo: XLA on the TensorFlow backend,
                 except bf16 on a native-bf16 CPU: TensorFlow's oneDNN graph; keras-hub: Keras' "auto",
                 which turns XLA off on CPU-only machines)
    jit          ``compile(jit_compile=True)``   (the best path of both)
    no-jit       ``compile(jit_compile=False)``  (vit_zoo only: plain Keras)
keras-hub's model is ``ViTBackbone`` + class token + Dense head, the same parameters as vit_zoo's
``vit-base-16``. Precisions: fp32, and bf16 = Keras' ``mixed_bfloat16`` policy (fp32 weights).

Usage:
  python benchmarks/train.py                              # 224 and 384, fp32 and bf16
  python benchmarks/train.py --image-size 224 --precision fp32 --paths default jit
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

HERE = os.path.abspath(__file__)


def _model(framework, name, image_size, precision):
    import keras

    import vit_zoo

    dtype = "mixed_bfloat16" if precision == "bf16" else None
    config = vit_zoo.ViTConfig.from_name(name, image_size=image_size)
    if framework == "vit_zoo":
        return vit_zoo.load(config=config, dtype=dtype)
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(image_size, image_size, 3), patch_size=config.patch_size, num_layers=config.num_layers,
        num_heads=config.num_heads, hidden_dim=config.hidden_size, mlp_dim=config.mlp_size,
        layer_norm_epsilon=config.layer_norm_epsilon, dtype=dtype)
    images = keras.Input((image_size, image_size, 3))
    tokens = backbone(images)
    logits = keras.layers.Dense(config.num_classes, dtype=dtype)(tokens[:, 0])
    return keras.Model(images, keras.layers.Activation("linear", dtype="float32")(logits))


def worker(spec):
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    batch, size = spec["batch"], spec["image_size"]
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, 1000, (batch,))
    xla_default = None
    for path in spec["paths"]:
        if spec["framework"] != "vit_zoo" and path == "no-jit":
            continue  # keras-hub's "no-jit" is its default on CPU
        if spec["framework"] == "vit_zoo" and xla_default is not None and path == ("jit" if xla_default else "no-jit"):
            continue  # vit_zoo's default already is this step (XLA, or oneDNN for bf16 on a native-bf16 CPU)
        keras.backend.clear_session()
        model = _model(spec["framework"], spec["model"], size, spec["precision"])
        options = {"default": {}, "jit": {"jit_compile": True}, "no-jit": {"jit_compile": False}}[path]
        model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), **options)
        if path == "default":
            xla_default = bool(model.jit_compile)
        result = common.measure(lambda: model.train_on_batch(images, labels), 1, spec["min_time"],
                                spec["repeats"])
        common.emit(framework=spec["framework"], model=spec["model"], precision=spec["precision"],
                    image_size=size, batch=batch, path=path, jit_compile=bool(model.jit_compile), **result)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit-base-16")
    parser.add_argument("--image-size", type=int, nargs="+", default=[224, 384])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--paths", nargs="+", default=["default", "jit", "no-jit"],
                        choices=["default", "jit", "no-jit"])
    parser.add_argument("--frameworks", nargs="+", default=["vit_zoo", "keras-hub"], choices=["vit_zoo", "keras-hub"])
    common.add_run_arguments(parser, min_time=5.0)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return

    import vit_zoo

    facts, load_before = common.print_machine(args.max_load, args.wait)
    records = []
    for size in args.image_size:
        for precision in args.precision:
            for framework in args.frameworks:
                spec = dict(framework=framework, model=args.model, image_size=size, batch=args.batch,
                            precision=precision, paths=args.paths, min_time=args.min_time, repeats=args.repeats)
                for record in common.run_worker(HERE, spec):
                    if "error" in record:
                        print(f"  ! {framework} {size} {precision}: {record['error']}", flush=True)
                    records.append(record)
    rows = []
    for r in records:
        if "rate" not in r:
            continue
        flops = 3 * vit_zoo.flops_per_image(vit_zoo.ViTConfig.from_name(r["model"], image_size=r["image_size"]))
        rows.append(dict(framework=r["framework"], path=r["path"], xla=r["jit_compile"], precision=r["precision"],
                         image_size=r["image_size"], batch=r["batch"], steps_s=f"{r['rate']:.3f}",
                         s_per_step=f"{1 / r['rate']:.2f}", spread=f"{r['min']:.3f}-{r['max']:.3f}",
                         first_step_s=f"{r['first_s']:.0f}",
                         gflops=f"{r['rate'] * r['batch'] * flops / 1e9:.0f}"))
    print(f"\n## Fine-tuning {args.model}, batch {args.batch}, SGD (gflops: 3 x forward FLOPs per image)\n")
    print(common.table(rows, ["framework", "path", "xla", "precision", "image_size", "batch", "steps_s",
                              "s_per_step", "spread", "first_step_s", "gflops"]))
    print("\nRatios (vit_zoo / keras-hub, same run):")
    for size in args.image_size:
        for precision in args.precision:
            cell = [r for r in records if r.get("image_size") == size and r.get("precision") == precision and "rate" in r]
            ours = {r["path"]: r["rate"] for r in cell if r["framework"] == "vit_zoo"}
            theirs = {r["path"]: r["rate"] for r in cell if r["framework"] == "keras-hub"}
            if ours and theirs:
                best_ours, best_theirs = max(ours.values()), max(theirs.values())
                default = (f"default {ours['default'] / theirs['default']:.2f}x, "
                           if "default" in ours and "default" in theirs else "")
                print(f"  {size} px {precision}: {default}best {best_ours / best_theirs:.2f}x")
    for size in args.image_size:
        default = {r["precision"]: r["rate"] for r in records if "rate" in r and r.get("image_size") == size
                   and r["framework"] == "vit_zoo" and r["path"] == "default"}
        if {"fp32", "bf16"} <= set(default):
            print(f"  {size} px vit_zoo default path bf16 / fp32: {default['bf16'] / default['fp32']:.2f}x "
                  f"(target on a native-bf16 CPU: >= 1.5x)")
    common.finish(args, facts, load_before, records)


if __name__ == "__main__":
    main()
