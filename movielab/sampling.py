"""Sampling settings and the batched autoregressive loop shared by every language model."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

import torch

from movielab.errors import MovielabError


class IncrementalDecoder(Protocol):
    """What a model offers to be sampled token by token with a cache (KV cache, LSTM state)."""

    max_context: int | None

    def __call__(self, idx: torch.Tensor) -> torch.Tensor: ...
    def begin_decoding(self, batch_size: int) -> None: ...
    def decode_step(self, idx: torch.Tensor, start: int) -> torch.Tensor: ...
    def end_decoding(self) -> None: ...


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int = 400
    use_cache: bool = True
    banned: tuple[int, ...] = ()  # token ids never sampled (generate_text bans the unknown token)

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise MovielabError(f"temperature={self.temperature} must be greater than 0")
        if self.top_k is not None and self.top_k < 1:
            raise MovielabError(f"top_k={self.top_k} must be at least 1 (or null for no limit)")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise MovielabError(f"top_p={self.top_p} must be in (0, 1] (or null for no limit)")
        if self.max_new_tokens < 1:
            raise MovielabError(f"max_new_tokens={self.max_new_tokens} must be at least 1")

    def never_unknown(self, tokenizer: object) -> SamplingSettings:
        """These settings with the tokenizer's `<unknown>` banned, if it has one: never worth writing."""
        unknown_id = getattr(tokenizer, "unknown_id", None)
        return self if unknown_id is None else replace(self, banned=(*self.banned, unknown_id))


class GeneratedTexts(list):
    """Samples in order, plus `unfinished`: the indices of those that used up max_new_tokens before
    writing the template's stop, so the caller can say they are cut off, not complete."""

    def __init__(self, texts: Iterable[str], unfinished: Iterable[int] = ()) -> None:
        super().__init__(texts)
        self.unfinished = tuple(sorted(unfinished))


def filter_logits(logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """Temperature, then top-k, then nucleus (top-p) filtering; removed entries become -inf."""
    logits = logits / settings.temperature
    if settings.banned:
        logits = logits.index_fill(-1, torch.tensor(settings.banned, device=logits.device), float("-inf"))
    if settings.top_k is not None and settings.top_k < logits.size(-1):
        kth = torch.topk(logits, settings.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if settings.top_p is not None and settings.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the tokens ranked above it already reach top_p (the top one always stays)
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= settings.top_p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    return logits


def sample_next(
    logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None
) -> torch.Tensor:
    probs = filter_logits(logits.float(), settings).softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


def _ends_with(tokens: torch.Tensor, stop: torch.Tensor) -> torch.Tensor:
    if tokens.size(1) < len(stop):
        return torch.zeros(tokens.size(0), dtype=torch.bool, device=tokens.device)
    return (tokens[:, -len(stop) :] == stop).all(dim=1)


@torch.inference_mode()
def generate_tokens(
    model: IncrementalDecoder,
    prompt: torch.Tensor,
    settings: SamplingSettings,
    stop: list[int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continue each row of `prompt` (batch, time) by up to max_new_tokens; returns only the new tokens.

    Rows that produced the `stop` sequence are finished; generation ends when every row is.
    With the cache, the prompt is fed once and then one token a step; when the context fills, the
    cache restarts from the last half context (so long samples stay O(n) instead of O(n^2)).
    """
    batch = prompt.size(0)
    context = model.max_context
    stop_ids = torch.tensor(stop or [], dtype=prompt.dtype, device=prompt.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=prompt.device)
    tokens = prompt
    new_tokens = []
    position = 0
    if settings.use_cache:
        model.begin_decoding(batch)
    try:
        pending = tokens if context is None else tokens[:, -context:]
        for _ in range(settings.max_new_tokens):
            if settings.use_cache:
                if context is not None and position + pending.size(1) > context:
                    pending = tokens[:, -(context // 2) :]
                    position = 0
                logits = model.decode_step(pending, position)
                position += pending.size(1)
            else:
                window = tokens if context is None else tokens[:, -context:]
                logits = model(window)[:, -1]
            next_token = sample_next(logits, settings, generator)
            tokens = torch.cat([tokens, next_token], dim=1)
            new_tokens.append(next_token)
            pending = next_token
            if len(stop_ids):
                finished |= _ends_with(tokens[:, prompt.size(1) :], stop_ids)
                if bool(finished.all()):
                    break
    finally:
        if settings.use_cache:
            model.end_decoding()
    return torch.cat(new_tokens, dim=1)
