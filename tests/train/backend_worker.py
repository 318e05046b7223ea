"""Fine-tune in a fresh process on the backend KERAS_BACKEND names (for tests/train/test_backends.py).

    python backend_worker.py OUTPUT_DIR START_CHECKPOINT [--distributed]

Prints one JSON line: ``losses``, the per-step loss curve of ``CURVE`` from START_CHECKPOINT; ``resume``,
max |Δw| between a run killed after step 5 and resumed from its step-4 checkpoint and the same run
uninterrupted (drop-path and mixup on, so random-generator states must be restored too); with
``--distributed`` (JAX, started with XLA_FLAGS=--xla_force_host_platform_device_count=2), ``data_parallel``
and ``model_parallel``: max |Δw| of the ``CURVE`` run under keras.distribution against one device;
``mirrored_error``: what asking for a tf.distribute strategy says on this backend.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/

from conftest import tiny_config  # noqa: E402
from finetune_helpers import max_weight_difference, toy_arrays  # noqa: E402

CURVE = dict(steps=6, batch_size=16, learning_rate=0.05, grad_clip_norm=1.0, log_every=1, progress=False,
             checkpoint_every=100, jit_compile=False)
# the workers compile as their backend does by default (XLA on JAX: eager JAX, op by op, is ~6x slower here)
WORKER_CURVE = {**CURVE, "jit_compile": "auto"}


def losses(result):
    return [h["loss"] for h in result["history"] if "loss" in h]


def main(output_dir, start, distributed=False):
    from vit_zoo.train.finetuning import finetune

    reference = finetune(toy_arrays(64), start, output_dir=os.path.join(output_dir, "curve"), **WORKER_CURVE)
    report = {"losses": losses(reference)}
    options = dict(steps=8, checkpoint_every=4, mixup=0.2, batch_size=16, learning_rate=0.05, progress=False)
    config = tiny_config(num_classes=4, drop_path_rate=0.2)
    uninterrupted = finetune(toy_arrays(64), config, output_dir=os.path.join(output_dir, "ref"), **options)

    def stop(step, _):
        if step == 5:
            raise KeyboardInterrupt("simulated kill")
    try:
        finetune(toy_arrays(64), config, output_dir=os.path.join(output_dir, "run"), on_step=stop, **options)
    except KeyboardInterrupt:
        pass
    resumed = finetune(toy_arrays(64), config, output_dir=os.path.join(output_dir, "run"), **options)
    report["resumed_from_step"] = resumed["resumed_from_step"]
    report["resume"] = max_weight_difference(uninterrupted["model"], resumed["model"])
    from vit_zoo.train.distribute import make_plan
    try:
        make_plan("mirrored")
    except ValueError as error:
        report["mirrored_error"] = str(error)
    if distributed:
        for strategy in ("data-parallel", "model-parallel"):
            run = finetune(toy_arrays(64), start, output_dir=os.path.join(output_dir, strategy), strategy=strategy,
                           **WORKER_CURVE)
            report[strategy.replace("-", "_")] = max_weight_difference(reference["model"], run["model"])
            report[strategy.replace("-", "_") + "_replicas"] = run["replicas"]
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--distributed" in sys.argv[3:])
