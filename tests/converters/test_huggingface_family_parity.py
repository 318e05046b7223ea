"""The Hugging Face converter's DeiT and DINOv2 model types against transformers 5's torch classes: random
tiny transformers models (``synth_hf_family``), saved with ``save_pretrained``, loaded through the loader
and held to transformers' outputs at max|a − b| / max|b| ≤ 1e-4 -- logits and the token sequence, at the
stored size, at another size (transformers' ``interpolate_pos_encoding``; DINOv2 interpolates on every
call) and through a ``dynamic_size`` model."""
import re
import warnings

import numpy as np
import pytest

from reference_frameworks import require

torch = require("torch")
transformers = require("transformers")

import vit_zoo  # noqa: E402
from vit_zoo.converters import huggingface as hf  # noqa: E402
from vit_zoo.converters.checkpoint import open_checkpoint  # noqa: E402

import synth_hf  # noqa: E402
import synth_hf_family as family  # noqa: E402
from conftest import load_converted  # noqa: E402

TOLERANCE = 1e-4
# Checkpoints here have no preprocessor_config.json (but one test's): the assumed mean/std are warned about.
pytestmark = pytest.mark.filterwarnings("ignore:hf checkpoint .* does not state every value:UserWarning")


def relative_error(ours, reference) -> float:
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def images(size, batch=2, seed=0):
    """Normalised images of ``size`` px: (NHWC for us, the same values NCHW for torch)."""
    nhwc = np.random.default_rng(seed).normal(0, 1, (batch, size, size, 3)).astype("float32")
    return nhwc, torch.from_numpy(nhwc.transpose(0, 3, 1, 2).copy())


def reference_outputs(reference, pixels, interpolate=False):
    """{"tokens": last_hidden_state, "logits": logits (task models)} of a transformers model."""
    kwargs = {"interpolate_pos_encoding": True} if interpolate else {}
    body = getattr(reference, reference.base_model_prefix, reference)
    with torch.no_grad():
        found = {"tokens": body(pixel_values=pixels, **kwargs).last_hidden_state.numpy()}
        if body is not reference:
            found["logits"] = reference(pixel_values=pixels, **kwargs).logits.numpy()
    return found


def our_outputs(path, nhwc, heads=True, **options):
    """{"tokens": include_top=False, pooling=None; "logits": the head} of our converted model."""
    found = {"tokens": load_converted(path, include_top=False, pooling=None, **options)[0].predict(nhwc, verbose=0)}
    if heads:
        found["logits"] = load_converted(path, **options)[0].predict(nhwc, verbose=0)
    return found


