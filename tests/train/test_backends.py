"""Fine-tuning on JAX and PyTorch: the same loss curve as TensorFlow from the same starting weights,
exact resume, and keras.distribution on two CPU devices equal to one device.

Each backend runs in a fresh process (``KERAS_BACKEND`` is read once, at the first Keras import; the
host device count of JAX once, at its start). The runs start from the same vit_jax checkpoint with a
new zero head and see the same batches (the input pipeline is NumPy), so only float rounding separates
the curves. Tolerances: losses within 1e-4 over 6 steps; resumed weights within 1e-6 of uninterrupted
ones; DataParallel / ModelParallel weights within 1e-5 of one device's.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config

# JAX and PyTorch run in subprocesses of their own; the reference curve is TensorFlow's, in this process
pytestmark = pytest.mark.tensorflow_only("the reference loss curve is TensorFlow's, trained in this process")
WORKER = Path(__file__).with_name("backend_worker.py")


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    """The starting checkpoint's loss curve on TensorFlow (this process) and the JAX and PyTorch workers'
    reports (``backend_worker.py``), the workers started first so that the three runs overlap."""
    from backend_worker import CURVE, losses
    from finetune_helpers import toy_arrays
    from synth_checkpoints import npz_tensors, write_npz
    from vit_zoo.train.finetuning import finetune

    folder = tmp_path_factory.mktemp("backends")
    start = write_npz(folder / "start.npz", npz_tensors(tiny_config(num_classes=10)))
    workers = {"jax": start_backend("jax", folder / "jax", start, "--distributed",
                                    env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}),
               "torch": start_backend("torch", folder / "torch", start)}
    try:
        tensorflow_losses = losses(finetune(toy_arrays(64), str(start), output_dir=folder / "tf", **CURVE))
    finally:
        reports = {backend: finish(backend, worker) for backend, worker in workers.items()}
    return tensorflow_losses, reports


def start_backend(backend, output_dir, start, *extra, env=None):
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.Popen([sys.executable, str(WORKER), str(output_dir), str(start), *extra], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(backend, worker):
    """The worker's report, or the tail of its error output when it failed."""
    try:
        stdout, stderr = worker.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        worker.kill()
        stdout, stderr = worker.communicate()
    if worker.returncode != 0:
        return {"error": f"{backend} worker failed (exit {worker.returncode}):\n{stderr[-4000:]}"}
    return json.loads(stdout.strip().splitlines()[-1])


def report_of(curves, backend):
    tensorflow_losses, reports = curves
    report = reports[backend]
    assert "error" not in report, report["error"]
    return tensorflow_losses, report


def test_jax_matches_tensorflow_resumes_exactly_and_distributes(curves):
    tensorflow_losses, report = report_of(curves, "jax")
    np.testing.assert_allclose(report["losses"], tensorflow_losses, atol=1e-4)
    assert tensorflow_losses[-1] < 0.9 * tensorflow_losses[0]  # the curve goes somewhere
    assert report["resumed_from_step"] == 4 and report["resume"] <= 1e-6
    assert report["data_parallel_replicas"] == 2 and report["data_parallel"] <= 1e-5
    assert report["model_parallel_replicas"] == 1 and report["model_parallel"] <= 1e-5
    assert "needs KERAS_BACKEND=tensorflow (the backend is jax); on JAX use 'data-parallel'" \
        in report["mirrored_error"]


def test_torch_matches_tensorflow_and_resumes_exactly(curves):
    tensorflow_losses, report = report_of(curves, "torch")
    np.testing.assert_allclose(report["losses"], tensorflow_losses, atol=1e-4)
    assert report["resumed_from_step"] == 4 and report["resume"] <= 1e-6
    assert "Keras offers no multi-device training on torch: use 'none'" in report["mirrored_error"]


def test_a_strategy_the_backend_lacks_names_the_backend_that_has_it():
    from vit_zoo.train.distribute import make_plan

    with pytest.raises(ValueError, match=r"'data-parallel' uses keras.distribution.*KERAS_BACKEND=jax.*"
                                         r"on TensorFlow use 'mirrored'"):
        make_plan("data-parallel")
    with pytest.raises(ValueError, match=r"strategy must be one of \['none', 'mirrored'"):
        make_plan("mirrorred")
