"""Files of Hugging Face repos, through ``huggingface_hub`` and its cache (``HF_HOME``). Knows nothing of Keras.

``HF_ENDPOINT`` is read per call (huggingface_hub reads it once, at import). Before downloading, one
quick request checks that the endpoint can be reached at all: without a network huggingface_hub would
retry for half a minute and then say little. When it cannot be reached, the files come from the cache
when they are there, else the download fails at once with an ``UnreachableError`` saying how to provide
them; offline mode (``VIT_ZOO_OFFLINE`` / ``HF_HUB_OFFLINE``) reads the cache only.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from vit_zoo.model import checkpoint_formats as formats
from vit_zoo.weights import download
from vit_zoo.weights.download import DownloadError, OfflineError, UnreachableError, VerificationError


# Files beside the weights that say what the weights were trained with, fetched when the repo has them:
# the image processor of a transformers repo, timm's config.json (pretrained_cfg, label names), OpenCLIP's
# open_clip_config.json (model_cfg, preprocess_cfg).
OPTIONAL_FILES = {formats.HF: ("preprocessor_config.json",), formats.TIMM: ("config.json",),
                  formats.OPEN_CLIP: ("open_clip_config.json",)}


def fetch_repo_file(entry: dict) -> Path:
    """For an ``hf`` entry: the snapshot directory holding ``config.json``, the weights file ``filename`` and
    ``preprocessor_config.json`` where the repo has one; for a ``timm`` entry: the weights file (with timm's
    ``config.json`` beside it where the repo has one). Checked against the entry's ``size`` (bytes) and
    ``sha256``."""
    repo, filename = entry["hf_repo"], entry["filename"]
    revision = entry.get("revision") or "main"
    label = download.label(entry)
    where = f"{label} (hf-hub:{repo}, file {filename}, revision {revision})" if label else f"hf-hub:{repo}/{filename}"
    endpoint = os.environ.get("HF_ENDPOINT") or None
    reason = download.offline_reason() if download.is_offline() else _unreachable_reason(repo, filename, revision,
                                                                                         endpoint)
    names = [filename] + (["config.json"] if entry.get("format") == formats.HF else [])
    weights = [_file(repo, name, revision, endpoint, where, reason) for name in names][0]
    for name in OPTIONAL_FILES.get(entry.get("format"), ()):
        _file(repo, name, revision, endpoint, where, reason, optional=True)
    problems = download.verification_problems(weights, sizes=(("size", entry.get("size")),),
                                              sha256=entry.get("sha256"))
    if problems:
        raise VerificationError(f"{where} in the Hugging Face cache ({weights}) does not match the manifest: "
                                f"{'; '.join(problems)}. Delete it from the HF cache and retry, or fix the entry")
    return weights.parent if entry.get("format") == formats.HF else weights


def _unreachable_reason(repo, filename, revision, endpoint):
    """Why the endpoint cannot be reached at all (then only the cache can serve), or None."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo, filename, revision=revision, endpoint=endpoint)
    try:
        get_hf_file_metadata(url, timeout=download.settings().connect_timeout)  # one try, no retries
    except Exception as error:  # anything but "unreachable" is left to hf_hub_download to report
        cause = download.unreachable_cause(error)
        if cause is not None:
            return download.unreachable_reason(urlsplit(url).netloc, cause)
    return None


def _file(repo, name, revision, endpoint, where, cache_only_reason, optional=False):
    """One file of the repo; from the cache only when ``cache_only_reason`` (offline, unreachable) is set.
    An ``optional`` file the repo (or the cache) lacks gives None."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    try:
        return Path(hf_hub_download(repo, name, revision=revision, endpoint=endpoint,
                                    local_files_only=cache_only_reason is not None))
    except LocalEntryNotFoundError as error:
        if optional and cache_only_reason is not None:
            return None
        if cache_only_reason is None:  # huggingface_hub gave up after its own retries
            raise DownloadError(f"cannot download {name} of {where}: {error}") from error
        message = download.not_available_message(
            f"{name} of {where}", cache_only_reason,
            expected_at=Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}",
            copy_to="into that Hugging Face cache (HF_HOME / HF_HUB_CACHE) from a machine that has downloaded it",
            mirror="HF_ENDPOINT")
        raise (OfflineError if download.is_offline() else UnreachableError)(message) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as error:
        if optional and isinstance(error, EntryNotFoundError):
            return None
        raise DownloadError(f"{where}: {type(error).__name__}: the Hub has no {name} there; check the manifest "
                            f"entry (repo, filename, revision) or HF_ENDPOINT") from None
    except Exception as error:  # the Hub client's own network and HTTP errors
        raise DownloadError(f"cannot download {name} of {where}: {type(error).__name__}: {error}") from error
