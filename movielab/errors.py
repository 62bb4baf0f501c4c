"""One exception type for mistakes a user can fix, reported as a single line at the entry point."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


class MovielabError(Exception):
    """A user-facing problem (bad input, bad option, missing file) with a message that says how to fix it."""


# Lightning's own one-line errors about a trainer configuration it cannot run (named, not imported:
# entry points that never load Lightning must not pay for importing it here)
LIBRARY_USER_ERRORS = ("MisconfigurationException",)


def _find_user_error(exc: BaseException) -> BaseException | None:
    """Hydra wraps errors raised while instantiating; dig the user's error out of the chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, MovielabError) or type(current).__name__ in LIBRARY_USER_ERRORS:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def user_errors_reported() -> Iterator[None]:
    """Print a MovielabError as one line and exit with status 2; HYDRA_FULL_ERROR=1 keeps the traceback."""
    try:
        yield
    except Exception as exc:
        user_error = _find_user_error(exc)
        if user_error is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {' '.join(str(user_error).split())}", file=sys.stderr)
        raise SystemExit(2) from None
