"""Next-token training and validation for any autoregressive net (GPT, LSTM, Hugging Face models)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from movielab.data.templates import Template
from movielab.data.tokenizers import Tokenizer
from movielab.models.build import build_language_model
from movielab.models.language_sampler import LanguageModelSampler
from movielab.models.next_token import logits_and_targets
from movielab.models.spec import ModelSpec
from movielab.models.trained_module import TrainedModule


class CausalLanguageModel(TrainedModule):
    """Trains the net a `spec` describes (inputs (B, T) -> logits (B, T, V)) with cross-entropy on
    every next token; it computes losses and metrics only (samples and reports are callbacks').

    With `loss_on="last"` only the token after each whole window is scored (the reference LSTM's loss),
    in validation too. Conditions (rating, genres) are prefix embeddings before the tokens.
    `compile=True` (`model.compile=true`) runs the net's forward through torch.compile while it
    trains; it is how the model trains, not what it is, so checkpoints are the same either way.
    """

    def __init__(
        self,
        spec: ModelSpec,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.net, conditions, self.spec = build_language_model(spec)
        self.conditions = nn.ModuleDict(conditions)
        self.loss_on = self.spec.task_options().loss_on
        self.val_loss = MeanMetric()
        self.compile_net = compile

    def configure_model(self) -> None:
        """With `compile`, compile the net's forward in place (nn.Module.compile): the module stays
        itself, so its state dict keeps its names (no `_orig_mod.` prefix) and checkpoints load as
        any other. Only calls of the net are compiled; generation's cached decoding stays eager."""
        if self.compile_net and not self._net_compiled:
            self.net.compile()
            self._net_compiled = True

    _net_compiled = False

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over the scored targets, and how many targets were scored."""
        logits, targets = logits_and_targets(self.net, self.conditions, batch)
        if self.loss_on == "last":
            logits, targets = logits[:, -1:], targets[:, -1:]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return loss, (targets != -100).sum()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, tokens = self._loss(batch)
        self.val_loss.update(loss, weight=tokens)

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.val_loss.reset()
        if self.trainer.sanity_checking:
            return
        self.log_validation_loss(loss)
        self.log("val/ppl", loss.exp())

    def text_sampler(self, tokenizer: Tokenizer, template: Template) -> LanguageModelSampler:
        """The model as it writes text (use it in eval mode: movielab.models.modes.evaluating)."""
        return LanguageModelSampler(self.net, self.conditions, tokenizer, template)
