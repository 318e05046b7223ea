"""feature_extractor: shapes, equality with the model's own tensors, shared weights, errors."""
import numpy as np
import pytest

import vit_zoo
from conftest import tiny_config, to_numpy
from vit_zoo.use.features import feature_extractor



@pytest.fixture(scope="module")
def config():
    return tiny_config()


@pytest.fixture(scope="module")
def model(config):
    return vit_zoo.build(config)


@pytest.fixture(scope="module")
def images():
    return np.random.RandomState(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")


def copy_weights(source, target):
    """Give every layer of ``target`` the weights of ``source``'s layer of the same name."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    return target


def layer_norm(x, layer, epsilon=1e-6):
    gamma, beta = (w.numpy() for w in layer.weights)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


@pytest.mark.parametrize("include_top, include_preprocessing", [(True, True), (False, True), (False, False)])
def test_shapes(config, images, include_top, include_preprocessing):
    model = vit_zoo.build(config, include_top=include_top, include_preprocessing=include_preprocessing)
    tokens, spatial, cls = (feature_extractor(model, [0, -1], output=kind)(images)
                            for kind in ("tokens", "spatial", "cls"))
    assert [t.shape for t in tokens] == [(2, 17, 32)] * 2
    assert [t.shape for t in spatial] == [(2, 4, 4, 32)] * 2
    assert [t.shape for t in cls] == [(2, 32)] * 2
    single = feature_extractor(model, 1)(images)
    assert single.shape == (2, 17, 32)
    patch_tokens = to_numpy(tokens[1])[:, 1:]
    np.testing.assert_allclose(to_numpy(spatial[1]), patch_tokens.reshape(2, 4, 4, 32), atol=1e-6)
    np.testing.assert_allclose(to_numpy(cls[0]), to_numpy(tokens[0])[:, 0], atol=1e-6)


def test_last_block_normed_equals_the_model_token_output(config, model, images):
    sequence_model = copy_weights(model, vit_zoo.build(config, include_top=False, pooling=None))
    features = feature_extractor(model, -1, norm=True)(images)
    np.testing.assert_allclose(to_numpy(features), to_numpy(sequence_model(images)), atol=1e-5)
    pooled = copy_weights(model, vit_zoo.build(config, include_top=False, pooling="token"))
    cls = feature_extractor(model, -1, output="cls", norm=True)(images)
    np.testing.assert_allclose(to_numpy(cls), to_numpy(pooled(images)), atol=1e-5)


def test_intermediate_block_equals_a_truncated_model(config, model, images):
    # a 2-block model with the first two blocks' weights computes block 1's output, then the final norm
    truncated = copy_weights(model, vit_zoo.build(config.replace(num_layers=2), include_top=False))
    normed, raw = (feature_extractor(model, [1], norm=norm)(images) for norm in (True, False))
    np.testing.assert_allclose(to_numpy(normed), to_numpy(truncated(images)), atol=1e-5)
    np.testing.assert_allclose(layer_norm(np.asarray(to_numpy(raw), np.float64), model.get_layer("encoder_norm")),
                               to_numpy(normed), atol=1e-4)


def test_weights_are_shared_not_copied(config, images):
    model = vit_zoo.build(config)
    extractor = feature_extractor(model, [0, 2], output="spatial")
    assert extractor.get_layer("block_02_attn") is model.get_layer("block_02_attn")
    before = to_numpy(extractor(images)[1])
    bias = model.get_layer("block_02_mlp_fc2").bias
    bias.assign(bias.numpy() + 1.0)  # change the original model only
    after = to_numpy(extractor(images)[1])
    np.testing.assert_allclose(after, before + 1.0, atol=1e-4)
    assert len(extractor.weights) < len(model.weights)  # no head, no final norm: a subset, not a copy


def test_dynamic_size_spatial_grid(config):
    model = vit_zoo.build(config, include_top=False, dynamic_size=True)
    spatial = feature_extractor(model, -1, output="spatial")(np.zeros((1, 48, 64, 3), "float32"))
    assert spatial.shape == (1, 6, 8, 32)


def test_errors(config, model):
    with pytest.raises(ValueError, match=r"block index 3 is out of range: the model has 3 blocks"):
        feature_extractor(model, [3])
    with pytest.raises(ValueError, match=r"block index -4 is out of range"):
        feature_extractor(model, -4)
    with pytest.raises(ValueError, match="name the same block twice"):
        feature_extractor(model, [2, -1])
    with pytest.raises(ValueError, match="output must be one of"):
        feature_extractor(model, -1, output="pooled")
    no_token = vit_zoo.build(config.replace(class_token=False, pooling="gap"))
    with pytest.raises(ValueError, match="output='cls' needs a class token"):
        feature_extractor(no_token, -1, output="cls")
    assert feature_extractor(no_token, -1, output="spatial").output.shape == (None, 4, 4, 32)
    fc_norm = vit_zoo.build(config.replace(pooling="avg-fcnorm"))
    with pytest.raises(ValueError, match="has none \\(it norms after pooling"):
        feature_extractor(fc_norm, -1, norm=True)
    import keras
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="plain")
    with pytest.raises(ValueError, match=r"model 'plain' carries no vit_zoo identity \(model.identity\)"):
        feature_extractor(plain, -1)


def test_feature_extractor_keeps_the_identity_through_save_and_load(config, images, tmp_path):
    import keras

    from vit_zoo.model.identity import Identity, Preprocessing
    named = vit_zoo.build(config, identity=Identity(config, Preprocessing("hf", 1.0, "bicubic"),
                                                    tuple(f"c{i}" for i in range(10))))
    features = feature_extractor(named, [0, -1], output="cls")
    assert features.identity == named.identity
    features.save(tmp_path / "features.keras")
    reloaded = keras.models.load_model(tmp_path / "features.keras")
    assert reloaded.identity == named.identity
    for got, expected in zip(to_numpy(reloaded(images)), to_numpy(features(images))):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("changes", [{}, {"representation_size": 24},
                                     {"pooling": "avg-fcnorm", "class_token": False}])
def test_pooled_features_are_what_the_head_sees(config, images, changes):
    from vit_zoo.use.features import pooled_features
    classifier = vit_zoo.build(config.replace(**changes))
    pooled = pooled_features(classifier)
    assert pooled.identity == classifier.identity
    assert pooled.output_shape == (None, changes.get("representation_size", 32))
    # the same weights in a model built without a head, pooled as the classifier's config says
    headless = copy_weights(classifier, vit_zoo.build(config.replace(**changes), include_top=False,
                                                      pooling="gap" if changes.get("pooling") else "token"))
    np.testing.assert_allclose(to_numpy(pooled(images)), to_numpy(headless(images)), atol=1e-5)
    logits = to_numpy(pooled(images)) @ to_numpy(classifier.get_layer("head").kernel) + \
        to_numpy(classifier.get_layer("head").bias)
    np.testing.assert_allclose(logits, to_numpy(classifier(images)), atol=1e-4)
    assert pooled_features(headless) is headless
    tokens = vit_zoo.build(config, include_top=False)
    with pytest.raises(ValueError, match=r"outputs \(None, 17, 32\), not pooled features \(B, D\)"):
        pooled_features(tokens)


# ------------------------------------------------------------------------------ the family's prefix tokens
from family_models import FAMILY, family_config, prefix_count, randomised  # noqa: E402


def expected_parts(name):
    return {"class", "patches"} | ({"distillation"} if "distilled" in name else set()) | \
        ({"registers"} if "reg4" in name else set())


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_parts_split_off_every_prefix_token(name, images):
    model = randomised(vit_zoo.build(family_config(name)))
    prefix = prefix_count(name)
    tokens = to_numpy(feature_extractor(model, [0, -1])(images))
    parts = to_numpy(feature_extractor(model, [0, -1], output="parts")(images))
    for block_tokens, block_parts in zip(tokens, parts):
        assert block_tokens.shape == (2, prefix + 16, 32)
        assert set(block_parts) == expected_parts(name)
        np.testing.assert_array_equal(block_parts["class"], block_tokens[:, 0])
        if "distillation" in block_parts:
            np.testing.assert_array_equal(block_parts["distillation"], block_tokens[:, 1])
        if "registers" in block_parts:
            np.testing.assert_array_equal(block_parts["registers"], block_tokens[:, prefix - 4:prefix])
        np.testing.assert_array_equal(block_parts["patches"], block_tokens[:, prefix:].reshape(2, 4, 4, 32))
    spatial = to_numpy(feature_extractor(model, -1, output="spatial")(images))
    np.testing.assert_array_equal(spatial, parts[1]["patches"])


@pytest.mark.parametrize("name", ["deit-distilled", "dinov2-token-mean", "dinov2-reg4",
                                  "distilled-reg4-no-prefix-pos"])
def test_normed_parts_through_the_heads_give_the_models_logits(name, images):
    """The head(s) applied by hand to the split parts: the class token (‖ the patches' mean for token-mean),
    and for a distilled head the mean with head_dist on the distillation token."""
    config = family_config(name)
    classifier = randomised(vit_zoo.build(config))
    parts = to_numpy(feature_extractor(classifier, -1, output="parts", norm=True)(images))
    pooled = parts["class"]
    if config.pooling == "token-mean":
        pooled = np.concatenate([pooled, parts["patches"].mean(axis=(1, 2))], axis=-1)
    dense = lambda layer, x: x @ to_numpy(classifier.get_layer(layer).kernel) + \
        to_numpy(classifier.get_layer(layer).bias)  # noqa: E731
    logits = dense("head", pooled)
    if "distilled" in name:
        logits = (logits + dense("head_dist", parts["distillation"])) / 2
    np.testing.assert_allclose(logits, to_numpy(classifier(images)), atol=1e-4)


@pytest.mark.parametrize("name", ["dinov2-reg4", "stored-grid-6x6"])
def test_parts_of_a_dynamic_size_model_at_another_size(name):
    model = vit_zoo.build(family_config(name), include_top=False, dynamic_size=True)
    parts = feature_extractor(model, -1, output="parts")(np.zeros((1, 48, 64, 3), "float32"))
    assert parts["patches"].shape == (1, 6, 8, 32) and parts["class"].shape == (1, 32)
    assert name != "dinov2-reg4" or parts["registers"].shape == (1, 4, 32)


def test_parts_extractor_round_trips_through_keras_save(images, tmp_path):
    import keras

    model = randomised(vit_zoo.build(family_config("distilled-reg4-no-prefix-pos")))
    extractor = feature_extractor(model, -1, output="parts")
    extractor.save(tmp_path / "parts.keras")
    reloaded = keras.models.load_model(tmp_path / "parts.keras")
    assert reloaded.identity == model.identity and not reloaded.build_record.include_top
    for key, value in to_numpy(extractor(images)).items():
        np.testing.assert_array_equal(to_numpy(reloaded(images))[key], value)
