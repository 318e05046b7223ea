"""BatchStream: order, skipped items, errors, the bound on batches in memory, early exit; predict and
embed over files equal the in-memory computation."""
import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import vit_zoo
from conftest import tiny_config
from vit_zoo.use import prediction
from vit_zoo.use.labels import decode_predictions
from vit_zoo.use.preprocessing import preprocess
from vit_zoo.use.streaming import BatchStream

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def pixel(item):
    return np.full((2, 2, 3), float(item), np.float32)


def test_batches_come_in_order_with_unreadable_items_marked():
    def load(item):
        if item % 4 == 3:
            raise OSError(f"cannot read {item}")
        return pixel(item)

    with BatchStream(range(10), load, batch_size=4, workers=3, skip=(OSError,)) as stream:
        batches = list(stream)
    assert [(b.index, b.start, b.items) for b in batches] == [(0, 0, [0, 1, 2, 3]), (1, 4, [4, 5, 6, 7]),
                                                              (2, 8, [8, 9])]
    assert [b.ok.tolist() for b in batches] == [[True, True, True, False], [True, True, True, False], [True, True]]
    assert batches[0].errors == {3: "cannot read 3"} and batches[1].errors == {3: "cannot read 7"}
    np.testing.assert_array_equal(batches[1].pixels[:, 0, 0, 0], [4, 5, 6])
    assert batches[2].pixels.shape == (2, 2, 2, 3) and batches[2].pixels.dtype == np.float32


def test_an_unexpected_error_reaches_the_consumer_after_the_batches_before_it():
    def load(item):
        if item == 5:
            raise KeyError("broken loader")
        return pixel(item)

    seen = []
    with pytest.raises(KeyError, match="broken loader"):
        for batch in BatchStream(range(8), load, batch_size=2, skip=(OSError,)):
            seen.append(batch.index)
    assert seen == [0, 1]


def test_at_most_prefetch_batches_wait_and_the_producer_stops_when_the_consumer_leaves():
    loaded, lock = [], threading.Lock()

    def load(item):
        with lock:
            loaded.append(item)
        return pixel(item)

    batch_size, prefetch = 4, 2
    stream = BatchStream(range(400), load, batch_size=batch_size, workers=2, prefetch=prefetch)
    for consumed, batch in enumerate(stream, start=1):
        time.sleep(0.05)  # a slow model: the producer runs ahead until the queue is full
        # waiting in the queue + one being decoded + the one held here
        assert len(loaded) <= (consumed + prefetch + 1) * batch_size
        if consumed == 5:
            break
    stream.close()
    assert stream.peak_waiting <= prefetch
    count = len(loaded)
    time.sleep(0.1)
    assert len(loaded) == count <= (5 + prefetch + 1) * batch_size  # nothing decoded after the exit


def test_items_from_a_generator_are_read_lazily_a_batch_at_a_time():
    drawn = []

    def endless():  # an unbounded generator: listing it first would never end
        for number in itertools.count():
            drawn.append(number)
            yield number

    batch_size, prefetch = 3, 1
    stream = BatchStream(endless(), pixel, batch_size=batch_size, workers=2, prefetch=prefetch)
    with stream:
        batches = list(itertools.islice(stream, 4))
    assert [(b.index, b.start, b.items) for b in batches] == [(i, 3 * i, [3 * i, 3 * i + 1, 3 * i + 2])
                                                              for i in range(4)]
    # the four consumed + at most one waiting + one being decoded, and one item read past them
    assert len(drawn) <= (4 + prefetch + 1) * batch_size + 1


def test_the_default_worker_count_is_the_decoding_default():
    from vit_zoo.use.images import decoding_threads

    assert BatchStream([1], pixel, batch_size=1).workers == decoding_threads()


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="batch_size and prefetch must be ≥ 1"):
        BatchStream([1], pixel, batch_size=0)


@pytest.fixture(scope="module")
def model():
    return vit_zoo.build(tiny_config(num_layers=1))


def test_predict_over_files_streams_and_equals_the_in_memory_computation(model, monkeypatch):
    files = [SAMPLES / "grace_hopper.jpg", SAMPLES / "chelsea.png"] * 3
    names = [f"class {i}" for i in range(10)]
    expected = decode_predictions(model.predict(preprocess(files, weights=model), verbose=0), labels=names, top=3)
    streams = []

    class Recording(BatchStream):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            streams.append(self)

    monkeypatch.setattr(prediction, "BatchStream", Recording)
    got = prediction.predict(model, files, labels=names, top=3, batch_size=2)
    assert len(streams) == 1 and streams[0].batch_size == 2 and streams[0].peak_waiting <= streams[0].prefetch
    assert [[(i, n) for i, n, _ in row] for row in got] == [[(i, n) for i, n, _ in row] for row in expected]
    np.testing.assert_allclose([[p for *_, p in row] for row in got], [[p for *_, p in row] for row in expected],
                               rtol=1e-5, atol=1e-7)


def test_predict_names_the_bad_image_by_its_place_in_the_input(model):
    images = [np.zeros((8, 8, 3), np.uint8)] * 2 + [np.zeros((8, 8, 5), np.uint8)]
    with pytest.raises(ValueError, match=r"^image 2 has 5 channels"):
        prediction.predict(model, images, labels=[str(i) for i in range(10)], batch_size=2)
