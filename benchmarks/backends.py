#!/usr/bin/env python
"""vit_zoo on each Keras backend (TensorFlow, JAX, PyTorch): inference and fine-tuning speed, one table per
backend, on this machine.

Each (backend, precision, inference | fine-tuning) group runs in a fresh Python process with
``KERAS_BACKEND`` set before Keras loads (``benchmarks/common.py``: thread pools never compete, first-call
times are real first calls). Per backend, ViT-B/16 at 224 px, random weights and images:
    predict     ``model.predict(x, batch_size=B)``  (Keras' compiled predict: XLA on TensorFlow (vit_zoo's
                default) and on JAX (Keras' default); eager on PyTorch)
    call        ``model(x)`` then ``keras.ops.convert_to_numpy`` (TensorFlow: vit_zoo's XLA-compiled
                forward; JAX: op by op; PyTorch: eager, tracking gradients as plain ``model(x)`` does there)
    train-step  ``model.train_on_batch`` after ``compile(SGD(momentum=0.9), sparse cross-entropy)`` with the
                defaults (``jit_compile="auto"``: XLA on TensorFlow and JAX, eager on PyTorch)
at batch 1, 8 and 32 (fine-tuning: ``--train-batch``, default 8), fp32 and ``mixed_bfloat16``; ``first_s`` is
the first call (tracing and compilation included), ``img_s`` the median steady rate of ``--repeats`` runs
of at least ``--min-time`` seconds each (``common.measure``).

Usage:
  python benchmarks/backends.py                          # the full run: 3 backends x 2 precisions
  python benchmarks/backends.py --quick                  # vit-tiny-16 at 64 px, small batches: checks the script
  python benchmarks/backends.py --backends jax torch --precision fp32 --batch 8
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

HERE = os.path.abspath(__file__)
BACKENDS = ("tensorflow", "jax", "torch")
QUICK = dict(model="vit-tiny-16", image_size=64, batch=[1, 4], train_batch=4, min_time=0.2, repeats=1)


# ------------------------------------------------------------------------------------------------
# workers (a child process each; KERAS_BACKEND is set before anything imports Keras)
def _model(spec):
    import vit_zoo

    dtype = "mixed_bfloat16" if spec["precision"] == "bf16" else None
    return vit_zoo.load(spec["model"], image_size=spec["image_size"], dtype=dtype)


def _emit(spec, **record):
    common.emit(backend=spec["backend"], model=spec["model"], precision=spec["precision"], **record)


def worker_inference(spec):
    import keras

    model = _model(spec)
    for batch in spec["batches"]:
        images = common.random_images(batch, spec["image_size"])
        steps = {"predict": lambda: model.predict(images, batch_size=batch, verbose=0),
                 "call": lambda: keras.ops.convert_to_numpy(model(images))}
        for path, step in steps.items():
            _emit(spec, path=path, batch=batch, **common.measure(step, batch, spec["min_time"], spec["repeats"]))


def worker_train(spec):
    import keras
    import numpy as np

    model = _model(spec)
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    batch = spec["train_batch"]
    images = common.random_images(batch, spec["image_size"])
    labels = np.random.default_rng(1).integers(0, model.output_shape[-1], (batch,))
    result = common.measure(lambda: model.train_on_batch(images, labels), batch, spec["min_time"], spec["repeats"])
    _emit(spec, path="train-step", batch=batch, jit_compile=bool(model.jit_compile), **result)


WORKERS = {"inference": worker_inference, "train": worker_train}


def worker(spec):
    os.environ["KERAS_BACKEND"] = spec["backend"]
    import keras

    if keras.backend.backend() != spec["backend"]:
        raise SystemExit(f"Keras loaded {keras.backend.backend()!r}, not {spec['backend']!r}")
    WORKERS[spec["kind"]](spec)


# ------------------------------------------------------------------------------------------------
# parent: one worker per group, one table per backend
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--model", default="vit-base-16")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--train-batch", type=int, default=8, help="images per fine-tuning step")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--no-train", action="store_true", help="skip the fine-tuning step rate")
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell (median reported)")
    parser.add_argument("--quick", action="store_true",
                        help="check the script: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    parser.add_argument("--max-load", type=float, default=1.0,
                        help="wait (up to --wait s) until the 1-min load average is below this")
    parser.add_argument("--wait", type=float, default=300)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per worker before it is stopped")
    parser.add_argument("--json", help="also write all records to this file")
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    if args.quick:
        vars(args).update(QUICK)

    facts, load_before = common.print_machine(args.max_load, args.wait)
    print(f"{args.model} at {args.image_size} px; inference batches {args.batch}, fine-tuning batch "
          f"{args.train_batch}; {args.repeats} runs of >= {args.min_time} s per cell (median)")
    records = []
    for backend in args.backends:
        for precision in args.precision:
            base = dict(backend=backend, model=args.model, image_size=args.image_size, precision=precision,
                        min_time=args.min_time, repeats=args.repeats)
            groups = [dict(base, kind="inference", batches=args.batch)]
            groups += [] if args.no_train else [dict(base, kind="train", train_batch=args.train_batch)]
            for spec in groups:
                for record in common.run_worker(HERE, spec, timeout_s=args.timeout):
                    if "error" in record:
                        print(f"  ! {backend} {precision} {spec['kind']}: {record['error']}", flush=True)
                    records.append(record)
        print_backend(backend, records)
    print(f"\nload average (1/5/15 min) at end: {common.load_average()}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(machine=facts, load_start=load_before, load_end=common.load_average(), records=records),
                      handle, indent=1)


def print_backend(backend: str, records: list) -> None:
    rows = [dict(path=r["path"], precision=r["precision"], batch=r["batch"], img_s=f"{r['rate']:.2f}",
                 spread=f"{r['min']:.2f}-{r['max']:.2f}", ms_per_batch=f"{1000 * r['batch'] / r['rate']:.0f}",
                 first_s=f"{r['first_s']:.2f}")
            for r in records if r.get("backend") == backend and "rate" in r]
    print(f"\n## {backend}\n")
    print(common.table(rows, ["path", "precision", "batch", "img_s", "spread", "ms_per_batch", "first_s"])
          if rows else "(no results)")


if __name__ == "__main__":
    main()
