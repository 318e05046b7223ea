"""load(..., pretrained=TAG) end to end: manifest (via VIT_ZOO_MANIFEST) → loopback download → convert
once → cache → model, for a vit_jax .npz over plain HTTP and a Hugging Face repo over a fake Hub."""
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import vit_zoo
from conftest import to_numpy
from fixtures_http import FaultServer, use_fake_hub, use_loopback_cache
from synth_checkpoints import npz_tensors, write_npz
from vit_zoo.weights import cache
from vit_zoo.weights import download
from vit_zoo.weights import pretrained

GCS = "https://storage.googleapis.com"
# vit-tiny-16 on 32 px images (a 2x2 patch grid): a real variant, small enough to convert in a second.
TINY = vit_zoo.ViTConfig.from_name("vit-tiny-16", image_size=32, num_classes=1000, gelu="tanh")


def _entry(tag, **changes):
    fields = dict(tag=tag, model="vit-tiny-16", format="google-npz", url=f"{GCS}/vit_models/test/{tag}.npz",
                  sha256=None, size=None, image_size=32, num_classes=1000, labels="imagenet1k", default=False,
                  mean=[0.5] * 3, std=[0.5] * 3, pooling="token", license="apache-2.0", source="tests")
    fields.update(changes)
    return fields


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    path = write_npz(tmp_path_factory.mktemp("npz") / "tiny.npz", npz_tensors(TINY, seed=3))
    return path, path.read_bytes()


@pytest.fixture
def server(tmp_path, monkeypatch, checkpoint_bytes):
    _, data = checkpoint_bytes
    with FaultServer() as srv:
        use_loopback_cache(monkeypatch, tmp_path / "home", srv.url)
        sha = hashlib.sha256(data).hexdigest()
        entries = [_entry("tiny", sha256=sha, size=len(data), default=True),
                   _entry("zero", sha256=sha, size=len(data), zero_head=True),
                   _entry("absent"),
                   _entry("stated", sha256=sha, size=len(data),  # the publisher's own evaluation transform
                          preprocessing={"recipe": "timm", "crop_pct": 0.875, "interpolation": "bicubic"})]
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps({"schema_version": 1, "entries": entries}))
        monkeypatch.setenv("VIT_ZOO_MANIFEST", str(path))
        for tag in ("tiny", "zero", "stated"):
            srv.add(f"/vit_models/test/{tag}.npz", data)
        yield srv


def test_an_entry_s_stated_transform_travels_with_the_model(server):
    stated = vit_zoo.load("vit-tiny-16", pretrained="stated").identity
    default = vit_zoo.load("vit-tiny-16", pretrained="tiny").identity  # the format's: vit_jax squash-resize
    assert (stated.preprocessing.recipe, stated.preprocessing.crop_pct, stated.preprocessing.interpolation) == (
        "timm", 0.875, "bicubic")
    assert (default.preprocessing.recipe, default.preprocessing.crop_pct) == ("google", 1.0)
    assert stated.provenance.assumed == ()


def _images(batch=2):
    return np.random.default_rng(5).uniform(0, 255, (batch, 32, 32, 3)).astype("float32")


def test_first_load_downloads_and_converts_then_the_cache_serves(server, checkpoint_bytes, monkeypatch):
    source, _ = checkpoint_bytes
    expected = to_numpy(vit_zoo.load(weights=source)(_images()))
    model = vit_zoo.load("vit-tiny-16", pretrained=True)
    np.testing.assert_array_equal(to_numpy(model(_images())), expected)
    identity = model.identity  # the manifest entry's facts travel with the model
    assert (identity.labels, identity.preprocessing.recipe, identity.config.mean) == ("imagenet1k", "google",
                                                                                      (0.5, 0.5, 0.5))
    assert (identity.provenance.format, identity.provenance.manifest_key) == ("google-npz", "vit-tiny-16.tiny")
    assert identity.provenance.sha256 == hashlib.sha256(checkpoint_bytes[1]).hexdigest()
    assert identity.provenance.assumed == ()
    assert len(server.gets("/vit_models/test/tiny.npz")) == 1
    converted = cache.converted_path(pretrained.resolve_entry("vit-tiny-16", "tiny"), 32,
                                     pretrained.CONVERTED_FORMAT_VERSION)
    assert cache.is_valid(converted, source="vit-tiny-16.tiny")

    def no_download(*args, **kwargs):
        raise AssertionError("the second load must not download or convert")
    monkeypatch.setattr(download, "fetch", no_download)
    monkeypatch.setattr(pretrained, "_convert_to", no_download)
    again = vit_zoo.load("vit-tiny-16", pretrained="tiny", include_top=False, pooling="token")
    features = to_numpy(vit_zoo.load(weights=source, include_top=False, pooling="token")(_images()))
    np.testing.assert_array_equal(to_numpy(again(_images())), features)


