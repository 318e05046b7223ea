"""The schema of a weights-manifest entry: each field's check and meaning, and the checks across fields.
``validate_entry`` gives every problem of an entry at once; ``vit_zoo.weights.manifest`` reads the files."""
from __future__ import annotations

import re

from vit_zoo.model.checkpoint_formats import HUB_FORMATS, META_DINOV2, URL_FORMATS
from vit_zoo.model.checkpoint_formats import MANIFEST_FORMATS as FORMATS
from vit_zoo.model.config import POOLINGS
from vit_zoo.model.identity import LABEL_SET_SIZES, Preprocessing
from vit_zoo.model.variants import list_models

LABEL_SETS = tuple(LABEL_SET_SIZES)

_TAG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class ManifestError(ValueError):
    """A manifest file is unreadable or breaks the schema, or a model/tag is not in the manifest."""


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _preprocessing(v):
    """A ``Preprocessing`` recipe written out: ``{"recipe", "crop_pct", "interpolation"}``, all three."""
    if not isinstance(v, dict) or set(v) != {"recipe", "crop_pct", "interpolation"}:
        return False
    try:
        Preprocessing(**v)
    except ValueError:
        return False
    return True


def _triple(v):
    return isinstance(v, list) and len(v) == 3 and all(_is_number(x) and x >= 0 for x in v)


# field -> (required, check, what the check expects). Optional fields may also be null.
ENTRY_SCHEMA = {
    "tag": (True, lambda v: isinstance(v, str) and bool(_TAG.match(v)),
            "lower-case letters, digits, '-' or '_' (no '.': the full key is MODEL.TAG)"),
    "model": (True, lambda v: v in list_models(), "a variant name from vit_zoo.list_models(), e.g. 'vit-base-16'"),
    "format": (True, lambda v: v in FORMATS, f"one of {', '.join(FORMATS)}"),
    "url": (False, lambda v: isinstance(v, str) and v.startswith(("https://", "http://", "file://")),
            "an http(s):// or file:// URL"),
    "head_url": (False, lambda v: isinstance(v, str) and v.startswith(("https://", "http://", "file://")),
                 "the URL of a classifier head published as a file of its own, beside 'url' (Meta's DINOv2 "
                 "..._linear_head.pth)"),
    "hf_repo": (False, lambda v: isinstance(v, str) and bool(_HF_REPO.match(v)), "a Hub repo id 'owner/name'"),
    "filename": (False, lambda v: isinstance(v, str) and v and not v.startswith("/") and ".." not in v,
                 "a file name inside the repo"),
    "revision": (False, lambda v: isinstance(v, str) and bool(v), "a branch, tag, PR ref or commit hash"),
    "sha256": (True, lambda v: isinstance(v, str) and bool(_SHA256.match(v)), "64 lower-case hex digits or null"),
    "size": (True, lambda v: _is_int(v) and v > 0, "the file size in bytes (int > 0) or null"),
    "approx_size": (False, lambda v: isinstance(v, str), "a human-readable size as the publisher lists it"),
    "image_size": (True, lambda v: _is_int(v) and v > 0, "the training resolution in pixels (int)"),
    "num_classes": (True, lambda v: _is_int(v) and v >= 0, "number of head outputs; 0 for a headless checkpoint"),
    "labels": (True, lambda v: v in LABEL_SETS or (isinstance(v, list) and all(isinstance(n, str) for n in v)),
               f"one of {', '.join(LABEL_SETS)} or a list of the class names (null only when num_classes is 0)"),
    "mean": (True, _triple, "three per-channel means of [0, 1] pixels"),
    "std": (True, _triple, "three per-channel standard deviations of [0, 1] pixels"),
    "pooling": (True, lambda v: v in POOLINGS, f"one of {', '.join(POOLINGS)}"),
    "preprocessing": (False, _preprocessing,
                      "the publisher's evaluation transform {\"recipe\": \"timm\" | \"google\" | \"hf\", \"crop_pct\": "
                      "fraction in (0, 1] (1 for google / hf), \"interpolation\": \"bilinear\" | \"bicubic\"}; "
                      "absent: the format's default (vit_zoo.model.identity.source_preprocessing)"),
    "representation_size": (True, lambda v: _is_int(v) and v > 0, "the pre-logits width (int) or null"),
    "top1": (True, lambda v: _is_number(v) and 0 < v <= 100, "ImageNet top-1 in percent, or null"),
    "top1_source": (True, lambda v: isinstance(v, str) and bool(v), "where top1 was published (required with top1)"),
    "zero_shot_top1": (False, lambda v: _is_number(v) and 0 < v <= 100,
                       "an image tower's zero-shot ImageNet top-1 in percent (with its text tower), or null"),
    "zero_shot_top1_source": (False, lambda v: isinstance(v, str) and bool(v),
                              "where zero_shot_top1 was published (required with zero_shot_top1)"),
    "license": (True, lambda v: isinstance(v, str) and bool(v), "an SPDX-like licence id"),
    "default": (True, lambda v: isinstance(v, bool), "true or false"),
    "zero_head": (False, lambda v: isinstance(v, bool), "true when the published head is all zeros"),
    "same_weights_as": (False, lambda v: isinstance(v, str) and bool(_TAG.match(v)), "the tag of an entry with the same weights"),
    "source": (True, lambda v: isinstance(v, str) and bool(v), "the publisher's index or model card this entry is taken from"),
    "notes": (False, lambda v: isinstance(v, str), "free text"),
}
_NULLABLE_REQUIRED = {"sha256", "size", "labels", "representation_size", "top1", "top1_source"}
# Filled in when neither the entry nor its file's "entry_defaults" give them: "unknown" / "none" values only.
# Numerics that change results (mean, std, pooling) must always be stated.
BUILTIN_DEFAULTS = {"sha256": None, "size": None, "representation_size": None, "top1": None, "top1_source": None,
                    "zero_head": False}


