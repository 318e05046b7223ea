"""The weights manifest: every packaged entry valid and sourced, one default per model, merging, messages."""
import json
import os

import pytest

import vit_zoo
from vit_zoo.weights import manifest

PACKAGED = json.loads(manifest.packaged_manifest_path().read_text())
ENTRIES = manifest.read_manifest(manifest.packaged_manifest_path())


@pytest.fixture(autouse=True)
def no_extra_manifests(monkeypatch):
    monkeypatch.delenv("VIT_ZOO_MANIFEST", raising=False)


def _extra(tmp_path, entries, name="extra.json", **top):
    path = tmp_path / name
    path.write_text(json.dumps({"schema_version": 1, "entries": entries, **top}))
    return path


def _user_entry(**changes):
    fields = dict(tag="my-finetune", model="vit-base-16", format="google-npz", url="https://example.org/ft.npz",
                  image_size=224, num_classes=3, labels=["cat", "dog", "fox"], mean=[0.5] * 3, std=[0.5] * 3,
                  pooling="token", license="cc-by-4.0", default=False, source="my lab")
    fields.update(changes)
    return fields


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["key"])
def test_every_packaged_entry_is_valid_and_sourced(entry):
    assert entry["model"] in vit_zoo.list_models()
    assert entry["source"]
    assert (entry["top1"] is None) or entry["top1_source"]
    assert (entry.get("zero_shot_top1") is None) or entry["zero_shot_top1_source"]
    if entry["format"] == "google-npz":
        assert entry["url"].startswith("https://storage.googleapis.com/vit_models/")
    elif entry["format"] == "openai-clip":
        assert entry["url"].startswith("https://openaipublic.azureedge.net/clip/models/")
    elif entry["format"] in ("meta-dinov2", "deit-pth"):
        folder = {"meta-dinov2": "dinov2", "deit-pth": "deit"}[entry["format"]]
        assert entry["url"].startswith(f"https://dl.fbaipublicfiles.com/{folder}/")
    else:
        assert entry["hf_repo"].split("/")[0] in ("google", "timm", "facebook", "openai", "laion") and entry["filename"]
    if entry.get("same_weights_as"):
        assert f"{entry['model']}.{entry['same_weights_as']}" in {e["key"] for e in ENTRIES}


def test_exactly_one_default_per_model():
    models = {e["model"] for e in ENTRIES}
    for model in models:
        defaults = [e["tag"] for e in ENTRIES if e["model"] == model and e["default"]]
        assert len(defaults) == 1, (model, defaults)


def test_original_in21k_checkpoints_are_flagged_zero_head():
    flagged = {e["key"] for e in ENTRIES if e.get("zero_head")}
    for model in ("vit-base-16", "vit-base-32", "vit-large-16", "vit-large-32", "vit-huge-14"):
        assert f"{model}.orig-in21k" in flagged
    assert all("zero" in e["notes"] for e in ENTRIES if e.get("zero_head"))


def test_coverage_of_base_large_huge():
    keys = {e["key"] for e in ENTRIES}
    for model in ("vit-base-16", "vit-large-16"):
        for tag in ("orig-in21k", "orig-in21k-ft-in1k-224", "orig-in21k-ft-in1k-384", "augreg-in21k-ft-in1k-224",
                    "augreg-in21k-ft-in1k-384", "hf-in21k", "hf-in21k-ft-in1k-224", "timm-augreg-in21k-ft-in1k-224"):
            assert f"{model}.{tag}" in keys
    assert {"vit-huge-14.orig-in21k", "vit-huge-14.hf-in21k", "vit-huge-14.timm-orig-in21k"} <= keys


def test_resolve_default_tag_and_full_key():
    default = manifest.resolve("vit-base-16", True)
    assert default["default"] and default["model"] == "vit-base-16"
    assert manifest.resolve("ViT-B_16", None)["key"] == default["key"]  # aliases resolve
    assert manifest.resolve("vit-base-16", "orig-in21k")["zero_head"] is True
    assert manifest.resolve("vit-base-16", "vit-base-16.orig-in21k")["tag"] == "orig-in21k"


def test_unknown_tag_lists_known_tags():
    with pytest.raises(manifest.ManifestError) as info:
        manifest.resolve("vit-base-16", "no-such-tag")
    message = str(info.value)
    assert "'no-such-tag'" in message and "orig-in21k" in message and "(default)" in message


def test_model_without_weights_says_so():
    with pytest.raises(manifest.ManifestError, match="no pretrained weights are known for vit-giant-32"):
        manifest.resolve("vit-giant-32", True)


def test_list_weights_filters_by_model_and_returns_copies():
    base = manifest.list_weights("vit-base-16")
    assert base and all(e["model"] == "vit-base-16" for e in base)
    base[0]["tag"] = "changed"
    assert manifest.list_weights("vit-base-16")[0]["tag"] != "changed"
    assert len(manifest.list_weights()) == len(ENTRIES)


