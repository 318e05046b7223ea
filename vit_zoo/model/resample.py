"""Position-embedding resampling, as one pure function usable at load time and inside the graph.

Interpolation is separable, so resampling a (h, w) grid to (H, W) is ``M_H @ grid @ M_W^T`` with
interpolation matrices built from the sizes alone. The matrices are built with ``keras.ops`` so the same
code runs eagerly on NumPy arrays (converting a checkpoint to another resolution) and symbolically on a
runtime-sized grid (``dynamic_size=True`` models: the target size may be a tensor, the source size is
always static) — which is why a dynamic model called at 384 px equals a model converted at 384 px.

Modes (``ViTConfig.position_embedding_resampling``), each PyTorch's ``F.interpolate`` with
``align_corners=False`` unless said otherwise:
    ``bicubic``: ``mode="bicubic"`` (Keys cubic, a = -0.75, border replicated), what timm and Hugging
        Face use. Default: most published checkpoints come through those two, and a smooth interpolant
        keeps fine-tuning starts closest to the source. No antialiasing when shrinking.
    ``bilinear``: ``mode="bilinear"`` (timm's ``.npz`` loader).
    ``bilinear-corners``: ``scipy.ndimage.zoom(order=1)``, corners aligned (vit_jax / big_vision).
    ``bicubic-antialias``: ``mode="bicubic", antialias=True`` (timm's DINOv2, Hugging Face's
        Dinov2WithRegisters, Meta's register models). A different kernel from ``bicubic`` even when
        enlarging: Keys cubic with a = -0.5, taps outside the grid dropped and the rest renormalised,
        and when shrinking by s = in/out > 1 the kernel is stretched by s (support 2 s).
    ``bicubic-offset``: Meta's DINOv2 hub models, ``mode="bicubic", scale_factor=(H + 0.1) / h``: the
        output has H rows, but sources are sampled at ``(i + 0.5) * h / (H + 0.1) - 0.5``, not at
        ``(i + 0.5) * h / H - 0.5``. A grid that keeps its size is kept unchanged, as Meta's code does.
"""
from __future__ import annotations

import numpy as np
from keras import ops

from vit_zoo.model.config import RESAMPLING_MODES

_CUBIC_A = -0.75  # PyTorch's and OpenCV's bicubic coefficient
_ANTIALIAS_CUBIC_A = -0.5  # PyTorch's antialiased bicubic (as Pillow's)


def _cubic_near(x, a):
    """Keys cubic at distance 0 <= x <= 1."""
    return ((a + 2) * x - (a + 3)) * x * x + 1


def _cubic_far(x, a):
    """Keys cubic at distance 1 < x < 2."""
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a


def _cubic_weights(t):
    """Weights of the four taps at offsets -1, 0, 1, 2 for fractional position ``t`` in [0, 1)."""
    a = _CUBIC_A
    return (_cubic_far(t + 1.0, a), _cubic_near(t, a), _cubic_near(1.0 - t, a), _cubic_far(2.0 - t, a))


def _is_static(size) -> bool:
    return all(isinstance(s, (int, np.integer)) for s in size)


def _antialias_matrix(source_size: int, target_size):
    """PyTorch's antialiased bicubic (``_compute_indices_min_size_weights_aa``) as a dense (target, source)
    matrix: every target row against every source column, the taps outside its window masked out."""
    scale = float(source_size) / ops.cast(target_size, "float32")
    filter_scale = ops.maximum(scale, 1.0)
    support = 2.0 * filter_scale
    center = ((ops.cast(ops.arange(target_size), "float32") + 0.5) * scale)[:, None]
    column = ops.cast(ops.arange(source_size), "float32")[None, :]
    first = ops.maximum(ops.floor(center - support + 0.5), 0.0)
    stop = ops.minimum(ops.floor(center + support + 0.5), float(source_size))
    stop = ops.minimum(stop, first + 2.0 * ops.ceil(support) + 1.0)  # PyTorch's cap on taps per row
    distance = ops.abs((column - center + 0.5) * (1.0 / filter_scale))
    a = _ANTIALIAS_CUBIC_A
    kernel = ops.where(distance < 1.0, _cubic_near(distance, a),
                       ops.where(distance < 2.0, _cubic_far(distance, a), 0.0))
    weights = ops.where(ops.logical_and(column >= first, column < stop), kernel, 0.0)
    return weights / ops.sum(weights, axis=1, keepdims=True)


