"""Downloads that never lose or corrupt a file. Knows nothing about Keras.

For a plain URL, in this order: take the per-artifact file lock; adopt any partial file an interrupted
download left (in this or another process); stream into a temp file unique to this process with
``Range`` resume, timeouts and retries with exponential backoff on connection errors and 5xx; verify
size, sha256 and the server's own hashes (``x-goog-hash`` md5, an md5 ``ETag``); rename atomically.
A file that fails verification is deleted and the error says expected vs got. Hugging Face repos go
through ``huggingface_hub`` and its cache.

Environment: ``VIT_ZOO_HOME`` (cache root), ``VIT_ZOO_OFFLINE`` / ``HF_HUB_OFFLINE`` (no network),
``VIT_ZOO_GCS_ENDPOINT`` (replaces ``https://storage.googleapis.com``), ``HF_ENDPOINT``,
``VIT_ZOO_CONNECT_TIMEOUT`` / ``VIT_ZOO_READ_TIMEOUT`` (seconds), ``VIT_ZOO_RETRIES``,
``VIT_ZOO_BACKOFF`` (seconds before the first retry, doubled each time), ``VIT_ZOO_PROGRESS=0`` (quiet).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import filelock
import requests
import urllib3

from vit_zoo.weights import cache

GCS_HOST = "https://storage.googleapis.com"
_CHUNK = 2**20  # bytes per read
_TRUE = ("1", "true", "yes", "on")


class DownloadError(RuntimeError):
    """A download failed (HTTP error, timeouts, retries exhausted); the message names the URL and tag."""


class VerificationError(DownloadError):
    """A downloaded file does not match its expected size or hash; the file has been deleted."""


class OfflineError(DownloadError):
    """Offline mode is on and the file is not in the cache; the message says where to put it."""


def _env_float(name, default):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def is_offline() -> bool:
    """True when ``VIT_ZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to 1/true/yes/on."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("VIT_ZOO_OFFLINE", "HF_HUB_OFFLINE"))


def rewrite_url(url: str) -> str:
    """``url`` with ``https://storage.googleapis.com`` replaced by ``VIT_ZOO_GCS_ENDPOINT`` when that is set."""
    endpoint = os.environ.get("VIT_ZOO_GCS_ENDPOINT", "").rstrip("/")
    if endpoint and url.startswith(GCS_HOST + "/"):
        return endpoint + url[len(GCS_HOST):]
    return url


def _label(entry) -> str:
    return entry["key"] if entry.get("key") else (f"{entry['model']}.{entry['tag']}" if entry.get("tag") else "")


def fetch(entry_or_url, *, sha256=None, size=None, progress=None, connect_timeout=None, read_timeout=None,
          retries=None, backoff=None, lock_timeout=None, verify_cached=False) -> Path:
    """Return a local path for a manifest entry (dict) or a URL, downloading it first when needed.

    For ``url`` entries and plain URLs: the verified file under ``VIT_ZOO_HOME/downloads``. For ``hf``
    entries: the snapshot directory holding ``config.json`` and the weights file; for ``timm`` entries: the
    weights file (both in huggingface_hub's cache). ``sha256``/``size`` (bytes) default to the entry's.
    ``progress``: True/False, or None for a bar only on a terminal. Timeouts are seconds; ``retries`` counts
    attempts after the first; ``verify_cached`` re-hashes a file already in the cache.

    Raises:
        DownloadError, VerificationError, OfflineError: each naming the URL (or repo) and tag.
    """
    entry = entry_or_url if isinstance(entry_or_url, dict) else {"url": str(entry_or_url)}
    sha256 = sha256 or entry.get("sha256")
    size = size or entry.get("size")
    if entry.get("hf_repo"):
        return _fetch_hf(entry, sha256=sha256, size=size)
    options = dict(
        connect_timeout=connect_timeout if connect_timeout is not None else _env_float("VIT_ZOO_CONNECT_TIMEOUT", 10.0),
        read_timeout=read_timeout if read_timeout is not None else _env_float("VIT_ZOO_READ_TIMEOUT", 60.0),
        retries=int(retries if retries is not None else _env_float("VIT_ZOO_RETRIES", 5)),
        backoff=backoff if backoff is not None else _env_float("VIT_ZOO_BACKOFF", 1.0),
        lock_timeout=lock_timeout if lock_timeout is not None else _env_float("VIT_ZOO_LOCK_TIMEOUT", -1),
        progress=progress,
    )
    return _fetch_url(entry["url"], _label(entry), sha256=sha256, size=size, verify_cached=verify_cached, **options)


# ---------------------------------------------------------------- plain URLs

