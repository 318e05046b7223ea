"""Reading images from files, PIL images, arrays and tensors into RGB arrays, with clear errors.

Every image becomes one (H, W, 3) array: uint8 (files, PIL images, integer arrays) or float32 in
[0, 255] (float arrays). Conversions made on the way:
    grayscale (H, W), (H, W, 1), PIL "L"/"1"/"I;16"  → the gray level copied to R, G and B (lossless);
    with alpha (H, W, 4), (H, W, 2), PIL "RGBA"/"LA"/transparent "P"  → composited over a white
        background (``rgb * a + 255 * (1 - a)``), as Hugging Face's ``convert_rgb`` does, because the
        colour under fully transparent pixels is arbitrary; a warning names the images;
    other PIL modes (CMYK, YCbCr, palette) → Pillow's ``convert("RGB")``.
EXIF orientation is not applied (neither timm nor Hugging Face apply it). Animated files give their
first frame.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import List, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

# Pillow's own default decompression-bomb limit (Image.MAX_IMAGE_PIXELS): about 0.27 GB of RGB.
MAX_PIXELS = 89_478_485
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def decoding_threads() -> int:
    """Threads that decode images in parallel by default: the machine's cores, at most 16 (Pillow
    releases the GIL while it decodes and resizes)."""
    return max(1, min(16, os.cpu_count() or 1))


class ImageReadError(ValueError):
    """An image file that cannot be used: not an image, corrupt, or larger than the pixel limit."""


def read_image_file(path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode one image file with Pillow. Returns (H, W, 3) uint8 RGB (see the module docstring for the
    grayscale and alpha conversions).

    Raises:
        FileNotFoundError: no such file.
        ImageReadError: a folder, not an image Pillow can read, corrupt, or over ``max_pixels`` pixels
            (checked from the header, before anything is decoded).
    """
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"image file not found: '{path}'")
    if path.is_dir():
        raise ImageReadError(f"'{path}' is a folder, not an image file; pass the image files in it "
                             f"(vit_zoo.embed takes a folder)")
    return _decode(path, f"'{path}'", max_pixels)


def decode_image_bytes(data: bytes, where: str = "the image bytes", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, ... bytes, e.g. a TFRecord's ``image/encoded``) exactly as
    ``read_image_file`` decodes a file: (H, W, 3) uint8 RGB. ``where`` names it in errors."""
    return _decode(io.BytesIO(bytes(data)), where, max_pixels)


def _decode(source, where: str, max_pixels: int) -> np.ndarray:
    try:
        with Image.open(source) as image:  # reads the header only
            _check_pixel_count(image.size, max_pixels, where)
            image.load()
            return pil_to_rgb_array(image, where)
    except (ImageReadError, PermissionError):
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"cannot read {where} as an image: Pillow does not recognise its format "
                             f"(expected JPEG, PNG, GIF, BMP, TIFF, WebP, ...)") from None
    except Image.DecompressionBombError as error:  # Pillow's own hard limit (2 × Image.MAX_IMAGE_PIXELS)
        found = re.search(r"\((\d+) pixels\)", str(error))
        pixels = int(found.group(1)) if found else None
        if pixels is not None and pixels <= max_pixels:
            raise ImageReadError(f"{where} has {pixels:,} pixels, more than Pillow accepts (2 × "
                                 f"PIL.Image.MAX_IMAGE_PIXELS); raise PIL.Image.MAX_IMAGE_PIXELS too") from None
        raise ImageReadError(_too_many_pixels(where, pixels, None, max_pixels)) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"cannot decode {where}: {error} (truncated or corrupt file?)") from None


def _check_pixel_count(size: Tuple[int, int], max_pixels: int, where: str):
    width, height = size
    if width * height > max_pixels:
        raise ImageReadError(_too_many_pixels(where, width * height, size, max_pixels))


def _too_many_pixels(where: str, pixels, size, max_pixels: int) -> str:
    count = "too many pixels" if pixels is None else f"{pixels:,} pixels"
    dimensions = f" ({size[0]}×{size[1]})" if size else ""
    return (f"{where} has {count}{dimensions}, over the limit of {max_pixels:,} (a guard against "
            f"decompression bombs); downscale it first, or pass a larger max_pixels=")


def pil_to_rgb_array(image: Image.Image, where: str = "the PIL image") -> np.ndarray:
    """A PIL image as (H, W, 3) uint8 RGB; grayscale copied to 3 channels, alpha composited over white."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in _SIXTEEN_BIT_MODES:  # 16-bit grayscale PNG/TIFF: 0..65535 → 0..255
        gray = np.asarray(image).astype(np.float64) / 257.0
        return _gray_to_rgb(np.round(gray).astype(np.uint8))
    if mode in ("I", "F"):
        kind = "integer" if mode == "I" else "float"
        raise ImageReadError(f"{where} has Pillow mode {mode!r} (32-bit {kind} "
                             f"pixels), which has no defined 0–255 range; convert it to 8-bit RGB first")
    if mode in ("L", "1"):
        return _gray_to_rgb(np.asarray(image.convert("L"), dtype=np.uint8))
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint8)
        return composite_over_white(rgba, where)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


