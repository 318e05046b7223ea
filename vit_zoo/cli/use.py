"""``vit-zoo predict``, ``embed``, ``attention``, ``evaluate``: using a model on images, with its own class
names and preprocessing (``--labels FILE`` overrides the names)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from vit_zoo.cli.options import add_model_options, load_model

STRICT_HELP = "stop at the first unreadable image instead of skipping it with a warning"


def check_image_files(paths) -> None:
    """Every path names an existing file: checked before any model is loaded (or downloaded)."""
    for path in paths:
        if not Path(path).exists():
            raise FileNotFoundError(f"image file not found: '{path}'")
        if Path(path).is_dir():
            raise ValueError(f"'{path}' is a folder, not an image file; pass the image files in it")


def _command_predict(args):
    from vit_zoo import ExportedModel, predict, predict_exported

    model = load_model(args, exported=True)
    run = predict_exported if isinstance(model, ExportedModel) else predict
    results = run(model, args.images, top=args.top, strict=args.strict)
    scored = [(image, top) for image, top in zip(args.images, results) if top is not None]
    if args.json:
        print(json.dumps([{"image": image, "top": [{"index": i, "label": label, "probability": round(p, 6)}
                                                   for i, label, p in top]}
                          for image, top in scored], indent=2))
        return
    for image, top in scored:
        print(image)
        for index, label, probability in top:
            print(f"  {probability:7.2%}  {index:5d}  {label}")


_CHECKS = {"predict": lambda args: check_image_files(args.images),
           "attention": lambda args: check_image_files([args.image])}


def _model_with_or_without_head(args):
    """The model with its classification head where the checkpoint has one (its pooled features are then
    what the head sees), else its features pooled at the class token. Published weights load without
    their head (an ImageNet-21k release's head is all zeros)."""
    if not args.weights:
        from vit_zoo import ViTConfig

        if ViTConfig.from_name(args.model.partition(":")[0]).num_classes == 0:  # an image tower: its embedding
            return load_model(args)
        return load_model(args, include_top=False, pooling="token")
    from vit_zoo import CheckpointError

    try:
        return load_model(args)
    except CheckpointError:  # a checkpoint without a head; any other problem fails again, with its message
        return load_model(args, include_top=False, pooling="token")


def _command_embed(args):
    from vit_zoo import embed, list_images, pooled_features

    with warnings.catch_warnings():  # embed itself names the left-out non-image files, once
        warnings.simplefilter("ignore")
        list_images(args.directory)  # a missing or empty folder fails before the model loads
    model = pooled_features(_model_with_or_without_head(args))
    result = embed(model, args.directory, output=args.output, batch_size=args.batch_size,
                   tag=args.weights or args.model, progress=not args.quiet)
    print(f"{args.output}: {result.total} embeddings ({result.added} new, {len(result.skipped)} unreadable "
          f"skipped)")


def _command_similar(args):
    from vit_zoo import pooled_features, similar

    model = pooled_features(_model_with_or_without_head(args))
    for query, found in zip(args.queries, similar(model, args.queries, args.index, top=args.top)):
        print(query)
        for rank, (name, score) in enumerate(found, 1):
            print(f"  {rank}. {score:.4f}  {name}")


def _command_attention(args):
    from vit_zoo import attention_overlay, has_head, identity_of, predict

    model = _model_with_or_without_head(args)
    attention_overlay(model, args.image, args.output, discard_ratio=args.discard_ratio)
    line = f"attention rollout overlay of {args.image} → {args.output}"
    identity = identity_of(model)
    if identity is not None and identity.labels is not None and has_head(model):
        (_, name, probability), = predict(model, [args.image], top=1)[0]
        line += f" (top class: {name}, {probability:.1%})"
    print(line)


def _command_evaluate(args):
    from vit_zoo import evaluate, format_report

    if not Path(args.data).is_dir():  # checked before the model loads
        raise FileNotFoundError(f"evaluation data not found: '{args.data}' (expected a folder of class folders, "
                                f"or a folder of images with --ground-truth)")
    if args.ground_truth and not Path(args.ground_truth).is_file():
        raise FileNotFoundError(f"ground-truth file not found: '{args.ground_truth}'")
    result = evaluate(load_model(args), args.data, ground_truth=args.ground_truth, workers=args.workers,
                      progress=not args.quiet, results=args.results, batch_size=args.batch_size,
                      strict=args.strict)
    print("\n".join(format_report(result)))
    if args.results:
        print(f"appended to {args.results}")


def _add_evaluate(commands) -> None:
    sub = commands.add_parser("evaluate", help="top-1/top-5 accuracy, loss and images/s on labelled images")
    sub.add_argument("data", help="a folder of class folders (class names, or WordNet ids for ImageNet), or a "
                     "folder of images with --ground-truth")
    sub.add_argument("--ground-truth", default=None, help="labels of a flat folder: one class index per line "
                     "in file-name order (ImageNet's validation list), WordNet ids, or 'FILE LABEL' lines (default: none, DATA "
                     "holds class folders)")
    sub.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    sub.add_argument("--workers", type=int, default=None, help="image-decoding threads (default: cores, <= 16)")
    sub.add_argument("--results", default=None, help="append a row to this CSV (model, tag, img_size, top1, "
                     "top5, images_per_second, examples; default: none)")
    sub.add_argument("--strict", action="store_true", help=STRICT_HELP)
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_options(sub)
    sub.set_defaults(run=_command_evaluate)


def add_commands(commands) -> None:
    for command, helptext, run in (("predict", "classify images", _command_predict),
                                   ("embed", "embed a folder of images into an HDF5 file", _command_embed),
                                   ("attention", "draw an attention-rollout overlay", _command_attention)):
        sub = commands.add_parser(command, help=helptext)
        if command == "predict":
            sub.add_argument("images", nargs="+", help="image files")
            sub.add_argument("--top", type=int, default=5, help="classes per image")
            sub.add_argument("--json", action="store_true", help="print JSON")
            sub.add_argument("--strict", action="store_true", help=STRICT_HELP)
            sub.add_argument("--precision", choices=("fp32", "bf16"), default=None, help="compute precision of "
                             "an OpenVINO export (--weights model.xml; bf16 needs a CPU with native bf16; default "
                             "fp32)")
        elif command == "embed":
            sub.add_argument("directory", help="folder of images (searched recursively)")
            sub.add_argument("-o", "--output", required=True, help="HDF5 file (appended to when it exists)")
            sub.add_argument("--batch-size", type=int, default=32, help="images per forward pass and per write")
            sub.add_argument("--quiet", action="store_true", help="no progress bar")
        else:
            sub.add_argument("image", help="image file")
            sub.add_argument("-o", "--output", required=True, help="output picture (.png): the photo at its own "
                             "size with the map over it and a colour bar")
            sub.add_argument("--discard-ratio", type=float, default=0.9,
                             help="fraction of the weakest attention discarded in the rollout")
        add_model_options(sub, exported=command == "predict")
        sub.set_defaults(run=run, check=_CHECKS.get(command))
    _add_evaluate(commands)  # vit_zoo.use.evaluation comes with the train part (on main)
    sub = commands.add_parser("similar", help="the indexed images nearest to each query (cosine), from an index "
                                              "`vit-zoo embed` wrote")
    sub.add_argument("queries", nargs="+", help="query image files")
    sub.add_argument("--index", required=True, help="the HDF5 file `vit-zoo embed DIR -o FILE` wrote, with the "
                                                    "same --model / --weights")
    sub.add_argument("--top", type=int, default=5, help="neighbours per query")
    add_model_options(sub)
    sub.set_defaults(run=_command_similar, check=lambda args: check_image_files(args.queries))