def _is_name_resolution_failure(error: Exception) -> bool:
    while error is not None:
        if isinstance(error, urllib3.exceptions.NameResolutionError) or "Name or service not known" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _unreachable_message(url, where, dest) -> str:
    host = urlsplit(url).hostname
    return (f"cannot download {where}: the host {host!r} cannot be resolved (no internet access here?).\n"
            f"  to provide the weights: fetch {url} on a machine with internet and copy it to {dest} "
            f"(or point VIT_ZOO_HOME at a cache that has it), serve a mirror and set VIT_ZOO_GCS_ENDPOINT, "
            f"or load a local checkpoint with vit_zoo.load(NAME, weights=PATH) / vit-zoo predict --weights PATH")


def _offline_message(url, label, dest) -> str:
    what = f"{label} ({url})" if label else url
    return (f"offline mode is on (VIT_ZOO_OFFLINE / HF_HUB_OFFLINE) and {what} is not in the cache.\n"
            f"  expected at: {dest}\n"
            f"  to provide it: copy the file there (or point VIT_ZOO_HOME at a cache that has it), serve a mirror "
            f"and set VIT_ZOO_GCS_ENDPOINT, unset VIT_ZOO_OFFLINE to download it, "
            f"or load a local copy with vit_zoo.load(..., weights=PATH)")


