"""Training on several devices, by strategy name, on the backend that offers it.

TensorFlow (``tf.distribute``):
    "mirrored"        MirroredStrategy over every GPU, or every logical CPU device where there is no GPU
    "multiworker"     MultiWorkerMirroredStrategy; the cluster comes from the TF_CONFIG environment variable
    "tpu"             TPUStrategy on the TPU that TPUClusterResolver finds (a Cloud TPU VM: ``tpu="local"``)
JAX (``keras.distribution``):
    "data-parallel"   DataParallel over every device: weights replicated, each batch split
    "model-parallel"  ModelParallel over a (batch, model) device mesh: the attention heads and the MLP's
                      hidden units are split over the "model" axis (``vit_layout_map``), for ViT-H / ViT-g
                      whose weights and optimizer state outgrow one device; "model-parallel:K" puts K
                      devices on the model axis (default: all of them)
Every backend: "none" (one device). A strategy the backend lacks is an error that names the backend that
has it. MultiWorkerMirroredStrategy must be created before TensorFlow runs anything else in the process;
start each worker as a fresh process (see ``local_cluster``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
from typing import List

import keras

TF_STRATEGIES = ("mirrored", "multiworker", "tpu")
JAX_STRATEGIES = ("data-parallel", "model-parallel")
STRATEGIES = ("none",) + TF_STRATEGIES + JAX_STRATEGIES


@dataclasses.dataclass
class Plan:
    """How a run is spread: ``name``; ``replicas``: how many ways each batch is split; ``chief``: whether
    this process writes checkpoints, logs and the final model; ``strategy``: the ``tf.distribute.Strategy``
    or ``keras.distribution.Distribution`` (None on one device)."""
    name: str
    replicas: int = 1
    chief: bool = True
    strategy: object = None

    def scope(self):
        """The context to build the model and optimizer in (and to train in)."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def make_plan(strategy="none") -> Plan:
    """A ``Plan`` from a strategy name (module docstring), a ``tf.distribute.Strategy`` or a
    ``keras.distribution.Distribution``."""
    backend = keras.backend.backend()
    if isinstance(strategy, (keras.distribution.DataParallel, keras.distribution.ModelParallel)):
        return _keras_plan(type(strategy).__name__, strategy)
    if strategy in (None, "none"):
        return Plan("none")
    if not isinstance(strategy, str):
        return _tf_plan(strategy)  # a tf.distribute.Strategy (TensorFlow checks it)
    name, _, size = strategy.partition(":")
    if name in TF_STRATEGIES:
        if backend != "tensorflow":
            raise ValueError(f"strategy {strategy!r} is a tf.distribute strategy: it needs KERAS_BACKEND=tensorflow "
                             f"(the backend is {backend}){_instead(backend)}")
        return _tf_plan(make_tf_strategy(name))
    if name in JAX_STRATEGIES:
        if backend != "jax":
            raise ValueError(f"strategy {strategy!r} uses keras.distribution, which Keras implements on the JAX "
                             f"backend: set KERAS_BACKEND=jax (the backend is {backend}){_instead(backend)}")
        if name == "data-parallel":
            return _keras_plan(name, keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
        return _keras_plan(strategy, model_parallel(int(size) if size else None))
    raise ValueError(f"strategy must be one of {list(STRATEGIES)} (or 'model-parallel:K'), a tf.distribute.Strategy "
                     f"or a keras.distribution.Distribution, got {strategy!r}")


def _instead(backend: str) -> str:
    return {"tensorflow": "; on TensorFlow use 'mirrored', 'multiworker' or 'tpu'",
            "jax": "; on JAX use 'data-parallel' or 'model-parallel'"}.get(
        backend, f"; Keras offers no multi-device training on {backend}: use 'none'")


def _tf_plan(strategy) -> Plan:
    return Plan(type(strategy).__name__, strategy.num_replicas_in_sync, bool(strategy.extended.should_checkpoint),
                strategy)


def _keras_plan(name: str, distribution) -> Plan:
    mesh = distribution.device_mesh
    batch_axis = list(mesh.axis_names).index(distribution.batch_dim_name)
    return Plan(name, int(mesh.shape[batch_axis]), getattr(distribution, "_process_id", 0) == 0, distribution)


def make_tf_strategy(name: str):
    """A ``tf.distribute.Strategy`` from its name (module docstring)."""
    import tensorflow as tf

    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy([d.name for d in (gpus or tf.config.list_logical_devices("CPU"))])
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multiworker' needs the TF_CONFIG environment variable (the cluster and "
                             "this worker's index, e.g. from vit_zoo.train.distribute.local_cluster); see "
                             "https://www.tensorflow.org/guide/distributed_training")
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", "local"))
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def vit_layout_map(device_mesh) -> "keras.distribution.LayoutMap":
    """Tensor parallelism for vit_zoo's blocks (Megatron-style): q/k/v and the first MLP layer split by
    output (heads, hidden units) over the mesh's "model" axis, the attention output and second MLP layer
    by input; everything else replicated. Optimizer slots follow their weights."""
    layout = keras.distribution.LayoutMap(device_mesh)
    layout[r"block_\d+_attn/(query|key|value)_kernel"] = (None, "model", None)  # (D, heads, head_dim)
    layout[r"block_\d+_attn/(query|key|value)_bias"] = ("model", None)
    layout[r"block_\d+_attn/output_kernel"] = ("model", None, None)  # (heads, head_dim, D)
    layout[r"block_\d+_mlp_fc1/kernel"] = (None, "model")  # (D, M)
    layout[r"block_\d+_mlp_fc1/bias"] = ("model",)
    layout[r"block_\d+_mlp_fc2/kernel"] = ("model", None)  # (M, D)
    return layout


