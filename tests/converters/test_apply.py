"""The strict applier, the checkpoint readers and the named transforms.

Every bad checkpoint gives one error that names what is wrong, and a failed load leaves the model's
weights as they were (the applier checks everything before it assigns anything).
"""
import numpy as np
import pytest

import vit_zoo
from vit_zoo import converters
from vit_zoo.converters import google_npz, timm, transforms as T
from vit_zoo.converters.apply import row

from reference_frameworks import require
from synth_checkpoints import (from_bfloat16_bits, npz_tensors, timm_tensors, to_bfloat16_bits, write_npz,
                               write_safetensors, write_timm)

SMALL = dict(image_size=32, patch_size=8, hidden_size=32, mlp_size=64, num_heads=4, num_layers=2,
             num_classes=7, gelu="tanh")


@pytest.fixture(scope="module")
def config():
    return vit_zoo.ViTConfig(**SMALL)


@pytest.fixture
def loaded(config, tmp_path):
    """A model with a good checkpoint applied, and a snapshot of its weights."""
    model = vit_zoo.build(config, include_preprocessing=False)
    path = write_npz(tmp_path / "good.npz", npz_tensors(config, seed=0))
    with converters.open_checkpoint(path) as checkpoint:
        converters.apply_rows(model, google_npz.mapping(config), checkpoint)
    return model, snapshot(model)


def snapshot(model):
    return {v.path: np.array(v.numpy()) for v in model.weights}


def assert_unchanged(model, before):
    after = snapshot(model)
    assert all(np.array_equal(after[k], before[k]) for k in before), "a failed load changed weights"


def apply_tensors(model, config, tensors, tmp_path, rows=None, **options):
    path = write_npz(tmp_path / "bad.npz", tensors)
    with converters.open_checkpoint(path) as checkpoint:
        converters.apply_rows(model, google_npz.mapping(config) if rows is None else rows, checkpoint,
                              **options)


# ------------------------------------------------------------------------------------------------
def test_good_checkpoint_assigns_every_weight(config, tmp_path):
    tensors = npz_tensors(config, seed=0)
    model = vit_zoo.build(config, include_preprocessing=False)
    with converters.open_checkpoint(write_npz(tmp_path / "x.npz", tensors)) as checkpoint:
        converters.apply_rows(model, google_npz.mapping(config), checkpoint)
    assert np.array_equal(model.get_layer("block_01_attn").key_kernel.numpy(),
                          tensors["Transformer/encoderblock_1/MultiHeadDotProductAttention_1/key/kernel"])
    assert np.array_equal(model.get_layer("head").bias.numpy(), tensors["head/bias"])


def test_missing_tensor(loaded, config, tmp_path):
    model, before = loaded
    tensors = npz_tensors(config, seed=1)
    del tensors["Transformer/encoderblock_1/LayerNorm_2/bias"]
    with pytest.raises(converters.ConversionError) as error:
        apply_tensors(model, config, tensors, tmp_path)
    message = str(error.value)
    assert "missing in checkpoint (1)" in message
    assert "block_01_norm2/beta ← Transformer/encoderblock_1/LayerNorm_2/bias" in message
    assert "'bad.npz'" in message and "nothing was assigned" in message
    assert_unchanged(model, before)


def test_extra_tensor(loaded, config, tmp_path):
    model, before = loaded
    extra = {"Transformer/encoderblock_1/extra/kernel": np.ones(3, np.float32)}
    tensors = {**npz_tensors(config, seed=1), **extra}
    with pytest.raises(converters.ConversionError, match=r"unexpected \(unused\) in checkpoint \(1\): "
                                                         r"Transformer/encoderblock_1/extra/kernel"):
        apply_tensors(model, config, tensors, tmp_path)
    assert_unchanged(model, before)
    # the same tensor listed as deliberately ignored (with its reason) is fine
    apply_tensors(model, config, tensors, tmp_path, ignored={r".*/extra/kernel": "not part of the model"})


