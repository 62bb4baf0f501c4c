"""Killed runs resume exactly: SIGKILL (nothing cleans up) and SIGTERM/SIGINT (a graceful stop)
for the char GPT, the LSTM, the title transformer and the GAN (killed inside a critic cycle):
every logged training value after the resume and the final weights and optimizer moments equal
those of the run that was never stopped."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import pytest

from tests import fault_runs


def _logged_training(run_dir: Path) -> dict[tuple[int, str], float]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return {
            (int(row["step"]), name): float(value)
            for row in csv.DictReader(handle)
            for name, value in row.items()
            if name.startswith("train/") and value
        }


@pytest.mark.parametrize(
    ("kind", "steps", "kill_at"),
    [("char_gpt", 12, 6), ("lstm", 12, 6), ("title_transformer", 12, 6), ("text_gan", 12, 6)],
)
def test_a_sigkilled_run_resumes_to_the_same_weights_and_losses(tmp_path, kind, steps, kill_at):
    common = [
        *fault_runs.KINDS[kind],
        *fault_runs.QUIET,
        f"trainer.max_steps={steps}",
        "trainer.val_check_interval=4",
    ]
    # every run in a child with one thread: reductions then sum in the same order in all three
    assert fault_runs.run(tmp_path / "full", common) == 0
    kill = ["+callbacks.kill._target_=tests.fault_runs.KillAtStep", f"+callbacks.kill.step={kill_at}"]
    assert fault_runs.run(tmp_path / "killed", [*common, *kill]) == -signal.SIGKILL
    last = tmp_path / "killed" / "run" / "checkpoints" / "last.ckpt"
    resumed_from = fault_runs.complete_step(last)
    assert 0 < resumed_from < kill_at  # a checkpoint from before the kill, mid-cycle for the GAN
    assert fault_runs.run(tmp_path / "resumed", [*common, f"ckpt_path={last}"]) == 0

    full, resumed = tmp_path / "full" / "run", tmp_path / "resumed" / "run"
    assert fault_runs.complete_step(resumed / "checkpoints" / "last.ckpt") == steps
    assert (
        fault_runs.same_weights(full / "checkpoints" / "last.ckpt", resumed / "checkpoints" / "last.ckpt")
        == []
    )
    before, after = _logged_training(full), _logged_training(resumed)
    assert after and {key: before.get(key) for key in after} == after
    assert {step for step, _ in after} == {step for step, _ in before if step >= resumed_from}
