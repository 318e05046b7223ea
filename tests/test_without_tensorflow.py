"""The library needs no TensorFlow on JAX or PyTorch: loading a vit_jax checkpoint, predict, evaluate,
feature extraction, attention rollout, embed and fine-tuning run with ``tensorflow`` unimportable
(tests/without_tensorflow_worker.py), in one fresh process per backend, both started at once, and give what
this process gives for the same checkpoint and images. Tolerances: 1e-5 on probabilities, features and
rollout, and on the evaluation loss; 1e-4 on the loss after 2 fine-tuning steps (as tests/train/test_backends.py).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config

WORKER = Path(__file__).with_name("without_tensorflow_worker.py")
BACKENDS = ("jax", "torch")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """{backend: (steps, errors)} from the workers, and this process's own steps for the same inputs."""
    from synth_checkpoints import npz_tensors, write_npz
    from without_tensorflow_worker import use_everything

    folder = tmp_path_factory.mktemp("without_tensorflow")
    checkpoint = write_npz(folder / "start.npz", npz_tensors(tiny_config(num_classes=10)))
    workers = {}
    for backend in BACKENDS:
        (folder / backend).mkdir()
        workers[backend] = subprocess.Popen(
            [sys.executable, str(WORKER), str(checkpoint), str(folder / backend)],
            env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    (folder / "here").mkdir()
    here, here_errors = use_everything(str(checkpoint), str(folder / "here"))
    assert not here_errors, here_errors
    results = {}
    for backend, process in workers.items():
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, f"{backend} worker failed:\n{err[-3000:]}"
        report = json.loads(out.strip().splitlines()[-1])
        results[backend] = report["steps"], report["errors"]
    return here, results


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_library_runs_without_tensorflow_and_agrees_with_this_process(reports, backend):
    here, results = reports
    steps, errors = results[backend]
    assert not errors, errors
    assert steps["backend"] == backend
    np.testing.assert_allclose(steps["predict"], here["predict"], atol=1e-5)
    assert steps["evaluate"]["top1"] == here["evaluate"]["top1"]
    assert steps["evaluate"]["top5"] == here["evaluate"]["top5"]
    assert steps["evaluate"]["loss"] == pytest.approx(here["evaluate"]["loss"], abs=1e-5)
    np.testing.assert_allclose(steps["features"], here["features"], atol=1e-5)
    np.testing.assert_allclose(steps["attention"], here["attention"], atol=1e-5)
    assert steps["finetune"] == pytest.approx(here["finetune"], abs=1e-4)
    assert np.ptp(here["features"]) > 0.1 and np.ptp(here["predict"]) > 1e-3  # values, not zeros


@pytest.mark.parametrize("backend", BACKENDS)
def test_embed_runs_without_tensorflow(reports, backend):
    here, results = reports
    steps, errors = results[backend]
    assert "embed" not in errors, errors["embed"]
    assert steps["embed"] == here["embed"] == 6
