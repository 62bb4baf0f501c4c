"""What every single-optimizer movielab LightningModule shares: its optimizer and schedule, and val/loss."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torchmetrics import MinMetric

from movielab.optim import optimizer_and_schedule


class TrainedModule(L.LightningModule):
    """One optimizer over the module's weights and, if given, a schedule stepped every optimizer
    step over trainer.max_steps; both are factories (Hydra `_partial_`). val/loss is logged with
    its best so far, a persistent MinMetric, so a resumed run's best is the same."""

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
    ) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.val_loss_best = MinMetric()
        self.val_loss_best.persistent(True)

    def log_validation_loss(self, loss: torch.Tensor) -> None:
        self.val_loss_best.update(loss)
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/loss_best", self.val_loss_best.compute())

    def configure_optimizers(self):  # noqa: ANN201 (Lightning accepts several shapes)
        return optimizer_and_schedule(
            self, lambda: self.trainer.max_steps, self.optimizer_factory, self.scheduler_factory
        )
