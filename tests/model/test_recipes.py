"""The recipe table and timm's crop rule are defined once (vit_zoo.model.recipes): the identity validates
against it and preprocessing applies it."""
import pytest

from vit_zoo.model import recipes
from vit_zoo.model.identity import Preprocessing, source_preprocessing
from vit_zoo.use import preprocessing


def test_one_recipe_table():
    assert preprocessing.RECIPES is recipes.RECIPES
    assert recipes.SQUASH_RECIPES == ("google", "hf")
    for name in recipes.RECIPES:
        Preprocessing(name)  # every recipe the preprocessing applies is a valid identity recipe
    with pytest.raises(ValueError, match=r"recipe must be one of \['google', 'timm', 'hf'\]"):
        Preprocessing("squash")


@pytest.mark.parametrize("size, crop", [((224, 224), 0.9), ((256, 320), 0.9), ((384, 384), 1.0), ((224, 448), 1.0)])
def test_timm_crop_rule_is_shared(size, crop):
    assert recipes.timm_crop_pct(size) == crop
    assert source_preprocessing("timm", size).crop_pct == crop
    assert preprocessing.resolve_settings(recipe="timm", image_size=size).recipe.crop_pct == crop


def test_crop_scale_size():
    assert recipes.crop_scale_size((224, 224), 0.875) == (256, 256)
    assert recipes.crop_scale_size((224, 160), 0.9) == (248, 177)
    assert preprocessing.timm_resize_size(300, 400, (224, 224), 0.875) == (256, 341)