def composite_over_white(image: np.ndarray, where: str) -> np.ndarray:
    """(H, W, 2 or 4) gray/RGB + alpha → (H, W, 3) RGB over a white background, keeping the dtype
    (uint8 results are rounded). A warning says which image lost its alpha channel."""
    warnings.warn(f"{where} has an alpha channel; composited over a white background to get RGB",
                  stacklevel=3)
    pixels = image.astype(np.float32)
    colour, alpha = pixels[..., :-1], pixels[..., -1:] / 255.0
    if colour.shape[-1] == 1:
        colour = np.repeat(colour, 3, axis=-1)
    rgb = colour * alpha + 255.0 * (1.0 - alpha)
    return np.round(rgb).astype(np.uint8) if image.dtype == np.uint8 else rgb


def array_to_rgb(array: np.ndarray, where: str, value_range: Tuple[float, float]) -> np.ndarray:
    """One (H, W), (H, W, 1|2|3|4) array → (H, W, 3): uint8 stays uint8, integers in 0..255 become uint8,
    floats in ``value_range`` become float32 in [0, 255]."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"{where} must be (H, W) or (H, W, C), got shape {array.shape}")
    channels = array.shape[-1]
    if channels not in (1, 2, 3, 4):
        first_axis_hint = ("; it looks channels-first — transpose it to (H, W, C) with "
                           "np.transpose(x, (1, 2, 0))" if array.shape[0] in (1, 3, 4) else "")
        raise ValueError(f"{where} has {channels} channels (shape {array.shape}); expected channels-last "
                         f"(H, W, C) with C = 3 (RGB), 1 (gray) or 4 (RGBA){first_axis_hint}")
    if min(array.shape[:2]) < 1:
        raise ValueError(f"{where} is empty (shape {array.shape})")
    array = _to_uint8_or_float(array, where, value_range)
    if channels == 1:
        return np.repeat(array, 3, axis=-1)
    if channels in (2, 4):
        return composite_over_white(array, where)  # colour and alpha both on the 0..255 scale here
    return array


def _to_uint8_or_float(array: np.ndarray, where: str, value_range) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer)
                                       or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{where} has dtype {array.dtype}; expected uint8 (0–255) or float "
                        f"(in value_range {tuple(value_range)})")
    low, high = float(np.min(array)), float(np.max(array))
    if np.issubdtype(array.dtype, np.integer):
        if low < 0 or high > 255:
            raise ValueError(f"{where} has dtype {array.dtype} with values from {low:g} to {high:g}; integer "
                             f"images must hold 0–255 (scale 16-bit images with x / 257 first)")
        return array.astype(np.uint8)
    if not np.isfinite(array).all():
        raise ValueError(f"{where} contains NaN or infinity")
    lo, hi = (float(v) for v in value_range)
    tolerance = 1e-3 * (hi - lo)
    if low < lo - tolerance or high > hi + tolerance:
        raise ValueError(f"{where} has values from {low:g} to {high:g}, outside value_range ({lo:g}, {hi:g}); "
                         f"pass value_range=(0, 1) for images in [0, 1], or rescale")
    if (lo, hi) == (0.0, 255.0) and 0 < high <= 1.0:
        warnings.warn(f"{where} is float with values in [0, 1] but value_range is (0, 255); if it is a "
                      f"[0, 1] image pass value_range=(0, 1)", stacklevel=4)
    scaled = (array.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(scaled, 0.0, 255.0)


def load_images(images, max_pixels: int = MAX_PIXELS, value_range=(0, 255)) -> List[np.ndarray]:
    """Any accepted input → a list of (H, W, 3) arrays (uint8, or float32 in [0, 255]).

    Accepted: a path (str / os.PathLike) or PIL image; an array or tensor (anything with ``.numpy()`` or
    that NumPy converts) of shape (H, W), (H, W, C) for one image or (B, H, W, C) for a batch; or a
    list / tuple mixing paths, PIL images and (H, W[, C]) arrays (sizes may differ).
    """
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [_load_one(images, "the image", max_pixels, value_range)]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no images given (an empty list)")
        return [_load_one(item, f"image {index}", max_pixels, value_range)
                for index, item in enumerate(images)]
    array = _as_numpy(images, "images")
    if array.ndim == 4:
        if array.shape[0] == 0:
            raise ValueError("no images given (a batch of size 0)")
        return [array_to_rgb(image, f"image {index} of the batch", value_range)
                for index, image in enumerate(array)]
    if array.ndim in (2, 3):
        return [array_to_rgb(array, "the image", value_range)]
    raise ValueError(f"images must be one image (H, W) or (H, W, C), or a batch (B, H, W, C); got an array "
                     f"of rank {array.ndim} with shape {array.shape}")


def load_image(item, where: str = "the image", max_pixels: int = MAX_PIXELS, value_range=(0, 255)) -> np.ndarray:
    """One image → (H, W, 3) array (uint8, or float32 in [0, 255]): a path, a PIL image, encoded bytes
    (``decode_image_bytes``) or an (H, W[, C]) array or tensor. The one decoder of training and evaluation."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return decode_image_bytes(item, where, max_pixels)
    return _load_one(item, where, max_pixels, value_range)


def _load_one(item, where: str, max_pixels: int, value_range) -> np.ndarray:
    if isinstance(item, (str, os.PathLike)):
        return read_image_file(item, max_pixels)
    if isinstance(item, Image.Image):
        _check_pixel_count(item.size, max_pixels, where)
        return pil_to_rgb_array(item, where)
    array = _as_numpy(item, where)
    if array.ndim == 4:
        raise ValueError(f"{where} is a batch (shape {array.shape}); inside a list give single images, "
                         f"or pass the batch array itself")
    return array_to_rgb(array, where, value_range)


def tensor_to_numpy(value) -> np.ndarray:
    """``value`` as NumPy: arrays and lists as they are, tensors of any Keras backend through Keras (a
    PyTorch tensor that tracks gradients is detached first, a bfloat16 one widened)."""
    if isinstance(value, (np.ndarray, np.generic)) or not (hasattr(value, "shape") and hasattr(value, "dtype")):
        return np.asarray(value)
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value))


def _as_numpy(value, where: str) -> np.ndarray:
    array = tensor_to_numpy(value)
    if array.dtype == object:
        raise TypeError(f"{where} is not an image: expected a path, a PIL image or a numeric array, "
                        f"got {type(value).__name__}")
    return array
