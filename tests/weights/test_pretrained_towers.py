"""pretrained= for an image tower end to end: a manifest entry (via VIT_ZOO_MANIFEST) → download of a Hugging Face
SiglipVisionModel repo from a fake Hub → conversion into the cache → a model whose default output is the tower's
embedding (transformers' pooler_output), with the entry's facts."""
import json

import numpy as np

from reference_frameworks import require

torch = require("torch")
transformers = require("transformers")

import vit_zoo  # noqa: E402
from conftest import to_numpy  # noqa: E402
from fixtures_http import FaultServer, use_fake_hub, use_loopback_cache  # noqa: E402
from synth_checkpoints import relative_error  # noqa: E402

import synth_hf_family as family  # noqa: E402
import synth_hf_tower as tower  # noqa: E402

SIZE = 32  # siglip-base-16 at a 2x2 patch grid: the real architecture, quick to convert


def test_a_siglip_repo_loads_as_its_embedding_with_the_entry_s_facts(tmp_path, monkeypatch):
    config = tower.siglip_vision_config(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, image_size=SIZE, patch_size=16)
    reference = tower.model("SiglipVisionModel", config, seed=3)
    folder = family.save(reference, tmp_path / "repo")
    entry = dict(tag="webli-test", model="siglip-base-16", format="hf", hf_repo="google/siglip-test",
                 filename="model.safetensors", image_size=SIZE, num_classes=0, labels=None, mean=[0.5] * 3,
                 std=[0.5] * 3, pooling="map", preprocessing={"recipe": "hf", "crop_pct": 1.0,
                                                               "interpolation": "bicubic"},
                 license="apache-2.0", default=True, source="tests", zero_shot_top1=76.04,
                 zero_shot_top1_source="tests")
    with FaultServer() as srv:
        use_loopback_cache(monkeypatch, tmp_path / "home", srv.url)
        use_fake_hub(monkeypatch, tmp_path / "hf", srv.url)
        for name in ("config.json", "model.safetensors"):
            srv.add_hf_file("google/siglip-test", name, (folder / name).read_bytes())
        manifest_path = tmp_path / "manifest.json"
        manifest_path.write_text(json.dumps({"schema_version": 1, "entries": [entry]}))
        monkeypatch.setenv("VIT_ZOO_MANIFEST", str(manifest_path))
        model = vit_zoo.load("siglip-base-16", pretrained=True, include_preprocessing=False)
    pixels = np.random.default_rng(0).normal(0, 1, (2, SIZE, SIZE, 3)).astype("float32")
    with torch.no_grad():
        expected = reference(pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy())).pooler_output
    assert model.output_shape == (None, 768)
    assert relative_error(to_numpy(model(pixels)), expected.numpy()) <= 1e-4
    identity = model.identity
    assert (identity.provenance.format, identity.provenance.manifest_key) == ("hf", "siglip-base-16.webli-test")
    assert (identity.preprocessing.recipe, identity.preprocessing.interpolation) == ("hf", "bicubic")
    assert identity.labels is None and identity.config.pooling == "map"
