"""The pretrained-weights manifest: which checkpoints exist, where they live and what they were trained with.

The packaged ``weights_manifest.json`` is merged with the extra manifests named in ``VIT_ZOO_MANIFEST``
(``os.pathsep``-separated paths, same schema; a later entry replaces an earlier one with the same
``model.tag`` key, and a later ``default: true`` replaces an earlier default of that model). Every file is
validated field by field before use; an invalid file raises one :class:`ManifestError` listing every
problem with its file and entry.

Example:
    >>> entry = resolve("vit-base-16", True)
    >>> entry["key"], entry["image_size"]
    ('vit-base-16.augreg-in21k-ft-in1k-224', 224)
"""
from __future__ import annotations

import copy
import json
import os
import re
import site
import sys
import sysconfig
from pathlib import Path

from vit_zoo.model.config import POOLINGS
from vit_zoo.model.identity import LABEL_SET_SIZES, Preprocessing
from vit_zoo.model.variants import list_models, resolve_name

MANIFEST_FILENAME = "weights_manifest.json"
MANIFEST_ENV = "VIT_ZOO_MANIFEST"
SCHEMA_VERSION = 1

# Formats downloaded from a plain URL, and formats downloaded from a Hugging Face Hub repo.
URL_FORMATS = ("google-npz", "big-vision-npz", "deit-pth", "meta-dinov2")
HUB_FORMATS = ("hf", "timm")
FORMATS = URL_FORMATS + HUB_FORMATS
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


def packaged_manifest_path() -> Path:
    """The manifest shipped with vit_zoo: at the top of the source tree (a checkout or an editable
    install), or under ``<data prefix>/share/vit_zoo`` where an install puts it (setup.cfg ``data_files``;
    the user scheme's prefix for ``pip install --user``)."""
    source_tree = Path(__file__).resolve().parents[2]
    prefixes = dict.fromkeys((sysconfig.get_path("data"), sys.prefix, site.getuserbase()))
    candidates = [source_tree / MANIFEST_FILENAME] + [Path(prefix) / "share" / "vit_zoo" / MANIFEST_FILENAME
                                                      for prefix in prefixes if prefix]
    for path in candidates:
        if path.is_file():
            return path
    raise ManifestError(f"packaged {MANIFEST_FILENAME} not found; looked in: "
                        f"{', '.join(str(p) for p in candidates)}. Reinstall vit-zoo, or set {MANIFEST_ENV}")


