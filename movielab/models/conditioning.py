"""Condition encoders: per-record values (a rating, genres) as prefix embeddings of a language model.

A conditioned model sees `[prefix] + tokens`: each encoder turns its batch value (batch["rating"],
...) into `n_positions` embeddings that occupy the first positions, and the output at the last
prefix position predicts the first token. Encoders are kept in a dict keyed by the batch value
they read (CausalLanguageModel(conditions={"rating": RatingPrefix(...), "genres": ...})), their
prefixes concatenated in that order; the same name is the generation option (rating=7.8).

A new condition is a ConditionEncoder subclass with `forward(values) -> (batch, n_positions,
d_model)` and `request(value, num_samples, name)`, which checks a user's value and returns the batch
of values `forward` takes.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from movielab.errors import MovielabError

RATING_STEPS = 100  # the rating scale is cut into 0.0, 0.1, ..., 10.0: 101 buckets


class ConditionEncoder(nn.Module, ABC):
    """Turns one per-record value of a batch into prefix embeddings (batch, n_positions, d_model)."""

    n_positions: int = 1

    @abstractmethod
    def forward(self, values: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def request(self, value: Any, num_samples: int, name: str) -> torch.Tensor:
        """A generation option's value (None when not given) as the values of `num_samples` rows,
        with a one-line MovielabError naming the option `name` when the value is not acceptable."""


class RatingPrefix(ConditionEncoder):
    """A rating as one prefix embedding: the data's `scale` [low, high] is mapped to 0.0-10.0 and
    rounded to steps of 0.1, so each of the 101 buckets has its own embedding. With `scalar`, a
    learned direction scaled by the rating's place on the scale (0 to 1) is added: shared by every
    bucket, it carries the order of ratings to buckets with few or no training titles.

    One more embedding stands for "rating unknown": records without a rating, generation without
    `rating=`, and, with `drop_prob`, a random share of training records (so the model also
    learns to generate unconditioned). `seen_range` records the lowest and highest rating trained
    on, so evaluation can ask for ratings the model has seen.
    """

    def __init__(
        self, d_model: int, scale: Sequence[float] = (0.0, 10.0), drop_prob: float = 0.0, scalar: bool = True
    ) -> None:
        super().__init__()
        if len(scale) != 2 or not float(scale[0]) < float(scale[1]):
            raise MovielabError(f"data.rating_scale={list(scale)} must be [low, high] with low < high")
        if not 0.0 <= drop_prob < 1.0:
            raise MovielabError(f"rating drop_prob={drop_prob} must be in [0, 1)")
        self.low, self.high = float(scale[0]), float(scale[1])
        self.drop_prob = drop_prob
        self.unknown = RATING_STEPS + 1
        self.embedding = nn.Embedding(RATING_STEPS + 2, d_model)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=0.02)  # as the GPT's token embeddings
        self.scalar = nn.Linear(1, d_model, bias=False) if scalar else None
        if self.scalar is not None:
            nn.init.normal_(self.scalar.weight, mean=0.0, std=0.02)
        self.register_buffer("seen_range", torch.tensor([math.inf, -math.inf]))

    @property
    def scale(self) -> tuple[float, float]:
        return self.low, self.high

    def buckets(self, ratings: torch.Tensor) -> torch.Tensor:
        """Bucket index per rating: 0 (scale low) .. 100 (scale high), `unknown` for NaN."""
        steps = ((ratings - self.low) / (self.high - self.low) * RATING_STEPS).round().clamp(0, RATING_STEPS)
        unknown = ratings.isnan()
        if self.training and self.drop_prob > 0:
            unknown = unknown | (torch.rand(ratings.shape, device=ratings.device) < self.drop_prob)
        return torch.where(unknown, self.unknown, steps.nan_to_num(0.0).long())

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        ratings = values.float()
        if self.training:
            known = ~ratings.isnan()
            low = torch.where(known, ratings, math.inf).min()
            high = torch.where(known, ratings, -math.inf).max()
            self.seen_range = torch.stack([self.seen_range[0].minimum(low), self.seen_range[1].maximum(high)])
        buckets = self.buckets(ratings)
        embedded = self.embedding(buckets)
        if self.scalar is not None:
            place = ((ratings - self.low) / (self.high - self.low)).clamp(0, 1).nan_to_num(0.0)
            known = (buckets != self.unknown).unsqueeze(-1)
            embedded = embedded + self.scalar(place.unsqueeze(-1)) * known
        return embedded.unsqueeze(1)

    def request(self, value: Any, num_samples: int, name: str = "rating") -> torch.Tensor:
        """`rating=7.8` for every sample, a list with one rating per sample, or None (unconditioned)."""
        device = self.embedding.weight.device
        if value is None:
            return torch.full((num_samples,), math.nan, device=device)
        values = [value] if isinstance(value, str) or not hasattr(value, "__iter__") else list(value)
        if len(values) not in (1, num_samples):
            raise MovielabError(
                f"{name} has {len(values)} values: give one, or one per sample (num_samples={num_samples})"
            )
        ratings = [self._checked(v, name) for v in values]
        return torch.tensor(ratings * (num_samples if len(ratings) == 1 else 1), device=device)

    def _checked(self, value: Any, name: str) -> float:
        low, high = f"{self.low:g}", f"{self.high:g}"
        try:
            if isinstance(value, bool):
                raise ValueError
            rating = float(value)
        except (TypeError, ValueError):
            rating = math.nan
        if not math.isfinite(rating):
            raise MovielabError(
                f"{name}={value!r} is not a number; give one in [{low}, {high}], e.g. {name}=7.5"
            )
        if not self.low <= rating <= self.high:
            raise MovielabError(f"{name}={value!r} is outside this model's rating scale [{low}, {high}]")
        return rating


class PrefixedDecoder:
    """A net bound to a batch of prefixes, seen by movielab.sampling as a plain decoder whose
    prompt (possibly empty) follows the prefix; when the sampling loop restarts the cache at
    position 0, the prefix is fed again, so the condition holds for the whole sample."""

    def __init__(self, net: nn.Module, prefix: torch.Tensor) -> None:
        self.net = net
        self.prefix = prefix
        self.max_context = net.max_context - prefix.size(1)
        if self.max_context < 2:
            raise MovielabError(
                f"model.net.config.block_size={net.max_context} leaves no room after a prefix of "
                f"{prefix.size(1)} positions"
            )

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.net(idx, prefix=self.prefix)

    def begin_decoding(self, batch_size: int) -> None:
        self.net.begin_decoding(batch_size)

    def decode_step(self, idx: torch.Tensor, start: int) -> torch.Tensor:
        if start == 0:
            return self.net.decode_step(idx, 0, prefix=self.prefix)
        return self.net.decode_step(idx, start + self.prefix.size(1))

    def end_decoding(self) -> None:
        self.net.end_decoding()
