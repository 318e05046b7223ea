"""Downloads of plain URLs that never lose or corrupt a file. Knows nothing of Keras.

In this order: take the per-artifact file lock; adopt any partial file an interrupted download left (in
this or another process); stream into a temp file unique to this process with ``Range`` resume,
timeouts, and retries with exponential backoff on connection errors, 5xx and short bodies; verify size,
sha256 and the server's own md5 (``x-goog-hash``, or an md5 ``ETag``); rename atomically; the temp file
is removed in ``finally`` (or kept as ``<file>.partial`` for the next run when the transfer stopped
short). A file that fails verification is deleted and the error says expected vs got. A server that
cannot be reached at all fails at once. Timeouts and retries: ``vit_zoo.weights.download.settings``.
"""
from __future__ import annotations

import base64
import binascii
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
from vit_zoo.weights import download
from vit_zoo.weights.download import DownloadError, OfflineError, UnreachableError, VerificationError

_CHUNK = 2**20  # bytes per read


def fetch_url(url: str, label: str, *, sha256=None, size=None, progress=None) -> Path:
    """The verified local file of ``url`` (``file://`` URLs: the file itself), downloaded once into the
    cache. ``label``: the manifest key for messages; ``size`` in bytes; ``progress``: see ``download.fetch``."""
    if url.startswith("file://"):
        source = Path(unquote(urlsplit(url).path))
        if not source.is_file():
            raise DownloadError(f"{label or 'download'}: local file {source} (from {url}) does not exist")
        return source
    dest = cache.download_path(url)
    if download.is_offline():
        if dest.is_file() and (size is None or dest.stat().st_size == size):
            return dest
        raise OfflineError(_not_available(label, url, dest, download.offline_reason()))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(dest) + ".lock"):
        if dest.is_file():  # finished by another process while we waited for the lock, or by an earlier run
            if size is None or dest.stat().st_size == size:
                return dest
            dest.unlink()
        _Transfer(url, dest, label, sha256=sha256, size=size, progress=progress).run()
    return dest


def _not_available(label, url, dest, reason) -> str:
    return download.not_available_message(
        f"{label} ({url})" if label else url, reason, expected_at=dest,
        copy_to="there from a machine with internet access (or point VIT_ZOO_HOME at a cache that has it)",
        mirror="VIT_ZOO_GCS_ENDPOINT")


class _Retryable(Exception):
    """A failure worth another attempt (connection lost, timeout, 5xx, short body)."""


