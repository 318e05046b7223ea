"""The on-disk cache under ``VIT_ZOO_HOME`` (default ``~/.cache/vit_zoo``).

Layout::

    $VIT_ZOO_HOME/
      downloads/<host or 'gcs'>/<url path>          checkpoints as published (verified, renamed atomically)
      downloads/.../<file>.lock, <file>.partial      per-artifact lock; an interrupted download kept for resume
      converted/<model>/<tag>/<H>x<W>-v<N>.weights.h5        Keras weights converted once
      converted/<model>/<tag>/<H>x<W>-v<N>.weights.h5.json   sidecar: sha256, size, source, format version

Hugging Face downloads live in huggingface_hub's own cache (``HF_HOME``), not here.
Nothing here knows about Keras: converted files are opaque bytes with a sidecar.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from vit_zoo.files import write_json

HOME_ENV = "VIT_ZOO_HOME"
SIDECAR_SUFFIX = ".json"
_HASH_CHUNK = 8 * 2**20  # bytes read per step when hashing


def cache_root() -> Path:
    """``$VIT_ZOO_HOME`` or ``~/.cache/vit_zoo`` (not created here)."""
    return Path(os.environ.get(HOME_ENV) or Path("~/.cache/vit_zoo")).expanduser()


def downloads_dir() -> Path:
    return cache_root() / "downloads"


def converted_dir() -> Path:
    return cache_root() / "converted"


def _safe_parts(parts) -> list[str]:
    out = [p for p in parts if p not in ("", ".", "..")]
    if not out:
        raise ValueError("URL has no file name to cache it under")
    return [p.replace("\\", "_").replace(":", "_") for p in out]


def download_path(url: str) -> Path:
    """Where the file of ``url`` is cached: ``downloads/gcs/<path>`` for Google Cloud Storage URLs (so a
    mirror set with ``VIT_ZOO_GCS_ENDPOINT`` shares the entry), else ``downloads/<host>/<path>``."""
    parts = urlsplit(url)
    host = "gcs" if parts.netloc in ("storage.googleapis.com", "") else parts.netloc
    return downloads_dir().joinpath(*_safe_parts([host, *unquote(parts.path).split("/")]))


def _size_text(image_size) -> str:
    if isinstance(image_size, int):
        return f"{image_size}x{image_size}"
    height, width = (int(v) for v in image_size)
    return f"{height}x{width}"


def converted_path(entry, image_size, format_version) -> Path:
    """Path of the converted Keras weights of manifest ``entry`` at ``image_size`` (int or (H, W) pixels)
    written by converter format ``format_version`` (int or str): ``converted/<model>/<tag>/<H>x<W>-v<N>.weights.h5``."""
    return converted_dir() / entry["model"] / entry["tag"] / f"{_size_text(image_size)}-v{format_version}.weights.h5"


def sidecar_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def file_digests(path, *algorithms: str) -> dict[str, bytes]:
    """Digests of a file read once, in 8 MiB chunks: ``{name: digest bytes}`` for each hashlib name
    in ``algorithms`` (default ``"sha256"``)."""
    # integrity checks, not security: FIPS builds allow md5 for this
    hashes = {name: hashlib.new(name, usedforsecurity=False) for name in algorithms or ("sha256",)}
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            for digest in hashes.values():
                digest.update(chunk)
    return {name: digest.digest() for name, digest in hashes.items()}


def file_sha256(path) -> str:
    """Hex sha256 of a file."""
    return file_digests(path, "sha256")["sha256"].hex()


def write_sidecar(path, *, source, format_version, extra=None) -> Path:
    """Record the sha256 and size of the finished file ``path``, the ``source`` it was converted from (a
    manifest key, URL or path) and the converter ``format_version``; write it next to ``path`` atomically.
    Call it after the weights file is complete (ideally written to a temp name and renamed)."""
    path = Path(path)
    record = {"file": path.name, "sha256": file_sha256(path), "size": path.stat().st_size,
              "source": str(source), "format_version": str(format_version), **(extra or {})}
    sidecar = sidecar_path(path)
    write_json(sidecar, record)
    return sidecar


def read_sidecar(path) -> dict | None:
    """The sidecar of ``path`` as a dict, or None when it is missing or unreadable."""
    try:
        return json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_valid(path, *, source=None, format_version=None, check_hash=True) -> bool:
    """True when ``path`` exists and matches its sidecar: size, sha256 (unless ``check_hash=False``), and the
    given ``source`` / ``format_version``. A False answer means: rebuild it (``remove_entry`` then convert)."""
    path = Path(path)
    record = read_sidecar(path)
    if record is None or not path.is_file():
        return False
    if record.get("size") != path.stat().st_size:
        return False
    if source is not None and record.get("source") != str(source):
        return False
    if format_version is not None and record.get("format_version") != str(format_version):
        return False
    return not check_hash or record.get("sha256") == file_sha256(path)


def remove_entry(path) -> None:
    """Delete a cached file and its sidecar (missing files are fine)."""
    for p in (Path(path), sidecar_path(path)):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


@dataclass(frozen=True)
class CacheItem:
    path: Path      # absolute path
    relative: str   # path relative to the cache root, '/'-separated
    kind: str       # 'download', 'partial' (an interrupted download) or 'converted'
    size: int       # bytes


def _kind(relative: str) -> str | None:
    name = relative.rsplit("/", 1)[-1]
    if name.endswith((".lock", SIDECAR_SUFFIX, ".tmp", ".meta")):
        return None
    if ".part" in name:
        return "partial"
    return "converted" if relative.startswith("converted/") else "download"


def list_cache() -> list[CacheItem]:
    """Every cached checkpoint, converted file and partial download, with sizes, sorted by path."""
    root = cache_root()
    items = []
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if not path.is_file():
                continue
            relative = path.relative_to(root).as_posix()
            kind = _kind(relative)
            if kind:
                items.append(CacheItem(path, relative, kind, path.stat().st_size))
    return items


def clear_cache(pattern=None) -> list[CacheItem]:
    """Delete cached items whose cache-relative path matches the glob ``pattern`` (all when None), with
    their sidecars, locks and resume metadata; return what was deleted. Never touches files outside the root."""
    root = cache_root().resolve()
    removed = []
    for item in list_cache():
        if pattern is not None and not (fnmatch.fnmatch(item.relative, pattern)
                                        or fnmatch.fnmatch(item.relative, f"*{pattern}*")):
            continue
        if root not in item.path.resolve().parents:
            continue
        for extra in (sidecar_path(item.path), item.path.with_name(item.path.name + ".lock"),
                      item.path.with_name(item.path.name + ".meta")):
            if extra.exists():
                extra.unlink()
        item.path.unlink(missing_ok=True)
        removed.append(item)
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            directory.rmdir()  # only succeeds when empty
        except OSError:
            pass
    return removed
