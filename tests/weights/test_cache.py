"""The cache layout, converted-weights sidecars, listing and clearing, file hashes (files only; no Keras)."""
import hashlib
import json

import pytest

from vit_zoo.weights import cache

ENTRY = {"model": "vit-base-16", "tag": "augreg-in21k-ft-in1k-224"}


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_ZOO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _write(path, data=b"weights"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_layout(home):
    assert cache.cache_root() == home
    assert cache.converted_path(ENTRY, 224, 1) == home / "converted/vit-base-16/augreg-in21k-ft-in1k-224/224x224-v1.weights.h5"
    assert cache.converted_path(ENTRY, (224, 320), "2").name == "224x320-v2.weights.h5"
    assert cache.download_path("https://storage.googleapis.com/vit_models/augreg/B_16.npz") == \
        home / "downloads/gcs/vit_models/augreg/B_16.npz"
    assert cache.download_path("http://127.0.0.1:8000/a/../b.npz") == home / "downloads/127.0.0.1:8000/a/b.npz".replace(":", "_")


def test_default_root_is_user_cache(monkeypatch):
    monkeypatch.delenv("VIT_ZOO_HOME")
    assert str(cache.cache_root()).endswith(".cache/vit_zoo")


def test_sidecar_detects_stale_and_corrupt_entries():
    path = _write(cache.converted_path(ENTRY, 224, 1))
    assert not cache.is_valid(path)  # no sidecar yet: an interrupted conversion
    cache.write_sidecar(path, source="vit-base-16.augreg-in21k-ft-in1k-224", format_version=1)
    assert json.loads(cache.sidecar_path(path).read_text())["size"] == len(b"weights")
    assert cache.is_valid(path, source="vit-base-16.augreg-in21k-ft-in1k-224", format_version=1)
    assert not cache.is_valid(path, format_version=2)              # converter changed
    assert not cache.is_valid(path, source="vit-base-16.other")   # different checkpoint
    path.write_bytes(b"weightz")                                    # same size, other bytes
    assert cache.is_valid(path, check_hash=False) and not cache.is_valid(path)
    path.write_bytes(b"short")
    assert not cache.is_valid(path, check_hash=False)
    cache.remove_entry(path)
    assert not path.exists() and not cache.sidecar_path(path).exists()


def test_list_and_clear(home):
    download = _write(cache.download_path("https://storage.googleapis.com/vit_models/x/B_16.npz"), b"x" * 2048)
    _write(download.with_name("B_16.npz.lock"), b"")
    partial = _write(cache.download_path("https://storage.googleapis.com/vit_models/x/L_16.npz.partial"), b"y" * 10)
    converted = _write(cache.converted_path(ENTRY, 224, 1), b"z" * 100)
    cache.write_sidecar(converted, source="s", format_version=1)
    items = {i.relative: (i.kind, i.size) for i in cache.list_cache()}
    assert items == {"converted/vit-base-16/augreg-in21k-ft-in1k-224/224x224-v1.weights.h5": ("converted", 100),
                     "downloads/gcs/vit_models/x/B_16.npz": ("download", 2048),
                     "downloads/gcs/vit_models/x/L_16.npz.partial": ("partial", 10)}
    removed = cache.clear_cache("converted/*")
    assert [i.kind for i in removed] == ["converted"]
    assert not converted.exists() and not cache.sidecar_path(converted).exists() and download.exists()
    assert {i.relative for i in cache.clear_cache("L_16")} == {"downloads/gcs/vit_models/x/L_16.npz.partial"}
    cache.clear_cache()
    assert cache.list_cache() == [] and not partial.exists()
    assert not (home / "converted").exists()


def test_file_digests_match_hashlib_for_every_algorithm(tmp_path):
    data = bytes(range(256)) * 50_000  # 12.8 MB: more than one 8 MiB chunk
    path = _write(tmp_path / "blob.bin", data)
    assert cache.file_digests(path, "sha256", "md5") == {"sha256": hashlib.sha256(data).digest(),
                                                         "md5": hashlib.md5(data).digest()}
    assert cache.file_digests(path) == {"sha256": hashlib.sha256(data).digest()}
    assert cache.file_sha256(path) == hashlib.sha256(data).hexdigest()
