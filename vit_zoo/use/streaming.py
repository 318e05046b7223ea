"""Many images → batches of model-ready pixels, decoded in a thread pool while the model runs on the
previous batch, with a bounded number of batches in memory (whatever the number of files).

    items ──► thread pool: load(item) per image ──► bounded queue of Batch ──► the consumer's forward pass

The one pipeline of the use code: ``vit_zoo.predict`` / ``vit-zoo predict``, ``vit_zoo.use.embedding.embed``
and ``vit_zoo.evaluate`` (its items are ``(image, label)`` pairs: ``load`` decodes and preprocesses the
image, the consumer runs the model on ``batch.pixels`` and reads the labels of ``batch.items``). Items
may come from a generator: they are read lazily, a batch at a time, in the producer thread. Pillow and
TensorFlow release the GIL while decoding and resizing, so the threads overlap with the forward pass.

Memory bound: at most ``prefetch`` finished batches wait in the queue, one more is being decoded and the
consumer holds one: ``prefetch + 2`` batches of ``batch_size`` images at any time.
"""
from __future__ import annotations

import dataclasses
import itertools
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, Iterator, List, Tuple, Type

import numpy as np

from vit_zoo.use.images import decoding_threads


@dataclasses.dataclass
class Batch:
    """One batch of a stream.

    index: batch number (0, 1, ...); start: position of its first item in the stream's items;
    items: its items in order; pixels: (n, H, W, C) float32, the rows of the items that loaded;
    ok: (len(items),) bool, which items loaded; errors: {position in items: message} of those that did not.
    """
    index: int
    start: int
    items: List[Any]
    pixels: np.ndarray
    ok: np.ndarray
    errors: Dict[int, str]


_DONE = object()


class BatchStream:
    """Iterate over ``Batch``es of ``load(item)`` for ``items``, in order.

    Args:
        items: the inputs (e.g. file paths, or ``(image, label)`` pairs), any iterable (a generator
            too), read lazily in order: a batch at a time, by the producer thread, never listed whole.
        load: item → (H, W, C) float32 array, the same shape for every item; called in worker threads.
        batch_size: items per batch (the last batch may be smaller).
        workers: decoding threads (default ``vit_zoo.use.images.decoding_threads()``).
        prefetch: finished batches that may wait for the consumer (≥ 1).
        skip: exception types that mark an item as unreadable (recorded in ``Batch.errors``, the batch
            goes on); any other exception stops the stream and is raised to the consumer.

    Use as an iterator, ideally in a ``with`` block (or call ``close``) so that an early exit stops the
    producer thread. ``peak_waiting`` is the most batches that waited at once (≤ ``prefetch``).
    """

    def __init__(self, items: Iterable[Any], load: Callable[[Any], np.ndarray], batch_size: int,
                 workers: int = None, prefetch: int = 2, skip: Tuple[Type[BaseException], ...] = ()):
        if batch_size < 1 or prefetch < 1:
            raise ValueError(f"batch_size and prefetch must be ≥ 1, got {batch_size} and {prefetch}")
        self.items, self.load, self.batch_size, self.skip = items, load, int(batch_size), tuple(skip)
        self.workers = workers or decoding_threads()
        self.prefetch = int(prefetch)
        self.peak_waiting = 0
        self._queue: "queue.Queue" = queue.Queue(maxsize=self.prefetch)
        self._stop = threading.Event()
        self._thread = None

    # ------------------------------------------------------------------ consumer side
    def __iter__(self) -> Iterator[Batch]:
        if self._thread is not None:
            raise RuntimeError("a BatchStream can be iterated once")
        self._thread = threading.Thread(target=self._produce, name="vit_zoo-batch-stream", daemon=True)
        self._thread.start()
        try:
            while True:
                self.peak_waiting = max(self.peak_waiting, self._queue.qsize())
                element = self._queue.get()
                if element is _DONE:
                    return
                if isinstance(element, BaseException):
                    raise element
                yield element
        finally:
            self.close()

    def close(self):
        """Stop the producer (idempotent); waiting batches are dropped."""
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # ------------------------------------------------------------------ producer side
    def _produce(self):
        try:
            items = iter(self.items)
            with ThreadPoolExecutor(self.workers, thread_name_prefix="vit_zoo-decode") as pool:
                for index in itertools.count():
                    chunk = [] if self._stop.is_set() else list(itertools.islice(items, self.batch_size))
                    if not chunk:
                        break
                    batch = self._assemble(index, index * self.batch_size, chunk,
                                           list(pool.map(self._load_one, chunk)))
                    if not self._put(batch):
                        return
            self._put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            self._put(error)

    def _load_one(self, item):
        try:
            return np.asarray(self.load(item), dtype=np.float32)
        except self.skip as error:
            return error

    def _assemble(self, index: int, start: int, chunk: list, results: list) -> Batch:
        ok = np.array([not isinstance(r, BaseException) for r in results], dtype=bool)
        rows = [r for r in results if not isinstance(r, BaseException)]
        errors = {i: str(r) for i, r in enumerate(results) if isinstance(r, BaseException)}
        pixels = np.stack(rows) if rows else np.zeros((0,), np.float32)
        return Batch(index, start, chunk, pixels, ok, errors)

    def _put(self, element) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(element, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False
