"""The fast default paths (XLA-compiled ``model(x)`` and ``predict``) compute what the plain graph does."""
import keras
import numpy as np
import pytest

from vit_zoo import build
from vit_zoo.model.vision_transformer import VisionTransformer
from conftest import random_images, tiny_config, to_numpy

TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def _plain(model):
    """The same layers and weights as a plain keras.Model (Keras' own defaults: no XLA on CPU)."""
    return keras.Model(model.input, model.output)


@pytest.fixture(scope="module")
def model():
    return build(tiny_config(gelu="tanh", representation_size=16))


def test_builder_returns_a_vision_transformer_with_xla_defaults(model):
    assert isinstance(model, VisionTransformer) and isinstance(model, keras.Model)
    if keras.backend.backend() == "tensorflow":
        assert model.jit_compile is True


def test_eager_call_and_predict_equal_the_plain_graph(model, rng):
    images = random_images(rng, 3, 32)
    expected = to_numpy(_plain(model)(images))
    np.testing.assert_allclose(to_numpy(model(images)), expected, **TOLERANCE)
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, **TOLERANCE)
    if keras.backend.backend() == "tensorflow":
        assert model._compiled_forward.function is not None  # the eager call took the compiled path


@pytest.mark.tensorflow_only("the XLA fast path (tf.function) of model(x)")
def test_compiled_forward_is_cached_per_shape(model, rng):
    for batch in (1, 2, 1, 2):
        images = random_images(rng, batch, 32)
        np.testing.assert_allclose(to_numpy(model(images)), to_numpy(_plain(model)(images)), **TOLERANCE)
    traced = {tuple(f.structured_input_signature[0][0].shape)
              for f in model._compiled_forward.function._list_all_concrete_functions()}
    assert {(1, 32, 32, 3), (2, 32, 32, 3)} <= traced


def test_training_call_takes_the_plain_path(rng):
    model = build(tiny_config(drop_path_rate=0.5, dropout_rate=0.5))
    images = random_images(rng, 4, 32)
    inference = to_numpy(model(images))
    training = to_numpy(model(images, training=True))
    assert not np.allclose(training, inference)  # dropout and drop-path ran: not the inference function


def test_weights_assigned_after_the_first_call_are_used(rng):
    model = build(tiny_config())
    images = random_images(rng, 2, 32)
    model(images)
    head = model.get_layer("head")
    head.bias.assign(np.full(head.bias.shape, 7.0, "float32"))
    np.testing.assert_allclose(to_numpy(model(images)), to_numpy(_plain(model)(images)), **TOLERANCE)


def test_jit_compile_false_restores_plain_keras(rng):
    model = build(tiny_config())
    model.jit_compile = False
    images = random_images(rng, 2, 32)
    np.testing.assert_allclose(to_numpy(model(images)), to_numpy(_plain(model)(images)), **TOLERANCE)
    assert model._compiled_forward.function is None


def test_fit_compiles_with_xla_by_default_and_learns(rng):
    model = build(tiny_config())
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    if keras.backend.backend() == "tensorflow":
        assert model.jit_compile is True
    images, targets = random_images(rng, 4, 32), np.zeros((4, 10), "float32")
    first = model.evaluate(images, targets, verbose=0)
    model.fit(images, targets, epochs=3, verbose=0)
    assert model.evaluate(images, targets, verbose=0) < first


def test_keras_file_round_trip_keeps_class_outputs_and_defaults(model, rng, tmp_path):
    images = random_images(rng, 2, 32)
    path = tmp_path / "fast.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, VisionTransformer)
    assert restored.jit_compile == model.jit_compile
    assert [w.path for w in restored.weights] == [w.path for w in model.weights]
    np.testing.assert_allclose(to_numpy(restored(images)), to_numpy(_plain(model)(images)), **TOLERANCE)
    np.testing.assert_array_equal(to_numpy(restored(images)), to_numpy(model(images)))


def test_mixed_precision_fast_path_equals_its_plain_graph(rng):
    keras.utils.set_random_seed(0)
    model = build(tiny_config(), dtype="mixed_bfloat16")
    images = random_images(rng, 2, 32)
    out = model(images)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    expected = to_numpy(_plain(model)(images))
    # XLA and the op-by-op graph round bf16 intermediates at different points
    assert np.max(np.abs(to_numpy(out) - expected)) / np.max(np.abs(expected)) < 0.05
