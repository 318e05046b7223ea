"""Downloads against a loopback server with injected faults (127.0.0.1 only; no network, no Keras).

The manifest under test comes in through VIT_ZOO_MANIFEST and its URLs name storage.googleapis.com,
rewritten to the loopback server by VIT_ZOO_GCS_ENDPOINT: the code path is the real one.
"""
import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from fixtures_http import FaultServer, goog_md5, use_fake_hub, use_loopback_cache
from vit_zoo.weights import cache
from vit_zoo.weights import download
from vit_zoo.weights import manifest

PAYLOAD = hashlib.sha256(b"seed").digest() * 40_000  # 1.28 MB of arbitrary bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()
GCS = "https://storage.googleapis.com"


def _entry(tag, path, **changes):
    fields = dict(tag=tag, model="vit-tiny-16", format="google-npz", url=f"{GCS}{path}", sha256=SHA,
                  size=len(PAYLOAD), image_size=224, num_classes=1000, labels="imagenet1k", default=False,
                  mean=[0.5] * 3, std=[0.5] * 3, pooling="token", license="apache-2.0",
                  source="tests/test_download.py")
    fields.update(changes)
    return fields


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A fault server; VIT_ZOO_HOME in tmp_path; fast retries; a manifest of test entries via VIT_ZOO_MANIFEST."""
    with FaultServer() as srv:
        use_loopback_cache(monkeypatch, tmp_path / "home", srv.url)
        entries = [_entry(t, f"/vit_models/test/{t}.npz") for t in
                   ("ok", "drop", "flaky", "missing", "corrupt", "stall", "shared", "offline", "googhash")]
        entries[0]["default"] = True
        path = tmp_path / "test_manifest.json"
        path.write_text(json.dumps({"schema_version": 1, "entries": entries}))
        monkeypatch.setenv("VIT_ZOO_MANIFEST", str(path))
        yield srv


def _serve(srv, tag, **kwargs):
    path = f"/vit_models/test/{tag}.npz"
    srv.add(path, PAYLOAD, **kwargs)
    return path


def _cache_files():
    root = cache.downloads_dir()
    return sorted(p.name for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock")) if root.exists() else []


def test_plain_download_is_verified_and_cached(server):
    path = _serve(server, "ok")
    entry = manifest.resolve("vit-tiny-16", True)
    got = download.fetch(entry)
    assert got == cache.download_path(entry["url"]) and got.read_bytes() == PAYLOAD
    assert download.fetch(entry) == got  # second call: from the cache
    assert len(server.gets(path)) == 1
    assert _cache_files() == ["ok.npz"]


def test_dropped_connection_resumes_with_range(server):
    path = _serve(server, "drop", faults=["drop:300000"])
    got = download.fetch(manifest.resolve("vit-tiny-16", "drop"))
    assert got.read_bytes() == PAYLOAD
    assert server.gets(path) == [None, "bytes=300000-"]
    assert _cache_files() == ["drop.npz"]


def test_partial_left_by_an_earlier_process_is_resumed(server, monkeypatch):
    path = _serve(server, "drop", faults=["drop:500000", "status:503"])
    entry = manifest.resolve("vit-tiny-16", "drop")
    monkeypatch.setenv("VIT_ZOO_RETRIES", "1")
    with pytest.raises(download.DownloadError, match="failed after 2 attempt.*500000 bytes kept for resume"):
        download.fetch(entry)
    monkeypatch.delenv("VIT_ZOO_RETRIES")
    assert _cache_files() == ["drop.npz.partial", "drop.npz.partial.meta"]
    got = download.fetch(entry)  # a later run: adopts the partial and asks for the rest only
    assert got.read_bytes() == PAYLOAD
    assert server.gets(path)[-1] == "bytes=500000-"
    assert _cache_files() == ["drop.npz"]


def test_server_errors_are_retried(server):
    path = _serve(server, "flaky", faults=["status:500", "status:502", "status:503"])
    assert download.fetch(manifest.resolve("vit-tiny-16", "flaky")).read_bytes() == PAYLOAD
    assert len(server.gets(path)) == 4


def test_404_names_url_and_tag_and_is_not_retried(server):
    with pytest.raises(download.DownloadError) as info:
        download.fetch(manifest.resolve("vit-tiny-16", "missing"))
    message = str(info.value)
    assert "vit-tiny-16.missing" in message and f"{server.url}/vit_models/test/missing.npz" in message
    assert "404" in message
    assert len(server.gets("/vit_models/test/missing.npz")) == 1
    assert _cache_files() == []


def test_corrupt_body_fails_verification_and_leaves_nothing(server):
    _serve(server, "corrupt", faults=["corrupt"])
    with pytest.raises(download.VerificationError) as info:
        download.fetch(manifest.resolve("vit-tiny-16", "corrupt"))
    assert f"expected {SHA}, got " in str(info.value)
    assert _cache_files() == []


def test_server_md5_header_is_checked(server):
    bad = "md5=" + "A" * 22 + "=="
    _serve(server, "googhash", headers={"x-goog-hash": f"crc32c=AAAAAA==,{bad}"})
    with pytest.raises(download.VerificationError, match="md5 \\(x-goog-hash\\)"):
        download.fetch(f"{GCS}/vit_models/test/googhash.npz")  # no sha256 known: only the server's hash
    assert _cache_files() == []
    server.routes["/vit_models/test/googhash.npz"].headers = {"x-goog-hash": goog_md5(PAYLOAD)}
    assert download.fetch(f"{GCS}/vit_models/test/googhash.npz").read_bytes() == PAYLOAD


def test_stalled_server_times_out(server, monkeypatch):
    path = _serve(server, "stall", faults=["stall", "stall"])
    monkeypatch.setenv("VIT_ZOO_READ_TIMEOUT", "0.3")
    monkeypatch.setenv("VIT_ZOO_RETRIES", "1")
    start = time.monotonic()
    with pytest.raises(download.DownloadError, match="ReadTimeout|timed out"):
        download.fetch(manifest.resolve("vit-tiny-16", "stall"))
    assert time.monotonic() - start < 5
    assert len(server.gets(path)) == 2
    assert _cache_files() == []


_CHILD = """
import os, sys, time
from vit_zoo.weights import download
from vit_zoo.weights import manifest
print("ready", flush=True)
while not os.path.exists(sys.argv[1]):  # start together: both processes are past their imports
    time.sleep(0.01)
