"""The ``vit-zoo`` command line: each command parses its arguments and calls one library function.
(TensorFlow's start-up notes are kept out of the output by ``vit_zoo/__init__``.)

Exit codes: 0 success, 1 a failure (one readable line on stderr; ``--debug`` shows the traceback),
2 a usage error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_MODEL = "vit-base-16"


def _command_list(args):
    from vit_zoo import ViTConfig, list_models
    from vit_zoo.stats import count_parameters, flops_per_image

    rows = []
    for name in list_models():
        config = ViTConfig.from_name(name)
        rows.append((name, f"{count_parameters(config):,}", f"{flops_per_image(config) / 1e9:.1f}"))
    _print_table(("model", "params (224, 1000 cls)", "GFLOPs/img"), rows)


def _command_info(args):
    from vit_zoo import ViTConfig
    from vit_zoo.stats import count_parameters, flops_per_image

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


def _command_weights(args):
    from vit_zoo import manifest

    print(manifest.weights_table(args.model))


def _command_download(args):
    from vit_zoo import pretrained

    name, _, tag = args.model.partition(":")
    entry = pretrained.resolve_entry(name, tag or True)
    path, _ = pretrained.converted_checkpoint(entry, progress=not args.quiet and None)
    print(f"{entry['key']}: converted weights at {path}")


def _command_cache(args):
    from vit_zoo import cache

    if args.clear is not None:
        removed = cache.clear_cache(args.clear or None)
        print(f"removed {len(removed)} item(s), {sum(item.size for item in removed):,} bytes, "
              f"from {cache.cache_root()}")
        return
    print(cache.format_cache_table())


def _load_model(args, **options):
    """The model a command asks for: ``--weights PATH`` (a checkpoint or a saved ``.keras`` model), else
    the published weights ``--model NAME[:TAG]``."""
    import vit_zoo

    weights = getattr(args, "weights", None)
    if weights and str(weights).endswith(".keras"):
        import keras

        return keras.models.load_model(weights)
    name, _, tag = args.model.partition(":")
    if weights:
        return vit_zoo.load(name if args.model_given else None, weights=weights, **options)
    return vit_zoo.load(name, pretrained=tag or True, **options)


def _command_predict(args):
    from vit_zoo.prediction import predict

    model = _load_model(args)
    results = predict(model, args.images, top=args.top)
    if args.json:
        print(json.dumps([{"image": image, "top": [{"index": i, "label": label, "probability": round(p, 6)}
                                                   for i, label, p in top]}
                          for image, top in zip(args.images, results)], indent=2))
        return
    for image, top in zip(args.images, results):
        print(image)
        for index, label, probability in top:
            print(f"  {probability:7.2%}  {index:5d}  {label}")


def _command_embed(args):
    from vit_zoo.embedding import embed

    model = _load_model(args, include_top=False, pooling="token")
    if any(layer.name == "head" for layer in model.layers):  # a saved classifier: embed what its head sees
        import keras

        model = keras.Model(model.inputs, model.get_layer("head").input, name=f"{model.name}_features")
    result = embed(model, args.directory, output=args.output, batch_size=args.batch_size,
                   tag=args.model, progress=not args.quiet)
    print(f"{args.output}: {result.total} embeddings ({result.added} new, {len(result.skipped)} unreadable "
          f"skipped)")


def _command_attention(args):
    from vit_zoo.attention_plot import attention_overlay

    model = _load_model(args)
    attention_overlay(model, args.image, args.output, discard_ratio=args.discard_ratio)
    print(f"attention rollout overlay of {args.image} → {args.output}")


def _command_finetune(args):
    if args.cpu_devices:
        from vit_zoo.distribute import split_cpu

        split_cpu(args.cpu_devices)
    if args.demo:
        from vit_zoo.demo_data import run_demo

        result = run_demo(args.output_dir or "vit-finetune-demo", progress=not args.quiet)
    else:
        if not args.data:
            raise ValueError("finetune needs DATA (an image-folder tree, TFRecords) or --demo")
        from vit_zoo.finetuning import finetune

        options = {key: getattr(args, key) for key in _FINETUNE_OPTIONS if getattr(args, key) is not None}
        result = finetune(args.data, args.model, output_dir=args.output_dir or "vit-finetune",
                          resume=not args.no_resume, progress=not args.quiet, **options)
    metrics = result.get("metrics", {})
    summary = ", ".join(f"{key} {metrics[key]:.4f}" for key in ("val_top1", "val_top5") if key in metrics)
    print(f"saved {result.get('model_path', '')} {summary}".rstrip())


_FINETUNE_OPTIONS = ("val_data", "image_size", "batch_size", "steps", "epochs", "optimizer", "learning_rate",
                     "warmup_steps", "momentum", "grad_clip_norm", "weight_decay", "label_smoothing", "mixup",
                     "cutmix", "layer_decay", "freeze_backbone", "drop_path_rate", "precision",
                     "grad_accumulation", "checkpoint_every", "eval_every", "strategy", "seed")


def _command_export(args):
    import vit_zoo
    from vit_zoo.exporting import export

    source = args.model
    if not source.endswith(".keras"):
        name, _, tag = source.partition(":")
        source = vit_zoo.load(name, pretrained=tag or True, image_size=args.image_size)
    result = export(source, args.format, args.output, quantize=args.quantize, input_dtype=args.input_dtype,
                    verify=not args.no_verify)
    print(json.dumps({key: str(value) if key == "path" else value for key, value in result.items()}, indent=2))


def _print_table(header, rows):
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for line in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vit-zoo", description="Vision Transformers for Keras 3.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub = commands.add_parser("list", help="list the model variants")
    sub.set_defaults(run=_command_list)

    sub = commands.add_parser("info", help="config, parameters and GFLOPs of a variant")
    sub.add_argument("name", help="variant name or alias, e.g. vit-base-16, ViT-B_16, B/16")
    sub.add_argument("--image-size", type=int, default=None, help="input size in pixels (default 224)")
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.set_defaults(run=_command_info)

    sub = commands.add_parser("convert", help="convert a checkpoint to a .keras model")
    sub.add_argument("source", help="checkpoint: .npz, Hugging Face dir or file, timm .safetensors, .weights.h5")
    sub.add_argument("--model", default=None, help="expected variant (default: read off the checkpoint)")
    sub.add_argument("--image-size", type=int, default=None, help="resample to this input size")
    sub.add_argument("-o", "--output", required=True, help="output .keras file")
    sub.set_defaults(run=_command_convert)

    for command, helptext, run in (("predict", "classify images", _command_predict),
                                   ("embed", "embed a folder of images into an HDF5 file", _command_embed),
                                   ("attention", "draw an attention-rollout overlay", _command_attention)):
        sub = commands.add_parser(command, help=helptext)
        if command == "predict":
            sub.add_argument("images", nargs="+", help="image files")
            sub.add_argument("--top", type=int, default=5, help="classes per image (default 5)")
            sub.add_argument("--json", action="store_true", help="print JSON")
        elif command == "embed":
            sub.add_argument("directory", help="folder of images (searched recursively)")
            sub.add_argument("-o", "--output", required=True, help="HDF5 file (appended to when it exists)")
            sub.add_argument("--batch-size", type=int, default=32)
            sub.add_argument("--quiet", action="store_true", help="no progress bar")
        else:
            sub.add_argument("image", help="image file")
            sub.add_argument("-o", "--output", required=True, help="output picture (.png)")
            sub.add_argument("--discard-ratio", type=float, default=0.9,
                             help="fraction of the weakest attention discarded in the rollout (default 0.9)")
        sub.add_argument("--model", default=DEFAULT_MODEL,
                         help=f"NAME[:TAG] of published weights (default {DEFAULT_MODEL}, its default tag)")
        sub.add_argument("--weights", default=None,
                         help="a local checkpoint (.npz, Hugging Face dir, timm .safetensors, .weights.h5) "
                              "or a saved .keras model, instead of downloading")
        sub.set_defaults(run=run)

    sub = commands.add_parser("finetune", help="fine-tune on an image-folder tree (or --demo, offline)")
    sub.add_argument("data", nargs="?", default=None, help="image folder (class per sub-folder; optional "
                     "train/ and val/), or TFRecord files")
    sub.add_argument("--demo", action="store_true", help="train vit-tiny-16 on generated shapes, offline")
    sub.add_argument("--model", default="vit-tiny-16", help="NAME[:TAG] or a .keras file (default vit-tiny-16)")
    sub.add_argument("--output-dir", default=None, help="where checkpoints, logs, model.keras and run.json go")
    sub.add_argument("--val-data", default=None, help="validation folder (default: DATA/val or a split)")
    for flag, kind in (("--image-size", int), ("--batch-size", int), ("--steps", int), ("--epochs", float),
                       ("--learning-rate", float), ("--warmup-steps", int), ("--momentum", float),
                       ("--grad-clip-norm", float), ("--weight-decay", float), ("--label-smoothing", float),
                       ("--mixup", float), ("--cutmix", float), ("--layer-decay", float),
                       ("--drop-path-rate", float), ("--grad-accumulation", int), ("--checkpoint-every", int),
                       ("--eval-every", int), ("--seed", int), ("--cpu-devices", int)):
        sub.add_argument(flag, type=kind, default=None)
    sub.add_argument("--optimizer", choices=("sgd", "adamw"), default=None, help="default sgd (the ViT recipe)")
    sub.add_argument("--precision", choices=("mixed_bfloat16", "mixed_float16"), default=None)
    sub.add_argument("--strategy", choices=("none", "mirrored", "multiworker", "tpu"), default=None)
    sub.add_argument("--freeze-backbone", action="store_true", default=None, help="linear probe")
    sub.add_argument("--no-resume", action="store_true", help="start over instead of resuming a checkpoint")
    sub.add_argument("--quiet", action="store_true", help="no progress output")
    sub.set_defaults(run=_command_finetune)

    sub = commands.add_parser("export", help="export a model to SavedModel, TFLite, ONNX or .keras")
    sub.add_argument("model", help="a .keras file, or NAME[:TAG] of published weights")
    sub.add_argument("--format", choices=("saved_model", "tflite", "onnx", "keras"), default="saved_model")
    sub.add_argument("-o", "--output", default=None, help="output file or folder")
    sub.add_argument("--quantize", choices=("dynamic-int8",), default=None, help="TFLite dynamic-range int8")
    sub.add_argument("--input-dtype", choices=("uint8", "float32"), default=None)
    sub.add_argument("--image-size", type=int, default=None, help="input size for NAME[:TAG]")
    sub.add_argument("--no-verify", action="store_true", help="skip running the export against Keras")
    sub.set_defaults(run=_command_export)

    sub = commands.add_parser("weights", help="published weights known to the manifest")
    sub.add_argument("model", nargs="?", default=None, help="only this variant's weights")
    sub.set_defaults(run=_command_weights)

    sub = commands.add_parser("download", help="download and convert published weights into the cache")
    sub.add_argument("model", help="MODEL or MODEL:TAG, e.g. vit-base-16 or vit-base-16:orig-in21k")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.set_defaults(run=_command_download)

    sub = commands.add_parser("cache", help="list (or clear) the cache under VIT_ZOO_HOME")
    sub.add_argument("--clear", nargs="?", const="", default=None, metavar="PATTERN",
                     help="remove everything, or the items whose path matches the glob PATTERN")
    sub.set_defaults(run=_command_cache)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.model_given = any(a == "--model" or a.startswith("--model=") for a in argv)
    try:
        args.run(args)
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("vit-zoo: interrupted", file=sys.stderr)
        return 1
    except Exception as error:  # one readable line unless --debug
        if args.debug:
            raise
        message = str(error).strip() or type(error).__name__
        print(f"vit-zoo {args.command}: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
