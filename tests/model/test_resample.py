"""Position-embedding resampling against the reference implementations it claims to match."""
import numpy as np
import pytest
import scipy.ndimage
import torch

from vit_zoo import resample_position_embeddings


def _torch_resample(grid, size, mode):
    """grid (h, w, D) → (H, W, D) with PyTorch, the way timm and Hugging Face call it."""
    tensor = torch.from_numpy(grid).permute(2, 0, 1)[None]
    out = torch.nn.functional.interpolate(tensor, size=size, mode=mode, align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


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