def interpolation_matrix(source_size: int, target_size, mode: str = "bicubic"):
    """(target_size, source_size) float32 matrix resampling one axis; ``target_size`` may be a tensor."""
    if mode not in RESAMPLING_MODES:
        raise ValueError(f"unknown resampling mode {mode!r}; use one of {', '.join(map(repr, RESAMPLING_MODES))}")
    if mode == "bicubic-antialias":
        return _antialias_matrix(source_size, target_size)
    position = ops.cast(ops.arange(target_size), "float32")
    target = ops.cast(target_size, "float32")
    if mode == "bilinear-corners":
        source = position * (float(source_size - 1) / ops.maximum(target - 1.0, 1.0))
    elif mode == "bicubic-offset":  # h / (H + 0.1) as 10 h / (10 H + 1): exact operands, one rounding
        source = (position + 0.5) * (float(10 * source_size) / (10.0 * target + 1.0)) - 0.5
    else:
        source = (position + 0.5) * (float(source_size) / target) - 0.5
    if mode == "bilinear":
        source = ops.maximum(source, 0.0)  # PyTorch clamps negative source positions for linear modes
    start = ops.floor(source)
    fraction = source - start
    start = ops.cast(start, "int32")
    if mode in ("bicubic", "bicubic-offset"):
        offsets, weights = (-1, 0, 1, 2), _cubic_weights(fraction)
    else:
        offsets, weights = (0, 1), (1.0 - fraction, fraction)
    matrix = 0.0
    for offset, weight in zip(offsets, weights):
        index = ops.clip(start + offset, 0, source_size - 1)
        matrix = matrix + ops.one_hot(index, source_size, dtype="float32") * weight[:, None]
    return matrix


def resample_grid(grid, target_grid, mode: str = "bicubic"):
    """Resample a (h, w, D) grid of embeddings to (H, W, D); computed in float32, dtype restored.

    (h, w) must be static; (H, W) may be tensors. A grid that keeps its size is returned unchanged.
    """
    source_grid = (int(grid.shape[0]), int(grid.shape[1]))
    static = _is_static(target_grid)
    if static and tuple(target_grid) == source_grid:
        return grid
    dtype = grid.dtype
    grid = ops.cast(grid, "float32")
    rows = interpolation_matrix(source_grid[0], target_grid[0], mode)
    cols = interpolation_matrix(source_grid[1], target_grid[1], mode)
    if mode == "bicubic-offset" and not static:  # the other modes' matrices are the identity then
        unchanged = ops.logical_and(ops.equal(target_grid[0], source_grid[0]),
                                    ops.equal(target_grid[1], source_grid[1]))
        rows = ops.where(unchanged, ops.one_hot(ops.arange(target_grid[0]), source_grid[0]), rows)
        cols = ops.where(unchanged, ops.one_hot(ops.arange(target_grid[1]), source_grid[1]), cols)
    grid = ops.einsum("Hh,hwd->Hwd", rows, grid)
    grid = ops.einsum("Ww,Hwd->HWd", cols, grid)
    return ops.cast(grid, dtype)


def resample_position_embeddings(embeddings, source_grid, target_grid, num_prefix_tokens=1,
                                 mode="bicubic"):
    """Resample (1, prefix + h*w, D) position embeddings to the (H, W) patch grid.

    The prefix (class-token) embeddings are kept exactly; the patch part is interpolated in float32.
    NumPy in gives NumPy out. (h, w) is static; (H, W) may be tensors (inside a ``dynamic_size`` graph).
    Embeddings whose grid keeps its size are returned as they are.

    Example:
        >>> import numpy as np
        >>> resample_position_embeddings(np.zeros((1, 197, 8), "float32"), (14, 14), (24, 24)).shape
        (1, 577, 8)
    """
    as_numpy = isinstance(embeddings, np.ndarray)
    source_grid, target_grid = tuple(int(s) for s in source_grid), tuple(target_grid)
    expected = num_prefix_tokens + source_grid[0] * source_grid[1]
    if embeddings.shape[1] != expected:
        raise ValueError(f"position embeddings have {embeddings.shape[1]} tokens, but a "
                         f"{source_grid[0]}x{source_grid[1]} grid with {num_prefix_tokens} prefix "
                         f"token(s) needs {expected}")
    if _is_static(target_grid) and target_grid == source_grid:
        return embeddings
    prefix = embeddings[:, :num_prefix_tokens]
    width = embeddings.shape[-1]
    grid = ops.reshape(embeddings[0, num_prefix_tokens:], (source_grid[0], source_grid[1], width))
    grid = resample_grid(grid, target_grid, mode)
    patches = ops.reshape(grid, (1, -1, width))
    result = ops.concatenate([ops.cast(prefix, patches.dtype), patches], axis=1)
    return ops.convert_to_numpy(result) if as_numpy else result
