"""Ctrl-C answered within seconds, even while the main thread is inside native code (an XLA compile, a
long graph run) or the interpreter waits for worker threads at exit.

The C-level signal handler writes to a wake-up file descriptor at once, whatever the main thread does; a
watchdog thread reading it gives the main thread ``GRACE_SECONDS`` to unwind (its ``KeyboardInterrupt``
prints the one-line message and returns 130), then ends the process with exit code 130 itself. A second
Ctrl-C ends it at once. Writes that matter are atomic (temporary name, then rename), so nothing is left
half-written.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading

GRACE_SECONDS = 3.0


@contextlib.contextmanager
def answered_promptly(command: str, announced: threading.Event):
    """Within the block, SIGINT ends the process within ``GRACE_SECONDS`` with exit code 130 and the line
    ``vit-zoo COMMAND: interrupted`` (unless ``announced`` says the main thread printed it). Only in the
    main thread; elsewhere the block does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    try:
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:
        reader.close(), writer.close()
        yield
        return
    done = threading.Event()

    def watch():
        signals = 0
        while not done.is_set():
            try:
                data = reader.recv(16)
            except OSError:
                return
            if done.is_set() or not data:
                return
            signals += data.count(bytes([signal.SIGINT]))
            if signals and (signals > 1 or not done.wait(GRACE_SECONDS)):
                if not announced.is_set():
                    print(f"vit-zoo {command}: interrupted", file=sys.stderr, flush=True)
                os._exit(130)

    thread = threading.Thread(target=watch, name="vit_zoo-interrupt", daemon=True)
    thread.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        done.set()
        writer.close()
        thread.join(timeout=1)
        reader.close()
