"""Getting a published checkpoint onto this machine: ``fetch`` a manifest entry or a URL. Knows nothing of Keras.

Plain URLs go through ``vit_zoo.weights.http`` (locked, resumable, verified downloads into
``VIT_ZOO_HOME/downloads``); Hugging Face repos through ``vit_zoo.weights.hub`` (huggingface_hub and its
cache). Both fail the same ways, with the errors below; a server that cannot be reached at all (unknown
host, refused connection, no route) fails at once, and every "not here" error says how to provide the file.

Environment: ``VIT_ZOO_HOME`` (cache root), ``VIT_ZOO_OFFLINE`` / ``HF_HUB_OFFLINE`` (no network),
``VIT_ZOO_GCS_ENDPOINT`` (replaces ``https://storage.googleapis.com``), ``HF_ENDPOINT``,
``VIT_ZOO_CONNECT_TIMEOUT`` / ``VIT_ZOO_READ_TIMEOUT`` (seconds), ``VIT_ZOO_RETRIES``,
``VIT_ZOO_BACKOFF`` (seconds before the first retry, doubled each time), ``VIT_ZOO_PROGRESS=0`` (quiet).
"""
from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from vit_zoo.weights import cache

GCS_HOST = "https://storage.googleapis.com"
_TRUE = ("1", "true", "yes", "on")
_NO_ROUTE = (errno.ENETUNREACH, errno.EHOSTUNREACH)


class DownloadError(RuntimeError):
    """A download failed (HTTP error, timeouts, retries exhausted); the message names the URL and tag."""


class VerificationError(DownloadError):
    """A downloaded file does not match its expected size or hash; the file has been deleted."""


class OfflineError(DownloadError):
    """Offline mode is on and the file is not in the cache; the message says how to provide it."""


class UnreachableError(DownloadError):
    """The server cannot be reached at all (no network, unknown host, refused connection) and the file is
    not in the cache; the message says how to provide it."""


@dataclass(frozen=True)
class Settings:
    """How patient downloads are, from the environment (see the module docstring)."""
    connect_timeout: float   # seconds to open a connection
    read_timeout: float      # seconds without a byte before a read gives up
    retries: int             # attempts after the first, on connection errors, 5xx and short bodies
    backoff: float           # seconds before the first retry, doubled for each further one


def _env_float(name, default) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def settings() -> Settings:
    """The download settings now in the environment."""
    return Settings(connect_timeout=_env_float("VIT_ZOO_CONNECT_TIMEOUT", 10.0),
                    read_timeout=_env_float("VIT_ZOO_READ_TIMEOUT", 60.0),
                    retries=int(_env_float("VIT_ZOO_RETRIES", 5)),
                    backoff=_env_float("VIT_ZOO_BACKOFF", 1.0))


def is_offline() -> bool:
    """True when ``VIT_ZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to 1/true/yes/on."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("VIT_ZOO_OFFLINE", "HF_HUB_OFFLINE"))


def rewrite_url(url: str) -> str:
    """``url`` with ``https://storage.googleapis.com`` replaced by ``VIT_ZOO_GCS_ENDPOINT`` when that is set."""
    endpoint = os.environ.get("VIT_ZOO_GCS_ENDPOINT", "").rstrip("/")
    if endpoint and url.startswith(GCS_HOST + "/"):
        return endpoint + url[len(GCS_HOST):]
    return url


def label(entry: dict) -> str:
    """``model.tag`` of a manifest entry (or its ``key``); empty for a bare URL."""
    return entry["key"] if entry.get("key") else (f"{entry['model']}.{entry['tag']}" if entry.get("tag") else "")


def fetch(entry_or_url, *, progress=None) -> Path:
    """Return a local path for a manifest entry (dict) or a URL, downloading it first when needed.

    For ``url`` entries and plain URLs: the verified file under ``VIT_ZOO_HOME/downloads`` (checked against
    the entry's ``sha256`` and ``size`` in bytes, and the server's own md5). For ``hf`` entries: the
    snapshot directory holding ``config.json`` and the weights file; for ``timm`` entries: the weights file
    (both in huggingface_hub's cache). ``progress``: True/False, or None for a bar only on a terminal.

    Raises:
        DownloadError, VerificationError, OfflineError, UnreachableError: each naming the URL (or repo) and tag.
    """
    entry = entry_or_url if isinstance(entry_or_url, dict) else {"url": str(entry_or_url)}
    if entry.get("hf_repo"):
        from vit_zoo.weights import hub

        return hub.fetch_repo_file(entry)
    from vit_zoo.weights import http

    return http.fetch_url(entry["url"], label(entry), sha256=entry.get("sha256"), size=entry.get("size"),
                          progress=progress)


def unreachable_cause(error: BaseException):
    """The ``OSError`` behind ``error`` when the server could not be reached at all (unknown host, refused
    connection, no route to it), else None. Retrying cannot mend those; timeouts and dropped connections
    are not among them."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (socket.gaierror, ConnectionRefusedError)) or (
                isinstance(error, OSError) and error.errno in _NO_ROUTE):
            return error
        error = error.__cause__ or error.__context__
    return None


def not_available_message(what: str, reason: str, *, expected_at, copy_to: str, mirror: str) -> str:
    """The message of an offline or unreachable failure: what is missing, why, where it was looked for,
    and the ways to provide it without this download."""
    return (f"{reason}, and {what} is not in the cache.\n"
            f"  expected at: {expected_at}\n"
            f"  to provide it: copy the file {copy_to}; or serve a mirror and set {mirror}; "
            f"or load a local copy with vit_zoo.load(NAME, weights=PATH) (vit-zoo ... --weights PATH)")


def offline_reason() -> str:
    return "offline mode is on (VIT_ZOO_OFFLINE / HF_HUB_OFFLINE; unset it to download)"


def unreachable_reason(host, cause: BaseException) -> str:
    return f"cannot reach {host!r} ({cause.strerror or cause}; no internet access here?)"


def verification_problems(path: Path, *, sizes=(), sha256=None, md5=()) -> list[str]:
    """What is wrong with the finished file ``path``; empty when nothing is.

    ``sizes``: (label, expected bytes or None) pairs; ``sha256``: expected hex digest or None; ``md5``:
    (label, expected digest bytes) pairs. Hashes are read (in one pass) only when every size matches.
    """
    got = path.stat().st_size
    problems = [f"{name}: expected {expected} bytes, got {got}" for name, expected in sizes
                if expected is not None and expected != got]
    if problems or not (sha256 or md5):
        return problems
    digests = cache.file_digests(path, "sha256", *(["md5"] if md5 else []))
    if sha256 and digests["sha256"].hex() != sha256.lower():
        problems.append(f"sha256: expected {sha256}, got {digests['sha256'].hex()}")
    problems += [f"md5 ({name}): expected {expected.hex()}, got {digests['md5'].hex()}" for name, expected in md5
                 if expected != digests["md5"]]
    return problems
