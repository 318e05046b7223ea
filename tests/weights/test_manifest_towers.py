"""The image towers' published weights (issue 19): OpenAI CLIP, OpenCLIP LAION, SigLIP and SigLIP 2 — each with its
source, licence, preprocessing, embedding width and published zero-shot ImageNet top-1."""
import pytest

import vit_zoo
from vit_zoo.cli.tables import format_weights_table
from vit_zoo.weights import manifest

ENTRIES = manifest.read_manifest(manifest.packaged_manifest_path())
TOWERS = [e for e in ENTRIES if e["model"].startswith(("clip-", "siglip"))]

# (model, tag) → zero-shot ImageNet top-1 as published: OpenCLIP's docs/openclip_results.csv (commit f862f86) and
# big_vision's README_siglip2.md (commit 1659d42), typed from those tables.
PUBLISHED = {
    ("clip-base-32", "openai"): 63.32, ("clip-base-16", "openai"): 68.34, ("clip-large-14", "openai"): 75.54,
    ("clip-large-14", "openai-336"): 76.56, ("clip-huge-14", "laion2b-s32b-b79k"): 77.96,
    ("clip-gigantic-14", "laion2b-s39b-b160k"): 80.09,
    ("siglip-base-16", "webli-224"): 76.04, ("siglip-base-16", "webli-256"): 76.53,
    ("siglip-base-16", "webli-384"): 78.49, ("siglip-base-16", "webli-512"): 79.14,
    ("siglip-large-16", "webli-256"): 80.45, ("siglip-so400m-14", "webli-224"): 82.03,
    ("siglip-so400m-14", "webli-384"): 83.08,
    ("siglip2-base-16", "webli-224"): 78.2, ("siglip2-so400m-14", "webli-224"): 83.2,
    ("siglip2-so400m-14", "webli-384"): 84.1,
}


def _entry(model, tag):
    return next(e for e in TOWERS if (e["model"], e["tag"]) == (model, tag))


@pytest.mark.parametrize("model, tag", list(PUBLISHED))
def test_the_issue_s_towers_are_published_with_their_zero_shot_top1(model, tag):
    entry = _entry(model, tag)
    assert entry["zero_shot_top1"] == PUBLISHED[model, tag] and entry["zero_shot_top1_source"]
    assert entry["num_classes"] == 0 and entry["labels"] is None and entry["top1"] is None


@pytest.mark.parametrize("entry", TOWERS, ids=lambda e: e["key"])
def test_tower_entries_state_their_numerics_and_preprocessing(entry):
    config = vit_zoo.ViTConfig.from_name(entry["model"])
    assert entry["pooling"] == config.pooling  # token (CLIP) or the MAP head (SigLIP)
    if entry["model"].startswith("clip-"):
        assert entry["mean"] == [0.48145466, 0.4578275, 0.40821073] and entry["license"] == "mit"
        assert entry["preprocessing"] == {"recipe": "timm", "crop_pct": 1.0, "interpolation": "bicubic"}
    else:
        assert entry["mean"] == entry["std"] == [0.5] * 3 and entry["license"] == "apache-2.0"
        assert entry["preprocessing"]["recipe"] == "hf" and entry["preprocessing"]["interpolation"] == "bicubic"
        assert entry["hf_repo"].startswith(f"google/{entry['model'].split('-')[0]}-")  # google/siglip2-… for siglip2


def test_openai_originals_are_their_published_torchscript_files_with_the_sha256_of_their_url():
    originals = [e for e in TOWERS if e["format"] == "openai-clip"]
    assert {(e["model"], e["image_size"]) for e in originals} == {
        ("clip-base-32", 224), ("clip-base-16", 224), ("clip-large-14", 224), ("clip-large-14", 336)}
    for e in originals:
        assert e["url"].split("/")[-2] == e["sha256"] and e["url"].endswith(".pt")
        twin = _entry(e["model"], e["same_weights_as"])
        assert (twin["format"], twin["hf_repo"].split("/")[0]) == ("hf", "openai")


def test_each_tower_model_has_one_default():
    for model in {e["model"] for e in TOWERS}:
        assert sum(e["default"] for e in TOWERS if e["model"] == model) == 1, model


def test_the_weights_table_shows_a_tower_s_embedding_width_and_zero_shot_top1():
    table = format_weights_table([_entry("clip-base-16", "openai"), _entry("siglip-so400m-14", "webli-384")])
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:4]}
    assert rows["clip-base-16.openai*"][1:6] == ["hf", "224", "embed", "512", "68.34"]
    assert rows["siglip-so400m-14.webli-384*"][1:6] == ["hf", "384", "embed", "1152", "83.08"]
    assert "0-shot" in table


def test_a_zero_shot_figure_without_its_source_is_refused():
    entry = dict(_entry("clip-base-16", "openai"), zero_shot_top1_source=None)
    entry = {k: v for k, v in entry.items() if k != "key"}
    _, problems = manifest.validate_entry(entry)
    assert any("'zero_shot_top1' needs 'zero_shot_top1_source'" in p for p in problems)
