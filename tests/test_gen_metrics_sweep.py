"""A multi-objective sweep on generated-text metrics: val/loss with gen/distinct_2 and gen/copy_rate
from `+callbacks/gen_metrics=at_end`, NSGA-II; every trial records every objective from its run's
final metrics, and the same command again continues the persisted study."""

from __future__ import annotations

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from tests.test_sweeper import load, run_sweep

OBJECTIVES = ["val/loss", "gen/distinct_2", "gen/copy_rate"]
SWEEP = [
    "hydra.sweeper.objectives={val/loss:minimize,gen/distinct_2:maximize,gen/copy_rate:minimize}",
    "hydra/sweeper/sampler=nsgaii",
    "hydra.sweeper.sampler.seed=0",
    "hydra.sweeper.study_name=gen",
    "model.optimizer.lr=tag(log,interval(1e-3,3e-2))",
    "model.net.config.dropout=interval(0.0,0.3)",
    "+callbacks/gen_metrics=at_end",
    "callbacks.gen_metrics.num_samples=4",
    "callbacks.gen_metrics.max_new_tokens=40",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_sweep_on_gen_metrics_records_every_objective_per_trial_and_resumes(tmp_path, monkeypatch):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_sweep(tmp_path, monkeypatch, "first", *SWEEP, "hydra.sweeper.n_trials=2")
    first = load(tmp_path, "gen").trials
    assert len(first) == 2
    run_sweep(tmp_path, monkeypatch, "second", *SWEEP, "hydra.sweeper.n_trials=1")
    study = load(tmp_path, "gen")
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE", "MINIMIZE"]
    trials = study.trials
    assert len(trials) == 3 and [t.params for t in trials[:2]] == [t.params for t in first]
    for trial in trials:
        assert trial.state == TrialState.COMPLETE
        metrics = trial.user_attrs["metrics"]
        assert trial.values == [metrics[name] for name in OBJECTIVES]
        assert 0 < metrics["gen/distinct_2"] <= 1 and 0 <= metrics["gen/copy_rate"] <= 1
        assert {"gen/self_bleu_4", "gen/novelty_4gram", "gen/bleu_4"} <= set(metrics)
    front = OmegaConf.load(tmp_path / "second" / "pareto_front.yaml")
    assert {t.number for t in front.front} <= {t.number for t in trials} and front.front
    summary = (tmp_path / "second" / "summary.md").read_text()
    assert all(name in summary for name in OBJECTIVES)
