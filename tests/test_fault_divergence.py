"""A diverging run stops cleanly and keeps the good weights: with model.optimizer.lr=1e30 every
model kind stops with one line naming the step and the metric, and with NaN put into a weight
after a checkpoint, the checkpoints written before stay byte for byte as they were, load, and
hold finite weights; a NaN is never a "best"."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch

from movielab.checkpoint import load_model, read_checkpoint
from movielab.cli.train import train
from movielab.errors import TrainingDiverged
from tests import fault_runs
from tests.conftest import compose_config

HUGE_LR = {
    "char_gpt": ["model.optimizer.lr=1e30"],
    "lstm": ["model.optimizer.lr=1e30"],
    "title_transformer": ["model.optimizer.lr=1e30"],
    "genre_classifier": ["model.optimizer.lr=1e30"],
    "text_gan": [
        "model.critic_optimizer.lr=1e30",
        "model.generator_optimizer.lr=1e30",
        "model.pretrain_optimizer.lr=1e30",
    ],
}


def _checkpoints(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("*.ckpt")) if (run / "checkpoints").is_dir() else []


def _finite(path: Path) -> bool:
    state = read_checkpoint(path)["state_dict"]
    return all(
        bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point() and t.numel() > 1
    )


@pytest.mark.parametrize("kind", sorted(HUGE_LR))
def test_a_huge_learning_rate_stops_the_run_in_one_line_for_every_model(tmp_path, kind):
    overrides = [*fault_runs.KINDS[kind], *fault_runs.QUIET, *HUGE_LR[kind]]
    cfg = compose_config(tmp_path, [*overrides, "trainer.max_steps=40", "trainer.val_check_interval=2"])
    with pytest.raises(TrainingDiverged) as raised:
        train(cfg)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"training diverged at step {raised.value.step}: ")
    assert raised.value.metric in message and 0 < raised.value.step < 40
    for path in _checkpoints(tmp_path / "run"):  # whatever was written before is finite and loads
        assert _finite(path), path
        model = load_model(path)
        assert model.step < raised.value.step
        assert all(math.isfinite(v) for v in model.metrics.values())


class PoisonAfterStep(L.Callback):
    """After optimizer step `step`, writes NaN into one weight and notes the checkpoints' digests."""

    def __init__(self, step: int, record: str) -> None:
        self.step, self.record = step, record

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step != self.step:
            return
        folder = Path(trainer.default_root_dir) / "checkpoints"
        digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.ckpt"))}
        Path(self.record).write_text(json.dumps(digests))
        with torch.no_grad():
            next(pl_module.parameters()).view(-1)[0] = float("nan")


@pytest.mark.parametrize(
    ("poisoned", "caught_by"),
    [(5, "train/loss"), (4, "the weight net.wte.weight")],  # step 4 validates: the weights are checked first
)
def test_nan_weights_never_replace_the_checkpoints_from_before(tmp_path, poisoned, caught_by):
    record = tmp_path / "digests.json"
    poison = [
        "+callbacks.poison._target_=tests.test_fault_divergence.PoisonAfterStep",
        f"+callbacks.poison.step={poisoned}",
        f"+callbacks.poison.record={record}",
    ]
    overrides = [*fault_runs.KINDS["char_gpt"], *fault_runs.QUIET, *poison]
    cfg = compose_config(tmp_path, [*overrides, "trainer.max_steps=12", "trainer.val_check_interval=2"])
    with pytest.raises(TrainingDiverged, match=f"at step {poisoned + (poisoned % 2)}: {caught_by}"):
        train(cfg)
    before = json.loads(record.read_text())
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in _checkpoints(tmp_path / "run")}
    assert before == after and "last.ckpt" in after and len(after) == 2  # last and the one best
    last_step = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"]
    assert last_step == (4 if poisoned == 5 else 2)
    assert all(_finite(p) for p in _checkpoints(tmp_path / "run"))


def test_a_nan_score_is_never_kept_as_a_best():
    from movielab.callbacks import BestCheckpoints

    best = BestCheckpoints(monitor="val/loss", mode="min", save_top_k=1)
    assert best.check_monitor_top_k(None, torch.tensor(float("nan"))) is False
    assert best.check_monitor_top_k(None, torch.tensor(float("inf"))) is False
