"""Checkpoints of a fine-tuning run, and the callback that acts every N steps of ``fit``.

A checkpoint holds every model variable (weights, and the random-generator states of dropout /
drop-path), every optimizer variable (step counter, momenta, accumulators, loss scale) and the step —
which also fixes the data position (see ``vit_zoo.train.pipeline``) — and the training split's
fingerprint (``data_fingerprint``): a resume on another data set is refused, since the step would then
point into other batches. It is one ``ckpt-{step:08d}.npz``
written to a temporary name and renamed, so a kill leaves either the old or the new checkpoint.

Why not ``keras.callbacks.BackupAndRestore``: it records the batch but restores only the epoch (a run
killed mid-epoch restarts that epoch from its first batch, with weights from later in it), and it writes
the weights and its metadata as two files, one after the other. Here a checkpoint is one file and the
resumed run continues at exactly the next batch.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np

from vit_zoo.files import write_atomically

_NAME = re.compile(r"^ckpt-(\d{8})\.npz$")


def data_fingerprint(source) -> dict:
    """What a checkpoint records of the training split (a ``vit_zoo.train.data.Source``): its kind, where
    it is, its example count and a sha256 of its examples in order with their labels -- an image folder's
    image paths relative to its root (so a moved or copied folder still matches), TFRecord file names
    with each record's offset and length, an array's bytes. A ``tf.data.Dataset`` is fingerprinted by its
    size only (reading it would be a pass over the data)."""
    digest = hashlib.sha256(source.kind.encode())
    if source.kind == "files":
        for path in source.items:
            digest.update(os.path.relpath(path, source.where).replace(os.sep, "/").encode() + b"\0")
    elif source.kind == "tfrecord":
        digest.update(json.dumps([os.path.basename(f) for f in source.items.files]).encode())
        digest.update(np.asarray(source.items.spans, np.int64).tobytes())
    elif source.kind == "arrays":
        for image in (source.items if isinstance(source.items, (list, tuple)) else [source.items]):
            digest.update(np.ascontiguousarray(image).data)
    if source.labels is not None:
        digest.update(np.asarray(source.labels, np.int64).tobytes())
    return {"kind": source.kind, "where": source.where, "examples": int(source.size), "sha256": digest.hexdigest()}


def save_checkpoint(directory, step: int, model, optimizer, keep: int = 2, data: Optional[dict] = None) -> Path:
    """Write the state after ``step`` optimizer steps (and ``data``, the training split's
    ``data_fingerprint``); keep the newest ``keep`` checkpoints."""
    directory = Path(directory)
    arrays = {f"model/{i:05d}": np.asarray(keras.ops.convert_to_numpy(v)) for i, v in enumerate(model.variables)}
    arrays.update({f"optimizer/{i:05d}": np.asarray(keras.ops.convert_to_numpy(v))
                   for i, v in enumerate(optimizer.variables)})
    arrays["step"] = np.asarray(step, np.int64)
    arrays["paths"] = np.asarray(json.dumps([v.path for v in model.variables]))
    if data is not None:
        arrays["data"] = np.asarray(json.dumps(data))
    target = write_atomically(directory / f"ckpt-{step:08d}.npz", lambda handle: np.savez(handle, **arrays))
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


def restore_checkpoint(path, model, optimizer, data: Optional[dict] = None) -> int:
    """Assign a checkpoint to a model and a built optimizer of the same structure; returns its step.
    ``data``: this run's ``data_fingerprint``, which must equal the checkpoint's (a checkpoint that records
    none is not compared). Everything is checked before anything is assigned."""
    with np.load(path, allow_pickle=False) as handle:
        saved = {key: handle[key] for key in handle.files}
    recorded = json.loads(str(saved.pop("data"))) if "data" in saved else None
    if data is not None and recorded is not None and recorded["sha256"] != data["sha256"]:
        raise ValueError(f"checkpoint '{path}' was written by a run on other training data: "
                         f"{_describe(recorded)}; this run has {_describe(data)} (the examples, their order or "
                         f"their labels differ, so the step would point into other batches); pass the same "
                         f"data to resume, or use another output_dir or resume=False")
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


def _describe(fingerprint: dict) -> str:
    return (f"{fingerprint['examples']} examples ({fingerprint['kind']}) from '{fingerprint['where']}', "
            f"sha256 {fingerprint['sha256'][:12]}")


def sync_model_state(model) -> None:
    """Make the model's and optimizer's variables current inside ``fit`` (the JAX trainer keeps them in a
    state tuple between steps; other backends update the variables in place)."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


class EverySteps(keras.callbacks.Callback):
    """Calls ``action(step)`` after every ``every``-th optimizer step of a ``fit`` (and after the last one,
    step ``total_steps``, when ``at_end``), with the model's variables current. ``fit`` batches are
    micro-batches: ``accumulation`` of them make one step; ``first_step``: where this ``fit`` started."""

    def __init__(self, action: Callable[[int], None], *, every: Optional[int], first_step: int, total_steps: int,
                 accumulation: int = 1, at_end: bool = False):
        super().__init__()
        self.action, self.every, self.first_step, self.total = action, every, first_step, total_steps
        self.accumulation, self.at_end = accumulation, at_end

    def on_train_batch_end(self, batch, logs=None):
        done, partial = divmod(batch + 1, self.accumulation)
        step = self.first_step + done
        if partial or not ((self.at_end and step == self.total) or (self.every and step % self.every == 0)):
            return
        sync_model_state(self.model)
        self.action(step)
