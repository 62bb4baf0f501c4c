"""Files written whole or not at all, and new files that never replace one a user already has.

Every output of movielab (checkpoints, samples, reports, plots) goes through here: it is written to
a temporary file beside its target and renamed over it, so a crash or Ctrl-C never leaves half a file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def _default_mode() -> int:
    """What open() would have given: mkstemp's 0600 would hide outputs from others on a shared machine."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def _temporary_beside(path: Path) -> Iterator[tuple[BinaryIO, Path]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream, Path(temporary)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, _default_mode())
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_output(path: str | Path) -> Iterator[BinaryIO]:
    """A binary stream that becomes `path` once the block ends without an error."""
    path = Path(path)
    with _temporary_beside(path) as (stream, temporary):
        yield stream
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_output(path) as stream:
        stream.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def new_file_name(folder: Path, stem: str, suffix: str) -> Path:
    """`stem + suffix`, or `stem-1 + suffix`, ...: the first name not taken in `folder`."""
    candidate, n = folder / f"{stem}{suffix}", 1
    while candidate.exists():
        candidate, n = folder / f"{stem}-{n}{suffix}", n + 1
    return candidate


def write_new_text(folder: Path, stem: str, suffix: str, text: str) -> Path:
    """Write `text` to a new file in `folder` (named as new_file_name does) and return its path.

    The name is claimed with a hard link, which fails if the name exists, so even two processes
    saving at the same second never overwrite each other's file.
    """
    probe = folder / f"{stem}{suffix}"
    with _temporary_beside(probe) as (stream, temporary):
        stream.write(text.encode("utf-8"))
    try:
        while True:
            path = new_file_name(folder, stem, suffix)
            try:
                os.link(temporary, path)
                return path
            except FileExistsError:
                continue
    finally:
        temporary.unlink(missing_ok=True)
