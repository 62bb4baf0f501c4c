"""The Optuna trial this process is running, if any.

Hydra's basic launcher runs each trial's task in the sweeper's own process, so the sweeper hands
the trial over here and callbacks inside `train()` pick it up; outside a sweep there is none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

_current: optuna.Trial | None = None


def active_trial() -> optuna.Trial | None:
    return _current


@contextlib.contextmanager
def trial_running(trial: optuna.Trial) -> Iterator[None]:
    global _current
    if _current is not None:
        raise RuntimeError(f"trial {_current.number} is already running in this process")
    _current = trial
    try:
        yield
    finally:
        _current = None
