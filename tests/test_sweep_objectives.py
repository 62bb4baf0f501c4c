"""Multi-objective and constrained sweeps: a tiny two-objective sweep records every objective per
trial from the run's final metrics, marks the trial that misses its constraint, and resumes; the
Pareto report marks exactly the non-dominated feasible trials of a hand-made study; objectives and
constraints are checked where they are read."""

from __future__ import annotations

import math

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from movielab.errors import MovielabError
from movielab.sweeps.objectives import MetricUnavailable, Objectives, parse_constraint
from movielab.sweeps.pareto_report import ParetoReport, build_pareto_report, pareto_markdown, pareto_plot_png
from movielab.sweeps.report import build_report
from tests.test_sweeper import load, run_sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)

MULTI = [
    "hydra.sweeper.objectives={val/loss:minimize,train/loss:minimize}",
    "hydra.sweeper.constraints=['val/loss <= 4.0']",
    "hydra/sweeper/sampler=grid",
    "model.optimizer.lr=choice(0.02,0.01,1e-5)",  # 1e-5 barely learns: val/loss stays near 4.4
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_two_objective_sweep_records_every_objective_marks_infeasible_trials_and_resumes(
    tmp_path, monkeypatch
):
    run_sweep(
        tmp_path, monkeypatch, "first", *MULTI, "hydra.sweeper.study_name=mo", "hydra.sweeper.n_trials=2"
    )
    study = load(tmp_path, "mo")
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    assert len(study.trials) == 2
    # the same command with n_trials=null finishes the grid: one more trial, none run twice
    run_sweep(
        tmp_path, monkeypatch, "second", *MULTI, "hydra.sweeper.study_name=mo", "hydra.sweeper.n_trials=null"
    )
    trials = load(tmp_path, "mo").trials
    assert sorted(t.params["model.optimizer.lr"] for t in trials) == [1e-5, 0.01, 0.02]
    for trial in trials:
        assert trial.state == TrialState.COMPLETE
        metrics = trial.user_attrs["metrics"]
        assert trial.values == [metrics["val/loss"], metrics["train/loss"]]
        assert trial.constraints == {"val/loss <= 4": pytest.approx(metrics["val/loss"] - 4.0)}
    slow = next(t for t in trials if t.params["model.optimizer.lr"] == 1e-5)
    fast = [t for t in trials if t is not slow]
    assert slow.values[0] > 4.0 > max(t.values[0] for t in fast)  # the constraint splits them
    summary = (tmp_path / "second" / "summary.md").read_text()
    assert f"| {slow.number} | complete (infeasible: misses `val/loss <= 4`) |  |" in summary
    front = OmegaConf.load(tmp_path / "second" / "pareto_front.yaml")
    assert slow.number not in {t.number for t in front.front}
    assert {t.number for t in front.front} <= {t.number for t in fast} and len(front.front) >= 1
    assert (tmp_path / "second" / "pareto_front.png").read_bytes()[:4] == b"\x89PNG"


def test_an_objective_the_run_did_not_log_fails_the_trial_naming_the_metrics_that_exist(
    tmp_path, monkeypatch
):
    run_sweep(
        tmp_path,
        monkeypatch,
        "missing",
        "hydra.sweeper.objectives={val/loss:minimize,gen/distinct_2:maximize}",
        "model.optimizer.lr=choice(0.01,0.02)",
        "hydra.sweeper.study_name=missing",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.max_failure_rate=1",
    )
    [trial] = load(tmp_path, "missing").trials
    assert trial.state == TrialState.FAIL
    error = trial.user_attrs["error"]
    assert error.startswith("the objective gen/distinct_2 is not among the run's final metrics (")
    assert "val/loss" in error and "train/loss" in error


@pytest.mark.parametrize(
    "option, message",
    [
        ("hydra/sweeper/pruner=median", "Optuna prunes single-objective studies only"),
        ("hydra/sweeper/sampler=cmaes", "sampler=cmaes optimises one objective"),
    ],
)
def test_multiple_objectives_refuse_a_pruner_and_cma_es_in_one_line(
    tmp_path, monkeypatch, capsys, option, message
):
    with pytest.raises(SystemExit) as refused:
        run_sweep(
            tmp_path,
            monkeypatch,
            "refused",
            "hydra.sweeper.objectives={val/loss:minimize,train/loss:minimize}",
            "model.optimizer.lr=choice(0.01,0.02)",
            option,
        )
    assert refused.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last


def _study_of(points: dict[str, tuple[float, float, float | None]]) -> tuple[optuna.Study, dict[str, int]]:
    """A hand-made study to minimize x and maximize y; a third number is a constraint violation."""
    study = optuna.create_study(directions=["minimize", "maximize"])
    study.set_user_attr("objectives", ["x", "y"])
    study.set_user_attr("constraints", ["c <= 0"])
    lr = FloatDistribution(1e-9, 1.0, log=True)
    numbers = {}
    for i, (name, (x, y, violation)) in enumerate(points.items()):
        study.add_trial(
            create_trial(
                params={"lr": 10 ** -(i + 1)},
                distributions={"lr": lr},
                values=[x, y],
                system_attrs={"constraints:c <= 0": violation} if violation is not None else {},
            )
        )
        numbers[name] = i
    return study, numbers


def test_the_pareto_report_marks_exactly_the_non_dominated_feasible_trials():
    study, n = _study_of(
        {
            "a": (1.0, 5.0, -1.0),
            "b": (2.0, 6.0, 0.0),  # a violation of exactly 0 meets the constraint
            "dominated": (2.0, 4.0, -1.0),  # a is better on both
            "d": (0.5, 1.0, -1.0),
            "e": (3.0, 7.0, -1.0),
            "infeasible": (0.1, 10.0, 0.2),  # would beat every trial, but misses the constraint
            "tied": (2.0, 6.0, -1.0),  # equal to b: neither dominates the other
        }
    )
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"error": "RuntimeError: boom"}))
    report = build_report(study)
    assert isinstance(report, ParetoReport)  # build_report chooses it for a two-objective study
    front = {t.number for t in report.front}
    assert front == {n["a"], n["b"], n["d"], n["e"], n["tied"]}
    best = report.best_per_objective()
    assert [t.number for t in best] == [n["d"], n["e"]]  # the infeasible trial is never best
    text = pareto_markdown(report)
    rows = {
        line.split(" | ")[0].strip("| "): line for line in text.split("## All trials")[1].splitlines()[3:]
    }
    for name, number in n.items():
        on_front = rows[str(number)].split(" | ")[2].strip() == "yes"
        assert on_front == (number in front), name
    assert "complete (infeasible: misses `c <= 0`)" in rows[str(n["infeasible"])]
    assert "1 completed trials miss one" in text
    assert "- trial 7: RuntimeError: boom" in text
    assert "| minimize x | 3 | 0.5000 | y = 1.0000 |" in text
    assert pareto_plot_png(report)[:4] == b"\x89PNG"


