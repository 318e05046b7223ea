"""Position-embedding resampling against the reference implementations it claims to match."""
import numpy as np
import pytest
import scipy.ndimage

import vit_zoo
from conftest import tiny_config
from reference_frameworks import require
from vit_zoo import resample_position_embeddings

# The grids of the DINOv2 cases: its stored 37x37 (518 px) to 224 px and to 896 px, the other way, and
# small non-square grids enlarged on one axis while shrunk on the other.
CASES = [((37, 37), (16, 16)), ((37, 37), (64, 64)), ((16, 16), (37, 37)), ((4, 6), (9, 5)), ((6, 4), (2, 7)),
         ((37, 37), (37, 20))]


def _torch_interpolate(grid, **options):
    """grid (h, w, D) → (H, W, D) through PyTorch's ``F.interpolate(x, **options)`` (x (1, D, h, w))."""
    torch = require("torch")
    tensor = torch.from_numpy(grid).permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(tensor, **options)
    return out[0].permute(1, 2, 0).numpy()


def _torch_resample(grid, size, mode):
    """grid (h, w, D) → (H, W, D) with PyTorch, the way timm and Hugging Face call it."""
    return _torch_interpolate(grid, size=size, mode=mode, align_corners=False)


def _assert_round_off(actual, expected):
    """Equal to float32 round-off: the largest difference at most 1e-5 of the largest value."""
    assert actual.shape == expected.shape
    difference = np.max(np.abs(actual - expected))
    assert difference <= 1e-5 * np.max(np.abs(expected)), difference


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
@pytest.mark.parametrize("source, target", [((14, 14), (24, 24)), ((7, 7), (12, 9)), ((12, 12), (7, 5))])
def test_matches_torch_interpolate(mode, source, target):
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(1, 1 + source[0] * source[1], 16)).astype("float32")
    resampled = resample_position_embeddings(embeddings, source, target, 1, mode)
    expected = _torch_resample(embeddings[0, 1:].reshape(*source, 16), target, mode)
    assert resampled.shape == (1, 1 + target[0] * target[1], 16)
    np.testing.assert_array_equal(resampled[:, :1], embeddings[:, :1])  # class token kept exactly
    np.testing.assert_allclose(resampled[0, 1:].reshape(*target, 16), expected, rtol=1e-5, atol=1e-5)


def test_bilinear_corners_matches_scipy_zoom_order_1():
    rng = np.random.default_rng(2)
    grid = rng.normal(size=(14, 14, 8)).astype("float32")
    embeddings = np.concatenate([rng.normal(size=(1, 1, 8)), grid.reshape(1, -1, 8)], axis=1).astype("float32")
    resampled = resample_position_embeddings(embeddings, (14, 14), (24, 24), 1, "bilinear-corners")
    expected = scipy.ndimage.zoom(grid, (24 / 14, 24 / 14, 1), order=1)
    np.testing.assert_allclose(resampled[0, 1:].reshape(24, 24, 8), expected, rtol=1e-5, atol=1e-5)


def test_same_grid_is_returned_unchanged_and_no_prefix_works():
    embeddings = np.arange(2 * 3 * 2, dtype="float32").reshape(1, 6, 2)
    assert resample_position_embeddings(embeddings, (2, 3), (2, 3), 0) is embeddings
    assert resample_position_embeddings(embeddings, (2, 3), (4, 6), 0).shape == (1, 24, 2)


def test_wrong_token_count_is_explained():
    with pytest.raises(ValueError, match=r"position embeddings have 9 tokens, but a 3x3 grid with 1 prefix "
                                         r"token\(s\) needs 10$"):
        resample_position_embeddings(np.zeros((1, 9, 2), "float32"), (3, 3), (4, 4), 1)


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="unknown resampling mode 'nearest'"):
        resample_position_embeddings(np.zeros((1, 5, 2), "float32"), (2, 2), (3, 3), 1, "nearest")


def _patch_grid(embeddings, grid, prefix=1):
    return embeddings[0, prefix:].reshape(*grid, embeddings.shape[-1])


@pytest.mark.parametrize("source, target", CASES)
def test_bicubic_antialias_matches_torch_antialiased_bicubic(source, target):
    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(1, 1 + source[0] * source[1], 16)).astype("float32")
    resampled = resample_position_embeddings(embeddings, source, target, 1, "bicubic-antialias")
    expected = _torch_interpolate(_patch_grid(embeddings, source), size=target, mode="bicubic",
                                  align_corners=False, antialias=True)
    np.testing.assert_array_equal(resampled[:, :1], embeddings[:, :1])
    _assert_round_off(_patch_grid(resampled, target), expected)


