"""``vit-zoo finetune``, ``export``: training and deployment."""
from __future__ import annotations

import json
import os
from pathlib import Path

from vit_zoo.cli.wording import UsageError

CHECKPOINT_KINDS = ".npz, Hugging Face folder or file, timm .safetensors, .weights.h5, .keras, hf-hub:REPO"


def _check_finetune(args):
    if not args.demo and not args.data:
        raise UsageError("DATA is required (an image-folder tree or TFRecord files), or --demo")
    if args.data and not any(ch in args.data for ch in "*?[") and not Path(args.data).exists():
        raise FileNotFoundError(f"data not found: '{args.data}' (expected an image folder or TFRecord files)")


def _command_finetune(args):
    if args.cpu_devices:
        from vit_zoo import split_cpu

        split_cpu(args.cpu_devices)
    if args.demo:
        from vit_zoo import run_demo

        result = run_demo(args.output_dir or "vit-finetune-demo", progress=not args.quiet)
    else:
        if args.class_names:
            args.class_names = [line.strip() for line in open(args.class_names, encoding="utf-8") if line.strip()]
        from vit_zoo import finetune

        options = {key: getattr(args, key) for key in FINETUNE_OPTIONS if getattr(args, key) is not None}
        result = finetune(args.data, args.model, output_dir=args.output_dir or "vit-finetune",
                          resume=not args.no_resume, progress=not args.quiet, **options)
    print(saved_line(result))


def saved_line(result: dict) -> str:
    """``saved PATH: val top-1 42.167%  top-5 99.333%``: the validation figures as ``vit-zoo evaluate``
    prints them (top-k with k = min(5, classes))."""
    metrics = result.get("metrics", {})
    line = f"saved {result.get('model_path', '')}"
    if "val_top1" in metrics:
        k = min(5, int(result.get("num_classes") or 5))
        line += f": val top-1 {metrics['val_top1']:.3%}  top-{k} {metrics['val_top5']:.3%}"
    return line


# finetune's keyword arguments the command line sets (each flag --x-y sets x_y)
FINETUNE_OPTIONS = ("val_data", "image_size", "batch_size", "steps", "epochs", "recipe", "optimizer",
                    "learning_rate", "warmup_steps", "momentum", "grad_clip_norm", "weight_decay", "label_smoothing",
                    "mixup", "cutmix", "layer_decay", "freeze_backbone", "drop_path_rate", "precision",
                    "grad_accumulation", "checkpoint_every", "eval_every", "strategy", "seed", "workers",
                    "class_names")


def _command_export(args):
    from vit_zoo import export
    from vit_zoo.exporting.formats import default_output  # allow-listed in tests/test_import_direction.py

    output = args.output or default_output(args.model, args.format)
    if args.format == "keras" and Path(output).resolve() == Path(args.model).resolve():
        raise UsageError(f"exporting '{args.model}' as keras would overwrite it; pass -o OTHER.keras")
    result = export(export_source(args.model, args.image_size), args.format, output, quantize=args.quantize,
                    input_dtype=args.input_dtype, verify=not args.no_verify, calibration=args.calibration)
    print(json.dumps({key: str(value) if key == "path" else value for key, value in result.items()}, indent=2))


def export_source(model: str, image_size=None):
    """What ``vit-zoo export MODEL`` exports: a ``.keras`` file as it is (its path), any other checkpoint
    ``--weights`` takes loaded through ``vit_zoo.load``, else published weights ``NAME[:TAG]``."""
    import vit_zoo
    from vit_zoo import is_exported, resolve_name
    from vit_zoo.train.start import HUB_PREFIX, refuse_a_name_shadowed_by_a_path  # allow-listed, as above

    if model.startswith(HUB_PREFIX) or Path(model).exists():
        refuse_a_name_shadowed_by_a_path(model)
        if is_exported(model):
            raise ValueError(f"'{model}' is an exported model already; export the .keras file or checkpoint it "
                             f"came from")
        if model.endswith(".keras") and image_size is None:
            return model
        return vit_zoo.load(weights=model, image_size=image_size)
    name, _, tag = model.partition(":")
    try:
        resolve_name(name)
    except ValueError:
        if Path(name).suffix or "/" in name or os.sep in name:  # meant as a path
            raise FileNotFoundError(f"no such checkpoint file or folder: '{model}'") from None
        raise
    return vit_zoo.load(name, pretrained=tag or True, image_size=image_size)