def test_extra_manifests_merge_in_order_and_override(tmp_path, monkeypatch):
    first = _extra(tmp_path, [_user_entry(default=True)], "first.json")
    second = _extra(tmp_path, [_user_entry(image_size=384, default=False),
                               _user_entry(tag="orig-in21k", url="https://mirror.example/B16.npz")], "second.json")
    monkeypatch.setenv("VIT_ZOO_MANIFEST", os.pathsep.join([str(first), str(second)]))
    mine = manifest.resolve("vit-base-16", "my-finetune")
    assert mine["image_size"] == 384 and mine["origin"] == str(second)  # later file wins
    assert manifest.resolve("vit-base-16", "orig-in21k")["url"] == "https://mirror.example/B16.npz"
    # first.json made my-finetune the default; second.json replaced it with a non-default entry, so the
    # packaged default is the default again
    defaults = [e["tag"] for e in manifest.list_weights("vit-base-16") if e["default"]]
    assert len(defaults) == 1
    assert manifest.resolve("vit-base-16", True)["origin"] == str(manifest.packaged_manifest_path())


def test_extra_manifest_default_replaces_packaged_default(tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_ZOO_MANIFEST", str(_extra(tmp_path, [_user_entry(default=True)])))
    assert manifest.resolve("vit-base-16", True)["tag"] == "my-finetune"
    assert sum(e["default"] for e in manifest.list_weights("vit-base-16")) == 1


@pytest.mark.parametrize("change, expected", [
    (dict(model="vit-enormous-16"), "field 'model' is 'vit-enormous-16'; expected a variant name"),
    (dict(format="onnx"), "field 'format' is 'onnx'; expected one of google-npz, big-vision-npz, deit-pth, meta-dinov2, openai-clip, hf, timm, open-clip"),
    (dict(sha256="abc"), "field 'sha256' is 'abc'; expected 64 lower-case hex digits"),
    (dict(tag="has.dot"), "field 'tag' is 'has.dot'"),
    (dict(top1=80.0), "'top1' needs 'top1_source'"),
    (dict(hf_repo="google/x", filename="model.safetensors"), "exactly one of 'url' or 'hf_repo' (got both)"),
    (dict(format="meta-dinov2", url=None, hf_repo="facebook/x", filename="model.safetensors"),
     "format 'meta-dinov2' is downloaded from a 'url', not an 'hf_repo'"),
    (dict(head_url="https://example.org/head.pth"), "'head_url' is for format 'meta-dinov2'"),
    (dict(format="meta-dinov2", head_url="https://example.org/heads/head.pth"),
     "'head_url' must sit in the same folder as 'url'"),
    (dict(preprocessing={"recipe": "hf", "crop_pct": 0.875, "interpolation": "bicubic"}),
     "field 'preprocessing' is {'recipe': 'hf', 'crop_pct': 0.875, 'interpolation': 'bicubic'}; expected the "
     "publisher's evaluation transform"),
    (dict(preprocessing={"recipe": "timm", "crop_pct": 0.875}), "field 'preprocessing' is {'recipe': 'timm', "
                                                               "'crop_pct': 0.875}; expected"),
    (dict(imagesize=224), "unknown field 'imagesize'; did you mean 'image_size'?"),
    (dict(mean=None), "field 'mean' is None"),
    (dict(num_classes=10, labels="imagenet1k"), "'labels' 'imagenet1k' has 1000 classes but 'num_classes' is 10"),
    (dict(num_classes=2), "'labels' (a list) has 3 classes but 'num_classes' is 2"),
])
def test_bad_entries_get_clear_messages(tmp_path, monkeypatch, change, expected):
    path = _extra(tmp_path, [_user_entry(**change)])
    monkeypatch.setenv("VIT_ZOO_MANIFEST", str(path))
    with pytest.raises(manifest.ManifestError) as info:
        manifest.list_weights()
    message = str(info.value)
    assert str(path) in message and "vit-" in message and expected in message


def test_one_error_lists_every_problem_of_a_file(tmp_path, monkeypatch):
    incomplete = _user_entry(tag="incomplete")
    del incomplete["license"]
    path = _extra(tmp_path, [incomplete, _user_entry(default=True), _user_entry(tag="other", default=True)])
    monkeypatch.setenv("VIT_ZOO_MANIFEST", str(path))
    with pytest.raises(manifest.ManifestError) as info:
        manifest.list_weights()
    message = str(info.value)
    assert "(2 problem(s))" in message
    assert "entries[0] (vit-base-16.incomplete): missing field 'license'" in message
    assert "vit-base-16 has 2 entries marked default (my-finetune, other)" in message


def test_two_defaults_in_one_file(tmp_path, monkeypatch):
    path = _extra(tmp_path, [_user_entry(default=True), _user_entry(tag="other", default=True)])
    monkeypatch.setenv("VIT_ZOO_MANIFEST", str(path))
    with pytest.raises(manifest.ManifestError, match="vit-base-16 has 2 entries marked default"):
        manifest.list_weights()


def test_unreadable_and_malformed_files(tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_ZOO_MANIFEST", str(tmp_path / "absent.json"))
    with pytest.raises(manifest.ManifestError, match="cannot read weights manifest .*absent.json"):
        manifest.list_weights()
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1, "entries": [}')
    monkeypatch.setenv("VIT_ZOO_MANIFEST", str(bad))
    with pytest.raises(manifest.ManifestError, match="bad.json is not valid JSON: line 1"):
        manifest.list_weights()
    wrong = _extra(tmp_path, [], schema_version=2)
    monkeypatch.setenv("VIT_ZOO_MANIFEST", str(wrong))
    with pytest.raises(manifest.ManifestError, match="'schema_version' is 2; this vit_zoo reads 1"):
        manifest.list_weights()


def test_packaged_file_structure():
    assert PACKAGED["schema_version"] == manifest.SCHEMA_VERSION
    assert len(PACKAGED["entries"]) == len(ENTRIES) >= 90
