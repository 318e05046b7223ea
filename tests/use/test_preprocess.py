"""Each preprocessing recipe against a reference computation written here, inputs of every kind, and
bad inputs with their messages."""
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vit_zoo
from reference_frameworks import require
from vit_zoo.use.images import ImageReadError
from vit_zoo.use.preprocessing import preprocess

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
HOPPER = SAMPLES / "grace_hopper.jpg"   # 512 wide × 600 high
CHELSEA = SAMPLES / "chelsea.png"       # 451 wide × 300 high


def pil_rgb(path):
    return Image.open(path).convert("RGB")


def half_pixel_bilinear(image, height, width):
    """tf.image.resize(method="bilinear", antialias=False): sample at (out + 0.5) * in / out - 0.5,
    neighbours clamped to the edge."""
    image = image.astype(np.float64)

    def axis(out_size, in_size):
        centre = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5
        low = np.floor(centre)
        frac = centre - low
        low = low.astype(int)
        return np.clip(low, 0, in_size - 1), np.clip(low + 1, 0, in_size - 1), frac

    y0, y1, fy = axis(height, image.shape[0])
    x0, x1, fx = axis(width, image.shape[1])
    top = image[y0][:, x0] * (1 - fx)[None, :, None] + image[y0][:, x1] * fx[None, :, None]
    bottom = image[y1][:, x0] * (1 - fx)[None, :, None] + image[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bottom * fy[:, None, None]


@pytest.mark.parametrize("size", [(32, 32), (700, 640), (24, 40)])
def test_google_recipe_is_a_half_pixel_bilinear_squash(size):
    expected = half_pixel_bilinear(np.asarray(pil_rgb(HOPPER)), *size)
    got = preprocess(str(HOPPER), recipe="google", image_size=size)
    assert got.shape == (1, *size, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], expected, atol=1e-2)  # float32 sample positions in TF


def test_hf_recipe_is_pil_bilinear_and_matches_transformers():
    expected = np.asarray(pil_rgb(CHELSEA).resize((48, 40), Image.BILINEAR), dtype=np.float32)
    np.testing.assert_array_equal(preprocess(CHELSEA, recipe="hf", image_size=(40, 48))[0], expected)
    transformers = require("transformers")
    processor = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    reference = processor(size={"height": 40, "width": 48})(pil_rgb(CHELSEA), return_tensors="np")
    got = preprocess(CHELSEA, recipe="hf", image_size=(40, 48), normalize=True, mean=(0.5,) * 3, std=(0.5,) * 3)
    np.testing.assert_allclose(got[0], reference["pixel_values"][0].transpose(1, 2, 0), atol=1e-5)


def test_timm_recipe_portrait_crop_pct_09():
    # torchvision Resize(floor(32 / 0.9) = 35): shorter side (width 512) → 35,
    # height int(35 * 600 / 512) = 41;
    # CenterCrop(32): top int(round(4.5)) = 4 (round half to even), left int(round(1.5)) = 2.
    resized = np.asarray(pil_rgb(HOPPER).resize((35, 41), Image.BICUBIC), dtype=np.float32)
    got = preprocess(HOPPER, recipe="timm", image_size=32, crop_pct=0.9)
    np.testing.assert_array_equal(got[0], resized[4:36, 2:34])


def test_timm_recipe_landscape_default_crop():
    # 224 px: crop_pct 0.9 → 248; height 300 → 248, width int(248 * 451 / 300) = 372; crop at (12, 74).
    resized = np.asarray(pil_rgb(CHELSEA).resize((372, 248), Image.BICUBIC), dtype=np.float32)
    got = preprocess(CHELSEA, weights={"format": "timm", "image_size": 224, "mean": [0.5] * 3,
                                       "std": [0.5] * 3})
    np.testing.assert_array_equal(got[0], resized[12:236, 74:298])
    # 384 px timm fine-tunes use crop_pct 1.0: height → 384, width int(384 * 451 / 300) = 577, left 96
    resized = np.asarray(pil_rgb(CHELSEA).resize((577, 384), Image.BICUBIC), dtype=np.float32)
    np.testing.assert_array_equal(preprocess(CHELSEA, recipe="timm", image_size=384)[0], resized[:, 96:480])


