"""Files written whole or not at all, and new files that never replace one a user already has.

Every output of movielab (checkpoints, samples, reports, plots) goes through here: it is written to
a temporary file beside its target and renamed over it, so a crash or Ctrl-C never leaves half a file.
A temporary's name says which host and process writes it (`.last.ckpt.<host>.<pid>.<random>.tmp`),
so the next run in that folder removes those of a writer that was killed, and never a live one's.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from movielab.errors import ENVIRONMENT_ERRNOS, MovielabError, environment_fault


def _default_mode() -> int:
    """What open() would have given: mkstemp's 0600 would hide outputs from others on a shared machine."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


TEMPORARY_SUFFIX = ".tmp"
# temporaries named before they said their writer are left alone this long (a write takes seconds)
UNNAMED_WRITER_AGE_S = 3600.0


def _host() -> str:
    return socket.gethostname() or "localhost"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _written_by_dead_process(temporary: Path, host: str, now: float) -> bool:
    """Whether a temporary's writer is gone: a process of this host that no longer runs (a name
    without a writer counts as gone once it is an hour old; other hosts' writers are never judged)."""
    parts = temporary.name[: -len(TEMPORARY_SUFFIX)].rsplit(".", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[0].endswith(f".{host}"):
        return not _process_alive(int(parts[1]))
    if len(parts) == 3 and parts[1].isdigit():
        return False  # written from another host (a shared folder): its process cannot be checked here
    try:
        return now - temporary.stat().st_mtime > UNNAMED_WRITER_AGE_S
    except FileNotFoundError:
        return False


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries that killed writers left in `folder` and below; the removed paths."""
    folder, host, now = Path(folder), _host(), time.time()
    if not folder.is_dir():
        return []
    removed = []
    for temporary in folder.rglob(f".*{TEMPORARY_SUFFIX}"):
        if temporary.is_file() and _written_by_dead_process(temporary, host, now):
            temporary.unlink(missing_ok=True)
            removed.append(temporary)
    return removed


def _refused(path: Path, error: BaseException) -> MovielabError | None:
    fault = environment_fault(error)
    if fault is None:
        return None
    return MovielabError(
        f"cannot write {path}: {ENVIRONMENT_ERRNOS[fault.errno]}"
        + (f"; the previous {path.name} is kept as it was" if path.exists() else "; nothing was written")
    )


@contextmanager
def _temporary_beside(path: Path) -> Iterator[tuple[BinaryIO, Path]]:
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{path.name}.{_host()}.{os.getpid()}."
        handle, temporary = tempfile.mkstemp(prefix=prefix, suffix=TEMPORARY_SUFFIX, dir=path.parent)
        with os.fdopen(handle, "wb") as stream:
            yield stream, Path(temporary)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, _default_mode())
    except BaseException as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        refused = _refused(path, error)
        if refused is not None:
            raise refused from error
        raise


@contextmanager
def atomic_output(path: str | Path) -> Iterator[BinaryIO]:
    """A binary stream that becomes `path` once the block ends without an error."""
    path = Path(path)
    with _temporary_beside(path) as (stream, temporary):
        yield stream
    try:
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        refused = _refused(path, error)
        if refused is not None:
            raise refused from error
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
