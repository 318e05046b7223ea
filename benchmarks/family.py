#!/usr/bin/env python
"""Inference throughput of the family models against the source frameworks, in one run on this machine.

DINOv2-B/14 (``dinov2-base-14``: LayerScale, 518-px position embeddings interpolated in the graph to the
input's grid) at 224 and 518 px, class-token features (``include_top=False, pooling="token"``), against
transformers' ``Dinov2Model`` (torch, eager fp32 and bf16 autocast, ``pooler_output``) and timm's
``vit_base_patch14_dinov2`` (``forward_features``; timm resamples its table once at creation for the
size). Random weights: speed does not depend on them. Each group runs in its own process
(``common.run_worker``), so thread pools never compete. vit_zoo paths: ``predict`` (``model.predict(array)``,
the default) and ``call`` (``model(x)``), fp32 and ``mixed_bfloat16``.

Usage:
  python benchmarks/family.py                      # batches 1 8 at 224, 1 at 518, fp32 and bf16
  python benchmarks/family.py --quick              # a tiny DINOv2-like config at 56/112 px: checks the script
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

HERE = os.path.abspath(__file__)
SIZES = {224: (1, 8), 518: (1,)}
QUICK = dict(hidden_size=64, num_heads=2, num_layers=2, mlp_size=128)


def _images(spec, layout):
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.uniform(-2, 2, (spec["batch"], spec["size"], spec["size"], 3)).astype("float32")
    return images if layout == "nhwc" else np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def vit_zoo_worker(spec):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import vit_zoo

    if spec["precision"] == "bf16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    config = vit_zoo.ViTConfig.from_name("dinov2-base-14", image_size=spec["size"], **spec.get("overrides", {}))
    model = vit_zoo.load(config=config, include_top=False, pooling="token", include_preprocessing=False)
    images = _images(spec, "nhwc")
    step = (lambda: model.predict(images, verbose=0)) if spec["path"] == "predict" else \
        (lambda: keras.ops.convert_to_numpy(model(images)))
    common.emit(**{**spec, **common.measure(step, spec["batch"], spec["min_time"], spec["repeats"])})


def transformers_worker(spec):
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    o = spec.get("overrides", {})
    config = Dinov2Config(hidden_size=o.get("hidden_size", 768), num_hidden_layers=o.get("num_layers", 12),
                          num_attention_heads=o.get("num_heads", 12), image_size=518, patch_size=14)
    model = Dinov2Model(config).eval()
    images = torch.from_numpy(_images(spec, "nchw"))

    def step():
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=spec["precision"] == "bf16"):
            return model(pixel_values=images).pooler_output.float().numpy()
    common.emit(**{**spec, **common.measure(step, spec["batch"], spec["min_time"], spec["repeats"])})


def timm_worker(spec):
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "..", "tests"))
    from reference_frameworks import stub_torchvision

    stub_torchvision()
    import timm
    import torch

    o = spec.get("overrides", {})
    kwargs = dict(embed_dim=o["hidden_size"], depth=o["num_layers"], num_heads=o["num_heads"]) if o else {}
    model = timm.create_model("vit_base_patch14_dinov2", pretrained=False, img_size=spec["size"], **kwargs).eval()
    images = torch.from_numpy(_images(spec, "nchw"))

    def step():
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=spec["precision"] == "bf16"):
            return model.forward_features(images)[:, 0].float().numpy()
    common.emit(**{**spec, **common.measure(step, spec["batch"], spec["min_time"], spec["repeats"])})


WORKERS = {"vit_zoo": vit_zoo_worker, "transformers": transformers_worker, "timm": timm_worker}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--quick", action="store_true", help="a tiny config at 56/112 px, one short run each")
    common.add_run_arguments(parser, min_time=2.0)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        WORKERS[spec["library"]](spec)
        return
    sizes = {56: (1, 8), 112: (1,)} if args.quick else SIZES
    overrides = QUICK if args.quick else {}
    facts, load_before = common.print_machine(args.max_load, args.wait)
    records = []
    for size, batches in sizes.items():
        for batch in batches:
            for precision in args.precision:
                runs = [("vit_zoo", "predict"), ("vit_zoo", "call"), ("transformers", "eager"), ("timm", "eager")]
                for library, path in runs:
                    spec = dict(library=library, path=path, size=size, batch=batch, precision=precision,
                                overrides=overrides, min_time=0.2 if args.quick else args.min_time,
                                repeats=1 if args.quick else args.repeats)
                    for record in common.run_worker(HERE, spec):
                        records.append(record)
                        rate = f"{record['rate']:.2f} img/s" if "rate" in record else record.get("error")
                        print(f"  {size}px batch {batch} {precision} {library} {path}: {rate}", flush=True)
    rows = []
    for record in records:
        if "rate" not in record:
            continue
        peers = [r["rate"] for r in records if r.get("library") == "transformers" and "rate" in r
                 and (r["size"], r["batch"], r["precision"]) == (record["size"], record["batch"], record["precision"])]
        rows.append(dict(size=record["size"], batch=record["batch"], precision=record["precision"],
                         library=record["library"], path=record["path"], img_s=f"{record['rate']:.2f}",
                         vs_transformers=f"{record['rate'] / peers[0]:.2f}x" if peers else "",
                         first_call_s=f"{record['first_s']:.1f}"))
    print("\nDINOv2-B/14 class-token features" + (" (quick: tiny config)" if args.quick else ""))
    print(common.table(rows, ["size", "batch", "precision", "library", "path", "img_s", "vs_transformers",
                              "first_call_s"]))
    common.finish(args, facts, load_before, records)


if __name__ == "__main__":
    main()
