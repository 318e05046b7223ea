#!/usr/bin/env python
"""Inference throughput of the family models against the source frameworks, in one run on this machine.

Models (``--models``; random weights: speed does not depend on them):
  dinov2   DINOv2-B/14 (``dinov2-base-14``: LayerScale, 518-px position embeddings interpolated in the graph to
           the input's grid) at 224 and 518 px, class-token features (``include_top=False, pooling="token"``),
           against transformers' ``Dinov2Model`` (``pooler_output``) and timm's ``vit_base_patch14_dinov2``
           (``forward_features``; timm resamples its table once at creation for the size).
  clip     CLIP ViT-B/16 (``clip-base-16``: ln_pre, quick-GELU, class token through ln_post, the projection)
           image embeddings at 224 px, against transformers' ``CLIPVisionModelWithProjection`` (``image_embeds``)
           and open_clip's ``encode_image`` (OpenAI's ViT-B-16 with quick-GELU).
  siglip   SigLIP B/16 (``siglip-base-16``: no class token, tanh GELU, the MAP head) image embeddings at 224
           px, against transformers' ``SiglipVisionModel`` (``pooler_output``) and open_clip's
           ``encode_image`` (ViT-B-16-SigLIP: a timm trunk).
Each group runs in its own process (``common.run_worker``), so thread pools never compete. The torch peers
run eager, fp32 and bf16 autocast; vit_zoo paths: ``predict`` (``model.predict(array)``, the default) and
``call`` (``model(x)``), fp32 and ``mixed_bfloat16``.

Usage:
  python benchmarks/family.py                      # every model: batches 1 8 at 224 (DINOv2: 1 at 518 too)
  python benchmarks/family.py --models clip siglip --precision fp32 bf16
  python benchmarks/family.py --quick              # tiny configs at 56/112 px: checks the script
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

HERE = os.path.abspath(__file__)
# model → (vit_zoo variant, sizes → batches, the torch peers, what is measured)
MODELS = {
    "dinov2": ("dinov2-base-14", {224: (1, 8), 518: (1,)}, ("transformers", "timm"), "class-token features"),
    "clip": ("clip-base-16", {224: (1, 8)}, ("transformers", "open_clip"), "image embeddings"),
    "siglip": ("siglip-base-16", {224: (1, 8)}, ("transformers", "open_clip"), "image embeddings"),
}
QUICK = dict(hidden_size=64, num_heads=2, num_layers=2, mlp_size=128)
QUICK_SIZES = {"dinov2": {56: (1, 8), 112: (1,)}, "clip": {64: (1, 8)}, "siglip": {64: (1, 8)}}
FULL = dict(hidden_size=768, num_heads=12, num_layers=12, mlp_size=3072)


def _images(spec, layout):
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.uniform(-2, 2, (spec["batch"], spec["size"], spec["size"], 3)).astype("float32")
    return images if layout == "nhwc" else np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _torch_step(spec, forward):
    """Time ``forward(images)`` under inference mode (and bf16 autocast for ``bf16``), then emit the record."""
    import torch

    images = torch.from_numpy(_images(spec, "nchw"))

    def step():
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=spec["precision"] == "bf16"):
            return forward(images).float().numpy()
    common.emit(**{**spec, **common.measure(step, spec["batch"], spec["min_time"], spec["repeats"])})


def vit_zoo_worker(spec):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import vit_zoo

    if spec["precision"] == "bf16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    variant = MODELS[spec["model"]][0]
    config = vit_zoo.ViTConfig.from_name(variant, image_size=spec["size"], **spec.get("overrides", {}))
    # DINOv2: the class token's features; a tower: its top, the image embedding (projection, MAP head)
    features = dict(include_top=False, pooling="token") if spec["model"] == "dinov2" else {}
    model = vit_zoo.load(config=config, include_preprocessing=False, **features)
    images = _images(spec, "nhwc")
    step = (lambda: model.predict(images, verbose=0)) if spec["path"] == "predict" else \
        (lambda: keras.ops.convert_to_numpy(model(images)))
    common.emit(**{**spec, **common.measure(step, spec["batch"], spec["min_time"], spec["repeats"])})


def transformers_worker(spec):
    import torch
    import transformers

    torch.manual_seed(0)
    o = {**FULL, **spec.get("overrides", {})}
    shape = dict(hidden_size=o["hidden_size"], num_hidden_layers=o["num_layers"], num_attention_heads=o["num_heads"])
    if spec["model"] == "dinov2":
        model = transformers.Dinov2Model(transformers.Dinov2Config(**shape, image_size=518, patch_size=14)).eval()
        _torch_step(spec, lambda images: model(pixel_values=images).pooler_output)
        return
    tower = dict(shape, intermediate_size=o["mlp_size"], image_size=spec["size"], patch_size=16)
    if spec["model"] == "clip":
        config = transformers.CLIPVisionConfig(**tower, projection_dim=512, hidden_act="quick_gelu")
        model = transformers.CLIPVisionModelWithProjection(config).eval()
        _torch_step(spec, lambda images: model(pixel_values=images).image_embeds)
    else:
        model = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**tower)).eval()
        _torch_step(spec, lambda images: model(pixel_values=images).pooler_output)


def _stub_torchvision():
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "..", "tests"))
    from reference_frameworks import stub_torchvision

    stub_torchvision()


def timm_worker(spec):
    _stub_torchvision()
    import timm

    o = spec.get("overrides", {})
    kwargs = dict(embed_dim=o["hidden_size"], depth=o["num_layers"], num_heads=o["num_heads"]) if o else {}
    model = timm.create_model("vit_base_patch14_dinov2", pretrained=False, img_size=spec["size"], **kwargs).eval()
    _torch_step(spec, lambda images: model.forward_features(images)[:, 0])


def open_clip_worker(spec):
    _stub_torchvision()
    import open_clip

    o = spec.get("overrides", {})
    if spec["model"] == "clip":
        vision = dict(layers=o.get("num_layers", 12), width=o.get("hidden_size", 768), patch_size=16,
                      image_size=spec["size"], head_width=64)
        text = dict(layers=2, width=64, heads=2, context_length=8, vocab_size=64)
        model = open_clip.model.CLIP(embed_dim=512, vision_cfg=vision, text_cfg=text, quick_gelu=True).eval()
    else:
        if o:
            common.emit(**spec, error="open_clip's SigLIP (a timm trunk) is measured at full size only")
            return
        model = open_clip.create_model("ViT-B-16-SigLIP", pretrained=None).eval()
    _torch_step(spec, model.encode_image)


WORKERS = {"vit_zoo": vit_zoo_worker, "transformers": transformers_worker, "timm": timm_worker,
           "open_clip": open_clip_worker}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--quick", action="store_true", help="tiny configs at small sizes, one short run each")
    common.add_run_arguments(parser, min_time=2.0)
    args = common.parse_or_work(parser, argv, lambda spec: WORKERS[spec["library"]](spec))
    if args is None:
        return
    facts, load_before = common.print_machine(args.max_load, args.wait)
    records = []
    for model in args.models:
        variant, sizes, peers, _ = MODELS[model]
        for size, batches in (QUICK_SIZES[model] if args.quick else sizes).items():
            for batch in batches:
                for precision in args.precision:
                    runs = [("vit_zoo", "predict"), ("vit_zoo", "call")] + [(peer, "eager") for peer in peers]
                    for library, path in runs:
                        spec = dict(model=model, library=library, path=path, size=size, batch=batch,
                                    precision=precision, overrides=QUICK if args.quick else {},
                                    min_time=0.2 if args.quick else args.min_time,
                                    repeats=1 if args.quick else args.repeats)
                        for record in common.run_worker(HERE, spec):
                            records.append(record)
                            rate = f"{record['rate']:.2f} img/s" if "rate" in record else record.get("error")
                            print(f"  {variant} {size}px batch {batch} {precision} {library} {path}: {rate}",
                                  flush=True)
    for model in args.models:
        _print_table(model, [r for r in records if r["model"] == model], args.quick)
    common.finish(args, facts, load_before, records)


def _print_table(model, records, quick):
    """One table per model: img/s of each path, and its ratio to transformers in the same cell."""
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
    variant, _, _, measured = MODELS[model]
    print(f"\n{variant} {measured}" + (" (quick: tiny config)" if quick else ""))
    print(common.table(rows, ["size", "batch", "precision", "library", "path", "img_s", "vs_transformers",
                              "first_call_s"]))


if __name__ == "__main__":
    main()
