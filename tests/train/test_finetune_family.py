"""Fine-tuning from the family: a new head is every head of the spec (a distilled DeiT's head and head_dist,
a token-mean DINOv2 head of width 2D) and starts at zero; a distilled DeiT can keep one head
(``load(head="linear")``); a few frozen-backbone steps train exactly the head layers."""
import numpy as np
import pytest

import vit_zoo
from conftest import to_numpy
from family_models import family_config, randomised
from finetune_helpers import toy_arrays

RUN = dict(batch_size=16, learning_rate=0.05, log_every=100, progress=False, jit_compile=False)


def saved_start(tmp_path, name):
    """A tiny family model with random non-zero weights (10 classes), saved as vit_zoo .weights.h5."""
    model = randomised(vit_zoo.build(family_config(name)))
    path = tmp_path / f"{name}.weights.h5"
    model.save_weights(path)
    return model, path


def layer_weights(model, name):
    return [to_numpy(w) for w in model.get_layer(name).weights]


@pytest.mark.parametrize("name, heads, fan_in", [("deit-distilled", ["head", "head_dist"], 32),
                                                 ("dinov2-token-mean", ["head"], 64), ("dinov2-reg4", ["head"], 32),
                                                 ("stored-grid-6x6", ["head"], 32)])
def test_a_new_head_is_every_head_and_starts_at_zero(tmp_path, name, heads, fan_in):
    start, path = saved_start(tmp_path, name)
    model = vit_zoo.load(weights=str(path), num_classes=4)
    assert [layer.name for layer in model.layers if layer.name.startswith("head")][:len(heads)] == heads
    for head in heads:
        kernel, bias = layer_weights(model, head)
        assert kernel.shape == (fan_in if head == "head" else 32, 4) and bias.shape == (4,)
        assert not kernel.any() and not bias.any()
    for layer in ("patch_embed", "block_01_attn", "encoder_norm"):
        for got, want in zip(layer_weights(model, layer), layer_weights(start, layer)):
            np.testing.assert_array_equal(got, want)
    assert model.identity.labels is None and model.build_record.include_top


def test_a_distilled_deit_with_one_head(tmp_path):
    """head="linear": the distillation token stays in the sequence, one head sees the class token -- the
    checkpoint's class head without num_classes, a new zero one with it."""
    from vit_zoo.use.features import feature_extractor

    start, path = saved_start(tmp_path, "deit-distilled")
    images = np.random.RandomState(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    kept = vit_zoo.load(weights=str(path), head="linear")
    config = kept.identity.config
    assert (config.head, config.distillation_token, config.num_prefix_tokens) == ("linear", True, 2)
    assert "head_dist" not in [layer.name for layer in kept.layers]
    parts = to_numpy(feature_extractor(start, -1, output="parts", norm=True)(images))
    kernel, bias = layer_weights(start, "head")
    np.testing.assert_allclose(to_numpy(kept(images)), parts["class"] @ kernel + bias, atol=1e-4)
    fresh = vit_zoo.load(weights=str(path), num_classes=4, head="linear")
    assert fresh.output_shape == (None, 4) and not any(w.any() for w in layer_weights(fresh, "head"))


@pytest.mark.filterwarnings("ignore:no validation data")
@pytest.mark.parametrize("name, one_head", [("deit-distilled", False), ("deit-distilled", True),
                                            ("dinov2-token-mean", False), ("dinov2-reg4", False)])
def test_finetunes_the_head_layers_of_each_family(tmp_path, name, one_head):
    from vit_zoo.train.finetuning import finetune

    start, path = saved_start(tmp_path, name)
    source = vit_zoo.load(weights=str(path), num_classes=4, head="linear") if one_head else str(path)
    result = finetune(toy_arrays(32), source, steps=2, freeze_backbone=True, output_dir=tmp_path / "out", **RUN)
    model = result["model"]
    assert model.output_shape == (None, 4)
    heads = ["head"] if one_head or name != "deit-distilled" else ["head", "head_dist"]
    assert sorted(layer.name for layer in model.layers if layer.trainable and layer.weights) == heads
    for head in heads:  # trained away from their zero start
        assert all(w.any() for w in layer_weights(model, head))
    for got, want in zip(layer_weights(model, "block_00_mlp_fc1"), layer_weights(start, "block_00_mlp_fc1")):
        np.testing.assert_array_equal(got, want)
    import keras

    reloaded = keras.models.load_model(tmp_path / "out" / "model.keras")
    assert reloaded.build_record == model.build_record and reloaded.identity.labels == model.identity.labels


@pytest.mark.parametrize("tower, fan_in, before_head", [
    (dict(pre_norm=True, patch_bias=False, gelu="quick", projection_size=12, num_classes=0), 12, "projection"),
    (dict(class_token=False, pooling="map", gelu="tanh", num_classes=0), 32, "map_add")])
def test_a_classifier_on_an_image_tower_starts_at_zero_on_its_embedding(tmp_path, tower, fan_in, before_head):
    """CLIP: the new head reads the projection (the image embedding); SigLIP: the MAP head's output."""
    from conftest import tiny_config

    start = randomised(vit_zoo.build(tiny_config(**tower)))
    path = tmp_path / "tower.weights.h5"
    start.save_weights(path)
    model = vit_zoo.load(weights=str(path), num_classes=4)
    kernel, bias = layer_weights(model, "head")
    assert kernel.shape == (fan_in, 4) and not kernel.any() and not bias.any()
    assert model.get_layer("head").input is model.get_layer(before_head).output
    for got, want in zip(layer_weights(model, before_head if before_head == "projection" else "map_attn"),
                         layer_weights(start, before_head if before_head == "projection" else "map_attn")):
        np.testing.assert_array_equal(got, want)
