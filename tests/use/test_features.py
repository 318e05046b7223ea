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
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"model 'sequential' carries no vit_zoo identity \(model.identity\)"):
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
    for got, expected in zip(reloaded(images), features(images)):
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
    np.testing.assert_allclose(pooled(images), headless(images), atol=1e-5)
    logits = np.asarray(pooled(images)) @ classifier.get_layer("head").kernel.numpy() + \
        classifier.get_layer("head").bias.numpy()
    np.testing.assert_allclose(logits, classifier(images), atol=1e-4)
    assert pooled_features(headless) is headless
    tokens = vit_zoo.build(config, include_top=False)
    with pytest.raises(ValueError, match=r"outputs \(None, 17, 32\), not pooled features \(B, D\)"):
        pooled_features(tokens)
