"""The Lightning callback through which a training run talks to the sweep trial it is part of."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning as L

from movielab.data.batching import tokens_in
from movielab.errors import MovielabError
from movielab.sweeps.active_trial import active_trial
from movielab.sweeps.objectives import METRICS_ATTR, scalar_metrics
from movielab.sweeps.resource_meter import ResourceMeter

log = logging.getLogger(__name__)


class TrialReporter(L.Callback):
    """Inside a sweep trial: after each validation, report `monitor` to the trial (step = the
    validation's number, 1, 2, ..., so trials with different batch sizes compare at the same share
    of their budget), stop the run when the pruner says so (`optuna.TrialPruned`) or when the loss
    is not finite (the trial then fails), and record as the trial's user attributes what the run
    cost (fit_s, train_tokens, tokens_per_s, peak_memory_mb, cpu_util_pct / gpu_util_pct) and the
    metrics it ended with (`metrics`: every scalar of `trainer.callback_metrics`, from which a
    multi-objective sweep reads its objectives).

    A multi-objective study is not reported to (Optuna prunes single objectives only). A trial on
    several processes (DDP) is refused: Lightning would start each extra rank as a copy of the
    sweep command. Outside a sweep (no active trial) it does nothing.
    """

    def __init__(self, monitor: str = "val/loss") -> None:
        self.monitor = monitor
        self.trial = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.trial = active_trial() if trainer.is_global_zero else None
        if self.trial is None:
            return
        if trainer.world_size > 1:
            raise MovielabError(multi_process_refusal(trainer.world_size))
        self.reports = len(self.trial.study.directions) == 1
        self.validations = 0
        self.train_tokens = 0
        self.train_s = 0.0
        self.recorded = False
        self.meter = ResourceMeter(pl_module.device)
        self.meter.start()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ):
        if self.trial is not None:
            self._batch_started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Any, batch_idx: int) -> None:
        if self.trial is None:
            return
        self.train_s += time.perf_counter() - self._batch_started
        if isinstance(batch, dict) and "inputs" in batch:
            self.train_tokens += tokens_in(batch)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.trial is None or trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        self.validations += 1
        if not math.isfinite(value):
            raise FloatingPointError(
                f"{self.monitor} is {value} at validation {self.validations} (step {trainer.global_step})"
            )
        if not self.reports:
            return
        self.trial.report(value, self.validations)
        finished = 0 < trainer.max_steps <= trainer.global_step  # nothing left to save by stopping
        if not finished and self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(
                f"pruned at validation {self.validations} (step {trainer.global_step}): "
                f"{self.monitor}={value:.4f}"
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after every callback's on_train_end: the metrics the run ends with
        if self.trial is not None:
            self.trial.set_user_attr(METRICS_ATTR, scalar_metrics(trainer.callback_metrics))
        self._record(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._record(trainer)

    def _record(self, trainer: L.Trainer) -> None:
        if self.trial is None or self.recorded:
            return
        self.recorded = True
        figures: dict[str, Any] = {
            **self.meter.stop(),
            "train_tokens": self.train_tokens,
            "tokens_per_s": self.train_tokens / self.train_s if self.train_s > 0 else None,
            "steps": trainer.global_step,
            "validations": self.validations,
            "device": str(trainer.strategy.root_device),
        }
        for name, value in figures.items():
            if value is not None:
                self.trial.set_user_attr(name, value)


def multi_process_refusal(world_size: int) -> str:
    return (
        f"a sweep trial runs in one process, not {world_size} (DDP): Lightning would start each "
        "extra rank as a copy of the sweep command. Give the trials one device (trainer.devices=1, "
        "trainer.num_nodes=1) and run one sweep process per device on a shared storage "
        "(e.g. CUDA_VISIBLE_DEVICES=0 python -m movielab.train -m ... & CUDA_VISIBLE_DEVICES=1 ...)"
    )