def test_settings_from_model_config_and_entry():
    config = vit_zoo.ViTConfig(image_size=(16, 24), patch_size=8, hidden_size=16, mlp_size=32, num_heads=2,
                               num_layers=1, num_classes=3, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    model = vit_zoo.build(config)
    raw = preprocess(HOPPER, weights=model)
    assert raw.shape == (1, 16, 24, 3)
    normalised = preprocess(HOPPER, weights=model, normalize=True)
    expected = (raw / 255 - np.array(config.mean)) / np.array(config.std)
    np.testing.assert_allclose(normalised, expected, atol=1e-5)
    np.testing.assert_allclose(preprocess(HOPPER, weights=config, normalize=True), normalised, atol=1e-6)
    entry = {"format": "hf", "image_size": 20, "mean": [0.5] * 3, "std": [0.5] * 3}
    np.testing.assert_array_equal(preprocess(HOPPER, weights=entry),
                                  preprocess(HOPPER, recipe="hf", image_size=20))


def test_inputs_of_every_kind_agree():
    import tensorflow as tf
    pixels = np.asarray(pil_rgb(CHELSEA))
    reference = preprocess(str(CHELSEA), recipe="hf", image_size=16)
    for images in (CHELSEA, Image.open(CHELSEA), pixels, pixels[None], tf.constant(pixels), [pixels],
                   pixels.astype(np.int64), [str(CHELSEA)]):
        np.testing.assert_array_equal(preprocess(images, recipe="hf", image_size=16), reference)
    as_float = preprocess(pixels / 255.0, recipe="google", image_size=16, value_range=(0, 1))
    np.testing.assert_allclose(as_float, preprocess(pixels, recipe="google", image_size=16), atol=1e-3)
    batch = preprocess([CHELSEA, HOPPER, pixels[:50, :70]], recipe="timm", image_size=16)
    assert batch.shape == (3, 16, 16, 3)


def test_grayscale_and_rgba(tmp_path):
    gray = np.random.RandomState(0).randint(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    got = preprocess(tmp_path / "gray.png", recipe="hf", image_size=(20, 30))[0]
    np.testing.assert_array_equal(got, np.repeat(gray[..., None], 3, axis=-1).astype(np.float32))
    np.testing.assert_array_equal(preprocess(gray[..., None], recipe="hf", image_size=(20, 30))[0], got)
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "gray16.png")  # 16-bit: 0..65535
    np.testing.assert_array_equal(preprocess(tmp_path / "gray16.png", recipe="hf", image_size=(20, 30))[0], got)

    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = np.where(np.arange(30) < 15, 255, 0)[None]  # left half opaque red, right transparent
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    with pytest.warns(UserWarning, match=r"rgba.png' has an alpha channel; composited over a white"):
        got = preprocess(tmp_path / "rgba.png", recipe="hf", image_size=(20, 30))[0]
    np.testing.assert_array_equal(got[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(got[0, -1], [255, 255, 255])


def test_missing_and_non_image_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image file not found: '.*nope.jpg'"):
        preprocess(tmp_path / "nope.jpg", image_size=16)
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(ImageReadError, match=r"cannot read '.*notes.jpg' as an image: Pillow does not"):
        preprocess(tmp_path / "notes.jpg", image_size=16)
    with pytest.raises(ImageReadError, match="is a folder, not an image file"):
        preprocess(tmp_path, image_size=16)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(HOPPER.read_bytes()[:2000])
    with pytest.raises(ImageReadError, match=r"cannot decode '.*truncated.jpg'"):
        preprocess(truncated, image_size=16)


def png_header_only(width, height):
    """A PNG whose header claims width × height pixels (its data is a stub; never decoded)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))
            + chunk(b"IEND", b""))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns on open; we refuse
def test_huge_images_are_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(50_000, 40_000))
    with pytest.raises(ImageReadError, match=r"bomb.png' has 2,000,000,000 pixels, over the limit "
                                             r"of 89,478,485 \(a guard against decompression bombs\)"):
        preprocess(bomb, image_size=16)
    bomb.write_bytes(png_header_only(10_000, 9_000))  # under Pillow's hard limit: our check reads the header
    with pytest.raises(ImageReadError, match=r"bomb.png' has 90,000,000 pixels \(10000×9000\), over the limit"):
        preprocess(bomb, image_size=16)
    with pytest.raises(ImageReadError, match="over the limit of 1,000"):
        preprocess(HOPPER, image_size=16, max_pixels=1000)


@pytest.mark.parametrize("images, error, message", [
    (np.zeros((1, 2, 8, 8, 3)), ValueError, r"rank 5 with shape \(1, 2, 8, 8, 3\)"),
    (np.zeros((8, 8, 5)), ValueError, r"has 5 channels .* expected channels-last"),
    (np.zeros((3, 8, 9)), ValueError, r"looks channels-first .* np.transpose"),
    (np.zeros((8, 8, 3), bool), TypeError, "dtype bool; expected uint8"),
    (np.full((8, 8, 3), 300.0), ValueError, r"values from 300 to 300, outside value_range \(0, 255\)"),
    (np.full((8, 8, 3), 1000, np.int32), ValueError, "integer images must hold 0–255"),
    ([], ValueError, "no images given"),
    ([np.zeros((2, 8, 8, 3))], ValueError, "image 0 is a batch"),
    ([object()], TypeError, "image 0 is not an image"),
])
def test_bad_arrays(images, error, message):
    with pytest.raises(error, match=message):
        preprocess(images, image_size=16)


def test_bad_settings():
    pixels = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="unknown preprocessing recipe 'pytorch'"):
        preprocess(pixels, recipe="pytorch", image_size=16)
    with pytest.raises(ValueError, match=r"crop_pct must be a fraction in \(0, 1\]"):
        preprocess(pixels, recipe="timm", crop_pct=1.5, image_size=16)
    with pytest.raises(ValueError, match="takes no crop_pct"):
        preprocess(pixels, recipe="google", crop_pct=0.9, image_size=16)
    with pytest.raises(ValueError, match="the output size is unknown: pass image_size="):
        preprocess(pixels)
    with pytest.raises(ValueError, match="normalize=True needs the mean and std"):
        preprocess(pixels, image_size=16, normalize=True)
    with pytest.warns(UserWarning, match=r"values in \[0, 1\] but value_range is \(0, 255\)"):
        preprocess(np.full((8, 8, 3), 0.5), image_size=16)
    half = preprocess(np.full((8, 8, 3), 0.5), image_size=8, value_range=(0, 1))
    assert math.isclose(float(half.max()), 127.5)


# Each source family's own evaluation transform, read off its code (the manifest states none):
# vit_jax input_pipeline.py resizes to the input size with tf.image.resize (bilinear), no crop;
# transformers' ViTImageProcessor resizes to its size with resample=BILINEAR, no crop;
# timm vision_transformer.py: _cfg(crop_pct=0.9, interpolation="bicubic"), the 384 px fine-tunes crop_pct=1.0.
SOURCE_TRANSFORMS = {("google-npz", 224): ("google", 1.0, "bilinear"), ("google-npz", 384): ("google", 1.0, "bilinear"),
                     ("hf", 224): ("hf", 1.0, "bilinear"), ("hf", 384): ("hf", 1.0, "bilinear"),
                     ("timm", 224): ("timm", 0.9, "bicubic"), ("timm", 384): ("timm", 1.0, "bicubic")}


@pytest.mark.parametrize("format, size", list(SOURCE_TRANSFORMS))
def test_settings_from_a_manifest_key(format, size):
    from vit_zoo.weights import manifest
    from vit_zoo.use.preprocessing import resolve_settings

    entry = next(e for e in manifest.list_weights() if (e["format"], e["image_size"]) == (format, size))
    settings = resolve_settings(entry["key"])
    assert settings.image_size == (size, size)
    assert (settings.mean, settings.std) == (tuple(entry["mean"]), tuple(entry["std"]))
    recipe = settings.recipe
    assert (recipe.name, recipe.crop_pct, recipe.interpolation) == SOURCE_TRANSFORMS[format, size]


def identity_model(preprocessing, image_size=32, **config):
    from vit_zoo.model.identity import Identity

    config = vit_zoo.ViTConfig(image_size=image_size, patch_size=8, hidden_size=16, mlp_size=32, num_heads=2,
                               num_layers=1, num_classes=3, **config)
    return vit_zoo.build(config, identity=Identity(config, preprocessing))


def test_the_identity_decides_recipe_crop_and_interpolation():
    from vit_zoo.model.identity import Preprocessing
    from vit_zoo.use.preprocessing import resolve_settings

    # a Hugging Face processor that resamples bicubically (resample=3): a bicubic Pillow squash
    hf_bicubic = identity_model(Preprocessing("hf", 1.0, "bicubic"), image_size=(40, 48))
    bicubic = np.asarray(pil_rgb(CHELSEA).resize((48, 40), Image.BICUBIC), dtype=np.float32)
    np.testing.assert_array_equal(preprocess(CHELSEA, weights=hf_bicubic)[0], bicubic)
    assert not np.array_equal(preprocess(CHELSEA, recipe="hf", image_size=(40, 48))[0], bicubic)
    # timm with its pretrained_cfg's crop_pct 0.8 and bilinear: shorter side (300) → floor(32 / 0.8) = 40,
    # width int(40 * 451 / 300) = 60; centre crop 32 at top int(round(4.0)) = 4, left int(round(14.0)) = 14
    timm_bilinear = identity_model(Preprocessing("timm", 0.8, "bilinear"))
    resized = np.asarray(pil_rgb(CHELSEA).resize((60, 40), Image.BILINEAR), dtype=np.float32)
    np.testing.assert_array_equal(preprocess(CHELSEA, weights=timm_bilinear)[0], resized[4:36, 14:46])
    # an Identity itself, with nothing else, gives the same settings as the model carrying it
    assert resolve_settings(timm_bilinear.identity) == resolve_settings(timm_bilinear)
    # explicit arguments win; an explicit recipe brings its own crop and interpolation
    np.testing.assert_array_equal(preprocess(CHELSEA, weights=timm_bilinear, interpolation="bicubic")[0],
                                  np.asarray(pil_rgb(CHELSEA).resize((60, 40), Image.BICUBIC), np.float32)[4:36, 14:46])
    np.testing.assert_array_equal(preprocess(CHELSEA, weights=timm_bilinear, recipe="hf")[0],
                                  np.asarray(pil_rgb(CHELSEA).resize((32, 32), Image.BILINEAR), np.float32))
    assert resolve_settings(timm_bilinear, recipe="timm").recipe.crop_pct == 0.8
    with pytest.raises(ValueError, match=r"interpolation must be one of \['bilinear', 'bicubic'\], got 'area'"):
        preprocess(CHELSEA, weights=timm_bilinear, interpolation="area")


def test_the_identity_survives_saving(tmp_path):
    import keras

    from vit_zoo.model.identity import Preprocessing

    model = identity_model(Preprocessing("timm", 0.8, "bilinear"), mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4))
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    expected = preprocess(CHELSEA, weights=model, normalize=True)
    np.testing.assert_array_equal(preprocess(CHELSEA, weights=reloaded, normalize=True), expected)
    through_load = vit_zoo.load(weights=str(tmp_path / "m.keras"))
    np.testing.assert_array_equal(preprocess(CHELSEA, weights=through_load, normalize=True), expected)


def test_dynamic_size_models_take_multiples_of_the_patch_size():
    from vit_zoo.model.identity import Preprocessing

    model = vit_zoo.build(identity_model(Preprocessing()).identity.config, dynamic_size=True)
    assert preprocess(CHELSEA, weights=model).shape == (1, 32, 32, 3)  # the identity's size
    assert preprocess(CHELSEA, weights=model, image_size=(40, 48)).shape == (1, 40, 48, 3)
    message = "image_size height 36 is not divisible by patch_size 8; the nearest valid sizes are 32 and 40"
    with pytest.raises(ValueError, match=message):
        preprocess(CHELSEA, weights=model, image_size=36)
    message = (r"model 'vit(_features)?' \(dynamic_size=True\) takes any input size divisible by its patch size; input "
               r"width 41 is not divisible by patch_size 8; the nearest valid sizes are 40 and 48")
    pixels = np.zeros((1, 32, 41, 3), np.float32)
    for call in (model, model.predict_on_batch, vit_zoo.feature_extractor(model), lambda x:
                 vit_zoo.attention_maps(model, x)):
        with pytest.raises(ValueError, match=message):
            call(pixels)
    assert model(pixels[:, :, :40]).shape == (1, 3)
