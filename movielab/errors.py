"""One exception type for mistakes a user can fix, reported as a single line at the entry point.

What the environment refuses (a full disk, a folder that cannot be written) and what Hydra
refuses (an option or a config that does not exist) are reported the same way: one line that
names the path or the option and what is expected, exit status 2. HYDRA_FULL_ERROR=1 keeps the
traceback.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any


class MovielabError(Exception):
    """A user-facing problem (bad input, bad option, missing file) with a message that says how to fix it."""


class TrainingDiverged(MovielabError):
    """A loss, metric or weight became NaN or inf: the run stops, keeping the checkpoints from before."""

    def __init__(self, message: str, step: int, metric: str) -> None:
        super().__init__(message)
        self.step = step
        self.metric = metric


class ReportedExit(SystemExit):
    """The exit of an entry point that printed why on one line; `reason` keeps that line for a
    caller that runs the task in-process (a sweep records it as the trial's reason)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code)
        self.reason = reason


USER_ERROR_EXIT = 2

# Lightning's own one-line errors about a trainer configuration it cannot run (named, not imported:
# entry points that never load Lightning must not pay for importing it here)
LIBRARY_USER_ERRORS = ("MisconfigurationException",)

# what the environment refuses, in words
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
}


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the errors it was raised from or during (Hydra and torch wrap the user's)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def environment_fault(error: BaseException) -> OSError | None:
    """The OSError of a full disk or a path that cannot be written anywhere in `error`'s chain
    (torch.save reports a full disk as a RuntimeError whose context is the OSError)."""
    for current in _chain(error):
        if isinstance(current, OSError) and current.errno in ENVIRONMENT_ERRNOS:
            return current
    return None


def movielab_error_in(exc: BaseException) -> MovielabError | None:
    """The MovielabError that `exc` wraps (Hydra's InstantiationException wraps the user's)."""
    return next((e for e in _chain(exc) if isinstance(e, MovielabError)), None)


def _user_error_line(exc: BaseException) -> str | None:
    for current in _chain(exc):
        if isinstance(current, MovielabError) or type(current).__name__ in LIBRARY_USER_ERRORS:
            return one_line(current)
    fault = environment_fault(exc)
    if fault is not None:
        where = fault.filename if fault.filename is not None else "an output"
        return f"cannot write {where}: {ENVIRONMENT_ERRNOS[fault.errno]}"
    return None


def full_error_requested() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1" and not _FULL_ERROR_IS_OURS


def report_and_exit(line: str, code: int = USER_ERROR_EXIT) -> None:
    """Print `error: line` on stderr and exit with `code`."""
    print(f"error: {line}", file=sys.stderr)
    raise ReportedExit(code, line)


@contextlib.contextmanager
def user_errors_reported() -> Iterator[None]:
    """Print a MovielabError (or a refused write) as one line and exit with status 2;
    HYDRA_FULL_ERROR=1 keeps the traceback."""
    try:
        yield
    except Exception as exc:
        line = _user_error_line(exc)
        if line is None or full_error_requested():
            raise
        report_and_exit(line)


# -- Hydra's own errors ------------------------------------------------------------------------
_FULL_ERROR_IS_OURS = False


def _names(node: Any) -> list[str]:
    keys = getattr(node, "keys", None)
    return sorted(str(k) for k in keys()) if callable(keys) else []


def hydra_error_line(exc: BaseException) -> str | None:
    """One line for an error Hydra raises before the task runs: an option that is not in the
    config (listing the names that are), a config group option that does not exist (listing the
    group's options), an override that does not parse."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    if isinstance(exc, MissingConfigException):
        options = list(exc.options or [])
        group, _, name = (exc.missing_cfg_file or "").rpartition("/")
        if group and options:
            return f"{group}={name} is not a config; the options of {group} are: {', '.join(options)}"
        return one_line(exc).split(" Config search path")[0]
    if isinstance(exc, OverrideParseException):
        return f"cannot read the override: {one_line(str(exc).splitlines()[0] if str(exc) else exc)}"
    if isinstance(exc, ConfigCompositionException):
        cause = exc.__cause__
        if isinstance(cause, ConfigKeyError | ConfigAttributeError) and cause.full_key:
            parent = cause.full_key.rpartition(".")[0]
            names = [
                n for n in _names(cause.parent_node) if not n.startswith("_") and (parent or n != "hydra")
            ]
            where = f"{parent} has" if parent else "the options are"
            return (
                f"{cause.full_key} is not an option; {where}: {', '.join(names)} "
                f"(+{cause.full_key}=... adds a new key)"
            )
        if isinstance(cause, OmegaConfBaseException):
            first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
            return f"{one_line(str(exc).splitlines()[0])} {one_line(first)}"
        return one_line(str(exc).splitlines()[0] if str(exc) else exc)
    return None


def config_errors_reported(hydra_main: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps a `@hydra.main` function so Hydra's multi-line composition errors become one line.

    Hydra prints those errors itself unless HYDRA_FULL_ERROR=1, in which case it raises them:
    that is set while the command runs (and remembered as ours, so user_errors_reported still
    prints one line), and the raised error is shortened here.
    """

    @functools.wraps(hydra_main)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        global _FULL_ERROR_IS_OURS
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            return hydra_main(*args, **kwargs)
        os.environ["HYDRA_FULL_ERROR"] = "1"
        _FULL_ERROR_IS_OURS = True
        try:
            return hydra_main(*args, **kwargs)
        except Exception as exc:
            line = hydra_error_line(exc) or _user_error_line(exc)
            if line is None:
                raise
            report_and_exit(line)
        finally:
            _FULL_ERROR_IS_OURS = False
            os.environ.pop("HYDRA_FULL_ERROR", None)

    return wrapped
