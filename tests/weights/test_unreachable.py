"""No network: every download path fails at once with one readable error that says how to provide the file.

"No network" is an endpoint nobody answers: a closed loopback port (connection refused) or a host name
under ``.invalid`` (RFC 6761: never resolves). Retries are set slow (VIT_ZOO_BACKOFF) so that a single
retry would show in the time.
"""
import json
import socket
import time
import traceback

import pytest

from fixtures_http import FaultServer, use_fake_hub, use_loopback_cache
from vit_zoo.weights import cache
from vit_zoo.weights import download

GCS = "https://storage.googleapis.com"
FAST = 3.0  # seconds: far below one retry (VIT_ZOO_BACKOFF=5) or huggingface_hub's ~23 s of retries


def _closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


UNREACHABLE = {"refused": _closed_port_url, "unknown-host": lambda: "http://vit-zoo-test.invalid"}


@pytest.fixture(params=sorted(UNREACHABLE))
def nowhere(request, tmp_path, monkeypatch):
    """An endpoint that cannot be reached, as VIT_ZOO_GCS_ENDPOINT; VIT_ZOO_HOME in tmp_path; slow retries."""
    url = UNREACHABLE[request.param]()
    use_loopback_cache(monkeypatch, tmp_path / "home", url)
    monkeypatch.setenv("VIT_ZOO_BACKOFF", "5")
    return url


def _entry(tag="tiny", **changes):
    fields = dict(tag=tag, model="vit-tiny-16", format="google-npz", url=f"{GCS}/vit_models/test/{tag}.npz",
                  sha256=None, size=None, image_size=32, num_classes=1000, labels="imagenet1k", default=True,
                  mean=[0.5] * 3, std=[0.5] * 3, pooling="token", license="apache-2.0", source="tests",
                  key=f"vit-tiny-16.{tag}")
    fields.update(changes)
    return fields


def _hub_entry(fmt):
    entry = _entry(f"{fmt}-test", format=fmt, hf_repo="google/vit-tiny-test", filename="model.safetensors")
    del entry["url"]
    return entry


def _raise_timed(function, *args, **kwargs):
    start = time.monotonic()
    with pytest.raises(download.UnreachableError) as info:
        function(*args, **kwargs)
    return info.value, time.monotonic() - start


def _assert_one_readable_error(error):
    """No chain of network causes behind it: the message is the whole story."""
    assert error.__cause__ is None and error.__suppress_context__
    text = "".join(traceback.format_exception(error))
    assert "direct cause" not in text and "During handling" not in text


def test_plain_download_fails_at_once_and_says_how_to_provide_the_file(nowhere):
    entry = _entry()
    error, seconds = _raise_timed(download.fetch, entry)
    assert seconds < FAST
    message = str(error)
    host = nowhere.split("//")[1]
    for needle in (f"cannot reach {host!r}", "vit-tiny-16.tiny", str(cache.download_path(entry["url"])),
                   "VIT_ZOO_HOME", "VIT_ZOO_GCS_ENDPOINT", "weights=PATH"):
        assert needle in message
    _assert_one_readable_error(error)
    assert not cache.downloads_dir().exists() or not any(
        p.is_file() and not p.name.endswith(".lock") for p in cache.downloads_dir().rglob("*"))


@pytest.mark.parametrize("fmt", ["hf", "timm"])
def test_hub_download_fails_at_once_and_says_how_to_provide_the_file(nowhere, fmt, tmp_path, monkeypatch):
    use_fake_hub(monkeypatch, tmp_path / "hf", nowhere)
    error, seconds = _raise_timed(download.fetch, _hub_entry(fmt))
    assert seconds < FAST
    message = str(error)
    for needle in ("cannot reach", f"vit-tiny-16.{fmt}-test", "hf-hub:google/vit-tiny-test", "model.safetensors",
                   str(tmp_path / "hf" / "hub" / "models--google--vit-tiny-test"), "HF_HUB_CACHE", "HF_ENDPOINT",
                   "weights=PATH"):
        assert needle in message
    _assert_one_readable_error(error)


def test_hub_files_in_the_cache_are_used_when_the_hub_cannot_be_reached(tmp_path, monkeypatch):
    with FaultServer() as server:
        use_fake_hub(monkeypatch, tmp_path / "hf", server.url)
        server.add_hf_file("google/vit-tiny-test", "config.json", json.dumps({"model_type": "vit"}).encode())
        server.add_hf_file("google/vit-tiny-test", "model.safetensors", b"weights")
        folder = download.fetch(_hub_entry("hf"))
    monkeypatch.setenv("HF_ENDPOINT", _closed_port_url())
    start = time.monotonic()
    assert download.fetch(_hub_entry("hf")) == folder
    assert time.monotonic() - start < FAST
    assert (folder / "model.safetensors").read_bytes() == b"weights"


def test_load_pretrained_without_network_raises_one_readable_error(nowhere, tmp_path, monkeypatch, capsys):
    import vit_zoo
    from vit_zoo import cli

    manifest = tmp_path / "manifest.json"
    entry = _entry()
    del entry["key"]
    manifest.write_text(json.dumps({"schema_version": 1, "entries": [entry]}))
    monkeypatch.setenv("VIT_ZOO_MANIFEST", str(manifest))
    error, seconds = _raise_timed(vit_zoo.load, "vit-tiny-16", pretrained="tiny")
    assert seconds < FAST
    assert "vit-tiny-16.tiny" in str(error) and "weights=PATH" in str(error)
    _assert_one_readable_error(error)
    assert cli.main(["download", "vit-tiny-16:tiny"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vit-zoo download: error: cannot reach") and "Traceback" not in err