def assert_parity(case, path, reference, size, interpolate=False, **options):
    nhwc, nchw = images(size)
    expected = reference_outputs(reference, nchw, interpolate)
    got = our_outputs(path, nhwc, heads="logits" in expected, **options)
    errors = {name: relative_error(got[name], expected[name]) for name in expected}
    print(f"\nhf family parity {case}: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert max(errors.values()) <= TOLERANCE, (case, errors)


# ---- DINOv2 ------------------------------------------------------------------------------------------
DINOV2_CASES = {
    "Dinov2ForImageClassification": ("Dinov2ForImageClassification", dict()),
    "Dinov2ForImageClassification swiglu": ("Dinov2ForImageClassification", dict(use_swiglu_ffn=True)),
    "Dinov2Model": ("Dinov2Model", dict()),
    "Dinov2WithRegistersForImageClassification": ("Dinov2WithRegistersForImageClassification", dict()),
    "Dinov2WithRegistersModel swiglu": ("Dinov2WithRegistersModel", dict(use_swiglu_ffn=True)),
}


@pytest.fixture(scope="module", params=list(DINOV2_CASES))
def dinov2(request, tmp_path_factory):
    cls_name, changes = DINOV2_CASES[request.param]
    reference = family.model(cls_name, family.dinov2_config("Registers" in cls_name, **changes),
                             seed=len(request.param))
    return request.param, reference, family.save(reference, tmp_path_factory.mktemp("dinov2"))


def test_dinov2_at_the_stored_size(dinov2):
    case, reference, path = dinov2
    assert_parity(f"{case} 56 px", path, reference, 56)


def test_dinov2_at_another_size_resamples_in_the_graph(dinov2):
    # transformers interpolates the stored 4x4 table to 6x6 on every call; so does our model (position_grid).
    case, reference, path = dinov2
    assert_parity(f"{case} 84 px", path, reference, 84, image_size=84)


def test_dinov2_dynamic_size(dinov2):
    case, reference, path = dinov2
    for size in (42, 98):
        assert_parity(f"{case} dynamic {size} px", path, reference, size, dynamic_size=True)


def test_dinov2_config_reads_the_architecture(dinov2):
    case, reference, path = dinov2
    with open_checkpoint(path) as checkpoint:
        fields = hf.config_fields(checkpoint)
    config = reference.config
    registers = 4 if "Registers" in case else 0
    swiglu = config.use_swiglu_ffn
    assert (fields["position_grid"], fields["image_size"], fields["register_tokens"]) == ((4, 4), (56, 56), registers)
    assert (fields["mlp"], fields["mlp_size"]) == (("swiglu", 88) if swiglu else ("gelu", 128))  # 128*2/3 → 88
    assert fields["layer_scale"] == 0.5 and fields["layer_norm_epsilon"] == 1e-6
    assert fields["pooling"] == ("token-mean" if "Classification" in case else "token")
    assert fields["position_embedding_resampling"] == ("bicubic-antialias" if registers else "bicubic")
    assert fields["assumed"]["image_size"].startswith("(56, 56) (config.json image_size; no preprocessor_config")


def test_dinov2_input_size_from_the_processor_crop(tmp_path):
    # facebook/dinov2-*: config.json image_size 518 (the stored table), BitImageProcessor crops 224. Here:
    # stored for 56 px, processor crop 28 → the model takes 28 px, the table resampled to 2x2 in the graph.
    reference = family.model("Dinov2ForImageClassification", family.dinov2_config(), seed=11)
    processor = transformers.BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 28, "width": 28},
                                               image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    path = family.save(reference, tmp_path, processor=processor)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # config.json and preprocessor_config.json state everything
        model = vit_zoo.load(weights=str(path))
    identity = model.identity
    assert identity.config.image_size == (28, 28) and identity.config.position_grid == (4, 4)
    assert (identity.preprocessing.recipe, identity.preprocessing.crop_pct,
            identity.preprocessing.interpolation) == ("timm", 28 / 32, "bicubic")
    assert identity.config.mean == (0.485, 0.456, 0.406) and identity.provenance.assumed == ()
    assert_parity("Dinov2ForImageClassification 28 px (processor crop)", path, reference, 28)


def test_dinov2_with_registers_pytorch_bin(tmp_path):
    reference = family.model("Dinov2WithRegistersForImageClassification", family.dinov2_config(True), seed=12)
    path = synth_hf.save_bin(reference, tmp_path)  # transformers 5 saves safetensors only; 4.x's pickle
    assert open_checkpoint(path).path.name == "pytorch_model.bin"
    assert_parity("Dinov2WithRegistersForImageClassification pytorch_model.bin 56 px", path, reference, 56)


@pytest.mark.parametrize("cls_name, wrong", [("Dinov2WithRegistersForImageClassification", "bicubic"),
                                             ("Dinov2ForImageClassification", "bicubic-antialias")])
def test_the_other_interpolation_fails_the_tolerance(tmp_path, cls_name, wrong):
    # Shrinking the table (4x4 → 3x3) with or without antialiasing differs beyond 1e-4: the parity above
    # holds each class to its own interpolate_pos_encoding.
    reference = family.model(cls_name, family.dinov2_config("Registers" in cls_name), seed=17)
    path = family.save(reference, tmp_path)
    nhwc, nchw = images(42)
    model, _ = load_converted(path, include_top=False, pooling=None, dynamic_size=True,
                              known={"config": {"position_embedding_resampling": wrong}})
    error = relative_error(model.predict(nhwc, verbose=0), reference_outputs(reference, nchw)["tokens"])
    print(f"\nhf family negative control {cls_name} with {wrong}: {error:.2e}")
    assert error > TOLERANCE