def extra_manifest_paths() -> list[Path]:
    """Paths listed in ``VIT_ZOO_MANIFEST`` (``os.pathsep``-separated), in order; empty items are skipped."""
    value = os.environ.get(MANIFEST_ENV, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


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
        if e.get("format") != "meta-dinov2":
            problems.append(f"{label}: 'head_url' is for format 'meta-dinov2' (a head file beside its backbone), "
                            f"not {e.get('format')!r}")
        elif not has_url or e["head_url"].rsplit("/", 1)[0] != e["url"].rsplit("/", 1)[0]:
            problems.append(f"{label}: 'head_url' must sit in the same folder as 'url' (the head is read from "
                            f"beside the backbone)")
        if not e.get("num_classes"):
            problems.append(f"{label}: 'head_url' gives the checkpoint a head: 'num_classes' must be its size")
    if e.get("top1") is not None and not e.get("top1_source"):
        problems.append(f"{label}: 'top1' needs 'top1_source' (where the accuracy was published)")
    if e.get("labels") is None and e.get("num_classes"):
        problems.append(f"{label}: 'labels' may be null only for a headless checkpoint (num_classes 0)")
    labels, classes = e.get("labels"), e.get("num_classes")
    count = LABEL_SET_SIZES.get(labels) if isinstance(labels, str) else len(labels) if isinstance(labels, list) else None
    if count is not None and classes and count != classes:
        named = repr(labels) if isinstance(labels, str) else "(a list)"
        problems.append(f"{label}: 'labels' {named} has {count} classes but 'num_classes' is {classes}")
    return problems


def parse_manifest(data, origin="<manifest>") -> list[dict]:
    """Validate a decoded manifest (``{"schema_version": 1, "entry_defaults": {...}, "entries": [...]}``) and
    return its entries with defaults filled in plus ``key`` (``model.tag``) and ``origin``.

    Raises:
        ManifestError: listing every problem, each with the file and entry it concerns.
    """
    if not isinstance(data, dict):
        raise ManifestError(f"{origin}: expected a JSON object with 'schema_version' and 'entries', "
                            f"got {type(data).__name__}")
    problems = []
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        problems.append(f"{origin}: 'schema_version' is {version!r}; this vit_zoo reads {SCHEMA_VERSION}")
    unknown = set(data) - {"schema_version", "description", "entry_defaults", "entries"}
    if unknown:
        problems.append(f"{origin}: unknown top-level field(s) {', '.join(sorted(unknown))}; "
                        "expected schema_version, description, entry_defaults, entries")
    defaults = data.get("entry_defaults", {})
    if not isinstance(defaults, dict):
        problems.append(f"{origin}: 'entry_defaults' must be an object")
        defaults = {}
    raw = data.get("entries")
    if not isinstance(raw, list):
        problems.append(f"{origin}: 'entries' must be a list of objects")
        raw = []
    entries, seen, defaults_per_model = [], {}, {}
    for i, item in enumerate(raw):
        entry, entry_problems = validate_entry(item, defaults, where=f"{origin} entries[{i}]")
        problems += entry_problems
        if entry_problems:
            continue
        key = f"{entry['model']}.{entry['tag']}"
        if key in seen:
            problems.append(f"{origin} entries[{i}]: duplicate key {key!r} (first at entries[{seen[key]}])")
        seen[key] = i
        if entry["default"]:
            defaults_per_model.setdefault(entry["model"], []).append(entry["tag"])
        entries.append({**entry, "key": key, "origin": str(origin)})
    for model, tags in defaults_per_model.items():
        if len(tags) > 1:
            problems.append(f"{origin}: {model} has {len(tags)} entries marked default ({', '.join(tags)}); "
                            "mark exactly one")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ManifestError(f"invalid weights manifest {origin} ({len(problems)} problem(s)):\n  "
                            + "\n  ".join(shown))
    return entries


def read_manifest(path) -> list[dict]:
    """Read and validate one manifest file; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ManifestError(f"cannot read weights manifest {path} (from {MANIFEST_ENV} or the package): {err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ManifestError(f"weights manifest {path} is not valid JSON: line {err.lineno} column {err.colno}: "
                            f"{err.msg}") from err
    return parse_manifest(data, origin=path)


_cache: dict = {}


def load_manifest() -> dict[str, dict]:
    """All entries, packaged then ``VIT_ZOO_MANIFEST`` files, keyed by ``model.tag`` (later wins).

    The result is cached per combination of file paths and modification times; callers get copies.
    """
    paths = [packaged_manifest_path(), *extra_manifest_paths()]
    stamp = tuple((str(p), p.stat().st_mtime_ns if p.exists() else None) for p in paths)
    if stamp not in _cache:
        merged: dict[str, dict] = {}
        for path in paths:
            for entry in read_manifest(path):
                merged.pop(entry["key"], None)  # re-insert so the order follows the files
                merged[entry["key"]] = entry
        # The default of a model is its last entry marked default, in file order: a later file's default
        # wins, and replacing a default entry with a non-default one restores the earlier default.
        last_default = {e["model"]: key for key, e in merged.items() if e["default"]}
        for key, e in merged.items():
            e["default"] = last_default.get(e["model"]) == key
        _cache.clear()
        _cache[stamp] = merged
    return copy.deepcopy(_cache[stamp])


def list_weights(model=None) -> list[dict]:
    """Manifest entries (dicts, see ``ENTRY_SCHEMA``), all or those of one model (any alias accepted)."""
    entries = list(load_manifest().values())
    if model is None:
        return entries
    name, _ = resolve_name(model)
    return [e for e in entries if e["model"] == name]


def resolve(model, tag=True) -> dict:
    """The entry for ``model`` and ``tag``: ``True``/``None`` is the model's default, a string a named tag
    (``"vit-base-16.TAG"`` full keys are accepted too).

    Raises:
        ManifestError: the tag is unknown (the message lists the model's tags) or the model has no weights.
    """
    name, _ = resolve_name(model)
    entries = [e for e in load_manifest().values() if e["model"] == name]
    if not entries:
        with_weights = sorted({e["model"] for e in load_manifest().values()})
        raise ManifestError(f"no pretrained weights are known for {name}; models with weights: "
                            f"{', '.join(with_weights)}. Pass weights=PATH for a local checkpoint, or add an entry "
                            f"via {MANIFEST_ENV}")
    if tag is True or tag is None:
        chosen = [e for e in entries if e["default"]]
        if not chosen:
            raise ManifestError(f"{name} has no default weights in the manifest; name one of: "
                                f"{', '.join(e['tag'] for e in entries)}")
        return chosen[-1]
    if not isinstance(tag, str):
        raise ManifestError(f"pretrained must be True or a tag string, got {tag!r}")
    wanted = tag[len(name) + 1:] if tag.startswith(name + ".") else tag
    for entry in entries:
        if entry["tag"] == wanted:
            return entry
    raise ManifestError(f"unknown weights tag {tag!r} for {name}; known tags: "
                        f"{', '.join(e['tag'] + (' (default)' if e['default'] else '') for e in entries)}. "
                        f"See `vit-zoo weights {name}`")
