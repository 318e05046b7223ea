"""attention_maps against softmax(QKᵀ/√d) by hand in NumPy; rollout against a hand loop; overlays."""
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import vit_zoo
from conftest import tiny_config, to_numpy
from vit_zoo.use.attention import attention_mask, attention_maps, attention_rollout, class_token_map

CHELSEA = Path(__file__).resolve().parents[2] / "samples" / "chelsea.png"


@pytest.fixture(scope="module")
def model():
    model = vit_zoo.build(tiny_config())
    random = np.random.RandomState(0)
    for weight in model.weights:  # biases start at zero: make every weight count in the hand computation
        if not weight.numpy().any():
            weight.assign(random.normal(0, 0.1, weight.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.RandomState(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")


def weights(model, name):
    return {w.path.split("/")[-1]: w.numpy().astype(np.float64) for w in model.get_layer(name).weights}


def layer_norm(x, params, epsilon=1e-6):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * params["gamma"] + params["beta"]


def softmax_attention(x, params, heads):
    """softmax(Q Kᵀ / √Dh) per head for tokens x (B, T, D): (B, H, T, T)."""
    q = np.einsum("btd,dhk->bhtk", x, params["query_kernel"]) + params["query_bias"][None, :, None, :]
    k = np.einsum("btd,dhk->bhtk", x, params["key_kernel"]) + params["key_bias"][None, :, None, :]
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(x.shape[-1] // heads)
    logits -= logits.max(-1, keepdims=True)
    return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)


def block0_input_by_hand(model, images):
    """Normalise, cut 8×8 patches, project, prepend the class token, add position embeddings."""
    x = (images.astype(np.float64) / 255 - 0.5) / 0.5
    batch, patch = x.shape[0], 8
    patches = x.reshape(batch, 4, patch, 4, patch, 3).transpose(0, 1, 3, 2, 4, 5).reshape(batch, 16, -1)
    embed = weights(model, "patch_embed")
    tokens = patches @ embed["kernel"].reshape(-1, 32) + embed["bias"]
    cls = np.broadcast_to(weights(model, "class_token")["token"], (batch, 1, 32))
    return np.concatenate([cls, tokens], axis=1) + weights(model, "pos_embed")["embeddings"]


def test_block0_maps_equal_a_hand_computation_from_pixels(model, images):
    maps = attention_maps(model, images, layers=[0])
    assert list(maps) == [0] and maps[0].shape == (2, 4, 17, 17) and maps[0].dtype == np.float32
    normed = layer_norm(block0_input_by_hand(model, images), weights(model, "block_00_norm1"))
    expected = softmax_attention(normed, weights(model, "block_00_attn"), heads=4)
    np.testing.assert_allclose(maps[0], expected, atol=1e-5)


def test_later_block_maps_equal_a_hand_computation(model, images):
    maps = attention_maps(model, images, layers=[-1, 1], batch_size=1)
    assert list(maps) == [2, 1]
    for index in (1, 2):
        normed = keras.Model(model.input, model.get_layer(f"block_{index:02d}_norm1").output)(images)
        params = weights(model, f"block_{index:02d}_attn")
        expected = softmax_attention(np.asarray(to_numpy(normed), np.float64), params, heads=4)
        np.testing.assert_allclose(maps[index], expected, atol=1e-5)
        np.testing.assert_allclose(maps[index].sum(-1), 1.0, atol=1e-5)


def test_maps_for_any_build_and_input_kind(images):
    config = tiny_config()
    plain = vit_zoo.build(config, include_top=False, include_preprocessing=False)
    normalised = (images / 127.5 - 1.0).astype("float32")
    maps = attention_maps(plain, normalised)
    assert sorted(maps.keys()) == [0, 1, 2]
    as_tensor = attention_maps(plain, keras.ops.convert_to_tensor(normalised), layers=0)  # the backend's tensor
    np.testing.assert_allclose(as_tensor[0], maps[0], atol=1e-6)
    from_file = attention_maps(vit_zoo.build(config), [str(CHELSEA)], layers=0)
    assert from_file[0].shape == (1, 4, 17, 17)
    with pytest.raises(ValueError, match=r"images have shape \(2, 16, 16, 3\) but model .* takes \(B, 32, 32"):
        attention_maps(plain, np.zeros((2, 16, 16, 3), "float32"))


def random_maps(seed, blocks=3, batch=2, heads=4, tokens=17):
    logits = np.random.RandomState(seed).normal(size=(blocks, batch, heads, tokens, tokens))
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return list(probabilities.astype(np.float32))


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_rollout_equals_a_hand_loop(fusion):
    maps = random_maps(0)
    got = attention_rollout(maps, head_fusion=fusion)
    tokens = maps[0].shape[-1]
    for sample in range(2):
        flow = np.eye(tokens)
        for block in maps:  # Abnar & Zuidema: Â = 0.5 A + 0.5 I (rows of A sum to 1 only for "mean")
            fused = {"mean": np.mean, "max": np.max, "min": np.min}[fusion](block[sample].astype(np.float64), 0)
            fused = fused + np.eye(tokens)
            fused = fused / fused.sum(-1, keepdims=True)
            flow = fused @ flow
        np.testing.assert_allclose(got[sample], flow, atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
    dict_order = attention_rollout({2: maps[2], 0: maps[0], 1: maps[1]}, head_fusion=fusion)
    np.testing.assert_allclose(dict_order, got, atol=0)


def test_rollout_discard_ratio_as_vit_explain():
    maps = random_maps(1, blocks=2, batch=1)
    got = attention_rollout(maps, discard_ratio=0.5)
    flow = np.eye(17)
    for block in maps:
        fused = block[0].astype(np.float64).mean(0).flatten()
        weakest = np.argsort(fused)[: int(17 * 17 * 0.5)]
        fused[weakest[weakest != 0]] = 0.0
        fused = (fused.reshape(17, 17) + np.eye(17)) / 2
        flow = (fused / fused.sum(-1, keepdims=True)) @ flow
    np.testing.assert_allclose(got[0], flow, atol=1e-6)


def test_class_token_map_and_errors():
    rollout = attention_rollout(random_maps(2))
    mask = class_token_map(rollout)
    assert mask.shape == (2, 4, 4) and np.allclose(mask.max(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(mask[0], rollout[0, 0, 1:].reshape(4, 4) / rollout[0, 0, 1:].max(), atol=1e-6)
    assert class_token_map(rollout, grid_size=(2, 8)).shape == (2, 2, 8)
    with pytest.raises(ValueError, match=r"grid_size \(3, 5\) holds 15 patches, but the rollout has 16"):
        class_token_map(rollout, grid_size=(3, 5))
    with pytest.raises(ValueError, match="head_fusion must be one of"):
        attention_rollout(random_maps(0), head_fusion="median")
    with pytest.raises(ValueError, match=r"discard_ratio must be in \[0, 1\)"):
        attention_rollout(random_maps(0), discard_ratio=1.0)
    with pytest.raises(ValueError, match=r"must be \(B, heads, T, T\); entry 0 has shape \(17, 17\)"):
        attention_rollout([np.eye(17)])


def test_attention_mask_and_overlay(model, tmp_path):
    mask = attention_mask(model, [str(CHELSEA), str(CHELSEA)], layers=[0, 1])
    assert mask.shape == (2, 4, 4) and mask.dtype == np.float32 and np.isclose(mask.max(), 1.0)
    pytest.importorskip("matplotlib")
    from PIL import Image

    from vit_zoo.use.attention_plot import attention_overlay, plot_attention
    out = tmp_path / "overlay.png"
    assert attention_overlay(model, CHELSEA, out).shape == (4, 4)
    assert Image.open(out).size == (400, 400)
    figure = plot_attention(CHELSEA, attention_maps(model, [str(CHELSEA)]), path=tmp_path / "maps.png")
    assert (tmp_path / "maps.png").stat().st_size > 1000 and figure.axes
    with pytest.raises(ValueError, match=r"expected a mask \(h, w\) or \(1, h, w\)"):
        plot_attention(CHELSEA, np.zeros((2, 3, 4, 5)))


def test_plot_without_matplotlib_says_how_to_install(monkeypatch):
    from vit_zoo.use.attention_plot import plot_attention
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'vit-zoo\[plot\]'"):
        plot_attention(np.zeros((8, 8, 3), np.uint8), np.ones((2, 2)))
