"""``vit-zoo finetune``, ``export``: training and deployment."""
from __future__ import annotations

import json


def _command_finetune(args):
    if args.cpu_devices:
        from vit_zoo.train.distribute import split_cpu

        split_cpu(args.cpu_devices)
    if args.demo:
        from vit_zoo.train.demo import run_demo

        result = run_demo(args.output_dir or "vit-finetune-demo", progress=not args.quiet)
    else:
        if not args.data:
            raise ValueError("finetune needs DATA (an image-folder tree, TFRecords) or --demo")
        if args.class_names:
            args.class_names = [line.strip() for line in open(args.class_names, encoding="utf-8") if line.strip()]
        from vit_zoo.train.finetuning import finetune

        options = {key: getattr(args, key) for key in _FINETUNE_OPTIONS if getattr(args, key) is not None}
        result = finetune(args.data, args.model, output_dir=args.output_dir or "vit-finetune",
                          resume=not args.no_resume, progress=not args.quiet, **options)
    metrics = result.get("metrics", {})
    summary = ", ".join(f"{key} {metrics[key]:.4f}" for key in ("val_top1", "val_top5") if key in metrics)
    print(f"saved {result.get('model_path', '')} {summary}".rstrip())


_FINETUNE_OPTIONS = ("val_data", "image_size", "batch_size", "steps", "epochs", "optimizer", "learning_rate",
                     "warmup_steps", "momentum", "grad_clip_norm", "weight_decay", "label_smoothing", "mixup",
                     "cutmix", "layer_decay", "freeze_backbone", "drop_path_rate", "precision",
                     "grad_accumulation", "checkpoint_every", "eval_every", "strategy", "seed", "workers",
                     "class_names")


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


def add_commands(commands) -> None:
    sub = commands.add_parser("finetune", help="fine-tune on an image-folder tree (or --demo, offline)")
    sub.add_argument("data", nargs="?", default=None, help="image folder (class per sub-folder; optional "
                     "train/ and val/), or TFRecord files")
    sub.add_argument("--demo", action="store_true", help="train vit-tiny-16 on generated shapes, offline")
    sub.add_argument("--model", default="vit-tiny-16", help="NAME[:TAG], or a checkpoint to start from (.npz, Hugging "
                     "Face folder or file, timm .safetensors, .weights.h5, .keras, hf-hub:REPO); a new head is "
                     "sized to the data's classes (default vit-tiny-16, from scratch)")
    sub.add_argument("--output-dir", default=None, help="where checkpoints, logs, model.keras and run.json go")
    sub.add_argument("--val-data", default=None, help="validation folder (default: DATA/val or a split)")
    for flag, kind in (("--image-size", int), ("--batch-size", int), ("--steps", int), ("--epochs", float),
                       ("--learning-rate", float), ("--warmup-steps", int), ("--momentum", float),
                       ("--grad-clip-norm", float), ("--weight-decay", float), ("--label-smoothing", float),
                       ("--mixup", float), ("--cutmix", float), ("--layer-decay", float),
                       ("--drop-path-rate", float), ("--grad-accumulation", int), ("--checkpoint-every", int),
                       ("--eval-every", int), ("--seed", int), ("--cpu-devices", int), ("--workers", int)):
        sub.add_argument(flag, type=kind, default=None)
    sub.add_argument("--optimizer", choices=("sgd", "adamw"), default=None, help="default sgd (the ViT recipe)")
    sub.add_argument("--precision", choices=("mixed_bfloat16", "mixed_float16"), default=None)
    sub.add_argument("--strategy", default=None, metavar="STRATEGY",
                     help="none; mirrored, multiworker, tpu (TensorFlow backend); data-parallel, "
                          "model-parallel[:K] (JAX backend)")
    sub.add_argument("--class-names", default=None, metavar="FILE",
                     help="class names, one per line in class-index order (TFRecords without image/class/text)")
    sub.add_argument("--freeze-backbone", action="store_true", default=None, help="linear probe")
    sub.add_argument("--no-resume", action="store_true", help="start over instead of resuming a checkpoint")
    sub.add_argument("--quiet", action="store_true", help="no progress output")
    sub.set_defaults(run=_command_finetune)

    sub = commands.add_parser("export", help="export a model to SavedModel, TFLite, ONNX or .keras")
    sub.add_argument("model", help="a .keras file, or NAME[:TAG] of published weights")
    sub.add_argument("--format", choices=("saved_model", "tflite", "onnx", "keras"), default="saved_model")
    sub.add_argument("-o", "--output", default=None, help="output file or folder")
    sub.add_argument("--quantize", choices=("dynamic-int8",), default=None, help="dynamic-range int8 (TFLite, ONNX)")
    sub.add_argument("--input-dtype", choices=("uint8", "float32"), default=None)
    sub.add_argument("--image-size", type=int, default=None, help="input size for NAME[:TAG]")
    sub.add_argument("--no-verify", action="store_true", help="skip running the export against Keras")
    sub.set_defaults(run=_command_export)