def test_three_objectives_plot_every_pair():
    study = optuna.create_study(directions=["minimize", "maximize", "minimize"])
    for values in ([1, 1, 1], [2, 2, 0], [0, 0, 2], [3, 0, 3]):
        study.add_trial(create_trial(values=values))
    report = build_pareto_report(study)
    assert {t.number for t in report.front} == {0, 1, 2}  # trial 3 is worse than trial 0 on all three
    assert pareto_plot_png(report)[:4] == b"\x89PNG"


def test_constraints_and_objectives_are_checked_where_they_are_read():
    assert parse_constraint("gen/copy_rate<=0.05").violation(0.08) == pytest.approx(0.03)
    assert parse_constraint(" gen/distinct_2 >= 0.5 ").violation(0.7) == pytest.approx(-0.2)
    for bad in ("gen/copy_rate < 0.05", "0.05 >= gen/copy_rate", "gen/copy_rate <= lots"):
        with pytest.raises(MovielabError, match="hydra.sweeper.constraints"):
            parse_constraint(bad)
    with pytest.raises(MovielabError, match="objectives.val/loss=lowest: expected minimize or maximize"):
        Objectives.from_config({"val/loss": "lowest"}, "val/loss", "minimize", None)
    objectives = Objectives.from_config(
        {"val/loss": "minimize", "val/ppl": "maximize"}, "x", "minimize", None
    )
    assert objectives.is_multi and objectives.from_metrics
    assert objectives.values({"val/loss": 3.0, "val/ppl": 20.0, "train/loss": 2.9}) == [3.0, 20.0]
    with pytest.raises(MetricUnavailable, match=r"objective val/ppl is not .* \(train/loss, val/loss\)"):
        objectives.values({"val/loss": 3.0, "train/loss": 2.9})
    with pytest.raises(MetricUnavailable, match="objective val/loss is nan"):
        objectives.values({"val/loss": math.nan, "val/ppl": 1.0})
    single = Objectives.from_config(None, "val/loss_best", "minimize", ["val/loss <= 4"])
    assert single.names == ["val/loss_best"] and not single.from_metrics and not single.is_multi


@pytest.mark.parametrize("sampler", ["tpe", "nsgaii", "random"])
def test_multi_objective_samplers_run_a_constrained_ask_tell_study(sampler):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from tests.conftest import CONF_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(
            "train",
            overrides=["hydra/sweeper=movielab_optuna", f"hydra/sweeper/sampler={sampler}"],
            return_hydra_config=True,
        )
    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=instantiate(cfg.hydra.sweeper.sampler)(seed=0)
    )
    for _ in range(24):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.set_constraint("x >= 0.2", 0.2 - x)  # what the sweeper does with hydra.sweeper.constraints
        study.tell(trial, [x, (1 - x) ** 2])
    assert study.best_trials and all(t.params["x"] >= 0.2 for t in study.best_trials)