def test_misshaped_tensor(loaded, config, tmp_path):
    model, before = loaded
    tensors = npz_tensors(config, seed=1)
    tensors["head/kernel"] = np.ones((32, 9), np.float32)
    with pytest.raises(converters.ConversionError) as error:
        apply_tensors(model, config, tensors, tmp_path)
    assert "mis-shaped (1): head/kernel: model has (32, 7), checkpoint gives (32, 9)" in str(error.value)
    assert_unchanged(model, before)


def test_checkpoint_of_another_width_lists_the_shapes(loaded, config, tmp_path):
    model, before = loaded
    other = vit_zoo.ViTConfig(**{**SMALL, "hidden_size": 48})
    with pytest.raises(converters.ConversionError) as error:
        apply_tensors(model, config, npz_tensors(other), tmp_path)
    message = str(error.value)
    assert "mis-shaped (" in message and "patch_embed/kernel: model has (8, 8, 3, 32)" in message
    assert "more)" in message  # long lists are cut, with the count of the rest
    assert_unchanged(model, before)


def test_duplicate_and_unknown_targets(loaded, config, tmp_path):
    model, before = loaded
    rows = google_npz.mapping(config)
    rows += [row("head/bias", "head/bias"), row("no_such_layer/kernel", "head/kernel")]
    with pytest.raises(converters.ConversionError) as error:
        apply_tensors(model, config, npz_tensors(config, seed=1), tmp_path, rows=rows)
    assert "assigned twice (1): head/bias" in str(error.value)
    assert "rows for weights the model lacks (1): no_such_layer/kernel" in str(error.value)
    assert_unchanged(model, before)


def test_weight_no_row_assigns(loaded, config, tmp_path):
    model, before = loaded
    rows = [r for r in google_npz.mapping(config) if r.target != "encoder_norm/gamma"]
    with pytest.raises(converters.ConversionError) as error:
        apply_tensors(model, config, npz_tensors(config, seed=1), tmp_path, rows=rows)
    assert "model weights no row assigns (1): encoder_norm/gamma" in str(error.value)
    assert "Transformer/encoder_norm/scale" in str(error.value)  # now unused
    assert_unchanged(model, before)


def test_non_float_tensor(loaded, config, tmp_path):
    model, before = loaded
    tensors = npz_tensors(config, seed=1)
    tensors["cls"] = np.zeros((1, 1, 32), np.int32)
    with pytest.raises(converters.ConversionError, match="cls: dtype int32, expected a floating-point"):
        apply_tensors(model, config, tensors, tmp_path)
    assert_unchanged(model, before)


def test_absent_layers_and_kept_initial_weights(config, tmp_path):
    tensors = npz_tensors(config, seed=2)
    path = write_npz(tmp_path / "x.npz", tensors)
    features = vit_zoo.build(config, include_top=False, include_preprocessing=False)
    with converters.open_checkpoint(path) as checkpoint:
        with pytest.raises(converters.ConversionError, match="rows for weights the model lacks"):
            converters.apply_rows(features, google_npz.mapping(config), checkpoint)
        converters.apply_rows(features, google_npz.mapping(config), checkpoint, absent_layers={"head"})
        model = vit_zoo.build(config, include_preprocessing=False)
        initial = model.get_layer("head").kernel.numpy()
        converters.apply_rows(model, google_npz.mapping(config), checkpoint,
                              keep_initialised={"head/kernel", "head/bias"})
    assert np.array_equal(model.get_layer("head").kernel.numpy(), initial)


# ------------------------------------------------------------------------------------------------
# Readers
def test_truncated_files_are_refused(config, tmp_path):
    npz = write_npz(tmp_path / "x.npz", npz_tensors(config))
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    with pytest.raises(converters.CheckpointError, match="x.npz.*Is the file complete"):
        converters.open_checkpoint(npz)
    st = write_timm(tmp_path, config.replace(gelu="exact"))
    st.write_bytes(st.read_bytes()[: st.stat().st_size - 100])
    with pytest.raises(converters.CheckpointError, match="model.safetensors.*truncated"):
        converters.open_checkpoint(st)


