"""Position-embedding resampling, as one pure function usable at load time and inside the graph.

Interpolation is separable, so resampling a (h, w) grid to (H, W) is ``M_H @ grid @ M_W^T`` with
interpolation matrices built from the sizes alone. The matrices are built with ``keras.ops`` so the same
code runs eagerly on NumPy arrays (converting a checkpoint to another resolution) and symbolically on a
runtime-sized grid (``dynamic_size=True`` models) — which is why a dynamic model called at 384 px equals a
model converted at 384 px.

Modes (``ViTConfig.position_embedding_resampling``):
    ``bicubic``: PyTorch ``interpolate(mode="bicubic", align_corners=False)`` (Keys cubic, a = -0.75,
        border replicated), what timm and Hugging Face use. Default: most published checkpoints come
        through those two, and a smooth interpolant keeps fine-tuning starts closest to the source.
    ``bilinear``: PyTorch ``interpolate(mode="bilinear", align_corners=False)`` (timm's ``.npz`` loader).
    ``bilinear-corners``: ``scipy.ndimage.zoom(order=1)``, corners aligned (vit_jax / big_vision).
No antialiasing is applied when shrinking (as Hugging Face; timm antialiases when it shrinks).
"""
from __future__ import annotations

import numpy as np
from keras import ops

_CUBIC_A = -0.75  # PyTorch's and OpenCV's bicubic coefficient


def _cubic_weights(t):
    """Weights of the four taps at offsets -1, 0, 1, 2 for fractional position ``t`` in [0, 1)."""
    a = _CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return (far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t))


def interpolation_matrix(source_size: int, target_size, mode: str = "bicubic"):
    """(target_size, source_size) float32 matrix resampling one axis; ``target_size`` may be a tensor."""
    position = ops.cast(ops.arange(target_size), "float32")
    if mode == "bilinear-corners":
        steps = ops.maximum(ops.cast(target_size, "float32") - 1.0, 1.0)
        source = position * (float(source_size - 1) / steps)
    else:
        source = (position + 0.5) * (float(source_size) / ops.cast(target_size, "float32")) - 0.5
    if mode == "bilinear":
        source = ops.maximum(source, 0.0)  # PyTorch clamps negative source positions for linear modes
    start = ops.floor(source)
    fraction = source - start
    start = ops.cast(start, "int32")
    if mode == "bicubic":
        offsets, weights = (-1, 0, 1, 2), _cubic_weights(fraction)
    elif mode in ("bilinear", "bilinear-corners"):
        offsets, weights = (0, 1), (1.0 - fraction, fraction)
    else:
        raise ValueError(f"unknown resampling mode {mode!r}; use 'bicubic', 'bilinear' or 'bilinear-corners'")
    matrix = 0.0
    for offset, weight in zip(offsets, weights):
        index = ops.clip(start + offset, 0, source_size - 1)
        matrix = matrix + ops.one_hot(index, source_size, dtype="float32") * weight[:, None]
    return matrix


def resample_grid(grid, target_grid, mode: str = "bicubic"):
    """Resample a (h, w, D) grid of embeddings to (H, W, D); computed in float32, dtype restored."""
    source_h, source_w = int(grid.shape[0]), int(grid.shape[1])
    dtype = grid.dtype
    grid = ops.cast(grid, "float32")
    rows = interpolation_matrix(source_h, target_grid[0], mode)
    cols = interpolation_matrix(source_w, target_grid[1], mode)
    grid = ops.einsum("Hh,hwd->Hwd", rows, grid)
    grid = ops.einsum("Ww,Hwd->HWd", cols, grid)
    return ops.cast(grid, dtype)


def resample_position_embeddings(embeddings, source_grid, target_grid, num_prefix_tokens=1,
                                 mode="bicubic"):
    """Resample (1, prefix + h*w, D) position embeddings to the (H, W) patch grid.

    The prefix (class-token) embeddings are kept exactly; the patch part is interpolated in float32.
    NumPy in gives NumPy out.

    Example:
        >>> import numpy as np
        >>> resample_position_embeddings(np.zeros((1, 197, 8), "float32"), (14, 14), (24, 24)).shape
        (1, 577, 8)
    """
    as_numpy = isinstance(embeddings, np.ndarray)
    source_grid, target_grid = tuple(source_grid), tuple(target_grid)
    expected = num_prefix_tokens + source_grid[0] * source_grid[1]
    if embeddings.shape[1] != expected:
        raise ValueError(f"position embeddings have {embeddings.shape[1]} tokens, but a "
                         f"{source_grid[0]}x{source_grid[1]} grid with {num_prefix_tokens} prefix "
                         f"token(s) needs {expected}")
    if source_grid == target_grid:
        return embeddings
    prefix = embeddings[:, :num_prefix_tokens]
    width = embeddings.shape[-1]
    grid = ops.reshape(embeddings[0, num_prefix_tokens:], (source_grid[0], source_grid[1], width))
    grid = resample_grid(grid, target_grid, mode)
    patches = ops.reshape(grid, (1, target_grid[0] * target_grid[1], width))
    result = ops.concatenate([ops.cast(prefix, patches.dtype), patches], axis=1)
    return ops.convert_to_numpy(result) if as_numpy else result
