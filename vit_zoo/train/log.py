"""What a fine-tuning run reports while it trains: progress lines (or a bar on a terminal), TensorBoard
scalars (where the TensorFlow package is installed, on any backend), and the history kept for
``run.json``. Only the chief writes files.

``fit`` reports the running mean of the loss (and accuracy) since it started; the mean over the steps
since the last report is recovered from two running means (``sum_n = mean_n * n``, in float64).
"""
from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np


class TrainLog(keras.callbacks.Callback):
    """Reports every ``every`` optimizer steps and after the last one.

    Args:
        output_dir: where TensorBoard logs go (``logs/train``, ``logs/val``); None: no files.
        first_step, total_steps: the step this ``fit`` starts at and the run's last step.
        batch_size: images per optimizer step; accumulation: ``fit`` batches per step.
        schedule: the learning-rate schedule (of the optimizer step). on_step: ``on_step(step, scalars)``
            after every step (scalars: that step's loss, accuracy and learning rate).
    """

    def __init__(self, output_dir: Optional[Path], *, first_step: int, total_steps: int, batch_size: int,
                 accumulation: int = 1, every: int = 10, progress: bool = True, schedule=None,
                 on_step: Optional[Callable[[int, dict], None]] = None, stream=None):
        super().__init__()
        self.first_step, self.total, self.batch, self.accumulation = first_step, total_steps, batch_size, accumulation
        self.every, self.progress, self.schedule, self.on_step = max(1, every), progress, schedule, on_step
        self.stream = stream or sys.stdout
        self.history = []
        self.started = self.window_time = time.time()
        self.window = (first_step, np.zeros(2))  # (step, summed loss and accuracy) at the last report
        self.last = (first_step, np.zeros(2))  # the same after the last step
        self.bar = None
        if progress and getattr(sys.stderr, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=first_step, unit="step", dynamic_ncols=True)
        self.writers = _scalar_writers(output_dir) if output_dir is not None else {}

    def on_train_batch_end(self, batch, logs=None):
        done, partial = divmod(batch + 1, self.accumulation)
        if partial:
            return
        step = self.first_step + done
        if self.bar is not None:
            self.bar.update(1)
        report = step % self.every == 0 or step == self.total
        if not report and self.on_step is None:
            return
        sums = np.array([float(logs["loss"]), float(logs.get("accuracy", np.nan))], np.float64) * (batch + 1)
        if not math.isfinite(sums[0]):
            raise FloatingPointError(f"the loss became {sums[0]} by step {step}; lower the learning rate or keep "
                                     f"gradient clipping on")
        if self.on_step is not None:
            self.on_step(step, self._scalars(step, self.last, sums))
            self.last = (step, sums)
        if report:
            self.report(step, self._scalars(step, self.window, sums))
            self.window = (step, sums)

    def _scalars(self, step: int, since, sums) -> dict:
        """Mean loss and accuracy over the steps after ``since``, and the learning rate of ``step``."""
        mean = (sums - since[1]) / ((step - since[0]) * self.accumulation)
        # differences of running sums: an accuracy of 0 can come out as -1e-17 (printed "-0.0000")
        accuracy = float(mean[1]) if np.isnan(mean[1]) else max(float(mean[1]), 0.0)
        scalars = {"loss": float(mean[0]), "accuracy": accuracy}
        if self.schedule is not None:
            scalars["lr"] = float(keras.ops.convert_to_numpy(self.schedule(step - 1)))
        return scalars

    def report(self, step: int, scalars: dict):
        now = time.time()
        rate = (step - self.window[0]) * self.batch / max(now - self.window_time, 1e-9)
        self.window_time = now
        record = {"step": step, **scalars, "images_per_second": rate}
        self.history.append(record)
        self.scalars("train", step, record)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in scalars.items()}, refresh=False)
        elif self.progress:
            remaining = (self.total - step) * self.batch / max(rate, 1e-9)
            parts = "  ".join(f"{k} {v:.4f}" if k != "lr" else f"lr {v:.2e}" for k, v in scalars.items())
            print(f"step {step:>{len(str(self.total))}}/{self.total}  {parts}  {rate:.0f} img/s  "
                  f"eta {_duration(remaining)}", file=self.stream, flush=True)

    def evaluation(self, step: int, metrics: dict):
        """Record (and print) an evaluation of the validation split after ``step``."""
        kept = {k: metrics[k] for k in ("top1", "top5", "loss", "examples")}
        self.history.append({"step": step, **{f"val_{k}": v for k, v in kept.items()}})
        self.scalars("val", step, kept)
        k = metrics.get("k", 5)  # top-k with k = min(5, classes), labelled as vit-zoo evaluate labels it
        self.note(f"eval after step {step}: top-1 {kept['top1']:.3%}  top-{k} {kept['top5']:.3%}  loss "
                  f"{kept['loss']:.4f}  ({kept['examples']} images)")

    def note(self, message: str):
        if self.progress:
            (self.bar.write if self.bar is not None else lambda m: print(m, file=self.stream, flush=True))(message)

    def scalars(self, split: str, step: int, values: dict):
        writer = self.writers.get(split)
        if writer is not None:
            writer({k: v for k, v in values.items() if k not in ("step", "examples")}, step)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        for writer in self.writers.values():
            writer.close()

    @property
    def seconds(self) -> float:
        return time.time() - self.started


def _scalar_writers(output_dir: Path) -> dict:
    """{"train": writer, "val": writer} writing TensorBoard event files under ``output_dir/logs``, or {}
    when the TensorFlow package is absent (its summary writer makes the files)."""
    if importlib.util.find_spec("tensorflow") is None:
        return {}
    from vit_zoo.native_output import native_stderr_silenced

    with native_stderr_silenced():  # under JAX or PyTorch this imports TensorFlow: keep its start-up notes off
        import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    if keras.backend.backend() != "tensorflow":  # TensorFlow only writes files here: leave the GPUs to JAX/torch
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # TensorFlow's devices were set up already (by the user)
            pass

    # TensorBoard's scalar plugin reads summaries with this metadata (what tf.summary.scalar writes,
    # without needing the tensorboard package).
    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
                                           data_class=summary_pb2.DATA_CLASS_SCALAR)

    class Writer:
        def __init__(self, folder):
            self.file = tf.summary.create_file_writer(str(folder))

        def __call__(self, values: dict, step: int):
            with self.file.as_default(step=step):
                for key, value in values.items():
                    tf.summary.write(key, tf.constant(float(value), tf.float32), metadata=metadata)
            self.file.flush()

        def close(self):
            self.file.close()
    return {split: Writer(Path(output_dir) / "logs" / split) for split in ("train", "val")}


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
