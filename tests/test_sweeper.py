"""The Optuna sweeper end to end on a tiny GPT: `python -m movielab.train -m ...` runs trials,
persists and resumes the study, records failures and NaNs, prunes, and shares a study between
processes; plus the search-space syntax, the samplers and the report, without training."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import optuna
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from movielab import train
from movielab.errors import MovielabError
from movielab.resolvers import mul, steps_for_tokens
from movielab.sweep_report import main as report_main
from movielab.sweeps.optuna_sweep import tell
from movielab.sweeps.report import build_report, to_markdown
from movielab.sweeps.search_space import parse_search_space
from tests.conftest import CONF_DIR, REPO

# a GPT that trains 12 steps in a couple of seconds, with nothing written that a sweep does not need
TINY_SWEEP = [
    "hydra/sweeper=movielab_optuna",
    "model.net.config.n_layer=1",
    "model.net.config.n_head=2",
    "model.net.config.n_embd=16",
    "model.net.config.block_size=16",
    "model.scheduler=null",
    "data.batching.batch_size=8",
    "data.batching.val_max_windows=16",
    "trainer.max_steps=12",
    "trainer.val_check_interval=4",
    "trainer.num_sanity_val_steps=0",
    "trainer.accelerator=cpu",
    "++trainer.enable_progress_bar=false",
    "++trainer.enable_model_summary=false",
    "++trainer.enable_checkpointing=false",
    "~callbacks.progress_bar",
    "~callbacks.text_samples",
    "~callbacks.model_checkpoint",
    "~callbacks.last_checkpoint",
    "logger=csv",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FaultInjection(L.Callback):
    """Breaks a trial on purpose: raises, poisons the weights with NaN, makes the run return NaN,
    or raises a user mistake (MovielabError); `none` leaves it alone."""

    def __init__(self, mode: str = "none") -> None:
        self.mode = mode

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step != 2:
            return
        if self.mode == "raise":
            raise RuntimeError("injected failure")
        if self.mode == "user_error":
            raise MovielabError("injected user mistake")
        if self.mode == "nan_weights":
            with torch.no_grad():
                for parameter in pl_module.parameters():
                    parameter.fill_(float("nan"))

    def on_train_end(self, trainer, pl_module) -> None:
        if self.mode == "nan_return":
            trainer.callback_metrics["val/loss_best"] = torch.tensor(float("nan"))


def run_sweep(root: Path, monkeypatch, sweep_dir: str, *overrides: str) -> None:
    """`python -m movielab.train -m ...`, in this process, run from root (so outputs/ is there)."""
    monkeypatch.chdir(root)
    argv = [*TINY_SWEEP, f"hydra.sweep.dir={root / sweep_dir}", *overrides]
    monkeypatch.setattr(sys, "argv", ["movielab.train", "-m", *argv])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    train.main()


def load(root: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root}/outputs/sweeps/{name}.db")


SEARCH = ["model.optimizer.lr=tag(log,interval(1e-3,3e-2))", "model.net.config.n_embd=choice(16,32)"]


def test_a_sweep_runs_persists_reports_and_resumes(tmp_path, monkeypatch, capsys):
    common = [
        "hydra.sweeper.study_name=basic",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=0",
    ]
    run_sweep(tmp_path, monkeypatch, "first", *common, "hydra.sweeper.n_trials=2", *SEARCH)
    first = load(tmp_path, "basic").get_trials()
    assert [t.state for t in first] == [TrialState.COMPLETE] * 2
    for trial in first:
        assert math.isfinite(trial.value) and trial.value < math.log(100)  # learned something
        assert trial.user_attrs["tokens_per_s"] > 0 and trial.user_attrs["train_tokens"] == 12 * 8 * 16
        assert (
            trial.user_attrs["peak_memory_mb"] > 10
            and trial.user_attrs["trial_s"] >= trial.user_attrs["fit_s"]
        )
        assert trial.user_attrs["run_dir"] == str(tmp_path / "first" / str(trial.number))
        assert sorted(trial.params) == ["model.net.config.n_embd", "model.optimizer.lr"]
    sweep_dir = tmp_path / "first"
    assert {"summary.md", "val_loss_by_factor.png", "best_trial.yaml", "study.yaml"} <= {
        p.name for p in sweep_dir.iterdir()
    }
    best = min(first, key=lambda t: t.value)
    assert f"best: trial {best.number}" in (sweep_dir / "summary.md").read_text()

    # the same command again: the study resumes with more trials, and draws new params
    run_sweep(tmp_path, monkeypatch, "second", *common, "hydra.sweeper.n_trials=1", *SEARCH)
    trials = load(tmp_path, "basic").get_trials()
    assert [t.number for t in trials] == [0, 1, 2]
    assert [t.value for t in trials[:2]] == [t.value for t in first]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    old_lrs = {t.params["model.optimizer.lr"] for t in first}
    assert not old_lrs & {t.params["model.optimizer.lr"] for t in trials[2:]}

    # the report command reads the study through the sweep folder
    capsys.readouterr()
    report_main([str(tmp_path / "second"), "--out", str(tmp_path / "report")])
    printed = capsys.readouterr().out
    assert "## model.optimizer.lr" in printed and "## model.net.config.n_embd" in printed
    assert printed.count("| complete |") == 3
    assert (tmp_path / "report" / "val_loss_by_factor.png").read_bytes()[:4] == b"\x89PNG"
    # the folder above the sweeps is refused with the sweep folders it holds, newest first
    for given, why in [
        (tmp_path, f"no study.yaml; sweep folders below it, newest first: {tmp_path / 'second'}, "),
        (tmp_path / "nowhere", "it does not exist"),
    ]:
        with pytest.raises(SystemExit):
            report_main([str(given)])
        assert f"{given} is not a sweep folder ({why}" in capsys.readouterr().err

    # resuming with another search space is refused before any trial runs
    with pytest.raises(SystemExit):
        run_sweep(tmp_path, monkeypatch, "third", *common, "model.optimizer.lr=choice(0.1,0.2)")
    assert len(load(tmp_path, "basic").get_trials()) == 3


FAULT = ["+callbacks.fault._target_=tests.test_sweeper.FaultInjection", "hydra/sweeper/sampler=grid"]


@pytest.mark.filterwarnings("ignore:Encountered `nan` values")
def test_failed_and_nan_trials_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    modes = "choice(none,raise,nan_weights,nan_return,user_error)"
    run_sweep(
        tmp_path,
        monkeypatch,
        "faults",
        *FAULT,
        f"+callbacks.fault.mode={modes}",
        "hydra.sweeper.study_name=faults",
        "hydra.sweeper.n_trials=null",
        "hydra.sweeper.max_failure_rate=1.0",
    )
    trials = {t.params["+callbacks.fault.mode"]: t for t in load(tmp_path, "faults").get_trials()}
    assert len(trials) == 5
    assert trials["none"].state == TrialState.COMPLETE and math.isfinite(trials["none"].value)
    expected_errors = {
        "raise": "RuntimeError: injected failure",
        "nan_weights": "training diverged at step 3: train/loss is nan",
        "nan_return": "the task returned None",
        "user_error": "injected user mistake",
    }
    for mode, error in expected_errors.items():
        assert trials[mode].state == TrialState.FAIL, mode
        assert error in trials[mode].user_attrs["error"], trials[mode].user_attrs
    assert "Failed trials:" in (tmp_path / "faults" / "summary.md").read_text()


def test_too_many_failures_stop_the_sweep(tmp_path, monkeypatch):
    with pytest.raises(SystemExit):
        run_sweep(
            tmp_path,
            monkeypatch,
            "stopped",
            *FAULT,
            "+callbacks.fault.mode=choice(raise,user_error)",
            "hydra.sweeper.study_name=stopped",
            "hydra.sweeper.n_trials=null",
            "hydra.sweeper.max_failure_rate=0",
        )
    trials = load(tmp_path, "stopped").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL]  # stopped after the first failure
    assert (tmp_path / "stopped" / "summary.md").exists()


def test_a_failing_sweep_stops_at_its_share_of_the_planned_trials_in_one_line(tmp_path, monkeypatch, capsys):
    # every trial fails; the default max_failure_rate=0.25 of 3 planned allows one failure
    with pytest.raises(SystemExit) as stopped:
        run_sweep(
            tmp_path,
            monkeypatch,
            "failing",
            *FAULT,
            "+callbacks.fault.mode=raise",
            "model.optimizer.lr=choice(0.01,0.02,0.03)",
            "hydra.sweeper.study_name=failing",
            "hydra.sweeper.n_trials=null",
        )
    assert stopped.value.code == 2
    assert [t.state for t in load(tmp_path, "failing").get_trials()] == [TrialState.FAIL] * 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "error: the sweep stopped: 2 of its 2 trials failed, more than max_failure_rate=0.25 of the 3 "
        "planned allows (1); the first: trial 0: RuntimeError: injected failure"
    )


@pytest.mark.filterwarnings("ignore:Encountered `nan` values")
def test_one_nan_trial_does_not_stop_a_small_sweep(tmp_path, monkeypatch):
    run_sweep(
        tmp_path,
        monkeypatch,
        "one_nan",
        *FAULT,
        "+callbacks.fault.mode=choice(nan_return,none,unused)",  # only nan_return breaks a trial
        "hydra.sweeper.study_name=one_nan",
        "hydra.sweeper.n_trials=null",
    )
    states = sorted(t.state.name for t in load(tmp_path, "one_nan").get_trials())
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]


def test_a_sweep_whose_trials_would_run_ddp_is_refused_before_any_trial(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as refused:
        run_sweep(
            tmp_path,
            monkeypatch,
            "ddp",
            *SEARCH,
            "hydra.sweeper.study_name=ddp",
            "+trainer.strategy=ddp",
            "trainer.devices=2",
        )
    assert refused.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: a sweep trial runs in one process, not 2 (DDP)"), err
    assert not (tmp_path / "outputs" / "sweeps" / "ddp.db").exists()  # no study, no trial


def test_the_trial_reporter_refuses_a_multi_process_trial_too():
    """The backstop where the sweeper cannot tell the world size from the config."""
    from types import SimpleNamespace

    from movielab.sweeps.active_trial import trial_running
    from movielab.sweeps.trial_reporter import TrialReporter

    study = optuna.create_study()
    trainer = SimpleNamespace(is_global_zero=True, world_size=4)
    with trial_running(study.ask()), pytest.raises(MovielabError, match="not 4 \\(DDP\\)"):
        TrialReporter().on_fit_start(trainer, None)
    TrialReporter().on_fit_start(trainer, None)  # outside a sweep: nothing to refuse


def test_the_pruner_stops_a_clearly_worse_trial(tmp_path, monkeypatch):
    # one factor at a time: lr 0.01 (baseline), then 0.02, then 1e-6, which barely learns
    run_sweep(
        tmp_path,
        monkeypatch,
        "pruned",
        "model.optimizer.lr=choice(0.01,0.02,1e-6)",
        "hydra.sweeper.study_name=pruned",
        "hydra.sweeper.design=one_factor",
        "hydra.sweeper.n_trials=null",
        "hydra/sweeper/pruner=median",
        "hydra.sweeper.pruner.n_startup_trials=2",
        "hydra.sweeper.pruner.n_warmup_steps=0",
    )
    trials = load(tmp_path, "pruned").get_trials()
    assert [t.params["model.optimizer.lr"] for t in trials] == [0.01, 0.02, 1e-6]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    slow = trials[2]
    assert slow.user_attrs["steps"] < 12  # stopped before the end
    first_validation = {t.number: t.intermediate_values[1] for t in trials}
    assert first_validation[2] > max(first_validation[0], first_validation[1])
    summary = (tmp_path / "pruned" / "summary.md").read_text()
    assert "0.01 (baseline)" in summary and "(pruned at validation 1)" in summary


def test_one_factor_cells_queued_twice_by_workers_that_started_together_run_once(tmp_path, monkeypatch):
    # two workers that started at once each found no cell queued and queued every cell
    (tmp_path / "outputs" / "sweeps").mkdir(parents=True)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/outputs/sweeps/racing.db", study_name="racing")
    for _ in range(2):
        study.enqueue_trial(
            {"model.optimizer.lr": 0.01}, user_attrs={"cell": "baseline", "factor": "baseline"}
        )
        study.enqueue_trial(
            {"model.optimizer.lr": 0.02},
            user_attrs={"cell": "model.optimizer.lr=0.02", "factor": "model.optimizer.lr"},
        )
    run_sweep(
        tmp_path,
        monkeypatch,
        "racing",
        "model.optimizer.lr=choice(0.01,0.02)",
        "hydra.sweeper.study_name=racing",
        "hydra.sweeper.design=one_factor",
        "hydra.sweeper.n_trials=null",
    )
    trials = load(tmp_path, "racing").get_trials()
    assert [(t.number, t.state) for t in trials] == [
        (0, TrialState.COMPLETE),
        (1, TrialState.COMPLETE),
        (2, TrialState.FAIL),
        (3, TrialState.FAIL),
    ]
    assert [t.user_attrs.get("duplicate_of") for t in trials] == [None, None, 0, 1]
    summary = (tmp_path / "racing" / "summary.md").read_text()
    assert "Failed trials" not in summary and "0.01 (baseline)" in summary


def _wait_for_a_running_trial(
    storage: str, name: str, worker: subprocess.Popen, timeout_s: float = 240
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert worker.poll() is None, worker.communicate()[1].decode()[-3000:]
        try:
            if optuna.load_study(study_name=name, storage=storage).get_trials(states=(TrialState.RUNNING,)):
                return
        except KeyError:  # the study does not exist yet
            pass
        time.sleep(0.2)
    raise AssertionError("the other worker never started a trial")


def test_two_processes_share_one_study_without_running_a_trial_twice(tmp_path, monkeypatch, capsys):
    """A worker process starts the study; while its trial runs, this process joins the same study."""
    storage = f"sqlite:///{tmp_path}/shared.db"
    shared = [*SEARCH, f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=shared"]
    other = subprocess.Popen(
        [
            *(sys.executable, "-m", "movielab.train", "-m", *TINY_SWEEP, *shared),
            *(f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={tmp_path / 'other'}"),
            *("hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.seed=0", "trainer.max_steps=40"),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_a_running_trial(storage, "shared", other)
        run_sweep(
            tmp_path, monkeypatch, "this", *shared, "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.seed=1"
        )
    finally:
        _, stderr = other.communicate(timeout=300)
    assert other.returncode == 0, stderr.decode()[-3000:]
    # this process found the other's trial running on SQLite, and said what to use instead
    assert "of this SQLite study runs in another worker" in capsys.readouterr().out

    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    ran = {w: {int(p.name) for p in (tmp_path / w).iterdir() if p.name.isdigit()} for w in ("other", "this")}
    assert len(ran["other"]) == len(ran["this"]) == 2 and not ran["other"] & ran["this"]
    for trial in trials:
        worker = "other" if trial.number in ran["other"] else "this"
        assert trial.user_attrs["run_dir"] == str(tmp_path / worker / str(trial.number))
    by = {w: [t for t in trials if t.number in ran[w]] for w in ran}
    assert any(  # the two processes really ran trials at the same time
        a.datetime_start < b.datetime_complete and b.datetime_start < a.datetime_complete
        for a in by["this"]
        for b in by["other"]
    )


# -- without training ------------------------------------------------------------------------------
def test_params_use_hydra_sweep_syntax():
    space = parse_search_space(
        [
            "a=choice(10,40)",
            "b=range(1,4)",
            "c=interval(0.1,0.5)",
            "d=int(interval(2,8))",
            "e=tag(log,interval(1e-4,1e-2))",
            "f=choice(relu,gelu)",
            "trainer.max_steps=5",
            "+extra=x",
            "a=choice(10,20,40)",  # the command line wins over params
        ]
    )
    d = space.distributions
    assert d["a"] == CategoricalDistribution([10, 20, 40])
    assert d["b"] == IntDistribution(1, 3)
    assert d["c"] == FloatDistribution(0.1, 0.5)
    assert d["d"] == IntDistribution(2, 8)
    assert d["e"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert d["f"] == CategoricalDistribution(["relu", "gelu"])
    assert space.fixed == {"trainer.max_steps": "trainer.max_steps=5", "+extra": "+extra=x"}
    assert space.overrides({"a": 40, "f": "gelu"}) == ["trainer.max_steps=5", "+extra=x", "a=40", "f=gelu"]
    with pytest.raises(MovielabError, match="a grid needs choice"):
        space.grid()


def test_one_factor_cells_vary_one_param_at_a_time_from_the_first_choices():
    space = parse_search_space(["seq=choice(10,40)", "lr=choice(0.001,0.01,0.0001)", "layers=choice(2,3)"])
    cells = space.one_factor_cells()
    assert cells[0] == ("baseline", {"seq": 10, "lr": 0.001, "layers": 2})
    assert [factor for factor, _ in cells[1:]] == ["seq", "lr", "lr", "layers"]
    assert ("lr", {"seq": 10, "lr": 0.0001, "layers": 2}) in cells
    assert len(cells) == 1 + 1 + 2 + 1  # not the 12 of the full grid


@pytest.mark.parametrize("sampler", ["tpe", "random", "grid", "cmaes"])
def test_every_sampler_config_runs_an_ask_tell_study(sampler):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(
            "train",
            overrides=[
                "hydra/sweeper=movielab_optuna",
                f"hydra/sweeper/sampler={sampler}",
                "hydra/sweeper/pruner=hyperband",
            ],
            return_hydra_config=True,
        )
    factory = instantiate(cfg.hydra.sweeper.sampler)
    assert isinstance(instantiate(cfg.hydra.sweeper.pruner)(), optuna.pruners.HyperbandPruner)
    space = parse_search_space(["x=range(-3,4)", "y=choice(1,2)"])
    made = factory(search_space=space.grid()) if sampler == "grid" else factory(seed=0)
    study = optuna.create_study(sampler=made)
    for _ in range(14):
        trial = study.ask()
        x = trial.suggest_int("x", -3, 3)
        y = trial.suggest_categorical("y", [1, 2])
        tell(study, trial, (x - 1) ** 2 + y)  # study.tell, letting the grid end
    assert study.best_value <= 2  # found x=1 (or next to it) with y=1


def test_steps_for_tokens_gives_each_run_the_same_token_budget():
    assert steps_for_tokens(1_000_000, 256, 10) == 391
    assert steps_for_tokens(1_000_000, 128, 40) == 196
    assert steps_for_tokens(10, 256, 40) == 1
    assert mul(3, 64) == 192


@pytest.mark.parametrize("search", ["seinfeld_tables", "seinfeld_lstm_tpe"])
def test_seinfeld_sweeps_give_every_cell_the_same_tokens(tmp_path, search):
    """Every cell of the tables (and the TPE extremes) trains on the same number of tokens, validates
    at the same shares of it on the same held-out tokens, and ends on a validation."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        base = compose("train", overrides=[f"hparams_search={search}"], return_hydra_config=True)
        space = parse_search_space([f"{k}={v}" for k, v in base.hydra.sweeper.params.items()])
        cells = (
            [params for _, params in space.one_factor_cells()]
            if search == "seinfeld_tables"
            else [
                {"model.net.config.block_size": t, "data.batching.batch_size": b}
                for t, b in ((10, 64), (40, 256))
            ]
        )
        seen = set()
        for params in cells:
            cfg = compose(
                "train",
                overrides=[
                    f"hparams_search={search}",
                    f"paths.root_dir={tmp_path}",
                    *space.overrides(params),
                ],
            )
            block, batch = cfg.model.net.config.block_size, cfg.data.batching.batch_size
            assert cfg.trainer.max_steps % cfg.trainer.val_check_interval == 0  # the last step validates
            assert cfg.trainer.max_steps // cfg.trainer.val_check_interval == cfg.budget.validations
            seen.add((cfg.trainer.max_steps * block * batch, cfg.data.batching.val_max_windows * block))
    assert seen == {(cfg.budget.validations * cfg.budget.tokens_per_validation, cfg.budget.val_tokens)}
    assert len(cells) == (9 if search == "seinfeld_tables" else 2)


def test_report_recognises_a_one_factor_sweep():
    study = optuna.create_study()
    lr = CategoricalDistribution([0.001, 0.01])
    layers = CategoricalDistribution([2, 3])
    for params, value in [
        ({"lr": 0.001, "layers": 2}, 4.0),
        ({"lr": 0.01, "layers": 2}, 3.5),
        ({"lr": 0.001, "layers": 3}, 4.2),
    ]:
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={"lr": lr, "layers": layers},
                value=value,
                user_attrs={
                    "trial_s": 90.0,
                    "tokens_per_s": 1234.4,
                    "peak_memory_mb": 800.0,
                    "cpu_util_pct": 150.0,
                },
            )
        )
    report = build_report(study)
    assert report.baseline == {"layers": 2, "lr": 0.001}
    assert [row.value for row in report.tables["lr"]] == [0.001, 0.01]
    text = to_markdown(report)
    assert "| 0.01 | 3.5000 | 90 s | 1,234 | 800 MB | 150% |" in text
    assert "| 3 | 4.2000 |" in text