def model_parallel(model_devices=None):
    """``keras.distribution.ModelParallel`` on a (batch, model) mesh of every device, ``model_devices`` of
    them (default all) on the "model" axis; the number of heads and the MLP width must divide by it."""
    devices = keras.distribution.list_devices()
    model_devices = model_devices or len(devices)
    if model_devices < 1 or len(devices) % model_devices:
        raise ValueError(f"model-parallel:{model_devices} needs a number of devices that divides the "
                         f"{len(devices)} devices there are")
    mesh = keras.distribution.DeviceMesh((len(devices) // model_devices, model_devices), ("batch", "model"),
                                         devices)
    return keras.distribution.ModelParallel(layout_map=vit_layout_map(mesh), batch_dim_name="batch")


@contextlib.contextmanager
def multiworker_fit(model, plan: Plan, batch_shapes):
    """Works around two failures of Keras 3's TensorFlow ``fit`` under MultiWorkerMirroredStrategy
    (keras-team/keras#20585), for this model while the context lasts; nothing changes under other
    strategies:
    - before training, ``fit`` reduces a first (x, y) batch across the replicas to build the model
      symbolically, which the collective strategy cannot do for a structure: the model is built here from
      ``batch_shapes`` ((images, targets) shapes) and ``fit`` skips that step;
    - after each step it averages the logs with ``strategy.reduce("MEAN", v, axis=0)``, which fails for
      scalars: the train step returns each log as a vector of one value, whose mean over the replicas is
      the scalar Keras reports on one device."""
    if type(plan.strategy).__name__ not in ("MultiWorkerMirroredStrategy", "CollectiveAllReduceStrategy"):
        yield
        return
    with plan.scope():
        model._symbolic_build(data_batch=tuple(keras.KerasTensor(shape, "float32") for shape in batch_shapes))
    train_step = model.train_step
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    model.train_step = lambda data: {k: keras.ops.expand_dims(v, 0) for k, v in train_step(data).items()}
    try:
        yield
    finally:
        del model._maybe_symbolic_build, model.train_step


def split_cpu(count: int) -> None:
    """Make ``count`` devices of the CPU, to try multi-device training without accelerators: logical
    devices on TensorFlow (before TensorFlow initialises its devices), ``XLA_FLAGS``'s host device count on
    JAX (before JAX initialises its backend)."""
    if keras.backend.backend() == "jax":
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}"
        if len(keras.distribution.list_devices("cpu")) != count:
            raise RuntimeError("JAX had started before split_cpu: set XLA_FLAGS=--xla_force_host_platform_device_"
                               f"count={count} in the environment instead")
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def free_ports(count: int) -> List[int]:
    """``count`` TCP ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def local_cluster(num_workers: int) -> List[str]:
    """TF_CONFIG values for ``num_workers`` worker processes on 127.0.0.1 (free ports), one per worker:
    start worker ``i`` with ``TF_CONFIG=local_cluster(n)[i]`` and ``strategy="multiworker"``."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(num_workers)]
    return [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
            for i in range(num_workers)]
