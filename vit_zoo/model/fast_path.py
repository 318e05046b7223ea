"""The XLA fast path of ``VisionTransformer`` on the TensorFlow backend: when XLA is the default, and the
compiled inference function of one model."""
from __future__ import annotations

import weakref

import keras


class CompiledForward:
    """The XLA-compiled inference function of one model (TensorFlow backend).

    A plain object, so neither Keras' saving nor TensorFlow's checkpoint tracking walks into it; it keeps
    only a weak reference to the model. ``tf.function`` caches one trace per input shape and dtype.

    Args:
        plain_call: ``plain_call(model, images)``, the model's graph without the fast path.
    """

    __slots__ = ("plain_call", "function")

    def __init__(self, plain_call):
        self.plain_call = plain_call
        self.function = None

    def __call__(self, model, inputs):
        import tensorflow as tf

        if self.function is None:
            owner, plain_call = weakref.ref(model), self.plain_call
            self.function = tf.function(lambda images: plain_call(owner(), images), jit_compile=True)
        return self.function(inputs if isinstance(inputs, tf.Tensor) else tf.convert_to_tensor(inputs))


def xla_by_default(model) -> bool:
    """XLA-compile by default: TensorFlow backend, and no tf.distribute strategy in scope or captured at
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
