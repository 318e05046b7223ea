"""``VisionTransformer``: the functional Keras model every vit_zoo builder returns.

It differs from a plain functional model in three ways, none of which touches the graph or the weights:
- it carries the model's ``Identity`` (``model.identity``) and ``BuildRecord`` (``model.build_record``:
  head or not, output pooling, preprocessing, dynamic size) in its Keras config, so ``model.save`` /
  ``keras.models.load_model`` / ``keras.models.clone_model`` keep them, and writes the identity into the
  ``.weights.h5`` files of ``model.save_weights`` (HDF5 attribute ``vit_zoo_identity``);
- ``save`` and ``save_weights`` write to a temporary name in the same folder and rename it, so an
  interrupted save leaves the old file or the new one, never a torn one;
- its default inference and training paths are compiled on the TensorFlow backend (``fast_path``: XLA,
  or TensorFlow's oneDNN graph on a CPU with native bf16), and a model saved after ``compile`` reloads compiled, optimizer state included.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import keras
import numpy as np

from vit_zoo.files import replace_atomically
from vit_zoo.model.config import check_patch_multiple
from vit_zoo.model import fast_path  # the module, not its names: importing fast_path first imports us midway
from vit_zoo.model.fast_predict import fast_predict, predict_source
from vit_zoo.model.build_record import BUILD_KEY, BuildRecord, record_from_graph
from vit_zoo.model.identity import Identity, identity_of
from vit_zoo.model.saved_identity import IDENTITY_KEY, write_weights_identity


@keras.saving.register_keras_serializable(package="vit_zoo")
class VisionTransformer(keras.Model):
    """A functional ViT that carries its identity and whose default paths run compiled on TensorFlow.

    Keras 3 turns XLA off on CPU-only TensorFlow (``jit_compile="auto"`` resolves to False there), so a
    plain functional model's ``predict`` runs the TF graph op by op and an eager ``model(x)`` runs every
    layer eagerly -- about half the speed the machine allows (BENCHMARKS.md). This class changes only
    defaults:

    - ``jit_compile`` is True from construction (``predict``, ``evaluate``, ``fit``), and ``compile()``
      resolves ``jit_compile="auto"`` to True where Keras would pick XLA on an accelerator anyway
      (TensorFlow backend, no distribution strategy in scope) -- except on a CPU with native bf16, where
      TensorFlow's oneDNN graph (``jit_compile=False``) is faster for every policy
      (``fast_path.default_engine``).
    - an eager inference call ``model(x)`` (``training`` falsy, not ``run_eagerly``), ``predict`` on an
      array, tensor or ``tf.data.Dataset`` and ``predict_on_batch`` run the same graph compiled by
      ``fast_path.CompiledForward``: XLA through power-of-two batch buckets (at most 7 programs for batch
      sizes 1..64; ~3 s to compile each for ViT-B/16 on a 2-core CPU), or, on a CPU with native bf16,
      TensorFlow's oneDNN graph (``fast_path.inference_engine``); ``predict`` skips
      Keras' per-call tf.data pipeline (``fast_predict``).

    ``model.jit_compile = False`` (or ``compile(jit_compile=False)``) restores plain Keras behaviour for
    all of them. Other backends keep Keras' defaults. Saved as ``vit_zoo>VisionTransformer``;
    ``keras.models.load_model`` needs only ``import vit_zoo``.

    Args (beyond ``keras.Model``'s functional ones):
        identity: the model's ``Identity`` (``vit_zoo.build`` always gives one). None only where Keras
            constructs the class itself without it (``keras.models.clone_model``); set ``model.identity``
            on such a copy.
        build_record: how the graph was built (``vit_zoo.model.build_record``); default (models saved
            before records existed, ``clone_model`` copies): read from the graph's layer names.
    """

    inference_engine = "auto"  # or "xla" / "graph": overrides fast_path.inference_engine's choice

    def __init__(self, *args, identity: Optional[Identity] = None, build_record: Optional[BuildRecord] = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if identity is not None and not isinstance(identity, Identity):
            raise TypeError(f"identity must be an Identity, got {type(identity).__name__}")
        if build_record is not None and not isinstance(build_record, BuildRecord):
            raise TypeError(f"build_record must be a BuildRecord, got {type(build_record).__name__}")
        self._identity = identity
        self._build_record = build_record or record_from_graph(self)
        self._compiled_forward = fast_path.CompiledForward(_plain_inference, check=check_input_size)
        self._fast_inference = True
        if fast_path.xla_by_default(self):
            keras.Model.jit_compile.fset(self, fast_path.default_engine(self) == "xla")

    # ---------------------------------------------------------------------------------- identity
    @property
    def identity(self) -> Optional[Identity]:
        """Architecture and numerics, preprocessing, class names and provenance (``vit_zoo.model.identity``)."""
        return self._identity

    @identity.setter
    def identity(self, identity: Identity):
        if not isinstance(identity, Identity):
            raise TypeError(f"identity must be an Identity, got {type(identity).__name__}")
        self._identity = identity

    @property
    def build_record(self) -> BuildRecord:
        """How the graph was built: head or features, output pooling, preprocessing, dynamic size."""
        return self._build_record

    @property
    def _dynamic_patch_size(self) -> int:
        return _dynamic_patch_size(self)

    def get_config(self):
        identity = self._identity.to_dict() if self._identity is not None else None
        return {**super().get_config(), IDENTITY_KEY: identity, BUILD_KEY: self._build_record.to_dict()}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        record = config.pop(IDENTITY_KEY, None)
        build_record = config.pop(BUILD_KEY, None)  # absent in files saved before build records
        model = super().from_config(config, custom_objects=custom_objects)  # Keras' functional revival
        model._identity = Identity.from_dict(record) if record is not None else None
        if build_record is not None:
            model._build_record = BuildRecord.from_dict(build_record)
        return model

    # ---------------------------------------------------------------------------------- compiling
    def compile(self, *args, jit_compile="auto", **kwargs):
        automatic = jit_compile == "auto" and fast_path.xla_by_default(self)
        if automatic:
            jit_compile = fast_path.default_engine(self) == "xla"
        super().compile(*args, jit_compile=jit_compile, **kwargs)
        if automatic:
            self._fast_inference = True  # a chosen oneDNN graph is not "plain Keras"

    @property
    def jit_compile(self):
        return keras.Model.jit_compile.fget(self)

    @jit_compile.setter
    def jit_compile(self, value):
        """Setting it (or ``compile(jit_compile=...)``) by hand also switches the inference fast path:
        False restores plain Keras everywhere."""
        keras.Model.jit_compile.fset(self, value)
        self._fast_inference = bool(value)

    def compile_from_config(self, config):
        """Restore the compile state of a saved model (optimizer, loss, metrics); ``load_model`` then
        loads the optimizer's variables into the optimizer built here."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)

    # ---------------------------------------------------------------------------------- saving
    def save(self, filepath, overwrite=True, **kwargs):
        """``keras.Model.save`` through a temporary file in the same folder, renamed when complete."""
        _atomically(filepath, overwrite, lambda temporary: super(VisionTransformer, self).save(
            temporary, overwrite=True, **kwargs))

    def save_weights(self, filepath, overwrite=True, **kwargs):
        """``keras.Model.save_weights`` (atomically, as ``save``); a ``.weights.h5`` file also gets the
        identity record as its HDF5 attribute ``vit_zoo_identity``, which ``vit_zoo.load`` reads."""
        if kwargs.get("max_shard_size") is not None:  # sharded: several files, written by Keras itself
            return super().save_weights(filepath, overwrite=overwrite, **kwargs)

        def write(temporary):
            super(VisionTransformer, self).save_weights(temporary, overwrite=True, **kwargs)
            if self._identity is not None:
                write_weights_identity(temporary, self._identity.to_dict())
        _atomically(filepath, overwrite, write)

    # ---------------------------------------------------------------------------------- fast path
    def __call__(self, *args, **kwargs):
        if self._dynamic_patch_size and args:  # checked before Keras wraps errors of call() in its own text
            check_input_size(self, args[0])
        return super().__call__(*args, **kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        if not training and mask is None and not kwargs and self._use_compiled_forward(inputs):
            return self._compiled_forward(self, inputs)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """``keras.Model.predict``, run batch by batch through the compiled forward pass for arrays,
        eager tensors and ``tf.data.Dataset``s of image batches (``fast_predict``); Keras' own loop for
        anything else or where the fast path is off."""
        source = predict_source(x, batch_size, steps) if self._use_fast_path() else None
        if source is None:
            return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks)
        return fast_predict(self, self._compiled_forward, source, verbose=verbose, callbacks=callbacks)

    def predict_on_batch(self, x):
        if self._use_compiled_forward(x):
            import tensorflow as tf

            return tf.nest.map_structure(np.asarray, self._compiled_forward(self, x))
        return super().predict_on_batch(x)

    def _use_fast_path(self) -> bool:
        return fast_path.xla_by_default(self) and self._fast_inference and not self.run_eagerly

    def _use_compiled_forward(self, inputs) -> bool:
        return self._use_fast_path() and fast_path.eager_array_input(inputs)


def _dynamic_patch_size(model) -> int:
    """The patch size of a vit_zoo model built with ``dynamic_size=True`` (any input size it divides); 0
    for a model with a fixed input size or without an identity."""
    shape = model.input_shape if len(model.inputs) == 1 else None
    identity = identity_of(model)
    if not shape or None not in shape[1:3] or identity is None:
        return 0
    return identity.config.patch_size


def check_input_size(model, images) -> None:
    """A ``dynamic_size`` model refuses an input size its patch size does not divide, as ``image_size=``
    does (its patch convolution would drop the remainder silently): a ValueError naming the nearest sizes
    that work. ``model``: any vit_zoo model or sub-model (fixed-size ones pass); ``images``: an array or
    tensor (B, H, W, 3), checked where its size is known (eager, or traced for a static shape)."""
    patch = _dynamic_patch_size(model)
    shape = tuple(getattr(images, "shape", ()))
    if patch and len(shape) == 4 and shape[1] is not None and shape[2] is not None:
        check_patch_multiple((int(shape[1]), int(shape[2])), patch,
                             f"model {model.name!r} (dynamic_size=True) takes any input size divisible by its "
                             f"patch size; input")


def _plain_inference(model, images):
    """The functional graph itself (what ``call`` runs without the fast path)."""
    return super(VisionTransformer, model).call(images, training=False)


def _atomically(filepath, overwrite: bool, write_to) -> None:
    path = Path(filepath)
    if path.exists() and not overwrite:
        raise FileExistsError(f"'{path}' exists; pass overwrite=True to replace it")
    replace_atomically(path, write_to)
