"""``vit_zoo.files.replace_atomically``, the one atomic writer: the temporary file sits beside the target
with its suffixes, is flushed to disk before the rename, and a failing writer leaves the old file."""
import os

import pytest

from vit_zoo.files import replace_atomically, write_atomically


def test_the_writer_gets_a_temporary_beside_the_target_with_its_suffixes_flushed_before_the_rename(
        tmp_path, monkeypatch):
    target = tmp_path / "cache" / "224x224-v2.weights.h5"
    seen, synced = [], []
    real_fsync = os.fsync

    def recording_fsync(descriptor):
        synced.append((os.readlink(f"/proc/self/fd/{descriptor}") if os.path.exists("/proc/self/fd") else "?",
                       target.exists()))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)

    def write_to(temporary):
        seen.append(temporary)
        temporary.write_bytes(b"new")

    assert replace_atomically(target, write_to) == target
    assert target.read_bytes() == b"new" and list(target.parent.iterdir()) == [target]
    (temporary,) = seen
    assert temporary.parent == target.parent and temporary.name.endswith(".weights.h5")
    assert temporary.name.startswith(".") and str(os.getpid()) in temporary.name
    if os.path.exists("/proc/self/fd"):  # the file before the rename, then its folder after it
        assert synced == [(str(temporary), False), (str(target.parent), True)]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")

    def broken(temporary):
        temporary.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        replace_atomically(target, broken)
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
    write_atomically(target, lambda handle: handle.write(b"complete"))
    assert target.read_bytes() == b"complete" and list(tmp_path.iterdir()) == [target]
