"""pretrained= for a family's original release end to end: a manifest entry (via VIT_ZOO_MANIFEST) → loopback
download of Meta's DeiT ``.pth`` (``{"model": state dict}``, format deit-pth) → conversion → a model whose
logits are timm's own, with the entry's evaluation transform and provenance."""
import json

import timm_reference as ref  # timm and torch, through reference_frameworks.require
import vit_zoo
from conftest import to_numpy
from fixtures_http import FaultServer, use_loopback_cache
from synth_checkpoints import relative_error

GCS = "https://storage.googleapis.com"
SIZE = 32  # a 2x2 patch grid: the real deit-distilled-tiny-16 architecture, quick to convert


def test_a_deit_release_pth_loads_with_its_entry_s_facts(tmp_path, monkeypatch):
    reference = ref.build("deit_tiny_distilled_patch16_224", seed=7, img_size=SIZE)
    release = ref.save_release(reference, tmp_path / "deit_tiny_distilled_patch16_224-b40b3cf7.pth")
    entry = dict(tag="meta-test", model="deit-distilled-tiny-16", format="deit-pth",
                 url=f"{GCS}/deit/deit_tiny_distilled_patch16_224-b40b3cf7.pth", image_size=SIZE, num_classes=1000,
                 labels="imagenet1k", mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], pooling="token",
                 preprocessing={"recipe": "timm", "crop_pct": 0.875, "interpolation": "bicubic"},
                 license="apache-2.0", default=True, source="tests")
    with FaultServer() as srv:
        use_loopback_cache(monkeypatch, tmp_path / "home", srv.url)
        srv.add("/deit/deit_tiny_distilled_patch16_224-b40b3cf7.pth", release.read_bytes())
        manifest_path = tmp_path / "manifest.json"
        manifest_path.write_text(json.dumps({"schema_version": 1, "entries": [entry]}))
        monkeypatch.setenv("VIT_ZOO_MANIFEST", str(manifest_path))
        model = vit_zoo.load("deit-distilled-tiny-16", pretrained=True, include_preprocessing=False)
    nhwc, nchw = ref.images(SIZE)
    with ref.torch.no_grad():
        expected = reference(nchw).numpy()  # eval mode: the mean of the two heads' logits
    assert relative_error(to_numpy(model(nhwc)), expected) <= ref.TOLERANCE
    identity = model.identity
    assert (identity.provenance.format, identity.provenance.manifest_key) == ("deit-pth",
                                                                            "deit-distilled-tiny-16.meta-test")
    assert (identity.preprocessing.recipe, identity.preprocessing.crop_pct) == ("timm", 0.875)
    assert identity.labels == "imagenet1k" and identity.config.mean == (0.485, 0.456, 0.406)
