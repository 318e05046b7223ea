"""The manifest's DeiT, DeiT-III and DINOv2 entries: every one names its model in each source's own spelling,
every published size has weights, each model one default (a classifier with its published top-1), and the
stated evaluation transform reaches the loader."""
import re

import pytest

from vit_zoo.model.identity import Preprocessing
from vit_zoo.model.variants import family_of, list_models, resolve_name
from vit_zoo.weights import manifest, pretrained

NEW_FAMILIES = ("deit", "deit-distilled", "deit3", "dinov2", "dinov2-reg4")
ENTRIES = [e for e in manifest.read_manifest(manifest.packaged_manifest_path())
           if family_of(e["model"]) in NEW_FAMILIES]
# What each publisher released (deit README_deit.md / README_revenge.md, timm deit.py, dinov2 README.md).
PUBLISHED = {"deit-tiny-16": 1, "deit-small-16": 1, "deit-base-16": 2, "deit-distilled-tiny-16": 1,
             "deit-distilled-small-16": 1, "deit-distilled-base-16": 2, "deit3-small-16": 4, "deit3-medium-16": 2,
             "deit3-base-16": 4, "deit3-large-16": 4, "deit3-huge-14": 2,
             **{f"{family}-{size}-14": 1 for family in ("dinov2", "dinov2-reg4")
                for size in ("small", "base", "large", "giant")}}
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture(autouse=True)
def no_extra_manifests(monkeypatch):
    monkeypatch.delenv("VIT_ZOO_MANIFEST", raising=False)


def _source_name(entry) -> str:
    """The model as the entry's source spells it: the timm tag, the Hub repo, Meta's file name."""
    file = entry["url"].rsplit("/", 1)[1].removesuffix(".pth") if entry.get("url") else None
    if entry["format"] == "meta-dinov2":
        return file  # dinov2_vits14_reg4_pretrain
    if entry["format"] == "deit-pth":
        release = re.fullmatch(r"deit_3_([a-z]+)_(\d+)_(1k|21k|21k_v1)", file)  # deit_3_huge_224_21k_v1
        if release:  # README_revenge.md: ViT-H is /14 (deit_huge_patch14_LS), the others /16
            size, res = release[1], release[2]
            return f"deit3_{size}_patch{14 if size == 'huge' else 16}_{res}"
        return file.rsplit("-", 1)[0]  # deit_base_distilled_patch16_384-d0272ac0
    return entry["hf_repo"].removeprefix("timm/")  # deit3_base_patch16_384.fb_in22k_ft_in1k, facebook/deit-...


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["key"])
def test_each_source_spells_the_entry_s_model(entry):
    name, image = resolve_name(_source_name(entry))
    assert name == entry["model"]
    assert image in (None, entry["image_size"])  # a name with a size states the entry's
    assert entry["format"] in manifest.FORMATS and entry["license"] == "apache-2.0"
    assert (entry["mean"], entry["std"]) == (IMAGENET_MEAN, IMAGENET_STD)
    Preprocessing(**entry["preprocessing"])  # every new entry states its evaluation transform


def test_every_published_size_has_its_weights_and_sources():
    for model, releases in PUBLISHED.items():
        entries = [e for e in ENTRIES if e["model"] == model]
        releases_found = [e["tag"] for e in entries if e["num_classes"] and not e.get("same_weights_as")]
        assert len(releases_found) == releases, (model, releases_found)
    assert {e["model"] for e in ENTRIES} == set(PUBLISHED)
    dinov2 = [e for e in ENTRIES if e["model"].startswith("dinov2")]
    assert {e["tag"] for e in dinov2} == {"meta-lvd142m", "meta-in1k-linear", "timm-lvd142m", "hf-lvd142m",
                                          "hf-in1k-linear"}
    assert all(e["url"].endswith("_pretrain.pth") for e in dinov2 if e["format"] == "meta-dinov2")
    deit = [e for e in ENTRIES if not e["model"].startswith("dinov2")]
    originals = {e["key"] for e in deit if e["format"] == "deit-pth"}  # one Meta file per release
    assert originals == {e["model"] + "." + e["tag"].replace("timm-", "meta-") for e in deit if e["format"] == "timm"}
    heads = {e["head_url"] for e in dinov2 if e.get("head_url")}  # the heads of hub/classifiers.py, layers=1
    assert heads == {f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vit{s}14/dinov2_vit{s}14{r}_linear_head.pth"
                     for s in "sblg" for r in ("", "_reg4")}
    assert all(e["num_classes"] == 0 for e in dinov2 if e["tag"].endswith("lvd142m"))


def test_each_model_has_one_default_a_classifier_with_its_published_top1():
    for model in PUBLISHED:
        defaults = [e for e in ENTRIES if e["model"] == model and e["default"]]
        assert len(defaults) == 1, model
        default = defaults[0]
        assert default["num_classes"] == 1000 and default["top1"] and default["top1_source"]
        assert manifest.resolve(model, True)["key"] == default["key"]
    assert manifest.resolve("facebook/dinov2-small", True)["hf_repo"] == "facebook/dinov2-small-imagenet1k-1-layer"
    assert manifest.resolve("deit3_base_patch16_224", True)["tag"] == "timm-in21k-ft-in1k-224"


@pytest.mark.parametrize("model, top1", [
    ("dinov2-small-14", 81.1), ("dinov2-base-14", 84.5), ("dinov2-large-14", 86.3), ("dinov2-giant-14", 86.5),
    ("dinov2-reg4-small-14", 80.9), ("dinov2-reg4-base-14", 84.6), ("dinov2-reg4-large-14", 86.7),
    ("dinov2-reg4-giant-14", 87.1), ("deit-tiny-16", 72.2), ("deit-small-16", 79.9), ("deit-base-16", 81.8),
    ("deit-distilled-tiny-16", 74.5), ("deit-distilled-small-16", 81.2), ("deit-distilled-base-16", 83.4),
    ("deit3-small-16", 83.1), ("deit3-medium-16", 84.5), ("deit3-base-16", 85.7), ("deit3-large-16", 87.0),
    ("deit3-huge-14", 87.2),
])
def test_defaults_carry_the_publishers_figures(model, top1):
    assert manifest.resolve(model, True)["top1"] == top1


def test_the_stated_transform_reaches_the_loader():
    dinov2 = manifest.resolve("dinov2-base-14", True)
    facts = pretrained.entry_facts(dinov2)
    assert facts["preprocessing"] == Preprocessing("timm", 0.875, "bicubic")  # Resize 256, CenterCrop 224
    assert facts["config"]["pooling"] == "token-mean" and facts["labels"] == "imagenet1k"
    deit3 = pretrained.entry_facts(manifest.resolve("deit3-base-16", "timm-in21k-ft-in1k-224"))
    assert deit3["preprocessing"] == Preprocessing("timm", 1.0, "bicubic")  # timm: crop_pct=1.0 at 224
    # an entry without "preprocessing" keeps its format's default
    classic = pretrained.entry_facts(manifest.resolve("vit-base-16", "timm-augreg-in21k-ft-in1k-224"))
    assert classic["preprocessing"] == Preprocessing("timm", 0.9, "bicubic")


def test_models_without_published_weights_say_so():
    published = {e["model"] for e in ENTRIES}
    for model in set(list_models("deit3")) - published:  # e.g. deit3-base-14: no such release
        with pytest.raises(manifest.ManifestError, match=f"no pretrained weights are known for {model}"):
            manifest.resolve(model, True)
