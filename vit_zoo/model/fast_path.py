"""The fast inference path of ``VisionTransformer`` on the TensorFlow backend.

Three decisions, each made here and nowhere else:

- **Which engine** runs a model's inference (``inference_engine``): XLA (``tf.function(jit_compile=True)``)
  by default; TensorFlow's oneDNN graph (``tf.function(jit_compile=False)``) on a CPU with native bf16
  (``avx512_bf16`` / ``amx_bf16``) and no accelerator, for every policy: XLA's CPU backend runs bf16
  matmuls at fp32 speed while oneDNN runs them on the bf16 units, and on such a CPU oneDNN's fp32 matmul
  was faster too (BENCHMARKS.md). vit_zoo never picks a precision: the model's dtype policy does.
- **Which programs** exist: XLA compiles one program per input shape, so a batch of ``n`` images is run
  through power-of-two buckets (``bucket_plan``: padded up when that wastes at most a quarter, else split),
  and every batch size 1..64 is served by at most 7 programs per image size. The oneDNN graph is traced
  once per image size with an unknown batch dimension (no padding needed).
- **How a call runs**: ``CompiledForward`` pads, calls, slices and concatenates; it counts its traces
  (``traces``), which the tests hold to the bucket bound.
"""
from __future__ import annotations

import functools
import weakref
from typing import List, Optional, Tuple

import keras

ENGINES = ("xla", "graph")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
MAX_PADDING = 0.25  # pad a batch up to its power-of-two bucket when that adds at most this fraction


