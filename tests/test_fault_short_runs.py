"""A run shorter than its validation interval still leaves its work: for every model kind, a run
of 3 steps with val_check_interval=100 leaves a last.ckpt at step 3 that generate (or predict)
reads, and the summary names it, says no validation ran and points TensorBoard at the run.
Resuming under another architecture is one line; the progress bar counts steps."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import pytest

from movielab.callbacks import StepProgressBar
from movielab.checkpoint import load_model, read_checkpoint
from movielab.cli import train as train_cli
from movielab.cli.generate import generate_samples
from movielab.cli.predict import predict
from movielab.cli.train import train
from movielab.errors import MovielabError
from tests import fault_runs
from tests.conftest import TINY, compose_config


@pytest.mark.parametrize("kind", sorted(fault_runs.KINDS))
def test_a_run_shorter_than_the_validation_interval_leaves_a_checkpoint(tmp_path, capsys, kind):
    overrides = [
        *fault_runs.KINDS[kind],
        *fault_runs.QUIET,
        "trainer.max_steps=3",
        "trainer.val_check_interval=100",
    ]
    train(compose_config(tmp_path, overrides))
    out = capsys.readouterr().out
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert read_checkpoint(last)["global_step"] == 3
    # the command printed for it is the one that reads it: a classifier writes no text
    command = (
        "predict:      python -m movielab.predict"
        if kind == "genre_classifier"
        else "sample:       python -m movielab.generate"
    )
    assert f"last ckpt:    {last} (step 3)" in out and f"{command} ckpt={last}" in out
    assert "no validation ran: 3 steps < trainer.val_check_interval=100" in out
    if kind == "genre_classifier":
        cfg = compose_config(tmp_path, [f"ckpt={last}", "text=A ship sinks."], config_name="predict")
        assert len(predict(cfg)) == len(load_model(last).predictor.genres)
        return
    options = [f"ckpt={last}", "num_samples=2", "max_new_tokens=20", "seed=1", "save=false"]
    results = generate_samples(compose_config(tmp_path, options, config_name="generate"))
    assert len(results) == 2 and all(isinstance(r.text, str) for r in results)


def test_the_summary_points_tensorboard_at_a_custom_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "elsewhere" / "my-run"
    argv = [*TINY, "~callbacks.text_samples", "trainer.max_steps=2", f"hydra.run.dir={folder}"]
    monkeypatch.setattr(sys, "argv", ["movielab.train", *argv])
    train_cli.main()
    out = capsys.readouterr().out
    assert f"TensorBoard:  tensorboard --logdir {folder}\n" in out
    assert any((folder / "tensorboard").rglob("events.out.tfevents.*"))  # the folder holds the run's events


def test_resuming_under_another_architecture_is_one_line(tmp_path):
    common = [*TINY, "trainer.max_steps=2", "trainer.val_check_interval=2", "logger=csv"]
    train(compose_config(tmp_path / "first", common))
    last = tmp_path / "first" / "run" / "checkpoints" / "last.ckpt"
    wider = compose_config(tmp_path / "second", [*common, "model.net.config.n_embd=48", f"ckpt_path={last}"])
    with pytest.raises(
        MovielabError, match=r"holds another architecture \(n_embd: 32 in the checkpoint, 48 now\)"
    ):
        train(wider)
    assert not (tmp_path / "second" / "run" / "checkpoints").exists()


def test_the_progress_bar_counts_steps_not_epochs_of_minus_one():
    bar = StepProgressBar()
    trainer = L.Trainer(
        max_steps=600, max_epochs=-1, callbacks=[bar], logger=False, enable_model_summary=False
    )
    bar._trainer = trainer  # what Lightning's setup() sets
    assert bar._get_train_description(3).strip() == "Epoch 3"  # not "Epoch 3/-2"
    assert bar.get_metrics(trainer, None)["step"] == "0/600"
    by_epochs = StepProgressBar()
    by_epochs._trainer = L.Trainer(max_epochs=5, callbacks=[by_epochs], logger=False)
    assert by_epochs._get_train_description(1).strip() == "Epoch 1/4"


def test_the_default_progress_bar_is_the_step_counting_one(tmp_path):
    cfg = compose_config(Path(tmp_path), [])
    assert cfg.callbacks.progress_bar._target_ == "movielab.callbacks.StepProgressBar"