print(download.fetch(manifest.resolve("vit-tiny-16", "shared")), flush=True)
"""


def test_two_processes_download_once_and_both_succeed(server, tmp_path):
    path = _serve(server, "shared", faults=["slow"])  # slow first GET (0.4 s): the other process must wait
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, str(go)], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        assert [child.stdout.readline().strip() for child in children] == ["ready", "ready"]
        go.touch()
        results = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert all(child.returncode == 0 for child in children), [err for _, err in results]
    paths = {out.strip() for out, _ in results}
    assert len(paths) == 1
    assert open(paths.pop(), "rb").read() == PAYLOAD
    assert len(server.gets(path)) == 1
    assert _cache_files() == ["shared.npz"]


def test_offline_without_cached_file_says_how_to_provide_it(server, monkeypatch):
    _serve(server, "offline")
    monkeypatch.setenv("VIT_ZOO_OFFLINE", "1")
    entry = manifest.resolve("vit-tiny-16", "offline")
    with pytest.raises(download.OfflineError) as info:
        download.fetch(entry)
    message = str(info.value)
    for needle in ("vit-tiny-16.offline", str(cache.download_path(entry["url"])), "VIT_ZOO_HOME",
                   "VIT_ZOO_GCS_ENDPOINT", "weights=PATH"):
        assert needle in message
    assert server.log == []  # the network was never touched


@pytest.mark.parametrize("variable", ["VIT_ZOO_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_with_cached_file_uses_it(server, monkeypatch, variable):
    path = _serve(server, "offline")
    entry = manifest.resolve("vit-tiny-16", "offline")
    download.fetch(entry)
    monkeypatch.setenv(variable, "1")
    assert download.fetch(entry).read_bytes() == PAYLOAD
    assert len(server.gets(path)) == 1


def test_hugging_face_repo_through_fake_endpoint(server, tmp_path, monkeypatch):
    use_fake_hub(monkeypatch, tmp_path / "hf", server.url)
    config = json.dumps({"model_type": "vit", "hidden_size": 192}).encode()
    server.add_hf_file("google/vit-fake", "config.json", config)
    server.add_hf_file("google/vit-fake", "model.safetensors", PAYLOAD)
    entry = dict(_entry("hf-fake", "/unused"), format="hf", hf_repo="google/vit-fake",
                 filename="model.safetensors", revision="main", key="vit-tiny-16.hf-fake")
    del entry["url"]
    folder = download.fetch(entry)
    assert (folder / "model.safetensors").read_bytes() == PAYLOAD
    assert json.loads((folder / "config.json").read_text())["hidden_size"] == 192
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # now from the HF cache without the network
    before = len(server.log)
    assert download.fetch(entry) == folder
    assert len(server.log) == before
    with pytest.raises(download.OfflineError, match="google/vit-other"):
        download.fetch(dict(entry, hf_repo="google/vit-other"))


def test_download_code_imports_neither_keras_nor_tensorflow():
    script = ("import sys\n"
              "import vit_zoo.weights.download, vit_zoo.weights.http, vit_zoo.weights.hub\n"
              "import vit_zoo.weights.cache, vit_zoo.weights.manifest\n"
              "print(sorted(name for name in ('keras', 'tensorflow') if name in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
