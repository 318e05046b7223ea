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


def test_attention_mask_and_figure(model, tmp_path):
    mask = attention_mask(model, [str(CHELSEA), str(CHELSEA)], layers=[0, 1])
    assert mask.shape == (2, 4, 4) and mask.dtype == np.float32 and np.isclose(mask.max(), 1.0)
    raw = attention_mask(model, [str(CHELSEA)], layers=[0, 1], normalize=False)[0]
    np.testing.assert_allclose(raw / raw.max(), mask[0], rtol=1e-6)
    pytest.importorskip("matplotlib")
    from vit_zoo.use.attention_plot import plot_attention
    figure = plot_attention(CHELSEA, attention_maps(model, [str(CHELSEA)]), path=tmp_path / "maps.png")
    assert (tmp_path / "maps.png").stat().st_size > 1000 and figure.axes
    with pytest.raises(ValueError, match=r"expected a mask \(h, w\) or \(1, h, w\)"):
        plot_attention(CHELSEA, np.zeros((2, 3, 4, 5)))


def test_colour_map_is_inferno():
    from vit_zoo.use.attention_overlay import colorize
    assert colorize(np.array([0.0, 1.0])).tolist() == [[0, 0, 4], [252, 255, 164]]
    matplotlib = pytest.importorskip("matplotlib")
    values = np.random.RandomState(2).uniform(0, 1, 200)
    reference = np.asarray(matplotlib.colormaps["inferno"](values))[:, :3] * 255
    assert np.abs(colorize(values) - reference).max() <= 5  # 33 anchors, linear between them


def test_overlay_is_the_photo_with_the_map_and_a_colour_bar():
    from vit_zoo.use.attention_overlay import render_overlay
    photo = np.full((40, 60, 3), 128, np.uint8)
    picture = np.asarray(render_overlay(photo, np.array([[0.0, 0.0], [0.0, 0.25]]), alpha=0.5))
    assert picture.shape[0] == 40 and picture.shape[1] > 60
    # corners take their patch's value exactly: inferno(0) = (0, 0, 4), inferno(max) = (252, 255, 164)
    assert picture[0, 0].tolist() == [64, 64, 66] and picture[-1, 59].tolist() == [190, 192, 146]
    bar = picture[:, 60:]
    assert (bar == 255).all(axis=-1).any()  # the white panel
    column = bar[:, np.argmax((bar == [252, 255, 164]).all(axis=-1).any(axis=0))]
    rows = np.flatnonzero((np.abs(column.astype(int) - [252, 255, 164]).max(axis=-1) <= 8))
    assert rows.size and rows.max() < 10  # the bar's top is the maximum's colour
    # a centre crop: the map covers that region only, outlined; the rest is the photo as it was
    picture = np.asarray(render_overlay(photo, np.ones((2, 2)), region=(10.0, 15.0, 30.0, 45.0)))
    assert (picture[:9, :60] == 128).all() and (picture[:, :14] == 128).all()
    assert picture[10, 20].tolist() == [255, 255, 255] and picture[20, 30].tolist() == [190, 192, 146]


def test_attention_overlay_draws_on_the_photo_at_its_size(model, tmp_path):
    from PIL import Image

    from vit_zoo.model.identity import Preprocessing
    from vit_zoo.use.attention_overlay import attention_overlay
    out = tmp_path / "overlay.png"
    mask = attention_overlay(model, CHELSEA, out, discard_ratio=0.0)
    np.testing.assert_allclose(mask, attention_mask(model, [str(CHELSEA)], normalize=False)[0], rtol=1e-6)
    picture, photo = Image.open(out), Image.open(CHELSEA)
    assert picture.height == photo.height and picture.width > photo.width  # 451 × 300, not 32 × 32
    # a "timm" model sees the centre crop: 300 → floor(32 / 0.9) = 35, width int(35 * 451 / 300) = 52,
    # crop 32 at left int(round(10.0)) = 10 → columns 10 · 451 / 52 ≈ 86.7 to 42 · 451 / 52 ≈ 364.3
    cropping = vit_zoo.build(model.identity.config, identity=model.identity.replace(
        preprocessing=Preprocessing("timm", 0.9, "bicubic")))
    cropping.set_weights(model.get_weights())
    attention_overlay(cropping, CHELSEA, out)
    picture, photo = np.asarray(Image.open(out)), np.asarray(photo.convert("RGB"))
    np.testing.assert_array_equal(picture[:, :86], photo[:, :86])
    np.testing.assert_array_equal(picture[:, 366:451], photo[:, 366:451])
    assert (picture[:, 87:364] != photo[:, 87:364]).any()


def test_attention_overlay_needs_no_matplotlib(tmp_path, monkeypatch):
    """``vit-zoo attention`` where matplotlib cannot be imported (every matplotlib module, loaded or not,
    is None in sys.modules: importing any of them raises ImportError)."""
    from vit_zoo import cli
    from vit_zoo.model.identity import Identity

    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")] \
            + ["matplotlib", "matplotlib.pyplot", "matplotlib.figure"]:
        monkeypatch.setitem(sys.modules, name, None)
    config = tiny_config(num_classes=3)
    vit_zoo.build(config, identity=Identity(config, labels=("a", "b", "c"))).save_weights(tmp_path / "m.weights.h5")
    assert cli.main(["attention", str(CHELSEA), "--weights", str(tmp_path / "m.weights.h5"),
                     "-o", str(tmp_path / "o.png")]) == 0
    from PIL import Image
    assert Image.open(tmp_path / "o.png").height == 300


def test_plot_without_matplotlib_says_how_to_install(monkeypatch):
    from vit_zoo.use.attention_plot import plot_attention
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'vit-zoo\[plot\]'"):
        plot_attention(np.zeros((8, 8, 3), np.uint8), np.ones((2, 2)))


