"""Run one small fine-tuning in a fresh process (for tests/train/test_distribute.py) and save its final weights.

    python distributed_worker.py STRATEGY OUTPUT_DIR [ACCUMULATION]   (STRATEGY: none | mirrored | multiworker)

"mirrored" first splits the CPU into two logical devices; "multiworker" reads TF_CONFIG. The weights go
to OUTPUT_DIR/weights-{task}.npz so that every worker's result can be compared.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/

import numpy as np  # noqa: E402

from conftest import tiny_config  # noqa: E402
from finetune_helpers import toy_arrays  # noqa: E402

STEPS, BATCH = 4, 16


def main(strategy: str, output_dir: str, accumulation: int = 1):
    from vit_zoo.train import distribute
    if strategy == "mirrored":
        distribute.split_cpu(2)
    from vit_zoo.train.finetuning import finetune

    # clipping at 0.5 is active from the first step (the first gradients have norms above 1); layer decay
    # scales each block's rate (update_step gets Keras variables across replicas, tf.Variables on one device)
    result = finetune(toy_arrays(64), tiny_config(num_classes=4), steps=STEPS, batch_size=BATCH,
                      learning_rate=0.05, grad_clip_norm=0.5, grad_accumulation=accumulation, layer_decay=0.75,
                      strategy=strategy,
                      output_dir=output_dir, log_every=1, progress=False, checkpoint_every=2)
    task = json.loads(os.environ.get("TF_CONFIG", '{"task": {"index": 0}}'))["task"]["index"]
    weights = result["model"].get_weights()
    np.savez(os.path.join(output_dir, f"weights-{task}.npz"), *weights)
    print(json.dumps({"replicas": result["replicas"], "strategy": result["strategy"],
                      "losses": [h["loss"] for h in result["history"] if "loss" in h]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
