"""``vit-zoo mapping FORMAT MODEL``: a format's mapping resolved for one model, row by row."""
from __future__ import annotations

import json


def _command_mapping(args):
    from vit_zoo import ViTConfig, describe_mapping, mapping_rows

    config = ViTConfig.from_name(args.model, **({"image_size": args.image_size} if args.image_size else {}))
    if args.json:
        rows = mapping_rows(args.format, config, args.checkpoint)
        print(json.dumps([dict(zip(("weight", "source", "transform"), row)) for row in rows], indent=1))
        return
    print(describe_mapping(args.format, config, args.checkpoint))


def add_commands(commands) -> None:
    sub = commands.add_parser("mapping", help="a checkpoint format's rows for a model: our weight, source key, "
                                              "transform")
    sub.add_argument("format", help="checkpoint format: google-npz, big-vision-npz, hf, timm, meta-dinov2 or keras")
    sub.add_argument("model", help="variant name or alias, e.g. vit-base-16, ViT-B_16, vit_base_patch16_224")
    sub.add_argument("--checkpoint", default=None,
                     help="a checkpoint of that format, for layouts that depend on the file (big-vision-npz's key "
                          "prefix, Hugging Face PyTorch or TensorFlow names; default: the format's usual layout)")
    sub.add_argument("--image-size", type=int, default=None, help="input size in pixels (default: the model's)")
    sub.add_argument("--json", action="store_true", help="print the rows as JSON")
    sub.set_defaults(run=_command_mapping)
