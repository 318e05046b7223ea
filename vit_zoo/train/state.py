"""Checkpoints of a fine-tuning run: every model variable (weights, and the random-generator states of
dropout / drop-path), every optimizer variable (step counter, momenta, loss scale) and the step — which
also fixes the data position (see ``vit_zoo.train.pipeline``). Written as ``ckpt-{step:08d}.npz``
through a temporary file and an atomic rename, so a kill leaves either the old or the new checkpoint."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional

import numpy as np

_NAME = re.compile(r"^ckpt-(\d{8})\.npz$")


def save_checkpoint(directory, step: int, model, optimizer, keep: int = 2) -> Path:
    """Write the state after ``step`` optimizer steps; keep the newest ``keep`` checkpoints."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {f"model/{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
    arrays.update({f"optimizer/{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)})
    arrays["step"] = np.asarray(step, np.int64)
    arrays["paths"] = np.asarray(json.dumps([v.path for v in model.variables]))
    target = directory / f"ckpt-{step:08d}.npz"
    temporary = directory / f".ckpt-{step:08d}.{os.getpid()}.tmp"
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()
    for old in sorted(p for p in directory.iterdir() if _NAME.match(p.name))[:-keep]:
        old.unlink()
    return target


def latest_checkpoint(directory) -> Optional[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = sorted(p for p in directory.iterdir() if _NAME.match(p.name))
    return found[-1] if found else None


def remove_checkpoints(directory) -> int:
    """Delete the checkpoints in ``directory``; returns how many."""
    directory = Path(directory)
    found = [p for p in directory.iterdir() if _NAME.match(p.name)] if directory.is_dir() else []
    for path in found:
        path.unlink()
    return len(found)


def restore_checkpoint(path, model, optimizer) -> int:
    """Assign a checkpoint to a model and a built optimizer of the same structure; returns its step.
    Everything is checked before anything is assigned."""
    with np.load(path, allow_pickle=False) as data:
        saved = {key: data[key] for key in data.files}
    pairs = [(f"model/{i:05d}", v) for i, v in enumerate(model.variables)]
    pairs += [(f"optimizer/{i:05d}", v) for i, v in enumerate(optimizer.variables)]
    expected = {key for key, _ in pairs} | {"step", "paths"}
    problems = [f"missing {key}" for key, _ in pairs if key not in saved]
    problems += [f"unexpected {key}" for key in sorted(set(saved) - expected)]
    problems += [f"{key} ({v.path}): checkpoint {saved[key].shape}, model {tuple(v.shape)}"
                 for key, v in pairs if key in saved and saved[key].shape != tuple(v.shape)]
    if problems:
        raise ValueError(f"checkpoint '{path}' does not fit this model and optimizer "
                         f"({len(problems)} problem(s): {'; '.join(problems[:5])}); it was written by a run "
                         f"with another model, optimizer or precision — use another output_dir or resume=False")
    for key, variable in pairs:
        variable.assign(saved[key])
    return int(saved["step"])
