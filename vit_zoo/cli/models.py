"""``vit-zoo list``, ``info``, ``convert``: the variants table and checkpoint conversion."""
from __future__ import annotations

import json

from vit_zoo.cli.tables import print_table


def _command_list(args):
    from vit_zoo import ViTConfig, count_parameters, flops_per_image, list_models

    rows = []
    for name in list_models():
        config = ViTConfig.from_name(name)
        rows.append((name, f"{count_parameters(config):,}", f"{flops_per_image(config) / 1e9:.1f}"))
    print_table(("model", "params (224, 1000 cls)", "GFLOPs/img"), rows)


def _command_info(args):
    from vit_zoo import ViTConfig, count_parameters, flops_per_image

    config = ViTConfig.from_name(args.name, **({"image_size": args.image_size} if args.image_size else {}))
    info = {"model": config.variant, "config": config.to_dict(),
            "parameters": count_parameters(config),
            "parameters_with_21k_pre_logits_head": count_parameters(
                config.replace(num_classes=21843, representation_size=config.hidden_size)),
            "gflops_per_image": round(flops_per_image(config) / 1e9, 2)}
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"{info['model']}  ({config.image_size[0]}x{config.image_size[1]}, patch {config.patch_size}, "
          f"{config.num_tokens} tokens)")
    for key, value in config.to_dict().items():
        print(f"  {key:30s} {value}")
    print(f"  {'parameters (1000 classes)':30s} {info['parameters']:,}")
    print(f"  {'parameters (21843 + pre-logits)':30s} {info['parameters_with_21k_pre_logits_head']:,}")
    print(f"  {'GFLOPs per image':30s} {info['gflops_per_image']}")


def _command_convert(args):
    import vit_zoo

    model = vit_zoo.load(args.model, weights=args.source, image_size=args.image_size)
    model.save(args.output)
    print(f"converted {args.source} → {args.output} ({model.name}, {model.count_params():,} parameters)")


def add_commands(commands) -> None:
    sub = commands.add_parser("list", help="list the model variants")
    sub.set_defaults(run=_command_list)

    sub = commands.add_parser("info", help="config, parameters and GFLOPs of a variant")
    sub.add_argument("name", help="variant name or alias, e.g. vit-base-16, ViT-B_16, B/16")
    sub.add_argument("--image-size", type=int, default=None, help="input size in pixels (default: the variant's, 224)")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.set_defaults(run=_command_info)

    sub = commands.add_parser("convert", help="convert a checkpoint to a .keras model")
    sub.add_argument("source", help="checkpoint: .npz, Hugging Face folder or file, timm .safetensors, "
                     ".weights.h5, .keras")
    sub.add_argument("--model", default=None, help="expected variant (default: read off the checkpoint)")
    sub.add_argument("--image-size", type=int, default=None, help="resample the position embeddings to this input size (default: the checkpoint's)")
    sub.add_argument("-o", "--output", required=True, help="output .keras file")
    sub.set_defaults(run=_command_convert)