def _fetch_url(url, label, *, sha256, size, verify_cached, progress, connect_timeout, read_timeout, retries,
               backoff, lock_timeout) -> Path:
    if url.startswith("file://"):
        source = Path(unquote(urlsplit(url).path))
        if not source.is_file():
            raise DownloadError(f"{label or 'download'}: local file {source} (from {url}) does not exist")
        return source
    dest = cache.download_path(url)
    if is_offline():
        if dest.is_file() and (size is None or dest.stat().st_size == size):
            return dest
        raise OfflineError(_offline_message(url, label, dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(dest) + ".lock", timeout=lock_timeout)
    try:
        lock.acquire()
    except filelock.Timeout as err:
        raise DownloadError(f"{label or url}: another process holds {dest}.lock for more than {lock_timeout} s; "
                            "wait for it, or delete the lock file if no download is running") from err
    try:
        if dest.is_file():  # someone finished it while we waited for the lock, or an earlier run
            if size is not None and dest.stat().st_size != size:
                dest.unlink()
            elif verify_cached and sha256 and cache.file_sha256(dest) != sha256:
                dest.unlink()
            else:
                return dest
        download = _Download(rewrite_url(url), dest, label, sha256=sha256, size=size, progress=progress,
                             timeout=(connect_timeout, read_timeout), retries=retries, backoff=backoff)
        download.run()
        return dest
    finally:
        lock.release()


class _Download:
    """One locked download of ``url`` into ``dest``; see the module docstring for the order of steps."""

    def __init__(self, url, dest, label, *, sha256, size, progress, timeout, retries, backoff):
        self.url, self.dest, self.label = url, dest, label
        self.sha256, self.size = sha256, size
        self.progress, self.timeout, self.retries, self.backoff = progress, timeout, retries, backoff
        self.partial = dest.with_name(dest.name + ".partial")        # kept between processes for resume
        self.meta = dest.with_name(dest.name + ".partial.meta")      # validator of the partial's content
        self.tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}")  # ours only
        self.server_hashes: dict[str, str] = {}
        self.server_size: int | None = None
        self.validator: str | None = None

    def where(self) -> str:
        return f"{self.label} ({self.url})" if self.label else self.url

    def run(self) -> None:
        keep_for_resume = False
        try:
            self._adopt_partial()
            keep_for_resume = True
            self._stream_with_retries()
            keep_for_resume = False
            self._verify()
            os.replace(self.tmp, self.dest)  # atomic: readers see no file or the whole verified file
            self._remove(self.meta)
        except (VerificationError, DownloadError) as err:
            if isinstance(err, VerificationError) or not getattr(err, "resumable", False):
                keep_for_resume = False
            raise
        finally:
            if self.tmp.exists():
                if keep_for_resume and self.tmp.stat().st_size > 0:
                    os.replace(self.tmp, self.partial)
                    self.meta.write_text(json.dumps({"url": self.url, "validator": self.validator}))
                else:
                    self._remove(self.tmp)
                    self._remove(self.meta)

    @staticmethod
    def _remove(path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    def _adopt_partial(self) -> None:
        """Move the largest leftover partial (ours from before, or a killed process's temp) to our temp name."""
        leftovers = [p for p in self.dest.parent.glob(self.dest.name + ".part*") if p.suffix != ".meta" and p.is_file()]
        leftovers.sort(key=lambda p: p.stat().st_size, reverse=True)
        for i, path in enumerate(leftovers):
            if i == 0:
                os.replace(path, self.tmp)
            else:
                self._remove(path)
        if not self.tmp.exists():
            self.tmp.touch()
            self._remove(self.meta)
            return
        try:
            self.validator = json.loads(self.meta.read_text()).get("validator")
        except (OSError, ValueError):
            self.validator = None

    def _stream_with_retries(self) -> None:
        attempt = 0
        while True:
            try:
                self._stream_once()
                return
            except _Retryable as err:
                if attempt >= self.retries:
                    kept = self.tmp.stat().st_size if self.tmp.exists() else 0
                    failure = DownloadError(f"download of {self.where()} failed after {attempt + 1} attempt(s): "
                                            f"{err}. {kept} bytes kept for resume; run the same load again to "
                                            "continue (timeouts: VIT_ZOO_CONNECT_TIMEOUT / VIT_ZOO_READ_TIMEOUT)")
                    failure.resumable = True
                    raise failure from err
                delay = self.backoff * 2**attempt
                attempt += 1
                time.sleep(delay)

    def _stream_once(self) -> None:
        offset = self.tmp.stat().st_size
        headers = {"Accept-Encoding": "identity", "User-Agent": "vit_zoo"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self.validator:
                headers["If-Range"] = self.validator
        try:
            response = requests.get(self.url, headers=headers, stream=True, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as err:
            if _is_name_resolution_failure(err):  # no network (or no DNS): retrying cannot help
                raise DownloadError(_unreachable_message(self.url, self.where(), self.dest)) from err
            raise _Retryable(f"{type(err).__name__}: {err}") from err
        with response:
            status = response.status_code
            if status == 416 and offset:  # our partial is as long as (or longer than) the file: start over
                self.tmp.write_bytes(b"")
                self.validator = None
                raise _Retryable(f"HTTP 416 for a resume at byte {offset}; restarting from byte 0")
            if status >= 500 or status == 429:
                raise _Retryable(f"HTTP {status} {response.reason}")
            if status >= 400:
                raise DownloadError(f"download of {self.where()} failed: HTTP {status} {response.reason}. "
                                    + ("The file does not exist at that address; check the manifest entry or "
                                       "the mirror set in VIT_ZOO_GCS_ENDPOINT" if status == 404 else
                                       "The server refused the request"))
            if status == 206:
                start, total = _parse_content_range(response.headers.get("Content-Range", ""))
                if start != offset:
                    self.tmp.write_bytes(b"")
                    raise _Retryable(f"server resumed at byte {start}, asked for {offset}; restarting")
            else:  # 200: the whole file (the server ignored or refused the Range)
                offset = 0
                total = _int_or_none(response.headers.get("Content-Length"))
            self._note_server_metadata(response, total)
            self._write_body(response, offset)

    def _note_server_metadata(self, response, total) -> None:
        self.server_size = total if total is not None else self.server_size
        etag = response.headers.get("ETag")
        self.validator = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")
        for part in response.headers.get("x-goog-hash", "").split(","):
            name, _, value = part.strip().partition("=")
            if name in ("md5", "crc32c") and value:
                self.server_hashes[name] = value
        if etag and "md5" not in self.server_hashes:
            bare = etag.strip('"')
            if re.fullmatch(r"[0-9a-f]{32}", bare) and "x-goog-hash" not in response.headers:
                self.server_hashes["md5-etag"] = bare

    def _write_body(self, response, offset) -> None:
        mode = "ab" if offset else "wb"
        bar = _progress_bar(self.progress, total=self.server_size, initial=offset, desc=self.dest.name)
        try:
            with open(self.tmp, mode) as f:
                # read1 returns what has arrived: bytes received before a drop reach the disk and are resumed
                while chunk := response.raw.read1(_CHUNK, decode_content=True):
                    f.write(chunk)
                    bar.update(len(chunk))
        except (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as err:
            raise _Retryable(f"connection lost after {self.tmp.stat().st_size} bytes: {type(err).__name__}") from err
        finally:
            bar.close()
        if self.server_size is not None and self.tmp.stat().st_size < self.server_size:
            raise _Retryable(f"body ended at byte {self.tmp.stat().st_size} of {self.server_size}")

    def _verify(self) -> None:
        got_size = self.tmp.stat().st_size
        problems = []
        for name, expected in (("size (manifest)", self.size), ("size (server)", self.server_size)):
            if expected is not None and got_size != expected:
                problems.append(f"{name}: expected {expected} bytes, got {got_size}")
        if not problems and (self.sha256 or self.server_hashes):
            sha, md5, crc = _hash_file(self.tmp, want_crc32c="crc32c" in self.server_hashes)
            if self.sha256 and sha != self.sha256.lower():
                problems.append(f"sha256: expected {self.sha256}, got {sha}")
            if "md5" in self.server_hashes and base64.b64encode(md5).decode() != self.server_hashes["md5"]:
                problems.append(f"md5 (x-goog-hash): expected {self.server_hashes['md5']}, "
                                f"got {base64.b64encode(md5).decode()}")
            if "md5-etag" in self.server_hashes and md5.hex() != self.server_hashes["md5-etag"]:
                problems.append(f"md5 (ETag): expected {self.server_hashes['md5-etag']}, got {md5.hex()}")
            if crc is not None and crc != self.server_hashes["crc32c"]:
                problems.append(f"crc32c (x-goog-hash): expected {self.server_hashes['crc32c']}, got {crc}")
        if problems:
            raise VerificationError(f"download of {self.where()} is corrupt and was deleted: {'; '.join(problems)}. "
                                    "Try again; if it persists, the file or the manifest entry has changed")


class _Retryable(Exception):
    """A failure worth another attempt (connection error, timeout, 5xx, short body)."""


def _parse_content_range(value):
    match = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", value.strip())
    if not match:
        raise _Retryable(f"HTTP 206 without a usable Content-Range ({value!r})")
    total = None if match[3] == "*" else int(match[3])
    return int(match[1]), total


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _hash_file(path, want_crc32c=False):
    """(sha256 hex, md5 digest bytes, crc32c base64 or None when unavailable) of a file, in one pass."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    crc = None
    crc32c_update = None
    if want_crc32c:
        try:  # optional: crc32c is only checked when a C implementation is installed
            import google_crc32c
            crc32c_update, crc = google_crc32c.extend, 0
        except ImportError:
            pass
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 * _CHUNK), b""):
            sha.update(chunk)
            md5.update(chunk)
            if crc32c_update:
                crc = crc32c_update(crc, chunk)
    crc_text = base64.b64encode(crc.to_bytes(4, "big")).decode() if crc32c_update else None
    return sha.hexdigest(), md5.digest(), crc_text


def _progress_bar(progress, *, total, initial, desc):
    from tqdm.auto import tqdm

    show = progress if progress is not None else (
        os.environ.get("VIT_ZOO_PROGRESS", "").lower() not in ("0", "false", "no", "off") and sys.stderr.isatty())
    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not show, leave=False)


# ---------------------------------------------------------------- Hugging Face repos

def _fetch_hf(entry, *, sha256, size) -> Path:
    """``hf``: the snapshot directory with config.json and the weights file; ``timm``: the weights file."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    repo, filename = entry["hf_repo"], entry["filename"]
    revision = entry.get("revision") or "main"
    label = _label(entry)
    where = f"{label} (hf-hub:{repo}, file {filename}, revision {revision})" if label else f"hf-hub:{repo}/{filename}"
    offline = is_offline()
    files = [filename] + (["config.json"] if entry.get("format") == "hf" else [])
    paths = []
    for name in files:
        try:
            # HF_ENDPOINT is read here, per call: huggingface_hub reads it only once, at import.
            paths.append(Path(hf_hub_download(repo, name, revision=revision, local_files_only=offline,
                                              endpoint=os.environ.get("HF_ENDPOINT") or None)))
        except LocalEntryNotFoundError as err:
            if offline:
                raise OfflineError(
                    f"offline mode is on (VIT_ZOO_OFFLINE / HF_HUB_OFFLINE) and {name} of {where} is not in the "
                    f"Hugging Face cache (HF_HOME / HF_HUB_CACHE).\n  to provide it: unset the offline variables "
                    f"once to download it, point HF_ENDPOINT at a mirror, or load a local copy with "
                    f"vit_zoo.load(..., weights=PATH)") from err
            raise DownloadError(f"cannot download {name} of {where}: {err}") from err
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as err:
            raise DownloadError(f"{where}: {type(err).__name__}: the Hub has no {name} there; check the manifest "
                                f"entry (repo, filename, revision) or HF_ENDPOINT") from err
        except (requests.RequestException, OSError) as err:
            raise DownloadError(f"cannot download {name} of {where}: {type(err).__name__}: {err}") from err
    weights = paths[0]
    problems = []
    if size is not None and weights.stat().st_size != size:
        problems.append(f"size: expected {size} bytes, got {weights.stat().st_size}")
    if sha256 and not problems:
        got = cache.file_sha256(weights)
        if got != sha256.lower():
            problems.append(f"sha256: expected {sha256}, got {got}")
    if problems:
        raise VerificationError(f"{where} in the Hugging Face cache ({weights}) does not match the manifest: "
                                f"{'; '.join(problems)}. Delete it from the HF cache and retry, or fix the entry")
    return weights.parent if entry.get("format") == "hf" else weights
