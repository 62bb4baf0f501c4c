"""Genres as a condition: a record's multi-hot genres become one prefix embedding of a language model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from movielab.data.genres import GenreVocabulary
from movielab.errors import MovielabError
from movielab.models.conditioning import ConditionEncoder


class GenrePrefix(ConditionEncoder):
    """The mean of the record's genre embeddings (one learned vector per genre of `genres`, the
    training split's vocabulary), or a "no genre" embedding for records without a known genre.

    With `drop_prob`, that share of training records gets the "no genre" embedding, so the model
    also learns to write without genres (generation without `genres=`).
    """

    def __init__(self, d_model: int, genres: Sequence[str], drop_prob: float = 0.0) -> None:
        super().__init__()
        if not genres:
            raise MovielabError(
                "a genre-conditioned model needs genres, and the training data has none: use a data config "
                "with a genres column (e.g. data=imdb1000_plots) or map one with data.reader.columns.genres"
            )
        if not 0.0 <= drop_prob < 1.0:
            raise MovielabError(f"genres drop_prob={drop_prob} must be in [0, 1)")
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

    def request(self, value: Any, num_samples: int, name: str = "genres") -> torch.Tensor:
        """`genres=[horror,comedy]` (or "horror") for every sample, one list per sample, or None
        (no genre). Unknown names: a one-line error listing the genres this model knows."""
        device = self.genre_embeddings.device
        if value is None:
            return torch.zeros(num_samples, len(self.vocabulary), device=device)
        if isinstance(value, str):
            rows = [[value]]
        else:
            items = list(value)
            per_sample = bool(items) and all(not isinstance(item, str) for item in items)
            rows = [list(item) for item in items] if per_sample else [items]
        if len(rows) not in (1, num_samples):
            raise MovielabError(
                f"{name} has {len(rows)} genre lists: give one, or one per sample (num_samples={num_samples})"
            )
        hot = self.vocabulary.multi_hot([self.vocabulary.require_known(row, name) for row in rows])
        values = torch.as_tensor(hot, device=device)
        return values.expand(num_samples, -1).clone() if len(rows) == 1 else values
