"""Trials whose worker is gone (killed, crashed, its machine lost) are failed, so they stop counting
as running and the sweep goes on.

Two ways to know a worker is gone: its heartbeats stopped (any machine; Optuna's heartbeat, after
the grace period), or it ran on this machine and its process no longer exists (at once: a sweep
killed and started again does not wait out the grace period, and a grid's killed cell is run
again). Each trial records its worker (`worker` user attribute: host, boot id, pid namespace, pid,
process start time) when it starts; a trial from another machine, boot or container (pid
namespace) is left to the heartbeat. A trial whose heartbeats are late but whose worker this machine
sees running is left alone: its machine is starved, not its worker lost.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

WORKER_ATTR = "worker"


def this_worker() -> dict[str, Any]:
    """Who runs a trial: enough to tell, on the same machine, whether that process still runs."""
    return {
        "host": socket.gethostname(),
        "boot_id": _boot_id(),
        "pid_namespace": _pid_namespace(),
        "pid": os.getpid(),
        "process_start": _process_start(os.getpid()),
    }


def fail_abandoned_trials(study: optuna.Study, grace_s: float | None) -> list[int]:
    """Fail every running trial whose worker is gone, with the reason as its `error`; the numbers
    of the trials failed here (another worker may fail some first)."""
    reasons: dict[int, str] = {}
    storage = study._storage
    if isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage):
        for trial_id in storage._get_stale_trial_ids(study._study_id):
            reasons[trial_id] = f"its worker sent no heartbeat for over {grace_s:.0f} s (killed or lost)"
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        alive = _worker_runs_on_this_machine(trial)
        if alive:
            reasons.pop(trial._trial_id, None)  # late heartbeats from a live worker: a starved machine
        elif alive is False:  # known gone: say so rather than that its heartbeats stopped
            worker = trial.user_attrs[WORKER_ATTR]
            reasons[trial._trial_id] = f"its worker (pid {worker['pid']} on {worker['host']}) is gone"
    failed = []
    for trial_id, reason in reasons.items():
        try:
            storage.set_trial_user_attr(trial_id, "error", reason)
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                number = storage.get_trial(trial_id).number
                failed.append(number)
                log.warning("Trial %d failed: %s", number, reason)
        except UpdateFinishedTrialError:
            pass  # another worker failed it first, or it finished after all
    return failed


def _worker_runs_on_this_machine(trial: FrozenTrial) -> bool | None:
    """Whether the trial's worker process still runs (True) or is gone (False); None where this
    machine cannot tell (another machine, boot or container: its pids mean nothing here)."""
    worker = trial.user_attrs.get(WORKER_ATTR)
    if not isinstance(worker, dict) or worker.get("boot_id") is None:
        return None
    here = (socket.gethostname(), _boot_id(), _pid_namespace())
    if (worker.get("host"), worker.get("boot_id"), worker.get("pid_namespace")) != here:
        return None
    pid = worker.get("pid")
    if not isinstance(pid, int):
        return None
    if pid == os.getpid():
        return None  # an earlier sweep in this process (the Python API) left it: heartbeats tell
    start = _process_start(pid)
    return start is not None and start == worker.get("process_start")


def _boot_id() -> str | None:
    """Differs between machines and between boots of one machine (Linux)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _pid_namespace() -> str | None:
    """Containers on one machine share its boot id, and often its host name, but not their pids."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), or None if there is no such process;
    a recycled pid has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count fields after its ")"
    return int(stat.rsplit(")", 1)[1].split()[19])
