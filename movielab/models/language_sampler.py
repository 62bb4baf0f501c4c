"""A trained language model as something that writes text: a net, its condition encoders, the
tokenizer and the template it was trained with (movielab.generation.GeneratesText).

The template gives the prompt: its fields up to the last are prompt fields (title=...), the last
field is what the model writes, and `prime=` is text that part starts with. Conditions (rating,
genres) are prompt fields too; with no prompt at all an unconditioned model starts a new record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from movielab.data.templates import Template
from movielab.data.tokenizers import Tokenizer
from movielab.decoding import RowDecoder, rerunning_decoder
from movielab.errors import MovielabError
from movielab.generation import PreparedPrompt, PromptField
from movielab.models.next_token import condition_prefix, sequence_log_likelihood
from movielab.sampling import SamplingSettings

log = logging.getLogger(__name__)

PRIME = "prime"


class LanguageModelSampler:
    """`net` maps ids (batch, time) (and `prefix=` embeddings when conditioned) to logits and
    offers `decoder()`; `conditions` maps prompt field names to ConditionEncoders."""

    def __init__(
        self, net: nn.Module, conditions: Mapping[str, nn.Module], tokenizer: Tokenizer, template: Template
    ) -> None:
        self.net = net
        self.conditions = dict(conditions)
        self.tokenizer = tokenizer
        self.template = template
        self.stop = template.stop
        self._last_noted: str | None = None  # num_samples copies of one prompt: noted once

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def written_field(self) -> str:
        return self.template.fields[-1]

    def prompt_fields(self) -> tuple[PromptField, ...]:
        text_fields = [PromptField(name, "text", f"the {name}") for name in self.template.fields[:-1]]
        prime = PromptField(PRIME, "text", f"text the {self.written_field} starts with")
        conditions = [encoder.prompt_field(name) for name, encoder in self.conditions.items()]
        return (*text_fields, prime, *conditions)

    def prepare(self, prompt: Mapping[str, Any]) -> PreparedPrompt:
        given = {name: value for name, value in prompt.items() if value is not None}
        allowed = [field.name for field in self.prompt_fields()]
        if self.written_field in given and self.written_field not in allowed:
            raise MovielabError(
                f"this model writes the {self.written_field}: start it with {PRIME}=... instead of "
                f"{self.written_field}=..."
            )
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise MovielabError(
                f"this model does not take {', '.join(unknown)}; its prompt fields are {', '.join(allowed)}"
            )
        values = {
            name: encoder.value(given.pop(name, None), name) for name, encoder in self.conditions.items()
        }
        prime = given.pop(PRIME, None)
        text = self.template.prompt(**{name: str(value) for name, value in given.items()})
        text += "" if prime is None else str(prime)
        encoded = text if self.conditions else text or self.template.ending
        ids = self.tokenizer.encode(encoded)
        self._check_known(encoded, ids)
        if len(ids) == 0 and not self.conditions:
            raise MovielabError("the prompt is empty: give a prompt field (e.g. title=... or prime=...)")
        prefix = None
        if self.conditions:
            prefix = condition_prefix(self.conditions, {k: v[None] for k, v in values.items()})[0]
        return PreparedPrompt(torch.as_tensor(ids, dtype=torch.long, device=self.device), text, prefix, given)

    def _check_known(self, text: str, ids: Sequence[int]) -> None:
        """Characters a char model never saw are an error (it would read them as nothing it knows);
        a word model was trained on its <unknown> token, so unseen words are only noted."""
        unknown = self.tokenizer.unknown_id
        if unknown is None or unknown not in list(ids):
            return
        if self.tokenizer.kind == "char":
            chars = sorted({c for c in text if self.tokenizer.encode(c)[0] == unknown})
            raise MovielabError(
                f"the prompt has characters this model never saw in training: {' '.join(map(repr, chars))}; "
                "remove or replace them"
            )
        if text == self._last_noted:
            return
        self._last_noted = text
        if self.tokenizer.kind == "word":  # name the words, so a user can respell or replace them
            # a word tokenizer encodes its words one id each, so the ids line up with them
            unseen = sorted({w for w, i in zip(self.tokenizer.words(text), ids, strict=True) if i == unknown})
            log.warning(
                "the prompt has words this model never saw in training, read as its unknown token: %s",
                " ".join(map(repr, unseen)),
            )
        else:
            log.warning("the prompt has %d token(s) this model reads as unknown", list(ids).count(unknown))

    def decoder(self, use_cache: bool = True) -> RowDecoder:
        if use_cache:
            return self.net.decoder()
        context = self.net.max_context
        return rerunning_decoder(
            lambda idx, prefix: self.net(idx) if prefix is None else self.net(idx, prefix=prefix),
            lambda prefix: None if context is None else context - (0 if prefix is None else prefix.size(0)),
        )

    def settings_for(self, settings: SamplingSettings) -> SamplingSettings:
        unknown = self.tokenizer.unknown_id
        return settings if unknown is None else settings.banning([unknown])

    def stop_ids(self) -> list[int]:
        return self.tokenizer.encode(self.template.stop).tolist() if self.template.stop else []

    def token_limit(self, prompt: PreparedPrompt) -> int | None:
        return None

    def render(self, prompt: PreparedPrompt, new_ids: Sequence[int]) -> tuple[str, bool]:
        context = prompt.ids.tolist()
        shown = self.tokenizer.decode(context)
        # decoded after the prompt, so a word tokenizer puts the space between them
        whole = self.tokenizer.decode([*context, *new_ids])
        completion = whole[len(shown) :] if whole.startswith(shown) else self.tokenizer.decode(list(new_ids))
        stopped = bool(self.stop) and self.stop in completion
        if stopped:
            completion = completion[: completion.index(self.stop)]
        return prompt.text + completion.rstrip(), stopped

    def sequence_log_likelihood(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """log p(record | conditions) per row of a padded record batch."""
        return sequence_log_likelihood(self.net, self.conditions, batch)