def test_pretrained_with_new_size_and_head(server, checkpoint_bytes):
    source, _ = checkpoint_bytes
    model = vit_zoo.load("vit-tiny-16", pretrained=True, image_size=48, num_classes=3)
    reference = vit_zoo.load(weights=source, image_size=48, num_classes=3)
    images = np.random.default_rng(1).uniform(0, 255, (1, 48, 48, 3)).astype("float32")
    np.testing.assert_array_equal(model.get_layer("pos_embed").embeddings.numpy(),
                                  reference.get_layer("pos_embed").embeddings.numpy())
    assert not np.any(to_numpy(model(images)))  # the new head starts at zero


def test_corrupt_cache_entry_is_detected_and_rebuilt(server, checkpoint_bytes):
    source, _ = checkpoint_bytes
    vit_zoo.load("vit-tiny-16", pretrained=True)
    entry = pretrained.resolve_entry("vit-tiny-16", True)
    converted = cache.converted_path(entry, 32, pretrained.CONVERTED_FORMAT_VERSION)
    data = bytearray(converted.read_bytes())
    data[len(data) // 2] ^= 0xFF
    converted.write_bytes(bytes(data))
    assert not cache.is_valid(converted, source=entry["key"])
    model = vit_zoo.load("vit-tiny-16", pretrained=True)
    assert cache.is_valid(converted, source=entry["key"])
    np.testing.assert_array_equal(to_numpy(model(_images())), to_numpy(vit_zoo.load(weights=source)(_images())))
    assert len(server.gets("/vit_models/test/tiny.npz")) == 1  # the download itself was still good


def test_zero_head_checkpoint_warns(server):
    with pytest.warns(UserWarning, match="all-zero classification head.*include_top=False.*num_classes=N"):
        vit_zoo.load("vit-tiny-16", pretrained="zero")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vit_zoo.load("vit-tiny-16", pretrained="zero", include_top=False, pooling="token")


def test_missing_file_and_unknown_tag_errors(server):
    with pytest.raises(download.DownloadError, match="HTTP 404.*check the manifest entry"):
        vit_zoo.load("vit-tiny-16", pretrained="absent")
    with pytest.raises(ValueError, match="unknown weights tag 'nope' for vit-tiny-16; known tags: "
                                         r".*augreg-in21k-ft-in1k-224.*, tiny \(default\), zero, absent"):
        vit_zoo.load("vit-tiny-16", pretrained="nope")
    assert not list(cache.converted_dir().rglob("*.weights.h5"))  # nothing half-done was cached
    assert [p.name for p in cache.downloads_dir().rglob("absent.npz*")] == ["absent.npz.lock"]  # no partial file


def test_offline_mode_uses_the_cache_or_says_what_is_missing(server, monkeypatch):
    monkeypatch.setenv("VIT_ZOO_OFFLINE", "1")
    with pytest.raises(download.OfflineError, match="(?s)offline mode is on.*vit-tiny-16.tiny.*expected at"):
        vit_zoo.load("vit-tiny-16", pretrained=True)
    monkeypatch.delenv("VIT_ZOO_OFFLINE")
    vit_zoo.load("vit-tiny-16", pretrained=True)
    monkeypatch.setenv("VIT_ZOO_OFFLINE", "1")
    before = len(server.log)
    vit_zoo.load("vit-tiny-16", pretrained=True)
    assert len(server.log) == before


def test_two_processes_load_the_same_tag_once(server, tmp_path):
    script = textwrap.dedent("""
        import sys, keras, numpy as np, vit_zoo
        model = vit_zoo.load("vit-tiny-16", pretrained=True)
        images = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
        np.save(sys.argv[1], keras.ops.convert_to_numpy(model(images)))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    outputs = [tmp_path / f"out{i}.npy" for i in range(2)]
    workers = [subprocess.Popen([sys.executable, "-c", script, str(out)], env=env, stderr=subprocess.PIPE)
               for out in outputs]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err.decode()[-2000:]
    np.testing.assert_array_equal(np.load(outputs[0]), np.load(outputs[1]))
    assert len(server.gets("/vit_models/test/tiny.npz")) == 1


def test_hugging_face_repo_through_a_fake_hub(server, tmp_path, monkeypatch):
    from synth_hf import hf_config, random_model, save

    use_fake_hub(monkeypatch, tmp_path / "hf", server.url)
    config = hf_config(num_labels=1000, hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                       intermediate_size=768, image_size=32, patch_size=16)
    folder = save(random_model(config, seed=4), tmp_path / "repo")
    for name in ("config.json", "model.safetensors"):
        server.add_hf_file("google/vit-tiny-test", name, (folder / name).read_bytes())
    entry = _entry("hf-test", format="hf", hf_repo="google/vit-tiny-test", filename="model.safetensors",
                   revision="main")
    del entry["url"]
    extra = tmp_path / "hf_manifest.json"
    extra.write_text(json.dumps({"schema_version": 1, "entries": [entry]}))
    monkeypatch.setenv("VIT_ZOO_MANIFEST", os.pathsep.join([os.environ["VIT_ZOO_MANIFEST"], str(extra)]))
    model = vit_zoo.load("vit-tiny-16", pretrained="hf-test")
    np.testing.assert_array_equal(to_numpy(model(_images())), to_numpy(vit_zoo.load(weights=folder)(_images())))
    through_hub = vit_zoo.load(weights="hf-hub:google/vit-tiny-test")
    np.testing.assert_array_equal(to_numpy(through_hub(_images())), to_numpy(model(_images())))
    assert (model.identity.provenance.manifest_key, model.identity.preprocessing.recipe) == (
        "vit-tiny-16.hf-test", "hf")
    assert (through_hub.identity.provenance.source, through_hub.identity.provenance.revision) == (
        "hf-hub:google/vit-tiny-test", "main")


def test_hub_reference_fetches_the_image_processor(server, tmp_path, monkeypatch):
    from synth_hf import hf_config, random_model, save

    use_fake_hub(monkeypatch, tmp_path / "hf", server.url)
    folder = save(random_model(hf_config(num_labels=2, id2label={0: "no", 1: "yes"}, label2id={"no": 0, "yes": 1}),
                               seed=5), tmp_path / "repo",
                  preprocessor={"resample": 3, "image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.3, 0.4]})
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        server.add_hf_file("someone/vit-yes-no", name, (folder / name).read_bytes())
    identity = vit_zoo.load(weights="hf-hub:someone/vit-yes-no").identity
    assert (identity.labels, identity.preprocessing.interpolation) == (("no", "yes"), "bicubic")
    assert (identity.config.mean, identity.provenance.assumed) == ((0.4, 0.5, 0.6), ())


def test_a_head_published_as_its_own_file_is_downloaded_beside_its_backbone(tmp_path, monkeypatch):
    """Meta's DINOv2 classifier: backbone (url) + linear head (head_url), read together from one folder."""
    folder = f"{GCS}/dinov2/dinov2_vits14"
    entry = _entry("meta-linear", model="dinov2-small-14", format="meta-dinov2", image_size=224,
                   url=f"{folder}/dinov2_vits14_pretrain.pth", head_url=f"{folder}/dinov2_vits14_linear_head.pth")
    converted = []
    monkeypatch.setattr(pretrained, "_convert_to", lambda target, source, e: converted.append(source))
    with FaultServer() as srv:
        use_loopback_cache(monkeypatch, tmp_path / "home", srv.url)
        srv.add("/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth", b"backbone")
        srv.add("/dinov2/dinov2_vits14/dinov2_vits14_linear_head.pth", b"head")
        path = tmp_path / "manifest.json"
        path.write_text(json.dumps({"schema_version": 1, "entries": [entry]}))
        monkeypatch.setenv("VIT_ZOO_MANIFEST", str(path))
        pretrained.converted_checkpoint(pretrained.resolve_entry("dinov2-small-14", "meta-linear"))
        assert len(srv.gets("/dinov2/dinov2_vits14/dinov2_vits14_linear_head.pth")) == 1
    (backbone,) = converted
    assert backbone.read_bytes() == b"backbone"
    assert (backbone.parent / "dinov2_vits14_linear_head.pth").read_bytes() == b"head"
