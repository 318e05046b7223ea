"""Keeping native libraries' start-up notes off the terminal."""
from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def native_stderr_silenced():
    """Inside the block, file descriptor 2 goes to the null device: TensorFlow's CUDA stubs and LiteRT's
    "Created TensorFlow Lite XNNPACK delegate" print straight to it, past Python's ``sys.stderr`` (which
    the block silences too). Errors still reach the caller as exceptions."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