# ------------------------------------------------------------------------------ the family's prefix tokens
from family_models import FAMILY, family_config, prefix_count, randomised  # noqa: E402


def rollout_row_on_grid(rollout, row, prefix, grid):
    """Row ``row`` of a (B, T, T) rollout over the patches (the last h*w tokens), scaled to a maximum of 1."""
    mask = rollout[:, row, prefix:].reshape(-1, *grid)
    return mask / mask.max(axis=(1, 2), keepdims=True)


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_family_maps_and_class_token_mask_leave_out_every_prefix_token(name, images):
    model = randomised(vit_zoo.build(family_config(name), include_top=False))
    prefix = prefix_count(name)
    maps = attention_maps(model, images)
    assert sorted(maps) == [0, 1] and all(m.shape == (2, 4, prefix + 16, prefix + 16) for m in maps.values())
    np.testing.assert_allclose(maps[1].sum(-1), 1.0, atol=1e-5)
    rollout = attention_rollout(maps)
    mask = attention_mask(model, images)
    assert mask.shape == (2, 4, 4)
    np.testing.assert_allclose(mask, rollout_row_on_grid(rollout, 0, prefix, (4, 4)), atol=1e-6)
    if "distilled" in name:  # the distillation token's own map, on the same grid
        np.testing.assert_allclose(class_token_map(rollout, (4, 4), prefix, token_index=1),
                                   rollout_row_on_grid(rollout, 1, prefix, (4, 4)), atol=1e-6)


@pytest.mark.parametrize("name", ["dinov2-reg4", "stored-grid-6x6"])
def test_family_mask_of_a_dynamic_size_model_is_on_the_inputs_grid(name):
    model = randomised(vit_zoo.build(family_config(name), include_top=False, dynamic_size=True))
    pixels = np.random.RandomState(2).uniform(0, 255, (1, 48, 64, 3)).astype("float32")
    prefix = prefix_count(name)
    maps = attention_maps(model, pixels, layers=[-1])
    assert maps[1].shape == (1, 4, prefix + 48, prefix + 48)
    np.testing.assert_allclose(attention_mask(model, pixels, layers=[-1]),
                               rollout_row_on_grid(attention_rollout(maps), 0, prefix, (6, 8)), atol=1e-6)


def test_class_token_map_token_index_error_and_plot_with_prefix_tokens(tmp_path):
    with pytest.raises(ValueError, match=r"token_index 2 is not a prefix token \(the model has 2: 0 to 1\)"):
        class_token_map(np.ones((1, 18, 18)), (4, 4), 2, token_index=2)
    from vit_zoo.use.attention_plot import _as_mask
    rollout = np.random.RandomState(0).uniform(size=(1, 1, 21, 21))
    assert _as_mask([rollout], (32, 32), 5).shape == (4, 4)


# ---- a tower without a class token: the MAP head's probe (SigLIP), against transformers' own attention ----------
def _siglip(tmp_path):
    """(our model, transformers' SiglipVisionModel) of a tiny perturbed tower (2 blocks, 4 heads, 4x4 patches)."""
    from reference_frameworks import require

    require("torch")
    require("transformers")
    import synth_hf_family as family
    import synth_hf_tower as tower

    reference = tower.model("SiglipVisionModel", tower.siglip_vision_config(attn_implementation="eager"), seed=2)
    model = vit_zoo.load(weights=family.save(reference, tmp_path), include_preprocessing=False)
    return model, reference


def test_siglip_probe_attention_and_map_equal_transformers(tmp_path):
    """probe_attention is the weights of transformers' MAP head (nn.MultiheadAttention, per head); the map is the
    probe's head-mean carried back through the rollout of transformers' own encoder attentions (output_attentions),
    computed here by hand: p · Π (mean_h A_l + I) / 2, normalised to a maximum of 1."""
    import torch
    from vit_zoo.use.attention import probe_attention

    model, reference = _siglip(tmp_path)
    pixels = np.random.RandomState(3).normal(size=(2, 32, 32, 3)).astype("float32")
    with torch.no_grad():
        out = reference(pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2)), output_attentions=True)
        head = getattr(reference, "vision_model", reference).head  # transformers 5: the tower itself
        probe = head.probe.repeat(2, 1, 1)
        _, weights = head.attention(probe, out.last_hidden_state, out.last_hidden_state, need_weights=True,
                                    average_attn_weights=False)
    expected_probe = weights.numpy()[:, :, 0]  # (B, H, T)
    got_probe = probe_attention(model, pixels)
    assert got_probe.shape == (2, 4, 16)
    np.testing.assert_allclose(got_probe, expected_probe, atol=1e-5)

    flow = expected_probe.mean(axis=1).astype(np.float64)
    rollout = np.eye(16)[None].repeat(2, axis=0)
    for block in out.attentions:
        fused = block.numpy().astype(np.float64).mean(axis=1)
        rollout = (fused + np.eye(16)) / 2 @ rollout
    expected = np.einsum("bt,bts->bs", flow, rollout).reshape(2, 4, 4)
    expected /= expected.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(attention_mask(model, pixels), expected, atol=1e-5)


def test_a_model_without_class_token_or_map_head_is_refused_by_name(tmp_path):
    from vit_zoo.use.attention import probe_attention

    model = vit_zoo.build(tiny_config(class_token=False, pooling="gap"))
    with pytest.raises(ValueError, match="no class token and no MAP head"):
        attention_mask(model, np.zeros((1, 32, 32, 3), "float32"))
    with pytest.raises(ValueError, match="has no MAP head"):
        probe_attention(model, np.zeros((1, 32, 32, 3), "float32"))
