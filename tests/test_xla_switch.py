"""The suite's XLA switch (tests/xla_switch.py): outside ``@pytest.mark.xla`` tests a fresh model compiles
no XLA program and TensorFlow runs every tf.function eagerly; inside them vit_zoo's defaults hold."""
import keras
import numpy as np
import pytest

from vit_zoo import build
from conftest import random_images, tiny_config

tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                     reason="vit_zoo's XLA fast path is TensorFlow's")


@tensorflow_only
def test_models_of_unmarked_tests_compile_nothing(rng):
    model = build(tiny_config())
    images = random_images(rng, 2, 32)
    model(images)
    model.predict(images, verbose=0)
    model.predict_on_batch(images)
    model.compile(optimizer="sgd", loss="mse")
    assert model.jit_compile is False  # Keras' own choice on a CPU: no XLA for fit/evaluate/predict
    assert model._compiled_forward.traces == []  # the eager call and predict ran Keras' own path
    import tensorflow as tf

    assert tf.config.functions_run_eagerly()  # ... without tracing Keras' steps


@tensorflow_only
@pytest.mark.xla
def test_models_of_xla_tests_keep_the_fast_path(rng):
    model = build(tiny_config(num_layers=1))
    assert model.jit_compile is True
    model(random_images(rng, 2, 32))
    assert model._compiled_forward.traces == [("xla", (2, 32, 32, 3), "float32")]
    np.testing.assert_array_equal(model.predict_on_batch(random_images(rng, 2, 32)).shape, (2, 10))
    import tensorflow as tf

    assert not tf.config.functions_run_eagerly()
