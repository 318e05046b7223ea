"""Options several commands share: which model (``--model NAME[:TAG]`` or ``--weights PATH``) and
``--labels FILE`` (class names that override the model's own)."""
from __future__ import annotations

DEFAULT_MODEL = "vit-base-16"
LABELS_HELP = ("class names, one per line in class-index order (line 1 is class 0); overrides the model's own "
               "(model.identity.labels)")


def add_model_options(sub, *, exported: bool = False) -> None:
    """``--model``, ``--weights`` and ``--labels`` on a command's parser; ``exported``: ``--weights`` may
    also name an exported model (SavedModel folder, .tflite, .onnx)."""
    sub.add_argument("--model", default=DEFAULT_MODEL,
                     help="NAME[:TAG] of published weights (NAME alone: its default tag), downloaded once")
    kinds = ".npz, Hugging Face folder, timm .safetensors, .weights.h5, .keras"
    if exported:
        kinds += ", or an exported SavedModel folder, .tflite or .onnx"
    sub.add_argument("--weights", default=None, help=f"a local checkpoint ({kinds}) instead of downloading "
                     f"(default: none, --model's published weights)")
    add_labels_option(sub)


def add_labels_option(sub) -> None:
    sub.add_argument("--labels", default=None, metavar="FILE", help=LABELS_HELP + " (default: the model's)")


def with_labels(model, labels_file):
    """``model`` (a vit_zoo model or an ``ExportedModel``) with the class names of ``labels_file`` in its
    identity, when a file is given; an error naming the file when its count does not match the head."""
    if labels_file is None:
        return model
    from vit_zoo import identity_of, read_label_file

    identity = identity_of(model)
    if identity is None:
        raise ValueError(f"--labels needs a vit_zoo model (one with model.identity); {model.name!r} has none")
    model.identity = identity.replace(labels=read_label_file(labels_file, identity.class_count))
    return model


def load_model(args, *, exported: bool = False, **options):
    """The model a command asks for, with ``--labels`` applied: ``--weights PATH`` (any checkpoint
    ``vit_zoo.load`` reads, ``.keras`` included; with ``exported``, also an exported model, as an
    ``ExportedModel``), else the published weights ``--model NAME[:TAG]``. ``options``: of ``vit_zoo.load``."""
    import vit_zoo
    from vit_zoo import ExportedModel, is_exported

    weights = getattr(args, "weights", None)
    name, _, tag = args.model.partition(":")
    precision = getattr(args, "precision", None)
    if weights and is_exported(weights):
        if not exported:
            raise ValueError(f"'{weights}' is an exported model, which only `vit-zoo predict` runs; give the "
                             f".keras file or checkpoint it was exported from")
        model = ExportedModel(weights, precision=precision or "fp32")
    elif precision is not None:
        raise ValueError(f"--precision {precision} sets the compute precision of an OpenVINO export (--weights "
                         f"model.xml); a Keras model runs in the precision it was built with")
    elif weights:
        model = vit_zoo.load(name if args.model_given else None, weights=weights, **options)
    else:
        model = vit_zoo.load(name, pretrained=tag or True, **options)
    return with_labels(model, args.labels)