@pytest.mark.parametrize("source, target", CASES)
def test_bicubic_offset_matches_torch_with_metas_scale_factor(source, target):
    rng = np.random.default_rng(4)
    embeddings = rng.normal(size=(1, 1 + source[0] * source[1], 16)).astype("float32")
    resampled = resample_position_embeddings(embeddings, source, target, 1, "bicubic-offset")
    scale_factor = tuple((t + 0.1) / s for s, t in zip(source, target))
    expected = _torch_interpolate(_patch_grid(embeddings, source), scale_factor=scale_factor, mode="bicubic")
    _assert_round_off(_patch_grid(resampled, target), expected)


def test_the_new_modes_are_other_kernels_than_plain_bicubic():
    # The antialiased kernel differs from the plain one even when enlarging; the offset moves the samples.
    grid = np.random.default_rng(5).normal(size=(16, 16, 4)).astype("float32")
    embeddings = grid.reshape(1, -1, 4)
    plain = resample_position_embeddings(embeddings, (16, 16), (37, 37), 0, "bicubic")
    for mode in ("bicubic-antialias", "bicubic-offset"):
        other = resample_position_embeddings(embeddings, (16, 16), (37, 37), 0, mode)
        assert np.max(np.abs(other - plain)) > 0.01


@pytest.mark.parametrize("image", [(112, 112), (28, 28), (70, 42), (28, 112), (56, 56)])
def test_bicubic_offset_matches_metas_interpolate_pos_encoding(image):
    # (28, 112) has as many patches as the stored 4x4 grid but is not square: Meta resamples it, and so do we.
    require("dinov2")
    torch = require("torch")
    from dinov2.models.vision_transformer import vit_small

    torch.manual_seed(0)
    model = vit_small(patch_size=14, img_size=56, block_chunks=0)
    with torch.no_grad():
        model.pos_embed.normal_()
    target = (image[0] // 14, image[1] // 14)
    tokens = torch.zeros(1, 1 + target[0] * target[1], model.embed_dim)
    with torch.no_grad():
        expected = model.interpolate_pos_encoding(tokens, *image).numpy()  # its w, h: dimensions 2 and 3
    ours = resample_position_embeddings(model.pos_embed.detach().numpy(), (4, 4), target, 1, "bicubic-offset")
    np.testing.assert_array_equal(ours[:, :1], expected[:, :1])
    _assert_round_off(ours, expected)


def _tensorflow_graph_of(model):
    """The model as one TensorFlow graph for any image size: the patch grid is a tensor in it."""
    import tensorflow as tf

    return tf.function(model, input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])


@pytest.mark.tensorflow_only("a patch grid known only at run time exists in TensorFlow graphs only")
@pytest.mark.parametrize("mode", ["bicubic-antialias", "bicubic-offset", "bicubic"])
@pytest.mark.parametrize("prefix", [1, 0])
def test_dynamic_model_resamples_a_runtime_grid_as_at_load_time(mode, prefix):
    # Sizes: larger, smaller and non-square grids than the stored 4x4, and the stored one itself (which
    # Meta's rule keeps unchanged though its offset would move it).
    changes = {} if prefix else dict(class_token=False, pooling="gap")
    config = tiny_config(num_layers=1, position_embedding_resampling=mode, **changes)
    dynamic = vit_zoo.build(config, dynamic_size=True)
    graph = _tensorflow_graph_of(dynamic)
    stored = dynamic.get_layer("pos_embed").embeddings.numpy()
    rng = np.random.default_rng(6)
    for size in [(56, 56), (24, 24), (40, 16), (32, 32)]:
        fixed = vit_zoo.build(config.replace(image_size=size))
        target = (size[0] // 8, size[1] // 8)
        for layer in fixed.layers:
            if layer.name == "pos_embed":
                layer.embeddings.assign(resample_position_embeddings(stored, (4, 4), target, prefix, mode))
            elif layer.weights:
                layer.set_weights(dynamic.get_layer(layer.name).get_weights())
        images = rng.uniform(0, 255, size=(2, *size, 3)).astype("float32")
        np.testing.assert_allclose(graph(images).numpy(), np.asarray(fixed(images)), rtol=1e-5, atol=1e-5,
                                   err_msg=f"{mode} at {size}")
