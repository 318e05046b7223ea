"""``vit-zoo list``, ``info``, ``convert``: the variants table and checkpoint conversion."""
from __future__ import annotations

import json

from vit_zoo import list_families
from vit_zoo.cli.tables import print_table


def _command_list(args):
    from vit_zoo import ViTConfig, count_parameters, family_of, flops_per_image, list_models, list_weights

    published = {}
    for entry in list_weights():
        published[entry["model"]] = published.get(entry["model"], 0) + 1
    rows = []
    for name in list_models(args.family):
        config = ViTConfig.from_name(name)
        rows.append((family_of(name), name, f"{count_parameters(config):,}",
                     f"{flops_per_image(config) / 1e9:.1f}", published.get(name, "-")))
    print_table(("family", "model", "params (224, 1000 cls)", "GFLOPs/img", "weights"), rows)


def family_rows(config) -> list:
    """(label, value) rows of what a config's family changes against the classic ViT: prefix tokens,
    LayerScale, MLP, head, pooling, and the position embeddings' grid and resampling rule."""
    tokens = [name for name, present in (("class", config.class_token),
                                         ("distillation", config.distillation_token)) if present]
    tokens += [f"{config.register_tokens} registers"] if config.register_tokens else []
    rows, stored = [], config.stored_position_grid
    rows.append(("prefix tokens", f"{config.num_prefix_tokens} ({', '.join(tokens) or 'none'}); "
                                  f"{config.num_embedded_prefix_tokens} with a position embedding"))
    rows.append(("LayerScale", "none" if config.layer_scale is None else f"init {config.layer_scale:g}"))
    rows.append(("MLP", f"{config.mlp} ({config.mlp_size})"))
    rows.append(("head", f"{config.head}, pooling {config.pooling} (width {config.pooled_width})"))
    grid = (f"stored for {stored[0]}x{stored[1]} patches, resampled to the input's grid in the model"
            if config.position_grid else f"{stored[0]}x{stored[1]} patches (the input's)")
    rows.append(("position embeddings", f"{grid}; resampling {config.position_embedding_resampling}"))
    return rows


def _command_info(args):
    from vit_zoo import ViTConfig, count_parameters, family_of, flops_per_image

    config = ViTConfig.from_name(args.name, **({"image_size": args.image_size} if args.image_size else {}))
    info = {"model": config.variant, "family": family_of(config.variant), "config": config.to_dict(),
            "family_options": dict(family_rows(config)),
            "parameters": count_parameters(config),
            "parameters_without_head": count_parameters(config, include_top=False),
            # Google's ImageNet-21k checkpoints: classic ViTs only
            "parameters_with_21k_pre_logits_head": count_parameters(
                config.replace(num_classes=21843, representation_size=config.hidden_size))
            if family_of(config.variant) == "vit" else None,
            "gflops_per_image": round(flops_per_image(config) / 1e9, 2)}
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"{info['model']}  ({info['family']} family; {config.image_size[0]}x{config.image_size[1]}, "
          f"patch {config.patch_size}, {config.num_tokens} tokens)")
    for label, value in family_rows(config):
        print(f"  {label:30s} {value}")
    for key, value in config.to_dict().items():
        print(f"  {key:30s} {value}")
    print(f"  {'parameters (1000 classes)':30s} {info['parameters']:,}")
    print(f"  {'parameters (no head)':30s} {info['parameters_without_head']:,}")
    if info["parameters_with_21k_pre_logits_head"] is not None:
        print(f"  {'parameters (21843 + pre-logits)':30s} {info['parameters_with_21k_pre_logits_head']:,}")
    print(f"  {'GFLOPs per image':30s} {info['gflops_per_image']}")


def _command_convert(args):
    import vit_zoo

    model = vit_zoo.load(args.model, weights=args.source, image_size=args.image_size)
    model.save(args.output)
    print(f"converted {args.source} → {args.output} ({model.name}, {model.count_params():,} parameters)")


def add_commands(commands) -> None:
    sub = commands.add_parser("list", help="list the model variants, family by family")
    sub.add_argument("--family", default=None, choices=list_families(), help="only this family's variants (default: every family)")
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
