"""predict: preprocessing + forward pass + decoding, label-set choice and errors."""
from pathlib import Path

import numpy as np
import pytest

import vit_zoo
from vit_zoo.model.identity import Identity
from conftest import tiny_config
from vit_zoo.use.labels import decode_predictions
from vit_zoo.use.prediction import model_labels, predict
from vit_zoo.use.preprocessing import preprocess

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_predict_equals_decoding_the_model_outputs():
    model = vit_zoo.build(tiny_config(num_layers=2))
    names = [f"class {i}" for i in range(10)]
    images = [SAMPLES / "grace_hopper.jpg", SAMPLES / "chelsea.png"]
    got = predict(model, images, labels=names, top=3, batch_size=1)
    logits = model.predict_on_batch(preprocess(images, weights=model))
    softmax_model = vit_zoo.build(tiny_config(num_layers=2), classifier_activation="softmax")
    softmax_model.set_weights(model.get_weights())
    from_probabilities = predict(softmax_model, images, labels=names, top=3)
    for decoded in (got, from_probabilities):
        for mine, theirs in zip(decoded, decode_predictions(logits, labels=names, top=3)):
            assert [(i, n) for i, n, _ in mine] == [(i, n) for i, n, _ in theirs]
            np.testing.assert_allclose([p for *_, p in mine], [p for *_, p in theirs], rtol=1e-5)


def test_class_names_come_from_the_identity_never_from_the_head_size():
    config = tiny_config(num_layers=2, num_classes=1000)
    model_1k = vit_zoo.build(config, identity=Identity(config, labels="imagenet1k"))
    assert model_labels(model_1k) == "imagenet1k"
    assert predict(model_1k, SAMPLES / "chelsea.png", top=1)[0][0][1] in vit_zoo.use.labels.imagenet1k_labels()
    with pytest.raises(ValueError, match="has 1000 classes and no class names in its identity"):
        predict(vit_zoo.build(config), SAMPLES / "chelsea.png")
    headless = vit_zoo.build(tiny_config(num_layers=2), include_top=False, pooling="token")
    with pytest.raises(ValueError, match="has no classification head"):
        predict(headless, SAMPLES / "chelsea.png")


def test_predict_on_a_distilled_deit_is_the_softmax_of_its_two_heads_averaged():
    from conftest import to_numpy
    from family_models import family_config, randomised
    from vit_zoo.use.features import feature_extractor

    model = randomised(vit_zoo.build(family_config("deit-distilled")))
    names = [f"class {i}" for i in range(10)]
    images = [SAMPLES / "grace_hopper.jpg", SAMPLES / "chelsea.png"]
    parts = to_numpy(feature_extractor(model, -1, output="parts", norm=True)(preprocess(images, weights=model)))
    dense = lambda layer, x: x @ to_numpy(model.get_layer(layer).kernel) + to_numpy(model.get_layer(layer).bias)  # noqa: E731
    logits = (dense("head", parts["class"]) + dense("head_dist", parts["distillation"])) / 2
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    got = predict(model, images, labels=names, top=3)
    for row, decoded in zip(probabilities, got):
        order = np.argsort(-row)[:3]
        assert [(i, n) for i, n, _ in decoded] == [(int(i), names[i]) for i in order]
        np.testing.assert_allclose([p for *_, p in decoded], row[order], rtol=1e-4)