@pytest.mark.xla
def test_dinov2_with_registers_on_the_default_engine(tmp_path):
    reference = family.model("Dinov2WithRegistersForImageClassification", family.dinov2_config(True), seed=13)
    path = family.save(reference, tmp_path)
    assert_parity("Dinov2WithRegistersForImageClassification XLA 70 px", path, reference, 70, image_size=70)


def test_dinov2_mask_token_is_ignored_with_its_reason(tmp_path):
    reference = family.model("Dinov2Model", family.dinov2_config(), seed=14)
    path = family.save(reference, tmp_path)
    with open_checkpoint(path) as checkpoint:
        assert "embeddings.mask_token" in checkpoint
    for key in ("embeddings.mask_token", "dinov2.embeddings.mask_token", "dinov2_with_registers.embeddings.mask_token"):
        assert [reason for pattern, reason in hf.IGNORED.items()
                if re.fullmatch(pattern, key) and "pre-training" in reason and "DINOv2" in reason], key
    # and it converts (the applier would refuse an unused tensor that is not ignored)
    assert_parity("Dinov2Model with its mask token 56 px", path, reference, 56)


# ---- DeiT --------------------------------------------------------------------------------------------
DEIT_CASES = ("DeiTForImageClassificationWithTeacher", "DeiTForImageClassification", "DeiTModel")


@pytest.fixture(scope="module", params=DEIT_CASES)
def deit(request, tmp_path_factory):
    reference = family.model(request.param, family.deit_config(), seed=len(request.param))
    return request.param, reference, family.save(reference, tmp_path_factory.mktemp("deit"))


def test_deit_at_the_stored_size(deit):
    case, reference, path = deit
    assert_parity(f"{case} 32 px", path, reference, 32)


def test_deit_at_another_size(deit):
    # transformers with interpolate_pos_encoding=True; ours resamples at load time (image_size=) and in the
    # graph (dynamic_size), both bicubic without antialiasing.
    case, reference, path = deit
    assert_parity(f"{case} 48 px", path, reference, 48, interpolate=True, image_size=48)
    assert_parity(f"{case} dynamic 24 px", path, reference, 24, interpolate=True, dynamic_size=True)


def test_deit_config_reads_the_heads(deit):
    case, reference, path = deit
    with open_checkpoint(path) as checkpoint:
        fields = hf.config_fields(checkpoint)
    assert fields["distillation_token"] is True and fields["layer_norm_epsilon"] == 1e-12
    assert fields["head"] == ("distilled" if case.endswith("WithTeacher") else "linear")
    assert fields["num_classes"] == (None if case == "DeiTModel" else 5)
    assert fields["representation_size"] == (32 if case == "DeiTModel" else None)  # DeiTModel's pooler


def test_deit_model_pooler(tmp_path):
    reference = family.model("DeiTModel", family.deit_config(), seed=15)
    path = family.save(reference, tmp_path)
    nhwc, nchw = images(32)
    with torch.no_grad():
        expected = reference(pixel_values=nchw).pooler_output.numpy()
    pooled = load_converted(path, include_top=False, pooling="token")[0].predict(nhwc, verbose=0)
    error = relative_error(pooled, expected)
    print(f"\nhf family parity DeiTModel pooler_output: {error:.2e}")
    assert error <= TOLERANCE


def test_deit_new_head_starts_both_heads_at_zero(tmp_path):
    reference = family.model("DeiTForImageClassificationWithTeacher", family.deit_config(), seed=16)
    model, _ = load_converted(family.save(reference, tmp_path), num_classes=3)
    for layer in ("head", "head_dist"):
        assert all(not np.any(np.asarray(w)) and w.shape[-1] == 3 for w in model.get_layer(layer).weights)
    assert model.identity.labels is None
