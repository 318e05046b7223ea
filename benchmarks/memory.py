#!/usr/bin/env python
"""Memory per device for fine-tuning ViT-B/16, L/16, H/14 under data parallelism (tf.distribute).

Per device (data parallel: every replica holds the whole model):
    weights      4·P bytes            fp32 master weights (mixed_bfloat16 keeps fp32 variables and casts
                                      per layer on the fly; the bf16 copies are transient)
    gradients    4·P bytes            fp32
    optimizer    k·4·P bytes          k = 0 plain SGD, 1 SGD+momentum, 2 Adam/AdamW (m and v)
    activations  b · L · T·D·(34 + 5·H·T/D) · s/2 bytes
                                      kept for the backward pass, per image; Korthikanti et al. 2022
                                      ("Reducing activation recomputation in large transformer models",
                                      eq. 1, for MLP = 4·D; it counts 16-bit tensors plus dropout masks):
                                      s = 2 for bf16, 4 for fp32 activations. Full rematerialisation of
                                      each block keeps only its input: b · L · T·D · s.
with P parameters, L blocks, T tokens, D width, H heads, b images per device.

Usage: python benchmarks/memory.py [--batch 8 32] [--image-size 224]
"""
from __future__ import annotations

import argparse

import vit_zoo

GB = 1e9


def activation_bytes(config, batch, bytes_per_value, remat=False):
    t, d, h, layers = config.num_tokens, config.hidden_size, config.num_heads, config.num_layers
    if remat:
        return batch * layers * t * d * bytes_per_value
    return batch * layers * t * d * (34 + 5 * h * t / d) * bytes_per_value / 2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vit-base-16", "vit-large-16", "vit-huge-14"])
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args(argv)
    print("| model | params | GFLOP/img fwd | weights GB | grads GB | SGD+mom. GB | Adam GB | static (Adam) GB | "
          + " | ".join(f"act. bf16 b={b} GB | act. fp32 b={b} GB | remat bf16 b={b} GB" for b in args.batch) + " |")
    print("|---" * (8 + 3 * len(args.batch)) + "|")
    for name in args.models:
        config = vit_zoo.ViTConfig.from_name(name, image_size=args.image_size)
        p = vit_zoo.count_parameters(config)
        weights = grads = 4 * p
        cells = [name, f"{p / 1e6:.1f} M", f"{vit_zoo.flops_per_image(config) / 1e9:.0f}",
                 f"{weights / GB:.2f}", f"{grads / GB:.2f}", f"{4 * p / GB:.2f}", f"{8 * p / GB:.2f}",
                 f"{(weights + grads + 8 * p) / GB:.2f}"]
        for b in args.batch:
            cells += [f"{activation_bytes(config, b, 2) / GB:.1f}", f"{activation_bytes(config, b, 4) / GB:.1f}",
                      f"{activation_bytes(config, b, 2, remat=True) / GB:.2f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
