"""What a fine-tuning run reports while it trains: progress lines (or a bar on a terminal), TensorBoard
scalars, and the history kept for ``run.json``. Only the chief worker writes files."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

# TensorBoard's scalar plugin reads summaries with this metadata (what tf.summary.scalar writes, without
# needing the tensorboard package installed to write them).
_SCALAR = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR)


class TrainLog:
    """``update(step, **scalars)`` after every step; prints and logs every ``every`` steps and at the end."""

    def __init__(self, output_dir: Optional[Path], start_step: int, total_steps: int, global_batch: int,
                 every: int = 10, progress: bool = True, stream=None):
        self.total, self.batch, self.every, self.progress = total_steps, global_batch, max(1, every), progress
        self.stream = stream or sys.stdout
        self.history = []
        self.started, self.start_step = time.time(), start_step
        self.window_time, self.window_step = self.started, start_step
        self.bar = None
        if progress and getattr(sys.stderr, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)
        self.writers = {}
        if output_dir is not None:
            self.writers = {split: tf.summary.create_file_writer(str(Path(output_dir) / "logs" / split))
                            for split in ("train", "val")}

    def update(self, step: int, **scalars):
        """``step``: steps done so far (1-based)."""
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in scalars.items()}, refresh=False)
        if step % self.every and step != self.total:
            return
        now = time.time()
        rate = (step - self.window_step) * self.batch / max(now - self.window_time, 1e-9)
        self.window_time, self.window_step = now, step
        record = {"step": step, **{k: float(v) for k, v in scalars.items()}, "images_per_second": rate}
        self.history.append(record)
        self.scalars("train", step, record)
        if self.progress and self.bar is None:
            remaining = (self.total - step) * self.batch / max(rate, 1e-9)
            parts = "  ".join(f"{k} {v:.4f}" if k != "lr" else f"lr {v:.2e}" for k, v in scalars.items())
            print(f"step {step:>{len(str(self.total))}}/{self.total}  {parts}  {rate:.0f} img/s  "
                  f"eta {_duration(remaining)}", file=self.stream, flush=True)

    def evaluation(self, step: int, metrics: dict):
        self.history.append({"step": step, **{f"val_{k}": v for k, v in metrics.items()}})
        self.scalars("val", step, metrics)
        if self.progress:
            text = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "examples")
            message = f"eval after step {step}: {text}  ({metrics['examples']} images)"
            (self.bar.write if self.bar is not None else lambda m: print(m, file=self.stream, flush=True))(message)

    def note(self, message: str):
        if self.progress:
            (self.bar.write if self.bar is not None else lambda m: print(m, file=self.stream, flush=True))(message)

    def scalars(self, split: str, step: int, values: dict):
        writer = self.writers.get(split)
        if writer is None:
            return
        with writer.as_default(step=step):
            for key, value in values.items():
                if key not in ("step", "examples"):
                    tf.summary.write(key, tf.constant(float(value), tf.float32), metadata=_SCALAR)
        writer.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()
        for writer in self.writers.values():
            writer.close()

    @property
    def seconds(self) -> float:
        return time.time() - self.started


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
