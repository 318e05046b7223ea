"""Library messages in command-line words: the keyword arguments they name become the flags that set
them (``drop name= or pass ...`` → ``drop --model or pass ...``), and usage errors that only a command
can tell (``UsageError``) exit 2 with that command's usage."""
from __future__ import annotations

import re

# library keyword argument → the flag that sets it
FLAGS = {"name": "--model", "model": "--model", "weights": "--weights", "ground_truth": "--ground-truth",
         "labels": "--labels", "image_size": "--image-size", "batch_size": "--batch-size",
         "grad_accumulation": "--grad-accumulation", "val_data": "--val-data", "class_names": "--class-names",
         "steps": "--steps", "epochs": "--epochs", "learning_rate": "--learning-rate", "strategy": "--strategy",
         "precision": "--precision", "recipe": "--recipe", "quantize": "--quantize",
         "input_dtype": "--input-dtype", "format": "--format", "output": "--output", "strict": "--strict",
         "warmup_steps": "--warmup-steps", "workers": "--workers", "results": "--results"}
_ARGUMENT = re.compile(r"(?<![\w.\-'\"])(" + "|".join(FLAGS) + r")=([^\s;,)]*)")


class UsageError(ValueError):
    """A command line that cannot run as given (a missing DATA, say): exit 2 with the command's usage."""


def as_flags(message: str, command: str = "") -> str:
    """``message`` with ``argument=`` / ``argument=VALUE`` written as ``--flag`` / ``--flag VALUE``."""
    return _ARGUMENT.sub(lambda m: FLAGS[m.group(1)] + (f" {m.group(2)}" if m.group(2) else ""), message)
