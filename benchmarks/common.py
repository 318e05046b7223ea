"""Shared helpers of the benchmark scripts: machine facts, load, timing, subprocess workers.

Each measurement group runs in its own Python process (``--worker``), so TensorFlow's and PyTorch's
thread pools never compete, a mixed-precision policy never leaks, and a crash costs one group only.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

RESULT_PREFIX = "RESULT "
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def cpu_facts() -> dict:
    """CPU model, core count, vector / bf16 flags from /proc/cpuinfo (Linux)."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("unknown", "", "x86_64"):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    vector = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
              if f in flags]
    return {"cpu": model, "cores": os.cpu_count(), "flags": vector,
            "native_bf16": any(f in flags for f in NATIVE_BF16_FLAGS)}


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def wait_for_quiet(max_load: float, timeout_s: float) -> str:
    """Wait (up to timeout_s) until the 1-minute load average is below max_load; returns the load."""
    deadline = time.time() + timeout_s
    while os.getloadavg()[0] >= max_load and time.time() < deadline:
        time.sleep(5)
    return load_average()


def measure(step, items_per_call: int, min_time: float, repeats: int) -> dict:
    """Time ``step()`` (which must block until its result exists).

    The first call (tracing / XLA compilation) is timed alone, a second call warms up, then ``repeats``
    runs of n calls each, n chosen so a run lasts at least ``min_time`` seconds. Rate = items per second,
    the median over the runs (spread: min and max).
    """
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    start = time.perf_counter()
    step()
    per_call = time.perf_counter() - start
    calls = max(1, math.ceil(min_time / max(per_call, 1e-6)))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            step()
        rates.append(calls * items_per_call / (time.perf_counter() - start))
    return {"rate": statistics.median(rates), "min": min(rates), "max": max(rates), "first_s": first,
            "calls": calls, "repeats": repeats}


def random_images(batch: int, size: int, seed: int = 0):
    """(batch, size, size, 3) float32 pixels uniform in [0, 255) (seeded: every framework sees the same)."""
    import numpy as np

    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype("float32")


def keras_hub_backbone(model: str, image_size: int, dtype=None):
    """keras-hub's ``ViTBackbone`` with the architecture of the vit_zoo variant ``model`` (its peer)."""
    import keras_hub

    import vit_zoo

    config = vit_zoo.ViTConfig.from_name(model, image_size=image_size)
    return keras_hub.models.ViTBackbone(
        image_shape=(image_size, image_size, 3), patch_size=config.patch_size, num_layers=config.num_layers,
        num_heads=config.num_heads, hidden_dim=config.hidden_size, mlp_dim=config.mlp_size,
        layer_norm_epsilon=config.layer_norm_epsilon, dtype=dtype)


def transformers_classifier(model: str, image_size: int):
    """transformers' ``ViTForImageClassification`` (random weights, eval mode) with the architecture and class
    count of the vit_zoo variant ``model``."""
    import transformers

    import vit_zoo

    config = vit_zoo.ViTConfig.from_name(model, image_size=image_size)
    return transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=image_size, patch_size=config.patch_size, hidden_size=config.hidden_size,
        intermediate_size=config.mlp_size, num_attention_heads=config.num_heads,
        num_hidden_layers=config.num_layers, num_labels=config.num_classes)).eval()


def emit(**record):
    """Print one result line the parent process collects."""
    print(RESULT_PREFIX + json.dumps(record), flush=True)


def run_worker(script: str, spec: dict, timeout_s: float = 3600) -> list:
    """Run ``script --worker SPEC`` in a fresh interpreter; returns its result records."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    command = [sys.executable, script, "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return [dict(spec, error=f"timed out after {timeout_s:.0f} s")]
    records = [json.loads(line[len(RESULT_PREFIX):]) for line in done.stdout.splitlines()
               if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        records.append(dict(spec, error=f"worker exited {done.returncode}: {' | '.join(tail)}"))
    return records


def table(rows: list, columns: list) -> str:
    """A GitHub-markdown table of dict rows."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def print_machine(max_load, wait):
    """Print the CPU, its flags and whether it has native bf16; wait for a quiet machine; return
    ``(cpu_facts(), load average at the start)``, so every benchmark's output names its machine."""
    facts = cpu_facts()
    load_before = wait_for_quiet(max_load, wait)
    print(f"CPU: {facts['cpu']}, {facts['cores']} cores; flags: {' '.join(facts['flags'])}; "
          f"native bf16 (avx512_bf16/amx): {'yes' if facts['native_bf16'] else 'NO'}")
    print(f"load average (1/5/15 min) at start: {load_before}")
    return facts, load_before


def add_run_arguments(parser, min_time: float, repeats: int = 3):
    """The options every measuring script shares: the hidden ``--worker``, timing, quiet-machine wait, JSON."""
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--min-time", type=float, default=min_time, help="seconds per timed run")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs per cell (median reported)")
    parser.add_argument("--max-load", type=float, default=1.0,
                        help="wait (up to --wait s) until the 1-min load average is below this")
    parser.add_argument("--wait", type=float, default=300)
    parser.add_argument("--json", help="also write all records to this file")


def parse_or_work(parser, argv, work):
    """``parser.parse_args(argv)``; in a worker process (the hidden ``--worker SPEC`` of ``run_worker``) it runs
    ``work(spec)`` instead and returns None."""
    args = parser.parse_args(argv)
    if args.worker:
        work(json.loads(args.worker))
        return None
    return args


def finish(args, facts, load_before, records, **extra):
    """Print the load at the end; write the records (with the machine and loads) to ``args.json``."""
    print(f"\nload average (1/5/15 min) at end: {load_average()}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(machine=facts, load_start=load_before, load_end=load_average(), records=records,
                           **extra), handle, indent=1)
