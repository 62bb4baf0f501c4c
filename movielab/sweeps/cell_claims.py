"""One run per one-factor cell, however many workers queued it.

Each worker of a `design=one_factor` sweep queues the cells no trial has claimed yet. Two workers
that start together can both find none claimed and both queue every cell. The rule that settles
it needs no lock: a cell belongs to its lowest-numbered trial that has not failed. A worker that
takes a queued trial whose cell belongs to an earlier one fails it at once as a duplicate
(`duplicate_of`), and the reports leave duplicates out.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

CELL_ATTR = "cell"
DUPLICATE_ATTR = "duplicate_of"


def earlier_claim(study: optuna.Study, trial: optuna.Trial) -> int | None:
    """The number of an earlier trial that holds this trial's cell (queued, running or finished,
    not failed), or None when the cell is this trial's to run."""
    cell = trial.user_attrs.get(CELL_ATTR)
    claims = [
        other.number
        for other in study.get_trials(deepcopy=False)
        if other.number < trial.number
        and other.state != TrialState.FAIL
        and other.user_attrs.get(CELL_ATTR) == cell
    ]
    return min(claims) if claims else None


def is_duplicate(trial: FrozenTrial) -> bool:
    return DUPLICATE_ATTR in trial.user_attrs
