"""Distributed fine-tuning equals single-device fine-tuning on the same data.

Each run is its own process: the logical-device split and MultiWorkerMirroredStrategy's collectives must be
set up before TensorFlow starts, and must not leak into other tests. Tolerance: max |Δw| ≤ 1e-5 after 4
SGD steps with clipping and layer decay active (the sums run in another order across replicas and micro-batches).
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


def start_worker(strategy, output_dir, env=None, accumulation=1):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen([sys.executable, str(WORKER), strategy, str(output_dir), str(accumulation)],
                            env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
def runs(tmp_path_factory):
    """Every worker started at once (single device, mirrored, two multi-worker tasks), so that their start-up
    and TensorFlow's imports overlap: {name: (folder, process)}."""
    from vit_zoo.train.distribute import local_cluster

    folders = {name: tmp_path_factory.mktemp(name) for name in ("single", "mirrored", "multiworker")}
    started = {"single": [start_worker("none", folders["single"])],
               "mirrored": [start_worker("mirrored", folders["mirrored"], accumulation=2)],
               "multiworker": [start_worker("multiworker", folders["multiworker"], {"TF_CONFIG": config})
                               for config in local_cluster(2)]}
    yield {name: (folders[name], processes) for name, processes in started.items()}
    for processes in started.values():
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.fixture(scope="module")
def single_device(runs):
    folder, (process,) = runs["single"]
    info = finish(process)
    assert info["replicas"] == 1
    return info, weights(folder / "weights-0.npz")


def test_mirrored_two_cpu_devices_matches_single_device(runs, single_device):
    """Two devices, each step accumulated over two micro-batches of 8 (4 per device), clipped: the same
    weights as one device with batches of 16 (Keras alone clips each replica's share before summing
    them, and cannot accumulate under MirroredStrategy; vit_zoo.train.optimizers sums first)."""
    folder, (process,) = runs["mirrored"]
    info = finish(process)
    assert info["replicas"] == 2 and info["strategy"] == "MirroredStrategy"
    assert max_difference(weights(folder / "weights-0.npz"), single_device[1]) <= TOLERANCE
    np.testing.assert_allclose(info["losses"], single_device[0]["losses"], atol=1e-5)


def test_multiworker_two_local_processes_match_single_device(runs, single_device):
    folder, processes = runs["multiworker"]
    infos = [finish(process) for process in processes]
    assert [info["replicas"] for info in infos] == [2, 2]
    assert infos[0]["strategy"] == "CollectiveAllReduceStrategy"  # MultiWorkerMirroredStrategy's class
    for task in (0, 1):
        assert max_difference(weights(folder / f"weights-{task}.npz"), single_device[1]) <= TOLERANCE
    assert (folder / "model.keras").is_file() and (folder / "run.json").is_file()  # the chief's