def validate_entry(entry, defaults=None, where="entry") -> tuple[dict, list[str]]:
    """Return ``(entry with defaults filled in, problems)``; ``problems`` is empty for a valid entry."""
    if not isinstance(entry, dict):
        return {}, [f"{where}: expected an object, got {type(entry).__name__}"]
    full = {**BUILTIN_DEFAULTS, **(defaults or {}), **entry}
    label = f"{where} ({full.get('model', '?')}.{full.get('tag', '?')})"
    problems = []
    for field in sorted(set(full) - set(ENTRY_SCHEMA)):
        close = [k for k in ENTRY_SCHEMA if k.replace("_", "") == field.replace("_", "").lower()]
        hint = f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(ENTRY_SCHEMA)}"
        problems.append(f"{label}: unknown field {field!r}{hint}")
    for field, (required, check, expected) in ENTRY_SCHEMA.items():
        if field not in full:
            if required:
                problems.append(f"{label}: missing field {field!r} (expected {expected})")
            continue
        value = full[field]
        if value is None and (field in _NULLABLE_REQUIRED or not required):
            continue
        if not check(value):
            problems.append(f"{label}: field {field!r} is {value!r}; expected {expected}")
    problems += _cross_field_problems(full, label)
    return full, problems


def _cross_field_problems(e, label) -> list[str]:
    problems = []
    has_url, has_repo = e.get("url") is not None, e.get("hf_repo") is not None
    if has_url == has_repo:
        problems.append(f"{label}: give exactly one of 'url' or 'hf_repo' (got {'both' if has_url else 'neither'})")
    if has_repo and not e.get("filename"):
        problems.append(f"{label}: 'hf_repo' needs 'filename' (the weights file inside the repo)")
    if e.get("format") in URL_FORMATS and has_repo:
        problems.append(f"{label}: format {e['format']!r} is downloaded from a 'url', not an 'hf_repo'")
    if e.get("format") in HUB_FORMATS and has_url:
        problems.append(f"{label}: format {e['format']!r} is downloaded from an 'hf_repo', not a 'url'")
    if e.get("head_url") is not None:
        if e.get("format") != META_DINOV2:
            problems.append(f"{label}: 'head_url' is for format {META_DINOV2!r} (a head file beside its backbone), "
                            f"not {e.get('format')!r}")
        elif not has_url or e["head_url"].rsplit("/", 1)[0] != e["url"].rsplit("/", 1)[0]:
            problems.append(f"{label}: 'head_url' must sit in the same folder as 'url' (the head is read from "
                            f"beside the backbone)")
        if not e.get("num_classes"):
            problems.append(f"{label}: 'head_url' gives the checkpoint a head: 'num_classes' must be its size")
    if e.get("top1") is not None and not e.get("top1_source"):
        problems.append(f"{label}: 'top1' needs 'top1_source' (where the accuracy was published)")
    if e.get("zero_shot_top1") is not None and not e.get("zero_shot_top1_source"):
        problems.append(f"{label}: 'zero_shot_top1' needs 'zero_shot_top1_source' (where the accuracy was "
                        f"published)")
    if e.get("labels") is None and e.get("num_classes"):
        problems.append(f"{label}: 'labels' may be null only for a headless checkpoint (num_classes 0)")
    labels, classes = e.get("labels"), e.get("num_classes")
    count = LABEL_SET_SIZES.get(labels) if isinstance(labels, str) else len(labels) if isinstance(labels, list) else None
    if count is not None and classes and count != classes:
        named = repr(labels) if isinstance(labels, str) else "(a list)"
        problems.append(f"{label}: 'labels' {named} has {count} classes but 'num_classes' is {classes}")
    return problems
