"""The Optuna storage behind `hydra.sweeper.storage`: one string, three kinds of store.

- `sqlite:///outputs/sweeps/NAME.db` (the default): a file, for one worker on one machine.
- `postgresql+psycopg://USER:PASSWORD@HOST/DB` (any SQLAlchemy URL Optuna's RDBStorage takes,
  `mysql+pymysql://...` too): a database server, for many workers on many machines.
- `/shared/sweeps/NAME.log` (a path ending in `.log`): Optuna's journal file (JournalStorage +
  JournalFileBackend), for many workers on one shared disk (NFS included) without a server.
  The same path opens it in `optuna-dashboard`.

Heartbeats: a running trial's worker writes one every `heartbeat_s` seconds and a trial silent for
4x that is failed by any other worker. Optuna's RDBStorage has them built in; Optuna 5's
JournalStorage has none, so `HeartbeatJournalStorage` keeps them as a system attribute of the trial.
"""

from __future__ import annotations

import importlib.util
import random
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from movielab.errors import MovielabError

JOURNAL_SUFFIX = ".log"
HEARTBEAT_ATTR = "movielab:heartbeat"  # a journal trial's last heartbeat, seconds since the epoch
GRACE_HEARTBEATS = 4  # a trial silent for this many heartbeat intervals has lost its worker


def is_journal(storage: str) -> bool:
    return "://" not in storage and storage.endswith(JOURNAL_SUFFIX)


def is_sqlite(storage: str) -> bool:
    return storage.startswith("sqlite")


def normalise(storage: str) -> str:
    """The storage string as every worker and the report should read it: a journal path made
    absolute (workers may start elsewhere); an RDB URL as given."""
    if is_journal(storage):
        return str(Path(storage).expanduser().resolve())
    _parse_url(storage)
    return storage


def display(storage: str) -> str:
    """The storage string for logs and reports, without its password."""
    if is_journal(storage):
        return storage
    return _parse_url(storage).render_as_string(hide_password=True)


def open_storage(storage: str, heartbeat_s: int | None = None) -> BaseStorage:
    """The Optuna storage named by `storage`, with heartbeats every `heartbeat_s` seconds (None: off)."""
    if heartbeat_s is not None and heartbeat_s <= 0:
        raise MovielabError(f"hydra.sweeper.heartbeat_s={heartbeat_s}: expected a positive number or null")
    if is_journal(storage):
        return _journal(storage, heartbeat_s)
    return _rdb(storage, heartbeat_s)


def _parse_url(storage: str) -> Any:
    try:
        return make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        raise MovielabError(
            f"hydra.sweeper.storage={storage}: expected a database URL (sqlite:///outputs/sweeps/NAME.db, "
            f"postgresql+psycopg://USER:PASSWORD@HOST/DB) or a journal file path ending in {JOURNAL_SUFFIX}"
        ) from None


def _journal(storage: str, heartbeat_s: int | None) -> JournalStorage:
    path = Path(storage).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    # the symlink lock (Optuna's default) also works on NFS, where fcntl locks may not
    return HeartbeatJournalStorage(JournalFileBackend(str(path)), heartbeat_s)


def _rdb(storage: str, heartbeat_s: int | None) -> RDBStorage:
    url = _with_installed_driver(_parse_url(storage), storage)
    engine_kwargs: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}  # wait for other workers' writes
    if url.get_backend_name() != "sqlite":
        engine_kwargs["pool_pre_ping"] = True  # a server restarted mid-sweep is reconnected to
    heartbeat = (
        {"heartbeat_interval": heartbeat_s, "grace_period": GRACE_HEARTBEATS * heartbeat_s}
        if heartbeat_s
        else {}
    )
    for attempt in range(10):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats
                return RDBStorage(
                    url.render_as_string(hide_password=False), engine_kwargs=engine_kwargs, **heartbeat
                )
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as error:
            # workers starting together race to create the tables ("table ... already exists");
            # once one has, the others find them
            if attempt == 9:
                first_line = str(error.orig or error).strip().splitlines()  # the driver's own message
                raise MovielabError(
                    f"hydra.sweeper.storage={display(storage)}: cannot open it "
                    f"({first_line[0] if first_line else type(error).__name__})"
                ) from error
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


def _with_installed_driver(url: Any, storage: str) -> Any:
    """`postgresql://` means psycopg2 to SQLAlchemy; where only psycopg (3) is installed, use it."""
    if (
        url.drivername == "postgresql"
        and importlib.util.find_spec("psycopg2") is None
        and importlib.util.find_spec("psycopg") is not None
    ):
        return url.set(drivername="postgresql+psycopg")
    try:
        url.get_dialect().import_dbapi()
    except ImportError as error:
        raise MovielabError(
            f"hydra.sweeper.storage={display(storage)}: its database driver is not installed "
            f"({error}); for PostgreSQL: pip install 'movielab[postgres]' and postgresql+psycopg://..."
        ) from None
    return url


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's JournalStorage with heartbeats, so a trial whose worker was killed is failed by the
    others (Optuna's RDBStorage has them; its JournalStorage does not yet). A heartbeat is one line
    in the journal; workers' clocks must agree to within the grace period (NTP does)."""

    def __init__(self, backend: JournalFileBackend, heartbeat_s: int | None) -> None:
        super().__init__(backend)
        self.heartbeat_s = heartbeat_s

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        if self.heartbeat_s is None:
            return []
        oldest = time.time() - GRACE_HEARTBEATS * self.heartbeat_s
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        # a trial with no heartbeat yet is not stale (as in Optuna's RDBStorage)
        return [t._trial_id for t in running if (_last_heartbeat(t) or oldest) < oldest]

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_s

    def get_heartbeat_stale_trial_callback(self) -> None:
        return None


def _last_heartbeat(trial: FrozenTrial) -> float | None:
    value = trial.system_attrs.get(HEARTBEAT_ATTR)
    return float(value) if isinstance(value, int | float) else None