def _add_finetune(commands) -> None:
    sub = commands.add_parser("finetune", help="fine-tune on an image-folder tree (or --demo, offline)",
                              description="Fine-tune (or train) a classifier. The batch size and steps fit the "
                              "data and the memory unless given; the plan is printed before the first step.")
    sub.add_argument("data", nargs="?", default=None, help="image folder (a sub-folder per class; optional "
                     "train/ and val/), or TFRecord files")
    sub.add_argument("--demo", action="store_true", help="train vit-tiny-16 on generated shapes, offline")
    sub.add_argument("--model", default="vit-tiny-16", help="NAME[:TAG] (NAME alone: random weights), or a "
                     f"checkpoint to start from ({CHECKPOINT_KINDS}); a new head is sized to the data's classes")
    sub.add_argument("--output-dir", default=None, help="where checkpoints, logs, model.keras and run.json go "
                     "(default: vit-finetune, or vit-finetune-demo with --demo)")
    sub.add_argument("--val-data", default=None, help="validation folder (default: DATA/val, else 10%% of DATA "
                     "held out)")
    sub.add_argument("--recipe", choices=("auto", "paper"), default="auto",
                     help="auto: a batch of at most 64 that fits the data and the memory, 10 epochs; paper: the "
                          "ViT paper's batch of 512 (in micro-batches where it does not fit)")
    sub.add_argument("--image-size", type=int, default=None, help="training resolution in pixels, position "
                     "embeddings resampled (default: the model's, 224 for a named variant)")
    sub.add_argument("--batch-size", type=int, default=None, help="images per optimizer step (default: what "
                     "--recipe picks; one that does not fit the memory is refused)")
    sub.add_argument("--steps", type=int, default=None, help="optimizer steps (default: --epochs worth)")
    sub.add_argument("--epochs", type=float, default=None, help="passes over the training images when --steps "
                     "is not given (default: 10)")
    sub.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd", help="sgd with momentum (the ViT "
                     "recipe) or adamw")
    sub.add_argument("--learning-rate", type=float, default=0.01, help="peak learning rate, reached after the "
                     "warm-up, then cosine decay to 0")
    sub.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (default: 5%% of the "
                     "steps, at most 500)")
    sub.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    sub.add_argument("--grad-clip-norm", type=float, default=1.0, help="clip the global gradient norm to this")
    sub.add_argument("--weight-decay", type=float, default=0.0, help="decoupled weight decay (not on biases, "
                     "norms, embeddings)")
    sub.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the cross-entropy")
    sub.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (Beta(alpha, alpha)); 0: off")
    sub.add_argument("--cutmix", type=float, default=0.0, help="cutmix alpha; 0: off")
    sub.add_argument("--layer-decay", type=float, default=None, help="layer-wise learning-rate decay factor per "
                     "block from the top (default: none)")
    sub.add_argument("--drop-path-rate", type=float, default=None, help="stochastic depth in the last block "
                     "(default: the model's, 0 for named variants)")
    sub.add_argument("--freeze-backbone", action="store_true", default=None, help="train the head only "
                     "(a linear probe)")
    sub.add_argument("--precision", choices=("mixed_bfloat16", "mixed_float16"), default=None,
                     help="mixed precision (default: float32)")
    sub.add_argument("--grad-accumulation", type=int, default=None, help="micro-batches per step (default: 1, "
                     "or what --recipe paper needs to fit the memory)")
    sub.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (and one at "
                     "the end)")
    sub.add_argument("--eval-every", type=int, default=None, help="steps between evaluations on the validation "
                     "split (default: at the end only)")
    sub.add_argument("--strategy", default="none", metavar="STRATEGY",
                     help="none; mirrored, multiworker, tpu (TensorFlow backend); data-parallel, "
                          "model-parallel[:K] (JAX backend)")
    sub.add_argument("--cpu-devices", type=int, default=None, help="split the CPU into this many logical "
                     "devices (to try a strategy; default: one)")
    sub.add_argument("--seed", type=int, default=0, help="seed of the data order, augmentation and new head")
    sub.add_argument("--workers", type=int, default=None, help="image-decoding threads (default: the cores, at "
                     "most 16)")
    sub.add_argument("--class-names", default=None, metavar="FILE",
                     help="class names, one per line in class-index order, for TFRecords without image/class/text "
                          "(default: the folder names, or the records' image/class/text)")
    sub.add_argument("--no-resume", action="store_true", help="start over instead of resuming a checkpoint")
    sub.add_argument("--quiet", action="store_true", help="no plan and no progress output")
    sub.set_defaults(run=_command_finetune, check=_check_finetune)


def add_commands(commands) -> None:
    _add_finetune(commands)
    sub = commands.add_parser("export", help="export a model to SavedModel, TFLite, ONNX, OpenVINO or .keras",
                              description="Export a model; the export is checked by running it against the "
                              "model, and carries its class names and preprocessing.")
    sub.add_argument("model", help=f"a checkpoint ({CHECKPOINT_KINDS}), or NAME[:TAG] of published weights")
    sub.add_argument("--format", choices=("saved_model", "tflite", "onnx", "openvino", "keras"),
                     default="saved_model", help="saved_model: a TensorFlow SavedModel folder; tflite: a LiteRT "
                     "flatbuffer; onnx: an ONNX model; openvino: an OpenVINO IR, model.xml + model.bin (onnx and "
                     "openvino: the export extra); keras: a .keras file")
    sub.add_argument("-o", "--output", default=None, help="output file, or folder for saved_model (default: "
                     "named after MODEL: model.keras gives model_savedmodel/, model.tflite, model.onnx, model.xml)")
    sub.add_argument("--quantize", choices=("dynamic-int8", "int8"), default=None, help="dynamic-int8: "
                     "dynamic-range int8 weights (tflite, onnx); int8: OpenVINO's post-training int8 weights and "
                     "activations, calibrated on --calibration (openvino); default: none, float32")
    sub.add_argument("--calibration", default=None, metavar="DIR", help="typical images for --quantize int8 "
                     "(a folder, up to 300 used, preprocessed as the model evaluates; default: none, needed for int8)")
    sub.add_argument("--input-dtype", choices=("uint8", "float32"), default=None, help="what the export takes "
                     "(default: uint8 RGB 0-255 for models that normalise inside, else float32)")
    sub.add_argument("--image-size", type=int, default=None, help="input size in pixels, position embeddings "
                     "resampled (default: the model's)")
    sub.add_argument("--no-verify", action="store_true", help="skip running the export against the model")
    sub.set_defaults(run=_command_export)
