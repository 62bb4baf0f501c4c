"""Condition encoders: per-record values (a rating, genres) as prefix embeddings of a language model.

A conditioned model sees `[prefix] + tokens`: each encoder turns its batch value (batch["rating"],
...) into `n_positions` embeddings that occupy the first positions, and the output at the last
prefix position predicts the first token. Encoders are kept in a dict keyed by the batch value
they read (model.conditions: {"rating": RatingPrefix, "genres": GenrePrefix}), their prefixes
concatenated in that order; the same name is the prompt field (rating=7.8).

A new condition is a ConditionEncoder subclass with a dataclass config, `forward(values) ->
(batch, n_positions, d_model)`, `value(given, name)`, which checks a user's value and returns one
row of what `forward` takes, and `prompt_field(name)`, which describes that value to a user;
register it in movielab.models.registry.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from movielab.errors import MovielabError
from movielab.generation import PromptField

RATING_STEPS = 100  # the rating scale is cut into 0.0, 0.1, ..., 10.0: 101 buckets


class ConditionEncoder(nn.Module, ABC):
    """Turns one per-record value of a batch into prefix embeddings (batch, n_positions, d_model)."""

    n_positions: int = 1

    @abstractmethod
    def forward(self, values: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def value(self, given: Any, name: str) -> torch.Tensor:
        """A prompt's value (None when not given) as one row of `forward`'s input, with a one-line
        MovielabError naming the field `name` when the value is not acceptable."""

    @abstractmethod
    def prompt_field(self, name: str) -> PromptField: ...


@dataclass
class RatingPrefixConfig:
    """`scale` is the data's rating scale [low, high] (bound from data.rating_scale)."""

    d_model: int
    scale: tuple[float, float] = (0.0, 10.0)
    drop_prob: float = 0.0
    scalar: bool = True

    def __post_init__(self) -> None:
        scale = tuple(self.scale) if isinstance(self.scale, list | tuple) else ()
        if len(scale) != 2 or not all(isinstance(v, int | float) for v in scale) or not scale[0] < scale[1]:
            raise MovielabError(
                f"data.rating_scale={list(scale) or self.scale} must be [low, high] with low < high"
            )
        self.scale = (float(scale[0]), float(scale[1]))
        if not 0.0 <= self.drop_prob < 1.0:
            raise MovielabError(f"model.conditions.rating.drop_prob={self.drop_prob} must be in [0, 1)")


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

    def __init__(self, config: RatingPrefixConfig) -> None:
        super().__init__()
        self.config = config
        d_model, scale, drop_prob, scalar = config.d_model, config.scale, config.drop_prob, config.scalar
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

    def value(self, given: Any, name: str = "rating") -> torch.Tensor:
        """`rating=7.8`, or None: "rating unknown" (unconditioned)."""
        rating = math.nan if given is None else self._checked(given, name)
        return torch.tensor(rating, device=self.embedding.weight.device)

    def prompt_field(self, name: str = "rating") -> PromptField:
        return PromptField(
            name,
            "number",
            f"the rating, on the training data's scale [{self.low:g}, {self.high:g}]",
            self.low,
            self.high,
        )

    def _checked(self, value: Any, name: str) -> float:
        low, high = f"{self.low:g}", f"{self.high:g}"
        example = f"{(self.low + self.high) / 2:g}"  # inside the scale, whatever it is
        try:
            if isinstance(value, bool):
                raise ValueError
            rating = float(value)
        except (TypeError, ValueError):
            rating = math.nan
        if not math.isfinite(rating):
            raise MovielabError(
                f"{name}={value!r} is not a number; give one in [{low}, {high}], e.g. {name}={example}"
            )
        if not self.low <= rating <= self.high:
            raise MovielabError(f"{name}={value!r} is outside this model's rating scale [{low}, {high}]")
        return rating
