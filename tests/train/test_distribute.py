"""Distributed fine-tuning equals single-device fine-tuning on the same data.

Each run is its own process: the logical-device split and MultiWorkerMirroredStrategy's collectives must be
set up before TensorFlow starts, and must not leak into other tests. Tolerance: max |Δw| ≤ 1e-5 after 4
SGD steps with clipping active (the sums run in another order across replicas and micro-batches).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tensorflow_only("tf.distribute (MirroredStrategy, MultiWorkerMirroredStrategy)")
WORKER = Path(__file__).with_name("distributed_worker.py")
TOLERANCE = 1e-5


def run_worker(strategy, output_dir, env=None, wait=True, accumulation=1):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    process = subprocess.Popen([sys.executable, str(WORKER), strategy, str(output_dir), str(accumulation)],
                               env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return finish(process) if wait else process


def finish(process, timeout=240):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"worker failed:\n{err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def weights(path):
    with np.load(path) as data:
        return [data[key] for key in sorted(data.files, key=lambda k: int(k.split("_")[1]))]


def max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    directory = tmp_path_factory.mktemp("single")
    info = run_worker("none", directory)
    assert info["replicas"] == 1
    return info, weights(directory / "weights-0.npz")


def test_mirrored_two_cpu_devices_matches_single_device(single_device, tmp_path):
    """Two devices, each step accumulated over two micro-batches of 8 (4 per device), clipped: the same
    weights as one device with batches of 16 (Keras alone clips each replica's share before summing
    them, and cannot accumulate under MirroredStrategy; vit_zoo.train.optimizers sums first)."""
    info = run_worker("mirrored", tmp_path, accumulation=2)
    assert info["replicas"] == 2 and info["strategy"] == "MirroredStrategy"
    assert max_difference(weights(tmp_path / "weights-0.npz"), single_device[1]) <= TOLERANCE
    np.testing.assert_allclose(info["losses"], single_device[0]["losses"], atol=1e-5)


def test_multiworker_two_local_processes_match_single_device(single_device, tmp_path):
    from vit_zoo.train.distribute import local_cluster

    configs = local_cluster(2)
    workers = [run_worker("multiworker", tmp_path, {"TF_CONFIG": config}, wait=False) for config in configs]
    infos = [finish(worker) for worker in workers]
    assert [info["replicas"] for info in infos] == [2, 2]
    assert infos[0]["strategy"] == "CollectiveAllReduceStrategy"  # MultiWorkerMirroredStrategy's class
    for task in (0, 1):
        assert max_difference(weights(tmp_path / f"weights-{task}.npz"), single_device[1]) <= TOLERANCE
    assert (tmp_path / "model.keras").is_file() and (tmp_path / "run.json").is_file()  # the chief's
