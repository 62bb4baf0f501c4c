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
