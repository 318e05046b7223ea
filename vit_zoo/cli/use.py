"""``vit-zoo predict``, ``embed``, ``attention``, ``evaluate``: using a model on images."""
from __future__ import annotations

import json

DEFAULT_MODEL = "vit-base-16"


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
    from vit_zoo.use.prediction import predict

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
    from vit_zoo.use.embedding import embed

    model = _load_model(args, include_top=False, pooling="token")
    if any(layer.name == "head" for layer in model.layers):  # a saved classifier: embed what its head sees
        import keras

        model = keras.Model(model.inputs, model.get_layer("head").input, name=f"{model.name}_features")
    result = embed(model, args.directory, output=args.output, batch_size=args.batch_size,
                   tag=args.model, progress=not args.quiet)
    print(f"{args.output}: {result.total} embeddings ({result.added} new, {len(result.skipped)} unreadable "
          f"skipped)")


def _command_attention(args):
    from vit_zoo.use.attention_plot import attention_overlay

    model = _load_model(args)
    attention_overlay(model, args.image, args.output, discard_ratio=args.discard_ratio)
    print(f"attention rollout overlay of {args.image} → {args.output}")


def _command_evaluate(args):
    from vit_zoo.use.evaluation import evaluate, format_report

    options = {"batch_size": args.batch_size} if args.batch_size else {}
    result = evaluate(_load_model(args), args.data, ground_truth=args.ground_truth, workers=args.workers,
                      progress=not args.quiet, results=args.results, **options)
    print("\n".join(format_report(result)))
    if args.results:
        print(f"appended to {args.results}")


def _add_evaluate(commands) -> None:
    sub = commands.add_parser("evaluate", help="top-1/top-5 accuracy, loss and images/s on labelled images")
    sub.add_argument("data", help="a folder of class folders (class names, or WordNet ids for ImageNet), or a "
                     "folder of images with --ground-truth")
    sub.add_argument("--ground-truth", default=None, help="labels of a flat folder: one class index per line "
                     "in file-name order (ImageNet's validation list), WordNet ids, or 'FILE LABEL' lines")
    sub.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default 64)")
    sub.add_argument("--workers", type=int, default=None, help="image-decoding threads (default: cores, <= 16)")
    sub.add_argument("--results", default=None, help="append a row to this CSV (model, tag, img_size, top1, "
                     "top5, images_per_second, examples)")
    sub.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_arguments(sub)
    sub.set_defaults(run=_command_evaluate)


def _add_model_arguments(sub) -> None:
    sub.add_argument("--model", default=DEFAULT_MODEL,
                     help=f"NAME[:TAG] of published weights (default {DEFAULT_MODEL}, its default tag)")
    sub.add_argument("--weights", default=None,
                     help="a local checkpoint (.npz, Hugging Face dir, timm .safetensors, .weights.h5) "
                          "or a saved .keras model, instead of downloading")


def add_commands(commands) -> None:
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
        _add_model_arguments(sub)
        sub.set_defaults(run=run)
    _add_evaluate(commands)
