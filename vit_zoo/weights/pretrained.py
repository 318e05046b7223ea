"""Published weights: a manifest entry → a converted ``.weights.h5`` in the cache, converted once.

The first load downloads the checkpoint (``vit_zoo.weights.download``) and converts it at its own size into
``$VIT_ZOO_HOME/converted/<model>/<tag>/<H>x<W>-v<N>.weights.h5`` with a sidecar recording its sha256,
source and config; later loads read that file (a vit_zoo "keras" checkpoint). A stale or corrupt entry
fails ``cache.is_valid`` and is rebuilt. A file lock keeps concurrent processes from converting twice.
"""
from __future__ import annotations

import gc
import warnings
from pathlib import Path

from filelock import FileLock

from vit_zoo.files import replace_atomically
from vit_zoo.weights import cache
from vit_zoo.weights import download
from vit_zoo.weights import manifest
from vit_zoo.model import checkpoint_formats
from vit_zoo.model.config import ViTConfig
from vit_zoo.model.identity import Preprocessing, source_preprocessing
from vit_zoo.weights.convert import load_checkpoint

# Bump when the converted layout changes: older cache entries are then rebuilt.
# 2: the converted file carries the identity record (the sidecar no longer holds the config).
CONVERTED_FORMAT_VERSION = 2
HF_HUB_PREFIX = "hf-hub:"


def resolve_entry(name, pretrained) -> dict:
    """The manifest entry for ``name`` and ``pretrained`` (True → default; or a tag / "model.tag")."""
    if name is None:
        if isinstance(pretrained, str) and "." in pretrained:
            name = pretrained.split(".", 1)[0]
        else:
            raise ValueError("pretrained= needs a model name: load('vit-base-16', pretrained=True), or a full "
                             "key such as pretrained='vit-base-16.augreg-in21k-ft-in1k-224'")
    return manifest.resolve(name, pretrained)


def download_weights(weights: str, *, progress=None) -> Path:
    """Download and convert published weights into the cache now, so that later loads (also offline) find
    them: ``"vit-base-16"`` (its default weights) or ``"vit-base-16:TAG"`` (see ``vit_zoo.list_weights``).
    ``progress``: True/False, or None for a bar only on a terminal. Returns the converted ``.weights.h5``.

    Example: ``vit_zoo.download_weights("vit-base-16:augreg-in21k-ft-in1k-224")``
    """
    name, _, tag = weights.partition(":")
    return converted_checkpoint(resolve_entry(name, tag or True), progress=progress)


def entry_facts(entry: dict) -> dict:
    """What a manifest entry states about its checkpoint that the file may not: normalisation, pooling,
    the evaluation transform (the entry's ``preprocessing``, else its format's default), the class names and
    where it comes from (``known`` of ``load_checkpoint``)."""
    source = entry.get("url") or f"{HF_HUB_PREFIX}{entry['hf_repo']}/{entry['filename']}"
    stated = entry.get("preprocessing")
    return {"config": {"mean": tuple(entry["mean"]), "std": tuple(entry["std"]), "pooling": entry["pooling"]},
            "preprocessing": Preprocessing(**stated) if stated
            else source_preprocessing(entry["format"], (entry["image_size"],) * 2),
            "labels": (tuple(entry["labels"]) if isinstance(entry["labels"], list) else entry["labels"])
            if entry["num_classes"] else None,
            "provenance": {"manifest_key": entry["key"], "source": source, "revision": entry.get("revision"),
                           "sha256": entry.get("sha256")}}


def converted_checkpoint(entry: dict, progress=None) -> Path:
    """Path of the converted weights of ``entry``, downloading and converting if needed."""
    target = cache.converted_path(entry, entry["image_size"], CONVERTED_FORMAT_VERSION)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not cache.is_valid(target, source=entry["key"], format_version=CONVERTED_FORMAT_VERSION):
            cache.remove_entry(target)
            if entry.get("head_url"):  # a head file of its own lands beside the backbone, where it is read
                download.fetch({"url": entry["head_url"], "key": f"{entry['key']} (head)"}, progress=progress)
            source = download.fetch(entry, progress=progress)
            _convert_to(target, source, entry)
    return target


def _convert_to(target: Path, source, entry: dict) -> None:
    requested = ViTConfig.from_name(entry["model"])
    # A backbone without a head keeps its pooled features; an image tower (CLIP, SigLIP: num_classes 0 by its
    # family) keeps its top, which is the image embedding (projection, MAP head).
    include_top = bool(entry["num_classes"]) or requested.num_classes == 0
    # At the entry's image_size, where its figures were measured: a checkpoint that keeps its own position
    # grid (DINOv2: 37 x 37, evaluated at 224) resamples in the graph; a classic one is stored at that size.
    model, _, _ = load_checkpoint(source, requested=requested, name=entry["model"],
                                  image_size=entry["image_size"], known=entry_facts(entry), include_top=include_top,
                                  pooling=None if include_top else "token" if entry["pooling"] == "token" else "gap")
    try:
        replace_atomically(target, model.save_weights)
    finally:
        del model  # the caller loads the cached file next: do not hold two models
        gc.collect()
    cache.write_sidecar(target, source=entry["key"], format_version=CONVERTED_FORMAT_VERSION)


def hub_checkpoint(reference: str):
    """``"hf-hub:google/vit-base-patch16-224[@REVISION]"`` → (the local snapshot directory with config.json
    and the weights, the facts for ``load_checkpoint``: where the weights came from)."""
    repo = reference[len(HF_HUB_PREFIX):]
    repo, _, revision = repo.partition("@")
    entry = {"hf_repo": repo, "filename": "model.safetensors", "revision": revision or "main",
             "format": checkpoint_formats.HF, "key": reference}
    return download.fetch(entry), {"provenance": {"source": f"{HF_HUB_PREFIX}{repo}",
                                                  "revision": revision or "main"}}


def warn_if_zero_head(entry: dict, include_top: bool, num_classes) -> None:
    if entry.get("zero_head") and include_top and num_classes is None:
        warnings.warn(f"{entry['key']} ships an all-zero classification head (the original ImageNet-21k "
                      f"release): its logits are all zero. Use include_top=False for features, or "
                      f"num_classes=N to fine-tune a new head", UserWarning, stacklevel=3)
