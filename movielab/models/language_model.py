"""Next-token training, validation and sampling for any autoregressive net (GPT, LSTM, ...)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from movielab.data.templates import Template
from movielab.data.tokenizers import Tokenizer
from movielab.errors import MovielabError
from movielab.models.conditioning import ConditionEncoder, PrefixedDecoder
from movielab.optim import optimizer_and_schedule
from movielab.sampling import GeneratedTexts, SamplingSettings, generate_tokens


class CausalLanguageModel(L.LightningModule):
    """Trains `net` (inputs (B, T) -> logits (B, T, V)) with cross-entropy on every next token.

    `optimizer` and `scheduler` are factories (Hydra `_partial_`); the scheduler receives the
    optimizer and `total_steps=trainer.max_steps` and is stepped every optimizer step.
    `loss_on="last"` scores only the token after each whole window (the reference LSTM's loss)
    instead of every position; validation then reports that loss too.
    `conditions` (movielab.models.conditioning) map batch values ("rating", ...) to prefix
    embeddings before the tokens; the net must take `prefix=` (GPT does). The prefix's last
    position then predicts the first token, which is scored too.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        loss_on: str = "all",
        conditions: Mapping[str, ConditionEncoder] | None = None,
    ) -> None:
        super().__init__()
        if loss_on not in ("all", "last"):
            raise MovielabError(f"model.loss_on='{loss_on}' must be 'all' (every position) or 'last'")
        self.net = net
        self.loss_on = loss_on
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.conditions = nn.ModuleDict(dict(conditions or {}))
        self.val_loss = MeanMetric()
        self.register_buffer("val_loss_best", torch.tensor(float("inf")))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over the scored targets, and how many targets were scored."""
        logits, targets = self._logits_and_targets(batch)
        if self.loss_on == "last":
            logits, targets = logits[:, -1:], targets[:, -1:]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return loss, (targets != -100).sum()

    def condition_prefix(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The prefix embeddings (batch, positions, d_model) of every condition, in order."""
        return torch.cat([encoder(values[name]) for name, encoder in self.conditions.items()], dim=1)

    def _logits_and_targets(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.conditions:
            return self.net(batch["inputs"]), batch["targets"]
        logits = self.net(batch["inputs"], prefix=self.condition_prefix(batch))
        return logits, torch.cat([batch["inputs"][:, :1], batch["targets"]], dim=1)

    @torch.inference_mode()
    def sequence_log_likelihood(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """log p(record | conditions) per row of a padded record batch (eval mode: no dropout)."""
        was_training = self.training
        self.eval()
        try:
            logits, targets = self._logits_and_targets(batch)
        finally:
            self.train(was_training)
        scores = F.cross_entropy(logits.transpose(1, 2).float(), targets, ignore_index=-100, reduction="none")
        return -scores.sum(dim=1)

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
        self.val_loss_best = torch.minimum(self.val_loss_best, loss.detach())
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/ppl", loss.exp())
        self.log("val/loss_best", self.val_loss_best)

    def configure_optimizers(self):  # noqa: ANN201 (Lightning accepts several shapes)
        return optimizer_and_schedule(
            self, lambda: self.trainer.max_steps, self.optimizer_factory, self.scheduler_factory
        )

    @torch.inference_mode()
    def generate_text(
        self,
        tokenizer: Tokenizer,
        template: Template,
        num_samples: int,
        settings: SamplingSettings,
        generator: torch.Generator | None = None,
        reject: Callable[[str], bool] | None = None,
        max_rounds: int = 10,
        **fields: object,
    ) -> GeneratedTexts:
        """Fill the template's prompt with `fields`, sample in one batch, cut each sample at the stop.

        `prime` is text the generated part starts with (e.g. prime="jerry:" for a script model);
        with no prompt at all, sampling starts after the template's ending, i.e. at a new record.
        Fields named after a condition set the prefix: rating=7.8 for every sample, or one value
        per sample (a conditioned model needs no prompt: the prefix starts the record).
        Samples for which `reject(text)` is true (e.g. copies of training titles) are drawn again,
        up to `max_rounds` more times.
        """
        prime = fields.pop("prime", None)
        unknown = sorted(set(fields) - set(template.fields) - set(self.conditions))
        if unknown:
            raise MovielabError(
                f"this model does not take {', '.join(unknown)}; its prompt fields are "
                f"{', '.join(template.fields)}"
                + (f"; its conditions are {', '.join(self.conditions)}" if self.conditions else "")
            )
        values = {
            name: encoder.request(fields.pop(name, None), num_samples, name)
            for name, encoder in self.conditions.items()
        }
        prompt_text = template.prompt(**fields) + ("" if prime is None else str(prime))
        context = tokenizer.encode(prompt_text if self.conditions else prompt_text or template.ending)
        prompt_ids = torch.as_tensor(context, dtype=torch.long, device=self.device)
        if prompt_ids.numel() == 0 and not self.conditions:
            raise MovielabError("the prompt is empty: give a prompt field (e.g. title=... or prime=...)")
        stop = tokenizer.encode(template.stop).tolist() if template.stop else None
        settings = settings.never_unknown(tokenizer)
        was_training = self.training
        self.eval()
        try:
            prefix = self.condition_prefix(values) if self.conditions else None
            texts: list[str] = [""] * num_samples
            unfinished: set[int] = set()
            rows = list(range(num_samples))
            for _ in range(max_rounds + 1):
                decoder = self.net if prefix is None else PrefixedDecoder(self.net, prefix[rows])
                new = generate_tokens(decoder, prompt_ids.expand(len(rows), -1), settings, stop, generator)
                for row, ids in zip(rows, new.tolist(), strict=True):
                    texts[row], stopped = self._completed_text(tokenizer, template, context, prompt_text, ids)
                    if template.stop and not stopped:
                        unfinished.add(row)
                    else:
                        unfinished.discard(row)  # a redrawn sample that now ends properly
                rows = [row for row in rows if reject is not None and reject(texts[row])]
                if not rows:
                    break
        finally:
            self.train(was_training)
        return GeneratedTexts(texts, unfinished)

    @staticmethod
    def _completed_text(
        tokenizer: Tokenizer, template: Template, context: np.ndarray, prompt_text: str, ids: list[int]
    ) -> tuple[str, bool]:
        """The prompt and the sample cut at the template's stop, and whether the stop was written."""
        shown = tokenizer.decode(context)
        # decoded after the prompt, so a word tokenizer puts the space between them
        whole = tokenizer.decode([*context.tolist(), *ids])
        completion = whole[len(shown) :] if whole.startswith(shown) else tokenizer.decode(ids)
        stopped = bool(template.stop) and template.stop in completion
        if stopped:
            completion = completion[: completion.index(template.stop)]
        return prompt_text + completion.rstrip(), stopped