def test_pickle_inside_npz_is_refused(config, tmp_path):
    tensors = {**npz_tensors(config), "meta": np.array([{"lr": 0.1}], dtype=object)}
    path = tmp_path / "x.npz"
    np.savez(path, **tensors)  # np.savez pickles object arrays
    with pytest.raises(converters.CheckpointError, match="'meta' holds Python objects.*refused"):
        converters.open_checkpoint(path)


def test_unknown_format_names_the_keys_looked_for(tmp_path):
    path = write_safetensors(tmp_path / "other.safetensors", {"encoder.weight": np.ones((2, 2), np.float32)})
    with converters.open_checkpoint(path) as checkpoint:
        with pytest.raises(converters.CheckpointError) as error:
            converters.detect_format(checkpoint)
    message = str(error.value)
    assert "unknown checkpoint format in 'other.safetensors'" in message and "encoder.weight" in message
    assert google_npz.TELLTALE in message and timm.TELLTALE in message


def test_float16_npz_loads_into_float32(config, tmp_path):
    tensors = npz_tensors(config)
    model = vit_zoo.build(config, include_preprocessing=False)
    with converters.open_checkpoint(write_npz(tmp_path / "x.npz", tensors, dtype=np.float16)) as checkpoint:
        assert checkpoint.dtype("embedding/kernel") == "float16"
        converters.apply_rows(model, google_npz.mapping(config), checkpoint)
    weight = model.get_layer("patch_embed").kernel
    assert weight.dtype == "float32"
    assert np.array_equal(weight.numpy(), tensors["embedding/kernel"].astype(np.float16).astype(np.float32))


def test_bfloat16_safetensors_loads_into_float32(tmp_path):
    config = vit_zoo.ViTConfig(**{**SMALL, "gelu": "exact"})
    tensors = timm_tensors(config)
    path = write_timm(tmp_path, config, dtype="BF16", tensors=tensors)
    model = vit_zoo.build(config, include_preprocessing=False)
    with converters.open_checkpoint(path) as checkpoint:
        assert checkpoint.dtype("pos_embed") == "bfloat16"
        converters.apply_rows(model, timm.mapping(config), checkpoint)
    weight = model.get_layer("pos_embed").embeddings
    assert weight.dtype == "float32"
    assert np.array_equal(weight.numpy(), from_bfloat16_bits(to_bfloat16_bits(tensors["pos_embed"])))


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_safetensors_writer_matches_the_safetensors_package(tmp_path, dtype):
    torch = require("torch")
    from safetensors.torch import load_file

    tensors = {"a": np.arange(12, dtype=np.float32).reshape(3, 4) / 7, "b": np.float32([1.5, -2.25, 3e-3])}
    loaded = load_file(write_safetensors(tmp_path / "x.safetensors", tensors, dtype=dtype))
    expected_dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype]
    for key, value in tensors.items():
        assert loaded[key].dtype == expected_dtype
        expected = torch.from_numpy(value).to(expected_dtype)  # torch rounds to nearest even too
        assert torch.equal(loaded[key], expected)


# ------------------------------------------------------------------------------------------------
# Transforms, each against the computation it stands for
def test_transpose_is_a_linear_layer():
    rng = np.random.default_rng(0)
    weight, x = rng.standard_normal((5, 3)), rng.standard_normal((2, 3))  # PyTorch Linear (out, in)
    assert np.allclose(x @ T.transpose(weight), x @ weight.T)


