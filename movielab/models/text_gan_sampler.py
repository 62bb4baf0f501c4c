"""A trained text GAN as something that writes text (movielab.generation.GeneratesText): each row
is a sentence from its own noise, written through the generator's training path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from movielab.data.tokenizers import Tokenizer
from movielab.decoding import RowDecoder
from movielab.errors import MovielabError
from movielab.generation import PreparedPrompt, PromptField
from movielab.models.text_gan import TextGenerator
from movielab.sampling import SamplingSettings


class TextGANSampler:
    """With soft feedback the written token at each position is drawn from that position's
    distribution (temperature, top-k, top-p apply to it) while the softmax is fed back, as in
    training; with Gumbel feedback the drawn token is also the one fed back."""

    stop = None  # a sentence ends at its <end> token, which is never part of the text

    def __init__(
        self, generator: TextGenerator, tokenizer: Tokenizer, pad_id: int, end_id: int, feedback: str
    ):
        self.generator = generator
        self.tokenizer = tokenizer
        self.pad_id, self.end_id = int(pad_id), int(end_id)
        self.feedback = feedback

    def prompt_fields(self) -> tuple[PromptField, ...]:
        return ()

    def prepare(self, prompt: Mapping[str, Any]) -> PreparedPrompt:
        given = sorted(name for name, value in prompt.items() if value is not None)
        if given:
            raise MovielabError(
                f"the text GAN writes sentences from noise and takes no prompt; remove {', '.join(given)}"
            )
        return PreparedPrompt(torch.zeros(0, dtype=torch.long, device=self.generator.start.device), "")

    def decoder(self, use_cache: bool = True) -> RowDecoder:
        return self.generator.decoder(self.feedback)

    def settings_for(self, settings: SamplingSettings) -> SamplingSettings:
        unknown = self.tokenizer.unknown_id
        return settings if unknown is None else settings.banning([unknown])

    def stop_ids(self) -> list[int]:
        return [self.end_id]

    def token_limit(self, prompt: PreparedPrompt) -> int | None:
        return self.generator.config.max_length

    def render(self, prompt: PreparedPrompt, new_ids: Sequence[int]) -> tuple[str, bool]:
        """Everything before the first <end>, without <pad>s."""
        ids = list(new_ids)
        stopped = self.end_id in ids
        if stopped:
            ids = ids[: ids.index(self.end_id)]
        return self.tokenizer.decode([i for i in ids if i != self.pad_id]), stopped