class _Transfer:
    """One download of ``url`` (from its mirror, if one is set) into ``dest``, under the lock; see the
    module docstring for the order."""

    def __init__(self, url, dest: Path, label, *, sha256, size, progress):
        self.source, self.url = url, download.rewrite_url(url)
        self.dest, self.label = dest, label
        self.sha256, self.size, self.progress = sha256, size, progress
        self.settings = download.settings()
        self.partial = dest.with_name(dest.name + ".partial")     # kept between runs for resume
        self.meta = dest.with_name(dest.name + ".partial.meta")   # the validator of the partial's bytes
        self.tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}-{uuid.uuid4().hex[:8]}")  # ours only
        self.validator = None       # ETag or Last-Modified of the bytes in tmp, for If-Range
        self.server_size = None     # bytes, from Content-Length / Content-Range
        self.server_md5 = []        # (header, digest bytes)

    def where(self) -> str:
        return f"{self.label} ({self.url})" if self.label else self.url

    def run(self) -> None:
        self._adopt_partial()
        complete = False
        try:
            self._stream_with_retries()
            complete = True
            problems = download.verification_problems(
                self.tmp, sizes=(("size (manifest)", self.size), ("size (server)", self.server_size)),
                sha256=self.sha256, md5=self.server_md5)
            if problems:
                raise VerificationError(f"download of {self.where()} is corrupt and was deleted: "
                                        f"{'; '.join(problems)}. Try again; if it persists, the file or the "
                                        f"manifest entry has changed")
            os.replace(self.tmp, self.dest)  # atomic: readers see no file or the whole verified file
        finally:
            if not complete and self.tmp.is_file() and self.tmp.stat().st_size:
                os.replace(self.tmp, self.partial)  # stopped short (retries spent, Ctrl-C): resume next time
                self.meta.write_text(json.dumps({"url": self.url, "validator": self.validator}))
            else:
                self.tmp.unlink(missing_ok=True)
                self.meta.unlink(missing_ok=True)

    def _adopt_partial(self) -> None:
        """Move the largest leftover partial (ours from before, or a killed process's temp) to our temp name."""
        leftovers = sorted((p for p in self.dest.parent.glob(self.dest.name + ".part*")
                            if p.suffix != ".meta" and p.is_file()), key=lambda p: p.stat().st_size, reverse=True)
        for path in leftovers[1:]:
            path.unlink(missing_ok=True)
        if not leftovers:
            self.tmp.touch()
            self.meta.unlink(missing_ok=True)
            return
        os.replace(leftovers[0], self.tmp)
        try:
            self.validator = json.loads(self.meta.read_text()).get("validator")
        except (OSError, ValueError):
            self.validator = None

    def _stream_with_retries(self) -> None:
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.settings.backoff * 2 ** (attempt - 1))
            try:
                return self._stream_once()
            except _Retryable as err:
                failure = err
        raise DownloadError(f"download of {self.where()} failed after {attempts} attempt(s): {failure}. "
                            f"{self.tmp.stat().st_size} bytes kept for resume; run the same load again to continue "
                            f"(timeouts: VIT_ZOO_CONNECT_TIMEOUT / VIT_ZOO_READ_TIMEOUT)") from None

    def _stream_once(self) -> None:
        offset = self.tmp.stat().st_size
        headers = {"Accept-Encoding": "identity", "User-Agent": "vit_zoo"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self.validator:
                headers["If-Range"] = self.validator
        try:
            response = requests.get(self.url, headers=headers, stream=True,
                                    timeout=(self.settings.connect_timeout, self.settings.read_timeout))
        except (requests.ConnectionError, requests.Timeout) as err:
            cause = download.unreachable_cause(err)
            if cause is not None:  # no network, unknown host, nothing listening: retrying cannot help
                reason = download.unreachable_reason(urlsplit(self.url).netloc, cause)
                raise UnreachableError(_not_available(self.label, self.source, self.dest, reason)) from None
            raise _Retryable(f"{type(err).__name__}: {err}") from err
        with response:
            start = self._check_status(response, offset)
            self._note_server_hashes(response)
            self._write_body(response, start)

    def _check_status(self, response, offset) -> int:
        """The byte the body starts at; raises for statuses that carry no (usable) body."""
        status = response.status_code
        if status == 416 and offset:  # our partial is as long as the file, or longer: start over
            self._restart()
            raise _Retryable(f"HTTP 416 for a resume at byte {offset}; restarting from byte 0")
        if status >= 500 or status == 429:
            raise _Retryable(f"HTTP {status} {response.reason}")
        if status >= 400:
            self.tmp.unlink(missing_ok=True)  # nothing worth resuming
            raise DownloadError(f"download of {self.where()} failed: HTTP {status} {response.reason}. "
                                + ("The file does not exist at that address; check the manifest entry or the "
                                   "mirror set in VIT_ZOO_GCS_ENDPOINT" if status == 404 else
                                   "The server refused the request"))
        if status != 206:  # the whole file (the server ignored or refused the Range)
            self.server_size = _int_or_none(response.headers.get("Content-Length"))
            return 0
        match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", "").strip())
        if not match or int(match[1]) != offset:
            self._restart()
            raise _Retryable(f"HTTP 206 with Content-Range {response.headers.get('Content-Range')!r} for a "
                             f"resume at byte {offset}; restarting")
        self.server_size = _int_or_none(match[2]) or self.server_size
        return offset

    def _restart(self) -> None:
        self.tmp.write_bytes(b"")
        self.validator = None

    def _note_server_hashes(self, response) -> None:
        etag = response.headers.get("ETag")
        self.validator = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")
        goog = dict(part.strip().partition("=")[::2] for part in response.headers.get("x-goog-hash", "").split(","))
        self.server_md5 = []
        if goog.get("md5"):
            try:
                self.server_md5 = [("x-goog-hash", base64.b64decode(goog["md5"], validate=True))]
            except binascii.Error:
                pass
        elif etag and "x-goog-hash" not in response.headers and re.fullmatch(r'"?[0-9a-f]{32}"?', etag):
            self.server_md5 = [("ETag", bytes.fromhex(etag.strip('"')))]

    def _write_body(self, response, start) -> None:
        bar = _progress_bar(self.progress, total=self.server_size, initial=start, desc=self.dest.name)
        try:
            with open(self.tmp, "ab" if start else "wb") as f:
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


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _progress_bar(progress, *, total, initial, desc):
    from tqdm.auto import tqdm

    show = progress if progress is not None else (
        os.environ.get("VIT_ZOO_PROGRESS", "").lower() not in ("0", "false", "no", "off") and sys.stderr.isatty())
    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not show, leave=False)
