"""The fast default paths (XLA-compiled ``model(x)`` and ``predict``) compute what the plain graph does."""
import keras
import numpy as np
import pytest

from vit_zoo import build
from vit_zoo.model.vision_transformer import VisionTransformer
from conftest import random_images, tiny_config, to_numpy

pytestmark = pytest.mark.xla  # the XLA fast path is under test here (tests/xla_switch.py)
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
        assert model._compiled_forward.traces  # the eager call took the compiled path


@pytest.mark.tensorflow_only("the XLA fast path (tf.function) of model(x)")
def test_compiled_forward_is_cached_per_shape(model, rng):
    for batch in (1, 2, 1, 2):
        images = random_images(rng, batch, 32)
        np.testing.assert_allclose(to_numpy(model(images)), to_numpy(_plain(model)(images)), **TOLERANCE)
    shapes = [shape for _, shape, _ in model._compiled_forward.traces]
    assert len(shapes) == len(set(shapes)) and {(1, 32, 32, 3), (2, 32, 32, 3)} <= set(shapes)


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
    assert model._compiled_forward.traces == []


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


# ------------------------------------------------------------------------------------------------
# buckets, compile counts, engines, predict (TensorFlow backend: the fast path is TensorFlow's)
tensorflow_only = pytest.mark.tensorflow_only("the compiled forward and fast predict are TensorFlow's")


def test_bucket_plan_covers_every_row_once_with_little_padding():
    from vit_zoo.model.fast_path import bucket_plan

    assert bucket_plan(1) == [(0, 1, 1)]
    assert bucket_plan(7) == [(0, 7, 8)]                          # 1 padded row of 7: within 25 %
    assert bucket_plan(6) == [(0, 4, 4), (4, 6, 2)]               # padding 2 of 6 would be 33 %
    assert bucket_plan(48) == [(0, 32, 32), (32, 48, 16)]
    assert bucket_plan(100) == [(0, 64, 64), (64, 96, 32), (96, 100, 4)]
    for count in range(1, 300):
        plan = bucket_plan(count)
        assert [start for start, _, _ in plan] == [0] + [stop for _, stop, _ in plan[:-1]]
        assert plan[-1][1] == count
        for start, stop, bucket in plan:
            assert bucket & (bucket - 1) == 0 and stop - start <= bucket <= 1.25 * (stop - start)


@tensorflow_only
def test_batch_sizes_1_to_64_compile_at_most_7_programs(rng):
    model = build(tiny_config(num_layers=1))
    plain = _plain(model)
    for batch in range(1, 65):
        images = random_images(rng, batch, 32)
        if batch in (1, 5, 13, 33, 64):
            np.testing.assert_allclose(to_numpy(model(images)), to_numpy(plain(images)), **TOLERANCE)
        else:
            assert model(images).shape == (batch, 10)
    traces = model._compiled_forward.traces
    assert len(traces) <= 7
    assert sorted(shape[0] for _, shape, _ in traces) == [1, 2, 4, 8, 16, 32, 64]


@tensorflow_only
def test_predict_equals_plain_keras_predict_and_its_ragged_last_batch_compiles_nothing_new(rng):
    model = build(tiny_config(num_layers=1))
    images = random_images(rng, 10, 32)
    expected = _plain(model).predict(images, batch_size=4, verbose=0)
    got = model.predict(images, batch_size=4, verbose=0)
    assert got.shape == (10, 10) and isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, expected, **TOLERANCE)
    assert [shape for _, shape, _ in model._compiled_forward.traces] == [(4, 32, 32, 3)]  # 4, 4, 2 → 4
    np.testing.assert_allclose(model.predict(images[:3], verbose=0), expected[:3], **TOLERANCE)
    assert len(model._compiled_forward.traces) == 1  # 3 rows ride the compiled 4-row program
    np.testing.assert_allclose(model.predict(images, batch_size=4, steps=2, verbose=0), expected[:8],
                               **TOLERANCE)


@tensorflow_only
def test_predict_over_a_dataset_with_labels_equals_plain_keras_predict(rng):
    import tensorflow as tf

    model = build(tiny_config(num_layers=1))
    images = random_images(rng, 7, 32)
    labels = np.arange(7)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(3)
    expected = _plain(model).predict(dataset, verbose=0)
    np.testing.assert_allclose(model.predict(dataset, verbose=0), expected, **TOLERANCE)
    np.testing.assert_allclose(model.predict(dataset.map(lambda x, y: x), verbose=0), expected, **TOLERANCE)
    np.testing.assert_allclose(model.predict(dataset, steps=1, verbose=0), expected[:3], **TOLERANCE)