@functools.lru_cache(maxsize=None)
def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty where unreadable)."""
    try:
        with open(path) as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def native_bf16_cpu() -> bool:
    """True when the CPU computes bf16 natively (AVX-512 BF16 or AMX-BF16)."""
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


@functools.lru_cache(maxsize=None)
def has_accelerator() -> bool:
    """True when TensorFlow sees a GPU or TPU (the engine choice below is for CPUs)."""
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def default_engine(model) -> str:
    """``"graph"`` (TensorFlow's oneDNN graph, no XLA) on a CPU with native bf16 (AVX-512 BF16 / AMX class)
    and no accelerator, for every policy; else ``"xla"``. The same choice serves inference and Keras'
    compiled steps (``fit``, ``evaluate``). Measured on a 2-core Xeon with AMX (BENCHMARKS.md): oneDNN runs
    ViT-B/16 1.2x faster than XLA in fp32 and 2.4x in bf16, and trains 1.1x / 1.5x faster; on the AVX2-only
    EPYC of issue 8, XLA was the fastest fp32 path. The choice depends on the machine, not on ``model``'s
    policy."""
    if native_bf16_cpu() and not has_accelerator():
        return "graph"
    return "xla"


def inference_engine(model) -> str:
    """``"xla"`` or ``"graph"`` for ``model``'s inference: ``default_engine``, unless
    ``model.inference_engine`` (``"auto"`` by default) names one."""
    chosen = getattr(model, "inference_engine", "auto")
    if chosen == "auto":
        return default_engine(model)
    if chosen not in ENGINES:
        raise ValueError(f"inference_engine must be 'auto' or one of {list(ENGINES)}, got {chosen!r}")
    return chosen


def xla_by_default(model) -> bool:
    """The fast paths apply: TensorFlow backend, and no tf.distribute strategy in scope or captured at
    construction (Keras turns XLA off under a strategy, and so do we)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.distribute.has_strategy() and getattr(model, "_distribute_strategy", None) is None


def eager_array_input(inputs) -> bool:
    """True for one concrete array called eagerly (inside a tf.function, e.g. Keras' own predict or train
    step, the plain graph is traced and the enclosing function decides about XLA). TensorFlow backend."""
    import tensorflow as tf

    return tf.executing_eagerly() and (isinstance(inputs, tf.Tensor) or hasattr(inputs, "__array__")) \
        and not isinstance(inputs, (list, tuple, dict))


def bucket_plan(count: int) -> List[Tuple[int, int, int]]:
    """Cover ``count`` rows with power-of-two programs: ``[(start, stop, bucket), ...]``, each slice
    ``[start:stop)`` run padded to ``bucket`` rows. The rest is padded up to the next power of two when
    that adds at most ``MAX_PADDING`` of it, else the largest power of two below it is split off.

    >>> bucket_plan(7), bucket_plan(48)
    ([(0, 7, 8)], [(0, 32, 32), (32, 48, 16)])
    """
    plan, start = [], 0
    while start < count:
        rest = count - start
        above = 1 << (rest - 1).bit_length()
        if above - rest <= MAX_PADDING * rest:
            plan.append((start, count, above))
            break
        plan.append((start, start + above // 2, above // 2))
        start += above // 2
    return plan


class CompiledForward:
    """The compiled inference function of one model (TensorFlow backend).

    A plain object, so neither Keras' saving nor TensorFlow's checkpoint tracking walks into it; it keeps
    only a weak reference to the model. ``traces`` lists ``(engine, input shape, dtype)`` of every program
    traced (a trace is what compiles: one XLA compilation, or one oneDNN graph).

    Args:
        plain_call: ``plain_call(model, images)``, the model's graph without the fast path.
        check: ``check(model, images)`` raises for inputs the model refuses (run before every call: the
            fast paths skip ``Model.__call__``); None for none.
    """

    __slots__ = ("plain_call", "check", "traces", "_programs")

    def __init__(self, plain_call, check=None):
        self.plain_call, self.check = plain_call, check
        self.traces: List[Tuple[str, tuple, str]] = []
        self._programs = {}  # (engine, input shape, dtype) → a tf.function traced for that one signature

    def compiled_buckets(self, images) -> set:
        """Batch sizes already compiled by XLA for images shaped like ``images`` (B, H, W, C)."""
        tail, dtype = tuple(images.shape[1:]), images.dtype.name
        return {shape[0] for engine, shape, kind in self._programs if (engine, shape[1:], kind) == ("xla", tail, dtype)}

    def __call__(self, model, images, pad_to: Optional[int] = None):
        """Outputs of ``model`` on ``images`` (B, H, W, C), as the plain graph computes them.

        pad_to: run the whole batch as one program of this many rows (a bucket already compiled: the
            ragged last batch of ``predict``); default: the next power of two if that program is
            compiled already, else ``bucket_plan``.
        """
        import tensorflow as tf

        if self.check is not None:
            self.check(model, images)
        images = images if isinstance(images, tf.Tensor) else tf.convert_to_tensor(images)
        count = images.shape[0]
        if not count:
            return self.plain_call(model, images)
        if inference_engine(model) == "graph":
            return self._graph(model, images)(images)
        above = 1 << (count - 1).bit_length()
        if pad_to is None and above in self.compiled_buckets(images):
            pad_to = above  # a compiled program less than twice the batch beats compiling smaller ones
        plan = [(0, count, pad_to)] if pad_to else bucket_plan(count)
        outputs = [self._run_xla(model, images[start:stop], bucket) for start, stop, bucket in plan]
        if len(outputs) == 1:
            return outputs[0]
        return tf.nest.map_structure(lambda *parts: tf.concat(parts, axis=0), *outputs)

    def _program(self, model, engine: str, shape: tuple, dtype: str):
        """The tf.function of one (engine, input shape, dtype): each is traced exactly once (a trace is
        one XLA compilation or one oneDNN graph), so no retracing, and ``traces`` counts programs."""
        import tensorflow as tf

        key = (engine, shape, dtype)
        if key not in self._programs:
            owner, plain_call, traces = weakref.ref(model), self.plain_call, self.traces

            def forward(images):  # the Python body runs once per trace, never per call
                traces.append((engine, tuple(images.shape), images.dtype.name))
                return plain_call(owner(), images)
            function = tf.function(forward, jit_compile=engine == "xla", reduce_retracing=False)
            self._programs[key] = function.get_concrete_function(tf.TensorSpec(shape, dtype))
        return self._programs[key]

    def _run_xla(self, model, images, bucket: int):
        import tensorflow as tf

        rows = images.shape[0]
        program = self._program(model, "xla", (bucket, *images.shape[1:]), images.dtype.name)
        if rows == bucket:
            return program(images)
        padded = tf.pad(images, [[0, bucket - rows]] + [[0, 0]] * (len(images.shape) - 1))
        return tf.nest.map_structure(lambda output: output[:rows], program(padded))

    def _graph(self, model, images):
        return self._program(model, "graph", (None, *images.shape[1:]), images.dtype.name)
