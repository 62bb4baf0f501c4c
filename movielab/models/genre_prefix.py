"""Genres as a condition: a record's multi-hot genres become one prefix embedding of a language model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from movielab.data.genres import GenreVocabulary
from movielab.errors import MovielabError
from movielab.generation import PromptField
from movielab.models.conditioning import ConditionEncoder


@dataclass
class GenrePrefixConfig:
    """`genres`: the training split's genre vocabulary (bound from the data)."""

    d_model: int
    genres: tuple[str, ...] = ()
    drop_prob: float = 0.0

    def __post_init__(self) -> None:
        self.genres = tuple(self.genres)
        if not self.genres:
            raise MovielabError(
                "a genre-conditioned model needs genres, and the training data has none: use a data config "
                "with a genres column (e.g. data=imdb1000_plots) or map one with data.reader.columns.genres"
            )
        if not all(isinstance(g, str) for g in self.genres):
            raise MovielabError(f"genres must be names, got {list(self.genres)[:5]}")
        if not 0.0 <= self.drop_prob < 1.0:
            raise MovielabError(f"model.conditions.genres.drop_prob={self.drop_prob} must be in [0, 1)")


class GenrePrefix(ConditionEncoder):
    """The mean of the record's genre embeddings (one learned vector per genre of `genres`, the
    training split's vocabulary), or a "no genre" embedding for records without a known genre.

    With `drop_prob`, that share of training records gets the "no genre" embedding, so the model
    also learns to write without genres (generation without `genres=`).
    """

    def __init__(self, config: GenrePrefixConfig) -> None:
        super().__init__()
        self.config = config
        d_model, genres, drop_prob = config.d_model, config.genres, config.drop_prob
        self.vocabulary = GenreVocabulary(tuple(genres))
        self.drop_prob = drop_prob
        self.genre_embeddings = nn.Parameter(torch.randn(len(genres), d_model) * 0.02)
        self.no_genre = nn.Parameter(torch.randn(d_model) * 0.02)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """(batch, n_genres) multi-hot -> (batch, 1, d_model)."""
        hot = values.to(self.genre_embeddings.dtype)
        if self.training and self.drop_prob > 0:
            kept = torch.rand(hot.size(0), 1, device=hot.device) >= self.drop_prob
            hot = hot * kept
        counts = hot.sum(dim=1, keepdim=True)
        mean = hot @ self.genre_embeddings / counts.clamp(min=1.0)
        return torch.where(counts > 0, mean, self.no_genre).unsqueeze(1)

    def value(self, given: Any, name: str = "genres") -> torch.Tensor:
        """`genres=[horror,comedy]` (or "horror"), or None: no genre. Unknown names: a one-line
        error listing the genres this model knows."""
        device = self.genre_embeddings.device
        if given is None:
            return torch.zeros(len(self.vocabulary), device=device)
        names = [given] if isinstance(given, str) else list(given)
        if not all(isinstance(n, str) for n in names):
            raise MovielabError(
                f"{name}={given!r} must be genre names; this model knows: {', '.join(self.vocabulary.names)}"
            )
        hot = self.vocabulary.multi_hot([self.vocabulary.require_known(names, name)])
        return torch.as_tensor(hot[0], device=device)

    def prompt_field(self, name: str = "genres") -> PromptField:
        return PromptField(name, "choices", "genres the text should have", choices=self.vocabulary.names)
