"""Sampling settings and how one next token is chosen per row: penalties, temperature, filters, draw.

Every row of a batch has its own settings and its own seeded generator, so a row samples the
same text whether it is decoded alone or beside others (movielab.generation relies on that).
The order follows Hugging Face's logits processors, so a setting means what users of peers expect:
repetition penalty and n-gram blocking on the raw logits, then temperature, top-k, top-p, min-p.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from movielab.errors import MovielabError


def checked_number(name: str, value: Any, kind: type[int] | type[float]) -> int | float:
    """`value` as an int or a float, or a one-line error naming the option (`temperature=abc`
    from a command line, `"top_k": true` from a request); a whole float counts as an int."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    number_like = isinstance(number, int | float) and not isinstance(number, bool)
    whole = number_like and math.isfinite(number)
    if not whole or (kind is int and number != int(number)):
        expected = "an integer" if kind is int else "a finite number"
        raise MovielabError(f"{name}={value!r} must be {expected}")
    return kind(number)


@dataclass(frozen=True)
class SamplingSettings:
    """How one row is sampled. `None` switches a filter off; `banned` token ids are never drawn
    (samplers ban their tokenizer's unknown token)."""

    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int | None = None
    max_new_tokens: int = 400
    banned: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: store the checked, converted values
        set_(self, "temperature", checked_number("temperature", self.temperature, float))
        set_(self, "repetition_penalty", checked_number("repetition_penalty", self.repetition_penalty, float))
        set_(self, "max_new_tokens", checked_number("max_new_tokens", self.max_new_tokens, int))
        for name, kind in (("top_k", int), ("top_p", float), ("min_p", float), ("no_repeat_ngram_size", int)):
            if getattr(self, name) is not None:
                set_(self, name, checked_number(name, getattr(self, name), kind))
        if not self.temperature > 0:
            raise MovielabError(f"temperature={self.temperature:g} must be greater than 0")
        if self.top_k is not None and self.top_k < 1:
            raise MovielabError(f"top_k={self.top_k} must be at least 1 (or null for no limit)")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise MovielabError(f"top_p={self.top_p:g} must be in (0, 1] (or null for no limit)")
        if self.min_p is not None and not 0 <= self.min_p < 1:
            raise MovielabError(f"min_p={self.min_p:g} must be in [0, 1) (or null for no limit)")
        if not self.repetition_penalty > 0:
            raise MovielabError(
                f"repetition_penalty={self.repetition_penalty:g} must be greater than 0 (1.0 = no penalty)"
            )
        if self.no_repeat_ngram_size is not None and self.no_repeat_ngram_size < 1:
            raise MovielabError(
                f"no_repeat_ngram_size={self.no_repeat_ngram_size} must be at least 1 (or null for none)"
            )
        if self.max_new_tokens < 1:
            raise MovielabError(f"max_new_tokens={self.max_new_tokens} must be at least 1")
        set_(self, "banned", tuple(int(i) for i in self.banned))

    @classmethod
    def from_options(cls, options: Any) -> SamplingSettings:
        """The settings named in a mapping of options (a Hydra config, a request), others at default."""
        names = [f.name for f in fields(cls) if f.name != "banned"]
        return cls(**{name: options[name] for name in names if name in options})

    def banning(self, token_ids: Sequence[int]) -> SamplingSettings:
        return replace(self, banned=tuple(dict.fromkeys((*self.banned, *map(int, token_ids)))))


# the settings a user may set (banned ids are the model's own business)
SAMPLING_OPTIONS = tuple(f.name for f in fields(SamplingSettings) if f.name != "banned")


def penalize_repeats(logits: torch.Tensor, history: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019), as Hugging Face applies it: a token already in
    the row's history has a positive logit divided by `penalty` and a negative one multiplied."""
    if penalty == 1.0 or history.numel() == 0:
        return logits
    seen = logits.gather(-1, history)
    logits = logits.clone()
    logits.scatter_(-1, history, torch.where(seen > 0, seen / penalty, seen * penalty))
    return logits


def repeated_ngram_tokens(history: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram the row already holds (Hugging Face's no_repeat_ngram_size)."""
    if len(history) + 1 < n:
        return []
    if n == 1:
        return list(set(history))
    tail = tuple(history[len(history) - n + 1 :])
    return [history[i + n - 1] for i in range(len(history) - n + 1) if tuple(history[i : i + n - 1]) == tail]


def filter_logits(logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """Temperature, then top-k, top-p (nucleus) and min-p filtering; removed entries become -inf."""
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
    if settings.min_p:
        probs = logits.softmax(dim=-1)
        logits = logits.masked_fill(
            probs < settings.min_p * probs.max(dim=-1, keepdim=True).values, float("-inf")
        )
    return logits


def next_token_scores(logits: torch.Tensor, history: list[int], settings: SamplingSettings) -> torch.Tensor:
    """One row's logits (1, vocab) made ready to draw from: penalties on its history, then filters."""
    logits = logits.float()
    if settings.repetition_penalty != 1.0 and history:
        logits = penalize_repeats(
            logits, torch.tensor([history], device=logits.device), settings.repetition_penalty
        )
    if settings.no_repeat_ngram_size:
        blocked = repeated_ngram_tokens(history, settings.no_repeat_ngram_size)
        if blocked:
            logits = logits.index_fill(-1, torch.tensor(blocked, device=logits.device), float("-inf"))
    return filter_logits(logits, settings)


def sample_next(
    logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None
) -> torch.Tensor:
    """Draw one token per row of `logits` (rows, vocab) -> (rows, 1), all from one generator."""
    probs = filter_logits(logits.float(), settings).softmax(dim=-1)
    if not torch.isfinite(probs).all():
        raise MovielabError(
            "the model's next-token scores are not finite (NaN or inf): its weights are broken"
        )
    return torch.multinomial(probs, num_samples=1, generator=generator)


def draw_tokens(
    logits: torch.Tensor,
    histories: Sequence[list[int]],
    settings: Sequence[SamplingSettings],
    generators: Sequence[torch.Generator],
) -> list[int]:
    """The next token of each row of `logits` (rows, vocab), each with its own settings, history
    and generator: row i draws exactly as it would in a batch of one. Rows that share settings
    without penalties (which read a row's history) are filtered together."""
    probs = torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
    shared: dict[SamplingSettings, list[int]] = {}
    for i, row_settings in enumerate(settings):
        if row_settings.repetition_penalty == 1.0 and not row_settings.no_repeat_ngram_size:
            shared.setdefault(row_settings, []).append(i)
        else:
            probs[i] = next_token_scores(logits[i : i + 1], histories[i], row_settings).softmax(dim=-1)[0]
    for row_settings, rows in shared.items():
        if len(rows) == len(settings):  # one setting for the whole batch: no gather, no scatter
            probs = filter_logits(logits.float(), row_settings).softmax(dim=-1)
        else:
            probs[rows] = filter_logits(logits[rows].float(), row_settings).softmax(dim=-1)
    if not bool(torch.isfinite(probs).all()):
        raise MovielabError(
            "the model's next-token scores are not finite (NaN or inf): its weights are broken"
        )
    # torch.multinomial's own way to draw one sample, argmax(p / q) with q ~ Exp(1) from the row's
    # generator, with the division and argmax done for every row at once: the same tokens
    noise = torch.empty_like(probs)
    for row, generator in enumerate(generators):
        noise[row].exponential_(1, generator=generator)
    return (probs / noise).argmax(dim=-1).tolist()
