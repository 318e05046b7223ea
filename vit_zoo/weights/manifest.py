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
import site
import sys
import sysconfig
from pathlib import Path

from vit_zoo.model.variants import resolve_name
from vit_zoo.weights.manifest_schema import (  # noqa: F401 (re-exported: the manifest's errors and formats)
    FORMATS, ManifestError, validate_entry)

MANIFEST_FILENAME = "weights_manifest.json"
MANIFEST_ENV = "VIT_ZOO_MANIFEST"
SCHEMA_VERSION = 1

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
