"""Next-token training, validation and sampling for any autoregressive net (GPT, LSTM, ...)."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from movielab.data.templates import Template
from movielab.data.tokenizers import Tokenizer
from movielab.errors import MovielabError
from movielab.optim import weight_decay_groups
from movielab.sampling import SamplingSettings, generate_tokens


class CausalLanguageModel(L.LightningModule):
    """Trains `net` (inputs (B, T) -> logits (B, T, V)) with cross-entropy on every next token.

    `optimizer` and `scheduler` are factories (Hydra `_partial_`); the scheduler receives the
    optimizer and `total_steps=trainer.max_steps` and is stepped every optimizer step.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.val_loss = MeanMetric()
        self.register_buffer("val_loss_best", torch.tensor(float("inf")))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.net(batch["inputs"])
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["targets"].flatten(), ignore_index=-100)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        tokens = (batch["targets"] != -100).sum()
        self.val_loss.update(self._loss(batch), weight=tokens)

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.val_loss.reset()
        if self.trainer.sanity_checking:
            return
        self.val_loss_best = torch.minimum(self.val_loss_best, loss.detach())
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/ppl", loss.exp())
        self.log("val/loss_best", self.val_loss_best)

    def configure_optimizers(self):  # noqa: ANN201 (Lightning accepts several shapes)
        optimizer = self.optimizer_factory(weight_decay_groups(self.net))
        if self.scheduler_factory is None:
            return optimizer
        total_steps = self.trainer.max_steps
        if total_steps is None or total_steps < 1:
            raise MovielabError(
                "trainer.max_steps must be set: the learning-rate schedule is laid out over it"
            )
        scheduler = self.scheduler_factory(optimizer, total_steps=total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "train/lr"},
        }

    @torch.inference_mode()
    def generate_text(
        self,
        tokenizer: Tokenizer,
        template: Template,
        num_samples: int,
        settings: SamplingSettings,
        generator: torch.Generator | None = None,
        **fields: object,
    ) -> list[str]:
        """Fill the template's prompt with `fields`, sample in one batch, cut each sample at the stop."""
        unknown = sorted(set(fields) - set(template.fields))
        if unknown:
            raise MovielabError(
                f"this model does not take {', '.join(unknown)}; "
                f"its prompt fields are {', '.join(template.fields)}"
            )
        prompt_text = template.prompt(**fields)
        prompt_ids = torch.as_tensor(tokenizer.encode(prompt_text), dtype=torch.long, device=self.device)
        if prompt_ids.numel() == 0:
            raise MovielabError("the prompt is empty: give a prompt field (e.g. title=...)")
        stop = tokenizer.encode(template.stop).tolist() if template.stop else None
        was_training = self.training
        self.eval()
        try:
            new = generate_tokens(self.net, prompt_ids.expand(num_samples, -1), settings, stop, generator)
        finally:
            self.train(was_training)
        texts = []
        for row in new.tolist():
            completion = tokenizer.decode(row)
            if template.stop and template.stop in completion:
                completion = completion[: completion.index(template.stop)]
            texts.append(prompt_text + completion.rstrip())
        return texts
