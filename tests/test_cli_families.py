"""``vit-zoo list`` / ``info`` / ``weights`` show the families: the family of each variant, what it changes
against the classic ViT, its parameter counts (held to timm's own models) and its published weights."""
import json
from collections import Counter

import pytest

from reference_frameworks import require
from vit_zoo import cli
from vit_zoo.model.variants import FAMILIES
from vit_zoo.weights.manifest import packaged_manifest_path

# entries per model, counted in the packaged file itself
PACKAGED_COUNTS = Counter(e["model"] for e in json.loads(packaged_manifest_path().read_text())["entries"])


def run(capsys, *args):
    code = cli.main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _rows(out):
    """The table's rows as lists of cells (two or more spaces apart), header and rule dropped."""
    lines = [line for line in out.splitlines()[2:] if line.strip()]
    return [[cell for cell in line.split("  ") if cell.strip()] for line in lines]


def test_list_has_a_family_column_and_the_published_weights_count(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and out.splitlines()[0].split() == [
        "family", "model", "params", "(224,", "1000", "cls)", "GFLOPs/img", "weights"]
    rows = {row[1].strip(): [cell.strip() for cell in row] for row in _rows(out)}
    assert rows["vit-base-16"] == ["vit", "vit-base-16", "86,567,656", "35.1", str(PACKAGED_COUNTS["vit-base-16"])]
    assert rows["dinov2-small-14"][0] == "dinov2" and rows["dinov2-small-14"][-1] == "5"
    assert rows["deit3-base-16"][-1] == "8" and rows["deit3-base-14"][-1] == "-"  # no such release
    assert [row[0].strip() for row in _rows(out)] == sorted((r[0].strip() for r in _rows(out)),
                                                            key=list(FAMILIES).index)  # grouped by family


def test_list_family_filter_and_its_usage_error(capsys):
    code, out, _ = run(capsys, "list", "--family", "deit-distilled")
    assert code == 0
    assert [row[1].strip() for row in _rows(out)] == [
        "deit-distilled-tiny-16", "deit-distilled-small-16", "deit-distilled-base-16"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["list", "--family", "dino"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'dino' (choose from 'vit', 'deit', 'deit-distilled', 'deit3', 'dinov2', " \
           "'dinov2-reg4', 'clip', 'siglip', 'siglip2')" in capsys.readouterr().err


@pytest.mark.parametrize("name, expected", [
    ("dinov2-reg4-giant-14", {
        "prefix tokens": "5 (class, 4 registers); 1 with a position embedding",
        "LayerScale": "init 1e-05", "MLP": "swiglu (4096)",
        "head": "linear, pooling token-mean (width 3072)",
        "position embeddings": "stored for 37x37 patches, resampled to the input's grid in the model; "
                               "resampling bicubic-antialias"}),
    ("deit-distilled-small-16", {
        "prefix tokens": "2 (class, distillation); 2 with a position embedding", "LayerScale": "none",
        "MLP": "gelu (1536)", "head": "distilled, pooling token (width 384)",
        "position embeddings": "14x14 patches (the input's); resampling bicubic"}),
    ("deit3_base_patch16_384", {
        "prefix tokens": "1 (class); 0 with a position embedding", "LayerScale": "init 1e-06",
        "position embeddings": "24x24 patches (the input's); resampling bicubic"}),
    ("dinov2_vitb14", {"position embeddings": "stored for 37x37 patches, resampled to the input's grid in "
                                              "the model; resampling bicubic-offset"}),
])
def test_info_shows_the_family_options(capsys, name, expected):
    code, out, _ = run(capsys, "info", name, "--json")
    options = json.loads(out)["family_options"]
    assert code == 0 and {key: options[key] for key in expected} == expected
    code, text, _ = run(capsys, "info", name)
    for label, value in expected.items():
        assert f"  {label:30s} {value}\n" in text


# (name, timm architecture, the count compared): timm's DINOv2 models are headless, its DeiTs classify.
TIMM_COUNTS = [("deit-distilled-tiny-16", "deit_tiny_distilled_patch16_224", "parameters"),
               ("deit3-medium-16", "deit3_medium_patch16_224", "parameters"),
               ("dinov2-giant-14", "vit_giant_patch14_dinov2", "parameters_without_head")]


@pytest.mark.parametrize("name, architecture, count", TIMM_COUNTS, ids=[row[0] for row in TIMM_COUNTS])
def test_info_parameter_counts_are_timm_s(capsys, name, architecture, count):
    timm, torch = require("timm"), require("torch")
    with torch.device("meta"):
        reference = timm.create_model(architecture, pretrained=False)
    code, out, _ = run(capsys, "info", name, "--json")
    info = json.loads(out)
    assert code == 0 and info[count] == sum(p.numel() for p in reference.parameters())
    assert info["family"] == name.rsplit("-", 2)[0] and info["parameters_with_21k_pre_logits_head"] is None


def test_weights_lists_a_family_model_s_entries(capsys):
    code, out, _ = run(capsys, "weights", "dinov2_vits14")
    assert code == 0
    rows = [[cell.strip() for cell in row] for row in _rows(out)[:-1]]
    assert rows == [
        ["dinov2-small-14.meta-lvd142m", "meta-dinov2", "224", "none", "-", "?",
         "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth"],
        ["dinov2-small-14.meta-in1k-linear", "meta-dinov2", "224", "1000", "81.10", "?",
         "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth + "
         "dinov2_vits14_linear_head.pth"],
        ["dinov2-small-14.timm-lvd142m", "timm", "518", "none", "-", "?", "hf:timm/vit_small_patch14_dinov2.lvd142m"],
        ["dinov2-small-14.hf-lvd142m", "hf", "224", "none", "-", "?", "hf:facebook/dinov2-small"],
        ["dinov2-small-14.hf-in1k-linear*", "hf", "224", "1000", "81.10", "?",
         "hf:facebook/dinov2-small-imagenet1k-1-layer"]]
    assert out.splitlines()[-1].startswith("5 checkpoint(s)")