def test_conv_to_keras_is_the_same_patch_projection():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((6, 3, 4, 4))  # PyTorch Conv2d (D, C, P, P)
    patch = rng.standard_normal((4, 4, 3))  # one patch, HWC
    torch_style = np.einsum("dcpq,pqc->d", weight, patch)
    keras_style = np.einsum("pqcd,pqc->d", T.conv_to_keras(weight), patch)
    assert T.conv_to_keras(weight).shape == (4, 4, 3, 6) and np.allclose(torch_style, keras_style)


def test_head_splits_match_a_linear_layer():
    rng = np.random.default_rng(0)
    heads, width = 3, 12
    x = rng.standard_normal((5, width))
    weight, bias = rng.standard_normal((width, width)), rng.standard_normal(width)
    linear = (x @ weight.T + bias).reshape(5, heads, width // heads)  # heads contiguous
    split = np.einsum("td,dhk->thk", x, T.split_heads_in(heads)(weight)) + T.split_heads_bias(heads)(bias)
    assert np.allclose(split, linear)
    attended = rng.standard_normal((5, heads, width // heads))
    merged = np.einsum("thk,hkd->td", attended, T.merge_heads_out(heads)(weight))
    assert np.allclose(merged, attended.reshape(5, width) @ weight.T)


def test_fused_qkv_parts():
    fused = np.arange(6 * 2).reshape(6, 2)  # (3D, D) with D = 2
    parts = [T.fused_qkv_part(i)(fused) for i in range(3)]
    assert [p.tolist() for p in parts] == [fused[:2].tolist(), fused[2:4].tolist(), fused[4:].tolist()]
    assert T.fused_qkv_part(2, then=T.transpose)(fused).tolist() == fused[4:].T.tolist()
    assert T.fused_qkv_part(1)(np.arange(6)).tolist() == [2, 3]  # the fused bias (3D,)


def test_to_shape():
    assert T.to_shape(1, 1, 4)(np.arange(4)).shape == (1, 1, 4)


def test_safetensors_header_that_contradicts_its_data_is_refused(tmp_path):
    import json
    import struct

    path = write_safetensors(tmp_path / "x.safetensors", {"a": np.ones((2, 3), np.float32)})
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    header["a"]["shape"] = [3, 3]  # 36 bytes claimed, 24 stored
    encoded = json.dumps(header, separators=(",", ":")).encode().ljust(size)
    path.write_bytes(raw[:8] + encoded + raw[8 + size:])
    with pytest.raises(converters.CheckpointError, match=r"'a' is F32 \[3, 3\] \(36 bytes\).*span 24 bytes"):
        converters.open_checkpoint(path)


# ------------------------------------------------------------------------------------------------
def test_error_types_let_callers_branch_without_reading_messages():
    import pickle

    assert issubclass(converters.UnsupportedLayoutError, converters.CheckpointError)
    assert issubclass(converters.ConversionError, converters.CheckpointError)
    assert not issubclass(converters.UnsupportedLayoutError, converters.ConversionError)
    error = pickle.loads(pickle.dumps(converters.UnsupportedLayoutError("x.npz is a MAP head", "big_vision MAP")))
    assert (type(error), str(error), error.layout) == (converters.UnsupportedLayoutError, "x.npz is a MAP head",
                                                       "big_vision MAP")


def test_loading_another_architecture_is_a_conversion_error(config, tmp_path):
    from vit_zoo.weights.convert import load_checkpoint

    path = write_npz(tmp_path / "x.npz", npz_tensors(config))
    with pytest.raises(converters.ConversionError, match="not vit-tiny-16.*drop name="):
        load_checkpoint(path, requested=vit_zoo.ViTConfig.from_name("vit-tiny-16"), name="vit-tiny-16")


def test_unknown_file_kind_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "weights.txt"
    path.write_text("not a checkpoint")
    with pytest.raises(converters.CheckpointError, match="unknown checkpoint file type 'weights.txt'") as error:
        converters.open_checkpoint(path)
    assert type(error.value) is converters.CheckpointError