@tensorflow_only
def test_predict_calls_callbacks_with_each_batch_and_can_be_stopped(rng):
    model = build(tiny_config(num_layers=1))
    images = random_images(rng, 5, 32)

    class Recorder(keras.callbacks.Callback):
        def __init__(self, stop_after=None):
            super().__init__()
            self.events, self.stop_after = [], stop_after

        def on_predict_begin(self, logs=None):
            self.events.append("begin")

        def on_predict_batch_begin(self, batch, logs=None):
            self.events.append(("batch_begin", batch))

        def on_predict_batch_end(self, batch, logs=None):
            self.events.append(("batch_end", batch, tuple(logs["outputs"].shape)))
            if batch == self.stop_after:
                self.model.stop_predicting = True

        def on_predict_end(self, logs=None):
            self.events.append("end")

    recorder = Recorder()
    model.predict(images, batch_size=2, verbose=0, callbacks=[recorder])
    assert recorder.events == ["begin", ("batch_begin", 0), ("batch_end", 0, (2, 10)), ("batch_begin", 1),
                               ("batch_end", 1, (2, 10)), ("batch_begin", 2), ("batch_end", 2, (1, 10)), "end"]
    assert recorder.model is model
    stopping = Recorder(stop_after=0)
    assert model.predict(images, batch_size=2, verbose=0, callbacks=[stopping]).shape == (2, 10)


@tensorflow_only
def test_predict_leaves_other_inputs_to_keras(rng):
    model = build(tiny_config(num_layers=1))
    images = random_images(rng, 3, 32)

    def generator():
        yield (images,)

    np.testing.assert_allclose(model.predict(generator(), verbose=0), _plain(model).predict(images, verbose=0),
                               **TOLERANCE)
    with pytest.raises(ValueError, match="predict got no data"):
        model.predict(images, steps=0, verbose=0)


@tensorflow_only
def test_the_onednn_graph_engine_traces_once_for_every_batch_size_and_equals_the_plain_graph(rng):
    model = build(tiny_config(num_layers=1))
    model.inference_engine = "graph"
    plain = _plain(model)
    for batch in (1, 3, 8):
        images = random_images(rng, batch, 32)
        np.testing.assert_allclose(to_numpy(model(images)), to_numpy(plain(images)), **TOLERANCE)
    images = random_images(rng, 5, 32)
    np.testing.assert_allclose(model.predict(images, batch_size=2, verbose=0), to_numpy(plain(images)),
                               **TOLERANCE)
    assert model._compiled_forward.traces == [("graph", (None, 32, 32, 3), "float32")]


@tensorflow_only
def test_engine_follows_the_cpu_for_every_policy(monkeypatch):
    from vit_zoo.model import fast_path

    fp32, bf16 = build(tiny_config(num_layers=1)), build(tiny_config(num_layers=1), dtype="mixed_bfloat16")
    monkeypatch.setattr(fast_path, "has_accelerator", lambda: False)
    monkeypatch.setattr(fast_path, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "amx_bf16"}))
    assert (fast_path.inference_engine(fp32), fast_path.inference_engine(bf16)) == ("graph", "graph")
    monkeypatch.setattr(fast_path, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert (fast_path.inference_engine(fp32), fast_path.inference_engine(bf16)) == ("xla", "xla")
    bf16.inference_engine = "graph"
    assert fast_path.inference_engine(bf16) == "graph"


@tensorflow_only
def test_a_native_bf16_cpu_trains_without_xla_and_keeps_its_fast_inference(monkeypatch):
    from vit_zoo.model import fast_path

    monkeypatch.setattr(fast_path, "has_accelerator", lambda: False)
    monkeypatch.setattr(fast_path, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    model = build(tiny_config(num_layers=1), dtype="mixed_bfloat16")
    assert model.jit_compile is False and model._use_fast_path()
    model.compile(optimizer="sgd", loss="mse")
    assert model.jit_compile is False and model._use_fast_path()
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    assert model.jit_compile is True and model._use_fast_path()
    model.jit_compile = False  # by hand: plain Keras everywhere
    assert not model._use_fast_path()
    fp32 = build(tiny_config(num_layers=1))
    fp32.compile(optimizer="sgd", loss="mse")
    assert fp32.jit_compile is False and fp32._use_fast_path()  # fp32 too: oneDNN beats XLA there
    monkeypatch.setattr(fast_path, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    fp32 = build(tiny_config(num_layers=1))
    fp32.compile(optimizer="sgd", loss="mse")
    assert fp32.jit_compile is True and fp32._use_fast_path()  # XLA without native bf16


def test_unknown_engine_names_are_refused(monkeypatch):
    from vit_zoo.model import fast_path

    bf16 = build(tiny_config(num_layers=1), dtype="mixed_bfloat16")
    bf16.inference_engine = "tpu"
    with pytest.raises(ValueError, match="inference_engine must be 'auto' or one of"):
        fast_path.inference_engine(bf16)


@tensorflow_only
@pytest.mark.parametrize("engine", ["xla", "graph"])
def test_bf16_engines_stay_close_to_fp32_and_to_their_plain_graph(engine, rng):
    keras.utils.set_random_seed(0)
    reference = build(tiny_config())
    model = build(tiny_config(), dtype="mixed_bfloat16")
    model.set_weights(reference.get_weights())
    model.inference_engine = engine
    images = random_images(rng, 4, 32)
    fp32 = to_numpy(reference(images))
    out = to_numpy(model(images))
    assert out.dtype == np.float32
    scale = np.max(np.abs(fp32))
    assert np.max(np.abs(out - fp32)) / scale < 0.05
    assert np.max(np.abs(out - to_numpy(_plain(model)(images)))) / scale < 0.05
    np.testing.assert_allclose(model.predict(images, verbose=0), out, rtol=0, atol=1e-6 * scale)
