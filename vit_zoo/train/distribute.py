"""``tf.distribute`` strategies by name, and helpers to try multi-device training on one machine.

    "none"         the default strategy (one device)
    "mirrored"     MirroredStrategy over every GPU, or every logical CPU device where there is no GPU
    "multiworker"  MultiWorkerMirroredStrategy; the cluster comes from the TF_CONFIG environment variable
    "tpu"          TPUStrategy on the TPU that TPUClusterResolver finds (a Cloud TPU VM: ``tpu="local"``)

MultiWorkerMirroredStrategy must be created before TensorFlow runs anything else in the process; start
each worker as a fresh process (see ``local_cluster``).
"""
from __future__ import annotations

import json
import os
import socket
from typing import List

import tensorflow as tf

STRATEGIES = ("none", "mirrored", "multiworker", "tpu")


def make_strategy(strategy="none") -> tf.distribute.Strategy:
    """A strategy from its name (see the module docstring), or a ``tf.distribute.Strategy`` as is."""
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy in (None, "none"):
        return tf.distribute.get_strategy()
    if strategy == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if strategy == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multiworker' needs the TF_CONFIG environment variable (the cluster and "
                             "this worker's index, e.g. from vit_zoo.train.distribute.local_cluster); see "
                             "https://www.tensorflow.org/guide/distributed_training")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if strategy == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", "local"))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"strategy must be one of {list(STRATEGIES)} or a tf.distribute.Strategy, got {strategy!r}")


def split_cpu(count: int) -> None:
    """Split the first CPU into ``count`` logical devices (for MirroredStrategy without GPUs). Must run
    before TensorFlow initialises its devices, i.e. before any op in the process."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints, logs and the final model."""
    return bool(strategy.extended.should_checkpoint)


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
