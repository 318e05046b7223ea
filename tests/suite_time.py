"""A pytest plugin (loaded by conftest.py): settings that make the suite take less time without changing what
any test computes. Each was measured on the README's test command (figures in the README, *Tests*).

- **JAX without XLA's optimisation passes** (``JAX_DISABLE_MOST_OPTIMIZATIONS``), in the suite and in the processes
  its tests start: JAX compiles each eager op for each new shape (~55 ms a program on a CPU) and each jitted step,
  which is most of the JAX run; without the passes it compiles faster and computes the same to round-off, inside
  every tolerance of the suite (one run each way: 27 attention and timm dynamic-size tests on JAX 66 -> 49 s; the
  JAX training workers, the JAX CLI fine-tune and the TensorFlow-free JAX process 82 -> 67 s).
- **pytest-xdist workers share the cores**: each worker's own TensorFlow and PyTorch thread pools get
  ``cores // workers`` threads (one each on two cores with two workers), instead of every worker starting a pool
  as large as the machine and the pools contending (one run each way, back to back: 762 converter, use and model
  tests on TensorFlow 147.8 -> 134.9 s). Processes the tests start keep each library's defaults (nothing here is
  an environment variable they inherit).

A variable already set in the environment is left as it is.
"""
import os

import pytest


@pytest.hookimpl(trylast=True)  # after conftest.py has set KERAS_BACKEND
def pytest_configure(config):
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "true")
    workers = getattr(config, "workerinput", {}).get("workercount", 1)  # workerinput: only in an xdist worker
    if workers > 1:
        _size_thread_pools(max(1, (os.cpu_count() or 1) // workers))


def _size_thread_pools(threads: int) -> None:
    """This process's TensorFlow and PyTorch thread pools at ``threads`` threads, set before either starts its
    runtime. JAX's XLA pool is left as it is: one XLA thread per worker (``--xla_cpu_multi_thread_eigen=false``)
    made 40 JAX attention, embed and feature tests no faster (44.4 s with it, 41.4 s without, one run each)."""
    backend = os.environ.get("KERAS_BACKEND")
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    try:
        import torch
    except ImportError:
        pass
    else:
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
