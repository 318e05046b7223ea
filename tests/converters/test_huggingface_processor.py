"""preprocessor_config.json as vit_zoo preprocessing, pixel for pixel against transformers' own image
processors (their Pillow backend, the one that runs without torchvision) on the sample photos: the
processor is saved beside a tiny model with its own ``save_pretrained``, the model loaded with
``vit_zoo.load(weights=DIR)``, and ``vit_zoo.preprocess(photo, model, normalize=True)`` compared with the
processor's ``pixel_values``."""
import warnings
from pathlib import Path

import numpy as np
import pytest

from reference_frameworks import require

torch = require("torch")
transformers = require("transformers")

import vit_zoo  # noqa: E402
from PIL import Image  # noqa: E402

import synth_hf_family as family  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
PHOTOS = {"grace_hopper.jpg (512x600)": SAMPLES / "grace_hopper.jpg", "chelsea.png (451x300)": SAMPLES / "chelsea.png"}
IMAGENET = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])


def bit_processor(shortest=256, crop=224):
    """facebook/dinov2-*'s processor: shorter side to 256, bicubic, centre crop 224, ImageNet mean/std."""
    return transformers.BitImageProcessorPil(size={"shortest_edge": shortest}, resample=3, do_center_crop=True,
                                             crop_size={"height": crop, "width": crop}, **IMAGENET)


def dinov2_with(processor, directory):
    reference = family.model("Dinov2Model", family.dinov2_config(), seed=0)
    path = family.save(reference, directory, processor=processor)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # config.json and preprocessor_config.json state everything
        return vit_zoo.load(weights=str(path), include_top=False)


def pixel_difference(model, processor, photo):
    """max |ours − transformers'| of the normalised pixels, and of the [0, 255] pixels before rescaling."""
    ours = vit_zoo.preprocess(photo, model, normalize=True)[0]
    theirs = processor(photo, return_tensors="np").pixel_values[0].transpose(1, 2, 0)
    raw = vit_zoo.preprocess(photo, model)[0]
    raw_theirs = processor(photo, return_tensors="np", do_rescale=False,
                           do_normalize=False).pixel_values[0].transpose(1, 2, 0)
    return float(np.max(np.abs(ours - theirs))), float(np.max(np.abs(raw - raw_theirs)))


@pytest.fixture(scope="module")
def dinov2_224(tmp_path_factory):
    processor = bit_processor()
    return dinov2_with(processor, tmp_path_factory.mktemp("dinov2")), processor


def test_bit_processor_is_the_timm_recipe(dinov2_224):
    model, _ = dinov2_224
    identity = model.identity
    assert identity.config.image_size == (224, 224) and identity.config.position_grid == (4, 4)
    assert (identity.preprocessing.recipe, identity.preprocessing.crop_pct,
            identity.preprocessing.interpolation) == ("timm", 0.875, "bicubic")
    assert identity.config.mean == (0.485, 0.456, 0.406) and identity.config.std == (0.229, 0.224, 0.225)


@pytest.mark.parametrize("photo", PHOTOS)
def test_bit_processor_pixels(dinov2_224, photo):
    model, processor = dinov2_224
    image = Image.open(PHOTOS[photo]).convert("RGB")
    normalised, levels = pixel_difference(model, processor, image)
    print(f"\nhf BitImageProcessor 256 → 224 on {photo}: max |diff| {normalised:.2e} (normalised), {levels} levels")
    assert normalised == 0.0 and levels == 0.0


@pytest.mark.xfail(strict=True, reason="the 'timm' recipe centre-crops at torchvision's round((in - C) / 2), "
                                       "transformers at (in - C) // 2: one pixel apart when in - C is 3 mod 4")
def test_bit_processor_crop_offset_when_the_difference_is_odd(tmp_path):
    # grace_hopper 512x600, shorter side to 30: 30x35; the crop of 28 starts at row 3 in transformers
    # (7 // 2) and at row 4 in torchvision's rounding (round(3.5), half to even).
    processor = bit_processor(30, 28)
    image = Image.open(PHOTOS["grace_hopper.jpg (512x600)"]).convert("RGB")
    normalised, levels = pixel_difference(dinov2_with(processor, tmp_path), processor, image)
    print(f"\nhf BitImageProcessor 30 → 28 on grace_hopper: max |diff| {normalised:.2e}, {levels} levels")
    assert normalised == 0.0


def test_deit_processor_on_a_square_photo(tmp_path):
    # DeiTImageProcessor squashes to 256x256 before its crop; on a square photo that is the "timm" recipe.
    processor = transformers.DeiTImageProcessorPil(size={"height": 256, "width": 256}, resample=3,
                                                   crop_size={"height": 224, "width": 224}, **IMAGENET)
    reference = family.model("DeiTForImageClassification", family.deit_config(image_size=224, patch_size=16), seed=1)
    path = family.save(reference, tmp_path, processor=processor)
    with pytest.warns(UserWarning, match=r"DeiTImageProcessor resizes to \(256, 256\) without keeping the aspect "
                                         r"ratio, then crops \(224, 224\); the nearest recipe, 'timm' crop_pct "
                                         r"0\.875 \(shorter side kept\), equals it on square images"):
        model = vit_zoo.load(weights=str(path))
    assert model.identity.provenance.assumed == ("preprocessing",)
    square = Image.open(PHOTOS["grace_hopper.jpg (512x600)"]).convert("RGB").crop((0, 44, 512, 556))
    normalised, levels = pixel_difference(model, processor, square)
    print(f"\nhf DeiTImageProcessor 256 → 224 on a 512x512 crop of grace_hopper: max |diff| {normalised:.2e}")
    assert normalised == 0.0 and levels == 0.0


# ---- the image towers' processors (issue 19): CLIPImageProcessor and SiglipImageProcessor ---------------------
def _tower_with(cls_name, make_config, processor, directory):
    import synth_hf_tower as tower

    path = family.save(tower.model(cls_name, make_config(image_size=224, patch_size=32)), directory,
                       processor=processor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the text tower's announcement
        return vit_zoo.load(weights=str(path))


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    import synth_hf_tower as tower

    clip = transformers.CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    siglip = transformers.SiglipImageProcessorPil(size={"height": 224, "width": 224}, resample=3)
    return {"clip": (_tower_with("CLIPModel", tower.clip_config, clip, tmp_path_factory.mktemp("c")), clip),
            "siglip": (_tower_with("SiglipModel", tower.siglip_config, siglip, tmp_path_factory.mktemp("s")), siglip)}


@pytest.mark.parametrize("photo", PHOTOS)
@pytest.mark.parametrize("kind, recipe", [("clip", ("timm", 1.0, "bicubic")), ("siglip", ("hf", 1.0, "bicubic"))])
def test_tower_processors_pixels(towers, kind, recipe, photo):
    """CLIPImageProcessor (shorter side 224 bicubic, centre crop 224, CLIP's mean/std) and SiglipImageProcessor
    (squash to 224 bicubic, mean/std 0.5), on the real photos."""
    model, processor = towers[kind]
    preprocessing = model.identity.preprocessing
    assert (preprocessing.recipe, preprocessing.crop_pct, preprocessing.interpolation) == recipe
    image = Image.open(PHOTOS[photo]).convert("RGB")
    normalised, levels = pixel_difference(model, processor, image)
    print(f"\n{type(processor).__name__} on {photo}: max |diff| {normalised:.2e} (normalised), {levels} levels")
    assert normalised == 0.0 and levels == 0.0
