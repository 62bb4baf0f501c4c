"""Outputs are written whole or not at all, readable as any file, and never replace a user's file."""

from __future__ import annotations

import os
import stat

import pytest

from movielab.files import atomic_output, atomic_write_text, write_new_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "report.md", "old")
    with pytest.raises(RuntimeError), atomic_output(target) as stream:
        stream.write(b"half of the new")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_written_files_get_the_umask_mode_not_mkstemp_private(tmp_path):
    previous = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "summary.md", "text")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_new_files_never_replace_existing_ones(tmp_path):
    first = write_new_text(tmp_path, "2026-11-25_10-00-00", ".txt", "first")
    second = write_new_text(tmp_path, "2026-11-25_10-00-00", ".txt", "second")
    assert first != second
    assert (first.read_text(), second.read_text()) == ("first", "second")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2026-11-25_10-00-00-1.txt",
        "2026-11-25_10-00-00.txt",
    ]


def _temporary(folder, name: str, host: str, pid: int):  # noqa: ANN202
    path = folder / f".{name}.{host}.{pid}.abc123.tmp"
    path.write_bytes(b"half a checkpoint")
    return path


def test_temporaries_name_their_writer_and_only_dead_writers_lose_them(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    from movielab.files import remove_stale_temporaries

    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a finished (and reaped) process: its pid is free
    (tmp_path / "checkpoints").mkdir()
    stale = _temporary(tmp_path / "checkpoints", "last.ckpt", host, dead.pid)
    live = _temporary(tmp_path / "checkpoints", "last.ckpt", host, os.getpid())
    foreign = _temporary(tmp_path, "best.ckpt", "another-host", dead.pid)
    unnamed_old = tmp_path / ".report.md.k2j3.tmp"
    unnamed_old.write_bytes(b"x")
    os.utime(unnamed_old, (time.time() - 7200, time.time() - 7200))
    unnamed_new = tmp_path / ".summary.md.a8f1.tmp"
    unnamed_new.write_bytes(b"x")
    kept_file = atomic_write_text(tmp_path / "checkpoints" / "last.ckpt", "complete")

    removed = remove_stale_temporaries(tmp_path)

    assert sorted(removed) == sorted([stale, unnamed_old])
    assert live.exists() and foreign.exists() and unnamed_new.exists() and kept_file.exists()


def test_a_write_in_progress_is_named_after_this_process(tmp_path):
    with atomic_output(tmp_path / "last.ckpt") as stream:
        stream.write(b"x")
        (temporary,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert f".{os.getpid()}." in temporary.name and temporary.name.startswith(".last.ckpt.")
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_read_only_folder_is_one_error_naming_the_file(tmp_path):
    from movielab.errors import MovielabError

    folder = tmp_path / "samples"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user writes to read-only folders (root without a read-only mount)")
        with pytest.raises(MovielabError, match=r"cannot write .*samples/a.txt: permission denied"):
            atomic_write_text(folder / "a.txt", "text")
    finally:
        folder.chmod(0o700)
